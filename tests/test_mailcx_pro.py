"""mail.cx dialect, Pro: custom domain verified against a real DNS server (NSD), a mailbox on it
created with the Pro token receives mail, a Pro webhook receives `message.received`; accounts,
tokens, domains and webhooks management; tenant isolation. Both databases.
"""

from __future__ import annotations

import json
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailwright.events import webhooks
from tests.support.dnsserver import DnsServer, dns_server
from tests.support.mailcx import add_system_domain, bearer, sign_up
from tests.support.server import InProcessServer

__all__ = ["dns_server"]


class Receiver:
    """A tiny webhook receiver (http.server in a thread) that records every request."""

    def __init__(self) -> None:
        self.hits: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.hits.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pro_server(tmp_path: Path, database_url: str, dns_server: Callable[..., DnsServer]
               ) -> Iterator[tuple[InProcessServer, DnsServer]]:
    dns = dns_server({"custom.example": [], "other.example": []})
    srv = InProcessServer(tmp_path / "data", database_url, dns_nameservers=["127.0.0.1"], dns_port=dns.port,
                          smtp_verify_inbound=False, pro_max_domains=2).start()
    try:
        yield srv, dns
    finally:
        srv.stop()


def _make_pro(server: InProcessServer, address: str) -> tuple[dict[str, Any], str]:
    acct = sign_up(server, address)
    with server.api() as api:
        r = api.post("/api/admin/selfservice/pro", json={"address": address})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
    assert data["role"] == "pro" and data["token"].startswith("tm_pro_")
    return acct, str(data["token"])


def _send(server: InProcessServer, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = "carol@sender.example"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("hi\n")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("carol@sender.example", [to], msg.as_bytes())


def _wait(fn: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.1)


def test_pro_custom_domain_flow(pro_server: tuple[InProcessServer, DnsServer]) -> None:
    server, dns = pro_server
    base = server.base_url
    add_system_domain(server, "mail.cx")
    owner, pro_tok = _make_pro(server, "owner@mail.cx")
    pro = httpx.Client(base_url=base, headers=bearer(pro_tok), timeout=30)
    assert httpx.get(f"{base}/api/me", headers=bearer(owner["token"])).json()["role"] == "pro"

    r = pro.post("/pro/api/domains", json={"domain": "Custom.Example"})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["domain"] == "custom.example" and d["verify_status"] == "pending" and d["verified_at"] is None
    assert d["mx_configured"] is False and len(d["verify_token"]) >= 16
    txt = f"mailwright-verification={d['verify_token']}"
    assert {"type": "TXT", "name": "custom.example", "value": txt} in d["dns_records"]
    assert {"type": "MX", "name": "custom.example", "value": "mx.test.local", "priority": 10} in d["dns_records"]
    assert pro.get("/pro/api/domains").json() == [d]

    # Pending: no sign-up on it, and it is not ours for mail routing (a claim of someone else's
    # domain must not capture mail to it).
    r = pro.post("/api/accounts", json={"address": "box@custom.example", "password": "supersecret"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_domain"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("carol@sender.example")
        code, _ = smtp.rcpt("anyone@custom.example")
        assert code == 554 or 500 <= code < 600, code

    # Verify before the TXT record exists: still pending.
    r = pro.post(f"/pro/api/domains/{d['id']}/verify")
    assert r.status_code == 200 and r.json()["verify_status"] == "pending" and r.json()["mx_configured"] is False
    # A wrong token does not verify either; MX alone is reported but does not verify.
    dns.set_records("custom.example", [("@", "TXT", "mailwright-verification=wrong"),
                                       ("@", "MX", "10 mx.test.local.")])
    r = pro.post(f"/pro/api/domains/{d['id']}/verify").json()
    assert r["verify_status"] == "pending" and r["mx_configured"] is True
    dns.set_records("custom.example", [("@", "TXT", "v=spf1 -all"), ("@", "TXT", txt),
                                       ("@", "MX", "10 mx.test.local.")])
    r = pro.post(f"/pro/api/domains/{d['id']}/verify")
    v = r.json()
    assert v["verify_status"] == "verified" and v["mx_configured"] is True and v["verified_at"].endswith("Z")

    # A webhook, then a mailbox on the domain created with the Pro token; mail arrives.
    rcv = Receiver()
    try:
        r = pro.post("/pro/api/webhooks", json={"url": rcv.url, "events": ["message.received"]})
        assert r.status_code == 201, r.text
        hook = r.json()
        assert hook["secret"].startswith("whsec_") and hook["events"] == ["message.received"]
        assert "secret" not in pro.get("/pro/api/webhooks").json()[0]

        r = pro.post("/api/accounts", json={"address": "box@custom.example", "password": "supersecret"})
        assert r.status_code == 201, r.text
        box = r.json()
        assert box["address"] == "box@custom.example"
        # Without the Pro token the custom domain is not available.
        r = httpx.post(f"{base}/api/accounts", json={"address": "x@custom.example", "password": "supersecret"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_address"

        _send(server, "box@custom.example", "to the custom domain")
        items = _wait(lambda: httpx.get(f"{base}/api/messages", headers=bearer(box["token"])).json())
        assert [i["subject"] for i in items] == ["to the custom domain"]
        assert pro.get(f"/pro/api/accounts/{box['id']}/messages").json() == items

        assert _wait(lambda: rcv.hits), "webhook not delivered"
        headers, body = rcv.hits[0]
        assert webhooks.verify_signature(hook["secret"], headers["x-mailwright-signature"], body)
        ev = json.loads(body)
        assert ev["event"] == "message.received" and ev["id"] == headers["x-mailwright-event-id"]
        assert ev["data"]["address"] == "box@custom.example" and ev["data"]["account_id"] == box["id"]
        assert ev["data"]["message_id"] == items[0]["id"] and ev["data"]["subject"] == "to the custom domain"
        dl = _wait(lambda: [x for x in pro.get(f"/pro/api/webhooks/{hook['id']}/deliveries").json()
                            if x["status"] == "delivered"])
        assert dl and dl[0]["event_id"] == ev["id"] and dl[0]["last_status_code"] == 200
        rot = pro.post(f"/pro/api/webhooks/{hook['id']}/rotate").json()
        assert rot["secret"].startswith("whsec_") and rot["secret"] != hook["secret"]
        assert pro.delete(f"/pro/api/webhooks/{hook['id']}").status_code == 204
        assert pro.get("/pro/api/webhooks").json() == []
    finally:
        rcv.close()

    # Accounts: list, reset password (old JWTs die), delete.
    accts = pro.get("/pro/api/accounts").json()
    assert [a["address"] for a in accts] == ["box@custom.example"]
    assert set(accts[0]) == {"id", "address", "role", "quota", "used", "created_at"}
    r = pro.put(f"/pro/api/accounts/{box['id']}/reset-password", json={"password": "123"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_password"
    time.sleep(1.05)  # tokens carry whole-second iat
    r = pro.put(f"/pro/api/accounts/{box['id']}/reset-password", json={"password": "brand-new-pw"})
    assert r.status_code == 200 and r.json()["id"] == box["id"]
    assert httpx.get(f"{base}/api/me", headers=bearer(box["token"])).status_code == 401
    r = httpx.post(f"{base}/api/token", json={"address": "box@custom.example", "password": "supersecret"})
    assert r.status_code == 401
    r = httpx.post(f"{base}/api/token", json={"address": "box@custom.example", "password": "brand-new-pw"})
    assert r.status_code == 200
    assert httpx.get(f"{base}/api/me", headers=bearer(r.json()["token"])).status_code == 200

    # Domain errors and limit (pro_max_domains=2 here).
    assert pro.post("/pro/api/domains", json={"domain": "custom.example"}).json()["error"] == \
        "domain_already_exists"
    assert pro.post("/pro/api/domains", json={"domain": "mail.cx"}).status_code == 409
    r = pro.post("/pro/api/domains", json={"domain": "not a domain"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_domain"
    assert pro.post("/pro/api/domains", json={"domain": "other.example"}).status_code == 201
    r = pro.post("/pro/api/domains", json={"domain": "third.example"})
    assert r.status_code == 403 and r.json()["error"] == "domain_limit_reached"

    # Another Pro user sees none of it.
    other, other_tok = _make_pro(server, "rival@mail.cx")
    rival = httpx.Client(base_url=base, headers=bearer(other_tok), timeout=30)
    assert rival.get("/pro/api/accounts").json() == [] and rival.get("/pro/api/domains").json() == []
    assert rival.delete(f"/pro/api/accounts/{box['id']}").status_code == 404
    assert rival.post(f"/pro/api/domains/{d['id']}/verify").status_code == 404
    assert rival.get(f"/pro/api/accounts/{box['id']}/messages").json()["error"] == "not_found"
    r = rival.post("/api/accounts", json={"address": "steal@custom.example", "password": "supersecret"})
    assert r.status_code == 400
    # Plain mailbox tokens and no token are refused by the Pro API.
    assert httpx.get(f"{base}/pro/api/accounts").status_code == 401
    plain = sign_up(server, "plain@mail.cx")
    r = httpx.get(f"{base}/pro/api/accounts", headers=bearer(plain["token"]))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    # The owner's own JWT works on the Pro API too.
    assert httpx.get(f"{base}/pro/api/domains", headers=bearer(owner["token"])).json()[0]["domain"] == \
        "custom.example"

    # Tokens: create (shown once), list, revoke.
    r = pro.post("/pro/api/tokens", json={"name": "ci"})
    assert r.status_code == 201 and r.json()["token"].startswith("tm_pro_")
    new = r.json()
    listed = pro.get("/pro/api/tokens").json()
    assert {t["id"] for t in listed} >= {new["id"]} and all("token" not in t for t in listed)
    assert httpx.get(f"{base}/pro/api/accounts", headers=bearer(new["token"])).status_code == 200
    assert pro.delete(f"/pro/api/tokens/{new['id']}").status_code == 204
    assert httpx.get(f"{base}/pro/api/accounts", headers=bearer(new["token"])).status_code == 401
    assert pro.delete(f"/pro/api/tokens/{new['id']}").status_code == 404

    # Delete the mailbox, then the domain.
    assert pro.delete(f"/pro/api/accounts/{box['id']}").status_code == 204
    assert pro.get("/pro/api/accounts").json() == []
    assert pro.delete(f"/pro/api/domains/{d['id']}").status_code == 204
    assert [x["domain"] for x in pro.get("/pro/api/domains").json()] == ["other.example"]

    # Deleting the Pro owner removes its tenant: the token stops working.
    assert httpx.delete(f"{base}/api/account", headers=bearer(owner["token"])).status_code == 204
    assert pro.get("/pro/api/domains").status_code == 401
    pro.close()
    rival.close()
