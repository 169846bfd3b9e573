"""The self-service mailbox dialect (mail.cx): `/api/accounts`, `/api/token`, `/api/me`,
`/api/account`, `/api/messages...`, the platform admin's `/api/admin/system-domains` and
`/api/admin/selfservice/pro`; the Pro API is `pro.router` under `/pro/api`.

Routers are thin: every rule is in `directory.selfservice` (see its docstring for the design
decisions), tokens in `directory.jwt_tokens`, mail reads in `mailstore.api_views`.
"""

from __future__ import annotations

from fastapi import APIRouter

from mailwright.api.mailcx import accounts, admin, messages

router = APIRouter()
router.include_router(accounts.router)
router.include_router(messages.router)
router.include_router(admin.router)
