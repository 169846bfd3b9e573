"""Tenant plan limits (`max_domains`, `max_mailboxes`) through every creation path: the
management API (a tenant's own key, and a reseller's sub-tenant logged in), the agent API, the
mail.cx Pro API, and the CLI; each answers in its own dialect's error shape. Concurrent
creations never overshoot a limit. Both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mailwright.cli import app as cli_app
from mailwright.directory import limits
from mailwright.directory.principals import find_principal
from mailwright.services import Services
from tests.support import management as mgmt
from tests.support import reseller as rs
from tests.support.agent import client as agent_client
from tests.support.agent import make_tenant as agent_tenant
from tests.support.dnsserver import DnsServer, dns_server
from tests.support.mailcx import add_system_domain, bearer, sign_up
from tests.support.server import InProcessServer

__all__ = ["dns_server"]

PW = "correct horse battery"


def set_limits(srv: InProcessServer, tenant_id: str, **values: int) -> None:
    """Setup: the operator sets a plan's limits (no API exposes this yet)."""

    async def go(svc: Services) -> None:
        async with svc.db.write() as s:
            await limits.set_limits(s, tenant_id, **values)

    srv.run(go)


def account(api: httpx.Client, address: str) -> httpx.Response:
    return api.post("/api/principal", json={"type": "individual", "name": address, "secrets": [PW]})


def domain(api: httpx.Client, name: str) -> httpx.Response:
    return api.post("/api/principal", json={"type": "domain", "name": name})


def assert_mgmt_limit(r: httpx.Response, what: str) -> None:
    """The management dialect's error shape: 403 {"error": "limitReached", "details", ...}."""
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["error"] == "limitReached" and f"{what} limit reached" in body["details"], body
    assert body["field"] == {"domain": "domains", "mailbox": "mailboxes"}[what]


def test_management_api_limits(server: InProcessServer) -> None:
    tid, key = mgmt.make_tenant(server, "limited")
    _, other_key = mgmt.make_tenant(server, "unlimited")
    set_limits(server, tid, max_domains=1, max_mailboxes=2)
    with mgmt.client(server, key) as api, mgmt.client(server, other_key) as other:
        assert domain(api, "one.test").status_code == 200
        assert_mgmt_limit(domain(api, "two.test"), "domain")
        assert domain(api, "one.test").status_code == 409  # a duplicate is still a duplicate
        assert account(api, "a@one.test").status_code == 200
        assert account(api, "b@one.test").status_code == 200
        assert_mgmt_limit(account(api, "c@one.test"), "mailbox")
        assert account(api, "a@one.test").status_code == 409
        # Lists (aliases, forwarders) are not mailboxes.
        r = api.post("/api/principal", json={"type": "list", "name": "sales@one.test",
                                             "members": ["a@one.test", "ext@elsewhere.example"]})
        assert r.status_code == 200, r.text
        # Another tenant is not limited by this one's plan.
        assert domain(other, "free.test").status_code == 200 and domain(other, "free2.test").status_code == 200
        for i in range(3):
            assert account(other, f"u{i}@free.test").status_code == 200
        # Deleting a mailbox frees its slot; raising the limit lets more in; 0 = unlimited.
        assert api.delete("/api/principal/b@one.test").status_code == 200
        assert account(api, "c@one.test").status_code == 200
        assert_mgmt_limit(account(api, "d@one.test"), "mailbox")
        set_limits(server, tid, max_mailboxes=0, max_domains=2)
        assert account(api, "d@one.test").status_code == 200 and domain(api, "two.test").status_code == 200
        listed = api.get("/api/principal?types=individual").json()["data"]["items"]
        assert sorted(i["name"] for i in listed) == ["a@one.test", "c@one.test", "d@one.test"]


def test_concurrent_creations_never_overshoot(server: InProcessServer) -> None:
    """Twelve parallel POSTs for 3 free slots: exactly 3 succeed (PostgreSQL: row lock on the
    tenant; SQLite: the single writer)."""
    tid, key = mgmt.make_tenant(server, "racy")
    with mgmt.client(server, key) as api:
        assert domain(api, "race.test").status_code == 200
        assert account(api, "first@race.test").status_code == 200
    set_limits(server, tid, max_mailboxes=4, max_domains=3)

    def parallel(fn: Callable[[httpx.Client, int], httpx.Response]) -> list[int]:
        def one(i: int) -> int:
            with mgmt.client(server, key) as c:
                return fn(c, i).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            return list(pool.map(one, range(12)))

    codes = parallel(lambda c, i: account(c, f"p{i}@race.test"))
    assert sorted(codes) == [200] * 3 + [403] * 9, codes
    codes = parallel(lambda c, i: domain(c, f"d{i}.race.test"))
    assert sorted(codes) == [200] * 2 + [403] * 10, codes
    with mgmt.client(server, key) as api:
        assert api.get("/api/principal?types=individual").json()["data"]["total"] == 4
        assert api.get("/api/principal?types=domain").json()["data"]["total"] == 3


def test_reseller_limits_span_its_subtenants(server: InProcessServer) -> None:
    """A reseller's own limits bound the total over its sub-tenants; each sub-tenant's admin
    (logged in through the reseller dialect's login) provisions through the management API."""
    rid, rk = rs.new_reseller(server)
    set_limits(server, rid, max_domains=2, max_mailboxes=3)
    tokens = []
    with rs.reseller_client(server, rk) as rc:
        for _ in range(2):
            t = rs.create_tenant(rc)
            r = rs.tenant_login(server, t["tenant_username"], t["tenant_password"])
            assert r.status_code == 200, r.text
            tokens.append(r.json()["data"]["token"])
    with server.api(tokens[0]) as a, server.api(tokens[1]) as b:
        assert domain(a, "ra.test").status_code == 200 and domain(b, "rb.test").status_code == 200
        r = domain(a, "ra2.test")
        assert_mgmt_limit(r, "domain")
        assert "reseller" in r.json()["details"]
        assert account(a, "x@ra.test").status_code == 200 and account(a, "y@ra.test").status_code == 200
        assert account(b, "x@rb.test").status_code == 200
        assert_mgmt_limit(account(b, "y@rb.test"), "mailbox")
        assert_mgmt_limit(account(a, "z@ra.test"), "mailbox")
    # Terminating a sub-tenant frees what it used.
    with rs.reseller_client(server, rk) as rc:
        t0 = rc.get("/api/user/tenants").json()["data"][0]
        assert rc.post(f"/api/user/tenants/{t0['id']}/terminate").status_code == 200
    with server.api(tokens[1]) as b:
        assert account(b, "y@rb.test").status_code == 200 and domain(b, "rb2.test").status_code == 200


def test_agent_api_limit(server: InProcessServer) -> None:
    t = agent_tenant(server, "agents-co")
    set_limits(server, t["id"], max_mailboxes=2)
    with agent_client(server, t["apiKey"]) as api:
        assert api.post("/v1/inboxes", json={"username": "one"}).status_code == 201
        assert api.post("/v1/inboxes", json={"username": "two"}).status_code == 201
        r = api.post("/v1/inboxes", json={"username": "three"})
        assert r.status_code == 403, r.text
        assert {"error", "code"} <= set(r.json()) and r.json()["code"] == "PLAN_LIMIT_REACHED"
        assert api.post("/v1/inboxes", json={"username": "one"}).status_code == 200  # idempotent: not a new one
        inbox = api.get("/v1/inboxes").json()
        items = inbox["inboxes"] if isinstance(inbox, dict) else inbox
        two = next(i for i in items if i["username"] == "two")
        assert api.delete(f"/v1/inboxes/{two['id']}").status_code in (200, 204)
        assert api.post("/v1/inboxes", json={"username": "three"}).status_code == 201


@pytest.fixture
def pro_server(tmp_path: Path, database_url: str, dns_server: Callable[..., DnsServer]
               ) -> tuple[InProcessServer, DnsServer]:
    dns = dns_server({"cap.example": [], "cap2.example": []})
    srv = InProcessServer(tmp_path / "data", database_url, dns_nameservers=["127.0.0.1"], dns_port=dns.port,
                          smtp_verify_inbound=False).start()
    return srv, dns


def test_mailcx_pro_limits(pro_server: tuple[InProcessServer, DnsServer]) -> None:
    server, dns = pro_server
    try:
        add_system_domain(server, "mail.cx")
        sign_up(server, "owner@mail.cx")
        with server.api() as admin:
            r = admin.post("/api/admin/selfservice/pro", json={"address": "owner@mail.cx"})
            assert r.status_code == 200, r.text
            token = r.json()["data"]["token"]

        async def pro_tenant(svc: Services) -> str:
            async with svc.db.read() as s:
                p = await find_principal(s, "owner@mail.cx")
                assert p is not None and p.extra
                return str(p.extra["pro_tenant_id"])

        set_limits(server, server.run(pro_tenant), max_domains=1, max_mailboxes=1)
        pro = httpx.Client(base_url=server.base_url, headers=bearer(token), timeout=30)
        r = pro.post("/pro/api/domains", json={"domain": "cap.example"})
        assert r.status_code == 201, r.text
        d: dict[str, Any] = r.json()
        r = pro.post("/pro/api/domains", json={"domain": "cap2.example"})
        assert r.status_code == 403 and r.json()["error"] == "domain_limit_reached", r.text
        assert set(r.json()) == {"error", "message"}
        dns.set_records("cap.example", [("@", "TXT", f"mailwright-verification={d['verify_token']}"),
                                        ("@", "MX", "10 mx.test.local.")])
        assert pro.post(f"/pro/api/domains/{d['id']}/verify").json()["verify_status"] == "verified"
        r = pro.post("/api/accounts", json={"address": "box@cap.example", "password": "supersecret"})
        assert r.status_code == 201, r.text
        r = pro.post("/api/accounts", json={"address": "box2@cap.example", "password": "supersecret"})
        assert r.status_code == 403 and r.json()["error"] == "account_limit_reached", r.text
        # The platform's own system domain has no tenant, so no tenant limit.
        assert sign_up(server, "anyone@mail.cx")["address"] == "anyone@mail.cx"
        pro.close()
    finally:
        server.stop()


def test_cli_creations_are_limited(server: InProcessServer) -> None:
    tid, key = mgmt.make_tenant(server, "cli-tenant")
    with mgmt.client(server, key) as api:
        assert domain(api, "cli.test").status_code == 200
    set_limits(server, tid, max_domains=1, max_mailboxes=1)
    opts = ["--data-dir", str(server.settings.data_dir), "--database-url", server.settings.database_url]
    runner = CliRunner()
    r = runner.invoke(cli_app, ["account", "add", "one@cli.test", "--password", PW, *opts])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, ["account", "add", "two@cli.test", "--password", PW, *opts])
    assert r.exit_code != 0 and "mailbox limit reached" in r.output, r.output
    r = runner.invoke(cli_app, ["domain", "add", "cli2.test", "--tenant", "cli-tenant", *opts])
    assert r.exit_code != 0 and "domain limit reached" in r.output, r.output
    r = runner.invoke(cli_app, ["alias", "add", "team@cli.test", "one@cli.test", *opts])
    assert r.exit_code == 0, r.output  # a list is not a mailbox
