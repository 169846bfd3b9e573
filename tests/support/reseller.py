"""HTTP-only helpers for the reseller dialect tests: what a billing integration would do."""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage
from typing import Any

import httpx

from tests.support.server import InProcessServer


def new_reseller(srv: InProcessServer, name: str | None = None, **fields: Any) -> tuple[str, str]:
    """(reseller id, rk_ key) minted by the platform admin over the API."""
    body = {"name": name or f"res-{uuid.uuid4().hex[:8]}", "plan": "paid", "pool_gb": 100, **fields}
    with srv.api() as admin:
        r = admin.post("/api/admin/resellers", json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["api_key"].startswith("rk_")
    return data["id"], data["api_key"]


def reseller_client(srv: InProcessServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=srv.base_url, headers={"X-Api-Key": key}, timeout=30)


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    """The document's error shape, exactly."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False, body
    assert set(body) == {"success", "error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def create_tenant(rc: httpx.Client, quota_gb: float = 1) -> dict[str, Any]:
    r = rc.post("/api/user/tenants", json={"quota_gb": quota_gb})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    data: dict[str, Any] = body["data"]
    return data


def tenant_login(srv: InProcessServer, username: str, password: str) -> httpx.Response:
    return httpx.post(srv.base_url + "/api/auth/login", json={"username": username, "password": password},
                      timeout=30)


def provision_mailbox(srv: InProcessServer, token: str, domain: str, user: str, password: str) -> str:
    """As the tenant admin, through the management API: a domain and one mailbox in it."""
    with srv.api(token) as api:
        r = api.post("/api/principal", json={"type": "domain", "name": domain})
        assert r.status_code == 200, r.text
        addr = f"{user}@{domain}"
        r = api.post("/api/principal", json={"type": "individual", "name": addr, "secrets": [password],
                                             "emails": [addr]})
        assert r.status_code == 200, r.text
    return addr


def message(to: str, subject: str, msgid: str, body: str = "hello\n") -> bytes:
    m = EmailMessage()
    m["From"] = "Billing Test <sender@remote.test>"
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = msgid
    m.set_content(body)
    return m.as_bytes()


def smtp_send(srv: InProcessServer, rcpt: str, raw: bytes) -> tuple[int, bytes]:
    """One MX transaction; (code, text) of the RCPT (or 250 when the message was accepted)."""
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("remote.test")
        try:
            refused = smtp.sendmail("sender@remote.test", [rcpt], raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients[rcpt]
            return code, text
        assert refused == {}
    return 250, b"OK"
