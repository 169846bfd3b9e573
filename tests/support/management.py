"""Helpers for the management-dialect tests: tenants with their own `tk_` keys, provisioning."""

from __future__ import annotations

import httpx

from mailwright.directory import apikeys
from mailwright.services import Services
from mailwright.storage.models import Tenant, Workspace
from tests.support.server import InProcessServer


def make_tenant(srv: InProcessServer, name: str) -> tuple[str, str]:
    """A new tenant and a tenant admin key for it: (tenant id, key)."""

    async def go(svc: Services) -> tuple[str, str]:
        async with svc.db.write() as s:
            t = Tenant(name=name, kind="tenant", plan="paid")
            s.add(t)
            await s.flush()
            s.add(Workspace(tenant_id=t.id, name="default", is_default=True))
            _, key = await apikeys.create_key(s, prefix="tk_", scope="tenant", tenant_id=t.id, name=f"{name} admin")
            return t.id, key

    return srv.run(go)


def client(srv: InProcessServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def add_domain(api: httpx.Client, domain: str) -> str:
    r = api.post("/api/principal", json={"name": domain, "type": "domain"})
    assert r.status_code == 200, r.text
    return str(r.json()["data"])


def add_account(api: httpx.Client, address: str, password: str, emails: list[str] | None = None, **extra: object
                ) -> str:
    r = api.post("/api/principal", json={"name": address, "type": "individual", "secrets": [password],
                                         "emails": emails or [address], **extra})
    assert r.status_code == 200, r.text
    return str(r.json()["data"])
