"""Setting tenant plan limits (`max_domains`, `max_mailboxes`): the platform admin API
(`/api/admin/tenants`, `/api/admin/resellers`) and `mailwright tenant limits|show|list`.
What is set here is then enforced on the real creation paths (management API). Only the platform
key may change limits: a tenant's or a reseller's own key gets 403 and changes nothing. Input is
validated with 400s in the reseller dialect's envelope. Both databases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
from typer.testing import CliRunner

from mailwright.cli import app as cli_app
from tests.support import management as mgmt
from tests.support import reseller as rs
from tests.support.server import InProcessServer

PW = "correct horse battery"


def domain(api: httpx.Client, name: str) -> httpx.Response:
    return api.post("/api/principal", json={"type": "domain", "name": name})


def account(api: httpx.Client, address: str) -> httpx.Response:
    return api.post("/api/principal", json={"type": "individual", "name": address, "secrets": [PW]})


def limited(r: httpx.Response, what: str) -> bool:
    return r.status_code == 403 and r.json()["error"] == "limitReached" and f"{what} limit reached" in r.text


def admin_get(srv: InProcessServer, ident: str) -> dict[str, Any]:
    with srv.api() as admin:
        r = admin.get(f"/api/admin/tenants/{ident}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def test_platform_api_sets_limits_that_the_management_api_enforces(server: InProcessServer) -> None:
    tid, key = mgmt.make_tenant(server, "acme")
    with server.api() as admin, mgmt.client(server, key) as api:
        assert admin_get(server, "acme") == admin_get(server, tid)  # by name or id
        assert {k: admin_get(server, tid)[k] for k in ("max_domains", "max_mailboxes", "domains", "mailboxes")} \
            == {"max_domains": 0, "max_mailboxes": 0, "domains": 0, "mailboxes": 0}
        r = admin.patch("/api/admin/tenants/acme", json={"max_domains": 1, "max_mailboxes": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True and body["data"]["id"] == tid and body["data"]["kind"] == "tenant"
        assert (body["data"]["max_domains"], body["data"]["max_mailboxes"]) == (1, 2)
        assert domain(api, "one.test").status_code == 200
        assert limited(domain(api, "two.test"), "domain")
        assert account(api, "a@one.test").status_code == 200 and account(api, "b@one.test").status_code == 200
        assert limited(account(api, "c@one.test"), "mailbox")
        got = admin_get(server, tid)
        assert (got["domains"], got["mailboxes"]) == (1, 2)
        # One field at a time; the other keeps its value.
        r = admin.patch(f"/api/admin/tenants/{tid}", json={"max_mailboxes": 3})
        assert r.status_code == 200 and r.json()["data"]["max_domains"] == 1, r.text
        assert account(api, "c@one.test").status_code == 200
        assert limited(account(api, "d@one.test"), "mailbox")
        # Lowering below usage is allowed, deletes nothing and the answer shows the usage.
        r = admin.patch(f"/api/admin/tenants/{tid}", json={"max_mailboxes": 1})
        assert r.status_code == 200 and r.json()["data"]["mailboxes"] == 3, r.text
        assert api.get("/api/principal?types=individual").json()["data"]["total"] == 3
        # 0 = unlimited; an empty patch changes nothing.
        assert admin.patch(f"/api/admin/tenants/{tid}", json={"max_domains": 0, "max_mailboxes": 0}).status_code == 200
        assert domain(api, "two.test").status_code == 200 and account(api, "d@one.test").status_code == 200
        r = admin.patch(f"/api/admin/tenants/{tid}", json={})
        assert r.status_code == 200 and (r.json()["data"]["max_domains"], r.json()["data"]["mailboxes"]) == (0, 4)
        listed = {t["name"]: t for t in admin.get("/api/admin/tenants").json()["data"]}
        assert listed["acme"]["domains"] == 2 and listed["acme"]["mailboxes"] == 4
        # The change is in the tenant's own audit log, by the platform.
        audit = server.run(_audit_actions(tid))
        assert ("tenant.limits", "platform") in audit


def _audit_actions(tenant_id: str) -> Any:
    from sqlalchemy import select

    from mailwright.services import Services
    from mailwright.storage.models import AuditEntry

    async def go(svc: Services) -> list[tuple[str, str | None]]:
        async with svc.db.read() as s:
            rows = (await s.execute(select(AuditEntry.action, AuditEntry.actor)
                                    .where(AuditEntry.tenant_id == tenant_id))).all()
            return [(str(a), b) for a, b in rows]

    return go


BAD_VALUES: list[Any] = [-1, "3", 1.5, True, None, 2**31, [1], {"n": 1}]


def test_invalid_input_is_a_400_in_the_dialect_shape(server: InProcessServer) -> None:
    tid, _ = mgmt.make_tenant(server, "strict")
    with server.api() as admin:
        assert admin.patch(f"/api/admin/tenants/{tid}", json={"max_domains": 5}).status_code == 200
        for field in ("max_domains", "max_mailboxes"):
            for bad in BAD_VALUES:
                r = admin.patch(f"/api/admin/tenants/{tid}", json={field: bad})
                rs.assert_error(r, 400, "VALIDATION_ERROR")
                assert field in r.json()["error"]["message"]
        # A valid field next to an invalid one changes nothing (one transaction).
        r = admin.patch(f"/api/admin/tenants/{tid}", json={"max_domains": 9, "max_mailboxes": -5})
        rs.assert_error(r, 400, "VALIDATION_ERROR")
        rs.assert_error(admin.patch(f"/api/admin/tenants/{tid}", json={"max_domain": 1}), 400, "VALIDATION_ERROR")
        rs.assert_error(admin.patch(f"/api/admin/tenants/{tid}", json={"quota_gb": 1}), 400, "VALIDATION_ERROR")
        for raw in (b"[1]", b"not json", b"", b'"x"'):
            r = admin.patch(f"/api/admin/tenants/{tid}", content=raw, headers={"Content-Type": "application/json"})
            rs.assert_error(r, 400, "INVALID_JSON")
        rs.assert_error(admin.patch("/api/admin/tenants/nope", json={"max_domains": 1}), 404, "TENANT_NOT_FOUND")
        rs.assert_error(admin.get("/api/admin/tenants/nope"), 404, "TENANT_NOT_FOUND")
        assert admin.patch(f"/api/admin/tenants/{tid}", json={"max_domains": 2**31 - 1}).status_code == 200
    got = admin_get(server, tid)
    assert (got["max_domains"], got["max_mailboxes"]) == (2**31 - 1, 0)


def test_only_the_platform_key_may_change_limits(server: InProcessServer) -> None:
    tid, tk = mgmt.make_tenant(server, "selfish")
    rid, rk = rs.new_reseller(server, max_domains=1)
    with rs.reseller_client(server, rk) as rc:
        sub = rs.create_tenant(rc)
    login = rs.tenant_login(server, sub["tenant_username"], sub["tenant_password"])
    assert login.status_code == 200, login.text
    sub_tk = login.json()["data"]["token"]
    raise_it = {"max_domains": 1000, "max_mailboxes": 1000}
    attempts: list[tuple[dict[str, str], str, str]] = []
    for label, key in (("tenant", tk), ("sub-tenant", sub_tk), ("reseller", rk)):
        for header in ({"Authorization": f"Bearer {key}"}, {"X-Api-Key": key}):
            for path in (f"/api/admin/tenants/{tid}", f"/api/admin/tenants/{sub['id']}",
                         f"/api/admin/tenants/{rid}", f"/api/admin/resellers/{rid}"):
                attempts.append((header, path, label))
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        for header, path, label in attempts:
            r = c.patch(path, json=raise_it, headers=header)
            rs.assert_error(r, 403, "FORBIDDEN")
            assert c.get(path, headers=header).status_code == 403, (label, path)
        assert c.get("/api/admin/tenants", headers={"X-Api-Key": tk}).status_code == 403
        rs.assert_error(c.patch(f"/api/admin/tenants/{tid}", json=raise_it), 401, "UNAUTHORIZED")
        rs.assert_error(c.patch(f"/api/admin/tenants/{tid}", json=raise_it,
                                headers={"X-Api-Key": "tk_" + "0" * 40}), 401, "UNAUTHORIZED")
    for ident, want in ((tid, (0, 0)), (sub["id"], (0, 0)), (rid, (1, 0))):
        got = admin_get(server, ident)
        assert (got["max_domains"], got["max_mailboxes"]) == want, (ident, got)


def test_reseller_admin_limits_span_sub_tenants(server: InProcessServer) -> None:
    rid, rk = rs.new_reseller(server, max_domains=1, max_mailboxes=1)
    with server.api() as admin:
        data = admin.get(f"/api/admin/resellers/{rid}").json()["data"]
        assert (data["max_domains"], data["max_mailboxes"], data["domains"], data["mailboxes"]) == (1, 1, 0, 0)
        listed = {r["id"]: r for r in admin.get("/api/admin/resellers").json()["data"]}
        assert listed[rid]["max_domains"] == 1 and listed[rid]["max_mailboxes"] == 1
    with rs.reseller_client(server, rk) as rc:
        subs = [rs.create_tenant(rc), rs.create_tenant(rc)]
    tokens = []
    for sub in subs:
        r = rs.tenant_login(server, sub["tenant_username"], sub["tenant_password"])
        tokens.append(r.json()["data"]["token"])
    with server.api(tokens[0]) as a, server.api(tokens[1]) as b, server.api() as admin:
        assert domain(a, "ra.test").status_code == 200
        assert limited(domain(b, "rb.test"), "domain")
        assert account(a, "x@ra.test").status_code == 200
        assert limited(account(a, "y@ra.test"), "mailbox")
        r = admin.patch(f"/api/admin/resellers/{rid}", json={"max_domains": 2, "max_mailboxes": 0})
        assert r.status_code == 200 and (r.json()["data"]["max_domains"], r.json()["data"]["max_mailboxes"]) == (2, 0)
        assert domain(b, "rb.test").status_code == 200 and account(a, "y@ra.test").status_code == 200
        assert limited(domain(b, "rb2.test"), "domain")
        data = admin.get(f"/api/admin/resellers/{rid}").json()["data"]
        assert (data["domains"], data["mailboxes"]) == (2, 2)  # over the reseller and its sub-tenants
        assert admin_get(server, rid)["domains"] == 2
        # A sub-tenant's own limit, set by the platform, applies within the reseller's.
        assert admin.patch(f"/api/admin/tenants/{subs[0]['id']}", json={"max_mailboxes": 2}).status_code == 200
        assert limited(account(a, "z@ra.test"), "mailbox")
        assert account(b, "z@rb.test").status_code == 200
        for bad in (-1, "2", None, 2**31):
            rs.assert_error(admin.patch(f"/api/admin/resellers/{rid}", json={"max_mailboxes": bad}), 400,
                            "VALIDATION_ERROR")
            r = admin.post("/api/admin/resellers", json={"name": f"bad-{bad!s}", "max_domains": bad})
            rs.assert_error(r, 400, "VALIDATION_ERROR")
        names = [r["name"] for r in admin.get("/api/admin/resellers").json()["data"]]
        assert not [n for n in names if n.startswith("bad-")]  # a refused create leaves nothing behind
        data = admin.get(f"/api/admin/resellers/{rid}").json()["data"]
        assert (data["max_domains"], data["max_mailboxes"]) == (2, 0)
    # The CLI works on resellers too, counting as enforced (over the sub-tenants).
    r = CliRunner().invoke(cli_app, ["tenant", "limits", rid, "--max-mailboxes", "5", *cli_opts(server)])
    assert r.exit_code == 0, r.output
    assert "kind: reseller" in r.output and "max domains: 2 (2 in use with its sub-tenants)" in r.output
    assert "max mailboxes: 5 (3 in use with its sub-tenants)" in r.output, r.output
    assert admin_get(server, rid)["max_mailboxes"] == 5


def cli_opts(srv: InProcessServer) -> list[str]:
    return ["--data-dir", str(srv.settings.data_dir), "--database-url", srv.settings.database_url]


def test_cli_tenant_limits(server: InProcessServer) -> None:
    tid, key = mgmt.make_tenant(server, "cli-co")
    opts = cli_opts(server)
    runner = CliRunner()

    def cli(*args: str) -> tuple[int, str]:
        r = runner.invoke(cli_app, ["tenant", *args, *opts])
        return r.exit_code, r.output

    # Once as the real command (the entry point), then in-process (an interpreter start costs seconds).
    out = subprocess.run([sys.executable, "-m", "mailwright", "tenant", "limits", "cli-co", "--max-domains", "1",
                          "--max-mailboxes", "1", *opts], capture_output=True, text=True, timeout=120,
                         env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert "max domains: 1 (0 in use)" in out.stdout and "max mailboxes: 1 (0 in use)" in out.stdout
    with mgmt.client(server, key) as api:
        assert domain(api, "cli.test").status_code == 200
        assert limited(domain(api, "cli2.test"), "domain")
        assert account(api, "a@cli.test").status_code == 200
        assert limited(account(api, "b@cli.test"), "mailbox")
        code, text = cli("show", "cli-co")
        assert code == 0 and "max domains: 1 (1 in use)" in text and "max mailboxes: 1 (1 in use)" in text, text
        code, text = cli("show", tid, "--json")
        assert code == 0 and json.loads(text)["name"] == "cli-co"
        assert {k: json.loads(text)[k] for k in ("max_domains", "max_mailboxes", "domains", "mailboxes")} \
            == {"max_domains": 1, "max_mailboxes": 1, "domains": 1, "mailboxes": 1}
        code, text = cli("list")
        line = next(x for x in text.splitlines() if x.startswith("cli-co\t"))
        assert "domains=1/1" in line and "mailboxes=1/1" in line, line
        # Only one option: the other is kept; then the API enforces the new value.
        code, text = cli("limits", "cli-co", "--max-mailboxes", "0")
        assert code == 0 and "max mailboxes: unlimited (1 in use)" in text and "max domains: 1 " in text, text
        assert account(api, "b@cli.test").status_code == 200
        # With no option it only prints.
        code, text = cli("limits", "cli-co")
        assert code == 0 and "max domains: 1 (1 in use)" in text
        # Lowering below usage: allowed, said so, nothing deleted.
        code, text = cli("limits", "cli-co", "--max-mailboxes", "1")
        assert code == 0 and "note: 2 mailboxes in use, over the new limit of 1" in text, text
        assert api.get("/api/principal?types=individual").json()["data"]["total"] == 2
        assert limited(account(api, "c@cli.test"), "mailbox")
    for args, msg in ((["--max-domains", "-1"], "--max-domains must be an integer from 0"),
                      (["--max-mailboxes", str(2**31)], "--max-mailboxes must be an integer from 0")):
        code, text = cli("limits", "cli-co", *args)
        assert code == 1 and msg in text and "Traceback" not in text, text
    code, text = cli("limits", "cli-co", "--max-domains", "many")
    assert code == 2 and "--max-domains" in text and "integer" in text, text  # typer's usage error
    code, text = cli("limits", "no-such-tenant", "--max-domains", "3")
    assert code == 1 and "not found" in text
    assert admin_get(server, tid)["max_domains"] == 1  # refused input changed nothing
    # The platform API sees what the CLI set.
    got = admin_get(server, "cli-co")
    assert (got["max_domains"], got["max_mailboxes"], got["mailboxes"]) == (1, 1, 2)
