"""A billing system's life of a customer, through HTTP only (plus the customer's mail clients).

create tenant → tenant admin logs in → adds a domain and a mailbox (management API) → mail in
over SMTP, read over IMAP → suspend (IMAP/API/admin login refused, inbound 451) → reactivate
(the deferred message arrives when the sender retries, exactly once) → quota change →
terminate (everything gone, the address bounces, quota freed in the overview).
"""

from __future__ import annotations

import imaplib
import re
import time
from typing import Any

import httpx
import pytest

from mailwright.services import Services
from mailwright.storage import blobjournal
from tests.support.reseller import (
    assert_error,
    create_tenant,
    message,
    new_reseller,
    provision_mailbox,
    reseller_client,
    smtp_send,
    tenant_login,
)
from tests.support.server import InProcessServer

PASSWORD = "customer mailbox pw 1"


def imap_messages(srv: InProcessServer, addr: str) -> list[bytes]:
    imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    try:
        assert imap.login(addr, PASSWORD)[0] == "OK"
        typ, data = imap.select("INBOX")
        assert typ == "OK"
        n = int(data[0] or 0)
        if n == 0:
            return []
        typ, fetched = imap.fetch(f"1:{n}", "(BODY.PEEK[])")
        assert typ == "OK"
        return [part[1] for part in fetched if isinstance(part, tuple)]
    finally:
        imap.logout()


def imap_login_refused(srv: InProcessServer, addr: str) -> bool:
    imap = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
    try:
        imap.login(addr, PASSWORD)
    except imaplib.IMAP4.error:
        return True
    finally:
        try:
            imap.logout()
        except imaplib.IMAP4.error:
            pass
    return False


async def rows_of_tenant(svc: Services, tenant_id: str) -> dict[str, int]:
    """Inspection only: what the database still holds for a tenant."""
    from sqlalchemy import func, select

    from mailwright.storage.models import ApiKey, Domain, Message, Principal, Webhook, Workspace

    async with svc.db.read() as s:
        def count(model: Any, *where: Any) -> Any:
            return s.execute(select(func.count()).select_from(model).where(*where))

        of_tenant = select(Principal.id).where(Principal.tenant_id == tenant_id)
        return {
            "domains": (await count(Domain, Domain.tenant_id == tenant_id)).scalar_one(),
            "principals": (await count(Principal, Principal.tenant_id == tenant_id)).scalar_one(),
            "messages": (await count(Message, Message.principal_id.in_(of_tenant))).scalar_one(),
            "keys": (await count(ApiKey, ApiKey.tenant_id == tenant_id)).scalar_one(),
            "webhooks": (await count(Webhook, Webhook.tenant_id == tenant_id)).scalar_one(),
            "workspaces": (await count(Workspace, Workspace.tenant_id == tenant_id)).scalar_one(),
        }


def test_billing_life_of_a_customer(server: InProcessServer) -> None:
    _, key = new_reseller(server, pool_gb=10, max_tenants=5)
    with reseller_client(server, key) as rc:
        # Provisioning: the credentials come back once, in the document's shape.
        r = rc.post("/api/user/tenants", json={"quota_gb": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True
        t = body["data"]
        assert {"tenant_username", "tenant_name", "tenant_password", "quota_gb", "status", "id"} <= set(t)
        assert re.fullmatch(r"user\d{8}", t["tenant_username"])
        assert t["tenant_name"] == t["tenant_username"] + "_tent"
        assert t["quota_gb"] == 5 and t["status"] == "active"
        assert len(t["tenant_password"]) >= 24
        listed = rc.get("/api/user/tenants").json()["data"]
        assert [x["tenant_username"] for x in listed] == [t["tenant_username"]]
        assert "tenant_password" not in listed[0]
        assert t["tenant_password"] not in rc.get("/api/user/tenants").text

        # The tenant admin logs in and provisions a domain and a mailbox as in the management guide.
        assert_error(tenant_login(server, t["tenant_username"], "wrong password"), 401, "INVALID_CREDENTIALS")
        r = tenant_login(server, t["tenant_username"], t["tenant_password"])
        assert r.status_code == 200, r.text
        login = r.json()["data"]
        assert login["token"].startswith("tk_") and login["tenant_id"] == t["id"] and login["expires_at"]
        token = login["token"]
        addr = provision_mailbox(server, token, "customer-one.test", "alice", PASSWORD)

        listed = rc.get("/api/user/tenants").json()["data"][0]
        assert listed["email_count"] == 1 and listed["domain_count"] == 1

        # Mail arrives over SMTP and is read over IMAP.
        assert smtp_send(server, addr, message(addr, "Invoice 1", "<m1@remote.test>"))[0] == 250
        got = imap_messages(server, addr)
        assert len(got) == 1 and b"Invoice 1" in got[0]

        # Overdue invoice: suspend. Every door closes at once.
        r = rc.post(f"/api/user/tenants/{t['id']}/suspend")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["status"] == "suspended" and r.json()["data"]["changed"] is True
        suspended_at = time.monotonic()
        assert imap_login_refused(server, addr)
        code, text = smtp_send(server, addr, message(addr, "Invoice 2", "<m2@remote.test>"))
        assert code == 451 and b"4.3.2" in text
        with server.api(token) as api:
            assert api.get("/api/principal").status_code == 401  # the tenant's key is refused
        assert_error(tenant_login(server, t["tenant_username"], t["tenant_password"]), 401, "INVALID_CREDENTIALS")
        assert time.monotonic() - suspended_at < 5  # (1.0 s of it is the failed-login delays)
        # A billing system retries: suspending again is a 200 no-op; the username works as {id}.
        r = rc.post(f"/api/user/tenants/{t['tenant_username']}/suspend")
        assert r.status_code == 200 and r.json()["data"]["changed"] is False
        assert rc.get("/api/user/tenants").json()["data"][0]["status"] == "suspended"

        # Paid: reactivate; the sender's retry of the deferred message is delivered, once.
        r = rc.post(f"/api/user/tenants/{t['id']}/reactivate")
        assert r.status_code == 200 and r.json()["data"]["status"] == "active"
        assert r.json()["data"]["changed"] is True
        assert rc.post(f"/api/user/tenants/{t['id']}/reactivate").json()["data"]["changed"] is False
        assert smtp_send(server, addr, message(addr, "Invoice 2", "<m2@remote.test>"))[0] == 250
        got = imap_messages(server, addr)
        assert len(got) == 2
        assert sum(b"Message-ID: <m2@remote.test>" in m for m in got) == 1
        with server.api(token) as api:
            assert api.get("/api/principal").status_code == 200

        # Storage upgrade, then a downgrade below what is stored is refused.
        r = rc.patch(f"/api/user/tenants/{t['id']}/quota", json={"quota_gb": 8})
        assert r.status_code == 200 and r.json()["data"]["quota_gb"] == 8
        ov = rc.get("/api/user/reseller/overview").json()["data"]
        assert ov["allocated_gb"] == 8 and ov["available_gb"] == 2 and ov["pool_gb"] == 10
        assert ov["used_bytes"] > 0 and ov["tenants"]["active"] == 1
        assert_error(rc.patch(f"/api/user/tenants/{t['id']}/quota", json={"quota_gb": 1e-9}),
                     422, "QUOTA_BELOW_USAGE")

        # Cancellation: terminate removes everything; retrying is a no-op.
        r = httpx.post(server.base_url + "/v1/webhooks", headers={"Authorization": f"Bearer {token}"},
                       json={"url": "https://hooks.customer-one.test/mail", "events": ["message.received"]})
        assert r.status_code == 201, r.text
        assert server.run(lambda svc: rows_of_tenant(svc, t["id"])) == {
            "domains": 1, "principals": 1, "messages": 2, "keys": 1, "webhooks": 1, "workspaces": 1}
        server.run(blobjournal.flush)  # small messages' files are the journal flusher's to write: now
        blobs_before = sum(1 for p in (server.settings.blob_dir).rglob("*") if p.is_file())
        assert blobs_before >= 2
        r = rc.post(f"/api/user/tenants/{t['id']}/terminate")
        assert r.status_code == 200, r.text
        d = r.json()["data"]
        assert d["status"] == "terminated" and d["changed"] is True
        assert d["deleted"] == {"domains": 1, "mailboxes": 1, "messages": 2, "queued": 0}
        assert rc.post(f"/api/user/tenants/{t['id']}/terminate").json()["data"]["changed"] is False
        assert_error(rc.post(f"/api/user/tenants/{t['id']}/suspend"), 404, "TENANT_NOT_FOUND")

        assert sum(1 for p in (server.settings.blob_dir).rglob("*") if p.is_file()) == blobs_before - 2
        assert set(server.run(lambda svc: rows_of_tenant(svc, t["id"])).values()) == {0}
        code, text = smtp_send(server, addr, message(addr, "Invoice 3", "<m3@remote.test>"))
        # The domain is gone with the tenant and remembered as retired: its addresses bounce as
        # unknown users (550 5.1.1), never a 4xx that keeps senders retrying.
        assert code == 550 and b"5.1.1" in text, (code, text)
        assert imap_login_refused(server, addr)
        with server.api(token) as api:
            assert api.get("/api/principal").status_code == 401
        assert_error(tenant_login(server, t["tenant_username"], t["tenant_password"]), 401, "INVALID_CREDENTIALS")
        assert rc.get("/api/user/tenants").json()["data"] == []
        ov = rc.get("/api/user/reseller/overview").json()["data"]
        assert ov["allocated_gb"] == 0 and ov["available_gb"] == 10 and ov["used_bytes"] == 0
        assert ov["tenants"] == {"active": 0, "suspended": 0, "terminated": 1, "total": 0}

        # The domain name is free again: a new customer may add it.
        t2 = create_tenant(rc, 1)
        tok2 = tenant_login(server, t2["tenant_username"], t2["tenant_password"]).json()["data"]["token"]
        provision_mailbox(server, tok2, "customer-one.test", "alice", PASSWORD)
        assert imap_messages(server, addr) == []

        # Every step is in the audit log, newest first, with the key and the source address.
        entries = rc.get("/api/user/audit", params={"limit": 50}).json()["data"]
        actions = [e["action"] for e in entries]
        assert actions[:1] == ["tenant.create"]
        for a in ("tenant.create", "tenant.suspend", "tenant.reactivate", "tenant.quota", "tenant.terminate"):
            assert a in actions
        assert actions.count("tenant.suspend") == 1  # the no-op retry changed nothing, logged nothing
        e = next(e for e in entries if e["action"] == "tenant.terminate")
        assert e["target"] == t["tenant_username"] and e["key_id"] and e["source_ip"] == "127.0.0.1"
        assert e["created_at"]


def test_admin_token_is_scoped(server: InProcessServer) -> None:
    """The login token is a management key for this tenant only."""
    _, key = new_reseller(server)
    with reseller_client(server, key) as rc:
        a = create_tenant(rc)
        b = create_tenant(rc)
    tok_a = tenant_login(server, a["tenant_username"], a["tenant_password"]).json()["data"]["token"]
    tok_b = tenant_login(server, b["tenant_username"], b["tenant_password"]).json()["data"]["token"]
    provision_mailbox(server, tok_a, "tenant-a.test", "u1", PASSWORD)
    with server.api(tok_b) as api:
        names = [i["name"] for i in api.get("/api/principal").json()["data"]["items"]]
        assert names == []
        r = api.post("/api/principal", json={"type": "individual", "name": "x@tenant-a.test",
                                             "secrets": [PASSWORD]})
        assert r.status_code == 400  # not a domain of tenant B
    # Bad login input in the document's shape.
    r = httpx.post(server.base_url + "/api/auth/login", content=b"{nope", timeout=10)
    assert_error(r, 400, "INVALID_JSON")
    r = httpx.post(server.base_url + "/api/auth/login", json={"username": a["tenant_username"]}, timeout=10)
    assert_error(r, 400, "VALIDATION_ERROR")
    # A reseller key is not a management key.
    r = httpx.get(server.base_url + "/api/principal", headers={"X-Api-Key": key}, timeout=10)
    assert r.status_code == 403


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_login_throttled(server: InProcessServer) -> None:
    _, key = new_reseller(server)
    with reseller_client(server, key) as rc:
        t = create_tenant(rc)
    for _ in range(10):
        assert tenant_login(server, t["tenant_username"], "guess").status_code == 401
    assert_error(tenant_login(server, t["tenant_username"], t["tenant_password"]), 429, "TOO_MANY_ATTEMPTS")
