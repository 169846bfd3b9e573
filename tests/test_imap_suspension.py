"""Suspending a tenant ends its open IMAP sessions too: an IDLE gets BYE at once."""

from __future__ import annotations

import imaplib
import time

from mailwright.directory import tenants
from mailwright.directory.principals import PrincipalSpec, create_principal
from mailwright.services import Services
from mailwright.storage.models import Tenant
from tests.support.server import InProcessServer

PASSWORD = "suspend me password"


def test_idle_session_is_dropped_when_the_tenant_is_suspended(server: InProcessServer) -> None:
    async def setup(svc: Services) -> tuple[str, str]:
        async with svc.db.write() as s:
            reseller = Tenant(name="reseller-of-suspendable", kind="reseller")
            s.add(reseller)
            await s.flush()
            t = Tenant(name="suspendable", kind="tenant", parent_id=reseller.id)
            s.add(t)
            await s.flush()
            rid = reseller.id
            from mailwright.directory.domains import create_domain

            await create_domain(s, t.id, "susp.test")
            tid = t.id
        await create_principal(svc.db, tid, PrincipalSpec(type="individual", name="u@susp.test", secrets=[PASSWORD]))
        return rid, tid

    reseller_id, tenant_id = server.run(setup)
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.login("u@susp.test", PASSWORD)
    imap.select("INBOX")
    imap.send(b"I1 IDLE\r\n")
    assert imap.readline().startswith(b"+")

    async def suspend(svc: Services) -> None:
        await tenants.set_status(svc, reseller_id, tenant_id, "suspended")

    started = time.monotonic()
    server.run(suspend)
    line = imap.readline()
    assert line.startswith(b"* BYE"), line
    assert time.monotonic() - started < 1.0
    imap.shutdown()
