"""The management dialect (Mailbux guide / Stalwart v0.15 principals API).

Routes: `/api/principal` (domains, individuals, lists), `/api/dkim`, `/api/dns/{domain}` and
`/api/dns/records/{domain}`. See `common.py` for auth, tenant scope, errors and the decisions
taken where the guide is silent.
"""

from fastapi import APIRouter

from mailwright.api.management import dkim, dns, principals

router = APIRouter()
router.include_router(principals.router)
router.include_router(dkim.router)
router.include_router(dns.router)

__all__ = ["router"]
