"""A custom domain pending verification is not ours: claiming someone else's domain through the
Pro API must not capture or break mail to it. Outbound mail to it still leaves for the real MX,
and another tenant's forward to an address in it still forwards. Both databases.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import httpx

from tests.support.mailcx import add_system_domain, bearer, sign_up
from tests.support.server import InProcessServer
from tests.support.smtp_peer import SmtpPeer


def test_pending_domain_is_not_hosted(server: InProcessServer, tmp_path: Path) -> None:
    base = server.base_url
    add_system_domain(server, "mail.cx")
    sign_up(server, "squatter@mail.cx")
    with server.api() as api:
        tok = api.post("/api/admin/selfservice/pro", json={"address": "squatter@mail.cx"}).json()["data"]["token"]
    r = httpx.post(f"{base}/pro/api/domains", json={"domain": "claimed.example"}, headers=bearer(tok))
    assert r.status_code == 201 and r.json()["verify_status"] == "pending"

    peer = SmtpPeer(tmp_path / "peer", tls=False).start()
    try:
        assert server.svc is not None
        server.svc.settings.transport_map["claimed.example"] = f"[127.0.0.1]:{peer.port}"
        # A management tenant may still forward to an address there (it is an external target).
        with server.api() as api:
            assert api.post("/api/principal", json={"name": "tenant.example", "type": "domain"}).status_code == 200
            r = api.post("/api/principal", json={"name": "fwd@tenant.example", "type": "list",
                                                 "members": ["someone@claimed.example"]})
            assert r.status_code == 200, r.text

        sign_up(server, "sender@mail.cx", "supersecret")
        msg = EmailMessage()
        msg["From"] = "sender@mail.cx"
        msg["To"] = "someone@claimed.example"
        msg["Subject"] = "out"
        msg.set_content("to the real owner\n")
        with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as smtp:
            smtp.login("sender@mail.cx", "supersecret")
            smtp.sendmail("sender@mail.cx", ["someone@claimed.example"], msg.as_bytes())
        got = peer.wait_for(lambda rs: any("someone@claimed.example" in x.rcpts for x in rs))
        assert any(b"to the real owner" in x.data for x in got)

        # Mail for the list is forwarded there too, not swallowed as "hosted but unknown".
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            msg.replace_header("To", "fwd@tenant.example")
            msg.replace_header("Subject", "via list")
            smtp.sendmail("carol@outside.example", ["fwd@tenant.example"], msg.as_bytes())
        got = peer.wait_for(lambda rs: any(b"via list" in x.data for x in rs))
        assert any(b"via list" in x.data and x.rcpts == ["someone@claimed.example"] for x in got)
    finally:
        peer.stop()


def test_stale_pending_claim_is_released(server: InProcessServer) -> None:
    from sqlalchemy import update

    from mailwright.services import Services
    from mailwright.storage.models import Domain, utcnow

    base = server.base_url
    add_system_domain(server, "mail.cx")
    toks = []
    for who in ("first@mail.cx", "second@mail.cx"):
        sign_up(server, who)
        with server.api() as api:
            toks.append(api.post("/api/admin/selfservice/pro", json={"address": who}).json()["data"]["token"])
    r = httpx.post(f"{base}/pro/api/domains", json={"domain": "wanted.example"}, headers=bearer(toks[0]))
    assert r.status_code == 201
    r = httpx.post(f"{base}/pro/api/domains", json={"domain": "wanted.example"}, headers=bearer(toks[1]))
    assert r.status_code == 409 and r.json()["error"] == "domain_already_exists"

    async def age(svc: Services) -> None:
        from datetime import timedelta

        async with svc.db.write() as s:
            await s.execute(update(Domain).where(Domain.name == "wanted.example").values(
                created_at=utcnow() - timedelta(hours=73)))

    server.run(age)
    r = httpx.post(f"{base}/pro/api/domains", json={"domain": "wanted.example"}, headers=bearer(toks[1]))
    assert r.status_code == 201, r.text
    assert httpx.get(f"{base}/pro/api/domains", headers=bearer(toks[0])).json() == []
