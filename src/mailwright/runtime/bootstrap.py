"""First start: the default tenant and, if no platform key exists yet, one printed once."""

from __future__ import annotations

from mailwright.directory import apikeys, tenants
from mailwright.services import Services


async def bootstrap(svc: Services) -> str | None:
    """Returns a newly minted platform admin key (to print once), or None if one existed."""
    async with svc.db.write() as s:
        await tenants.ensure_default_tenant(s)
        if await apikeys.platform_key_exists(s):
            return None
        _, key = await apikeys.create_key(s, prefix="sa_", scope="platform", name="bootstrap")
        return key
