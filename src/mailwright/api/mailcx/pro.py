"""The Pro API (`/pro/api`), filled in below."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/pro/api", tags=["mail.cx: pro"])
