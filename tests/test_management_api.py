"""Management dialect over real HTTP: principals CRUD, PATCH forms, listing, errors, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from tests.support.management import add_account, add_domain, client, make_tenant
from tests.support.server import InProcessServer


def test_domain_and_account_lifecycle(server: InProcessServer) -> None:
    _, key = make_tenant(server, "acme")
    with client(server, key) as api:
        add_domain(api, "example.com")
        add_domain(api, "mycompany.io")
        r = api.get("/api/principal", params={"types": "domain"})
        assert r.status_code == 200
        data = r.json()["data"]
        assert data["total"] == 2
        assert [(i["name"], i["type"]) for i in data["items"]] == [("example.com", "domain"),
                                                                    ("mycompany.io", "domain")]
        pid = add_account(api, "agent@example.com", "SecurePassword123!", description="AI agent",
                          quota=1_000_000)
        r = api.get("/api/principal/agent@example.com")
        assert r.status_code == 200
        item = r.json()["data"]
        assert item["id"] == pid and item["type"] == "individual" and item["emails"] == ["agent@example.com"]
        assert item["description"] == "AI agent" and item["quota"] == 1_000_000 and item["usedQuota"] == 0
        assert "secrets" not in item and "SecurePassword" not in r.text and "argon2" not in r.text
        r = api.get("/api/principal/example.com")
        assert r.status_code == 200 and r.json()["data"]["type"] == "domain"
        # The guide's PATCH (object form).
        r = api.patch("/api/principal/agent@example.com",
                      json={"secrets": ["NewSecurePassword456!"], "description": "Updated AI agent"})
        assert r.status_code == 200, r.text
        assert api.get("/api/principal/agent@example.com").json()["data"]["description"] == "Updated AI agent"
        # Stalwart's list-of-changes form.
        r = api.patch("/api/principal/agent@example.com", json=[
            {"action": "addItem", "field": "emails", "value": "a2@example.com"},
            {"action": "addItem", "field": "emails", "value": ["a3@mycompany.io"]},
            {"action": "set", "field": "quota", "value": 5_000_000},
        ])
        assert r.status_code == 200, r.text
        item = api.get("/api/principal/a3@mycompany.io").json()["data"]
        assert item["emails"] == ["agent@example.com", "a2@example.com", "a3@mycompany.io"]
        assert item["quota"] == 5_000_000
        r = api.patch("/api/principal/agent@example.com",
                      json=[{"action": "removeItem", "field": "emails", "value": "agent@example.com"}])
        assert r.status_code == 200
        item = api.get("/api/principal/agent@example.com").json()["data"]  # still found by its name
        assert item["emails"] == ["a2@example.com", "a3@mycompany.io"]
        # A failing change list changes nothing (atomic).
        r = api.patch("/api/principal/agent@example.com", json=[
            {"action": "set", "field": "description", "value": "half"},
            {"action": "addItem", "field": "emails", "value": "x@not-ours.test"}])
        assert r.status_code == 400
        assert api.get("/api/principal/agent@example.com").json()["data"]["description"] == "Updated AI agent"
        # Lists: alias + forwarder mixed.
        r = api.post("/api/principal", json={"name": "sales@example.com", "type": "list",
                                             "members": ["a2@example.com", "External@Gmail.com"]})
        assert r.status_code == 200, r.text
        item = api.get("/api/principal/sales@example.com").json()["data"]
        assert item["type"] == "list" and item["members"] == ["a2@example.com", "external@gmail.com"]
        r = api.patch("/api/principal/sales@example.com",
                      json=[{"action": "removeItem", "field": "members", "value": "external@gmail.com"}])
        assert r.status_code == 200
        assert api.get("/api/principal/sales@example.com").json()["data"]["members"] == ["a2@example.com"]
        # Listing all types, filter, pagination.
        r = api.get("/api/principal")
        names = [i["name"] for i in r.json()["data"]["items"]]
        assert names == ["example.com", "mycompany.io", "agent@example.com", "sales@example.com"]
        assert r.json()["data"]["total"] == 4
        r = api.get("/api/principal", params={"types": "individual,list", "filter": "sales"})
        assert [i["name"] for i in r.json()["data"]["items"]] == ["sales@example.com"]
        pages = [api.get("/api/principal", params={"page": p, "limit": 3}).json()["data"] for p in (1, 2, 3)]
        assert [len(p["items"]) for p in pages] == [3, 1, 0] and all(p["total"] == 4 for p in pages)
        assert [i["name"] for p in pages for i in p["items"]] == names
        # Delete.
        assert api.delete("/api/principal/sales@example.com").status_code == 200
        assert api.get("/api/principal/sales@example.com").status_code == 404
        assert api.delete("/api/principal/example.com").status_code == 200
        r = api.get("/api/principal")
        # The account's home domain is its primary address's (a2@example.com): it went with the domain,
        # and its address in the other domain is free again.
        assert [i["name"] for i in r.json()["data"]["items"]] == ["mycompany.io"]
        add_account(api, "a3@mycompany.io", "another password")


def test_errors_in_dialect_shape(server: InProcessServer) -> None:
    _, key = make_tenant(server, "errs")
    with client(server, key) as api:
        add_domain(api, "example.com")
        add_account(api, "bob@example.com", "long enough pw")
        cases: list[tuple[object, int, str]] = [
            ({"name": "example.com", "type": "domain"}, 409, "fieldAlreadyExists"),
            ({"name": "bob@example.com", "type": "individual", "secrets": ["xxxxxxxxxx"]}, 409, "fieldAlreadyExists"),
            ({"name": "b2@example.com", "type": "individual", "emails": ["bob@example.com"]}, 409,
             "fieldAlreadyExists"),
            ({"type": "individual"}, 400, "fieldMissing"),
            ({"name": "x@example.com"}, 400, "fieldMissing"),
            ({"name": "x@example.com", "type": "robot"}, 400, "unsupported"),
            ({"name": "x@example.com", "type": "individual", "secrets": ["short"]}, 400, "invalid"),
            ({"name": "x@example.com", "type": "individual", "secret": ["long enough pw"]}, 400, "unsupported"),
            ({"name": "x@example.com", "type": "individual", "quota": "big"}, 400, "invalid"),
            ({"name": "x@example.com", "type": "individual", "quota": True}, 400, "invalid"),
            ({"name": "x@example.com", "type": "individual", "emails": "x@other.test"}, 400, "invalid"),
            ({"name": "x@example.com", "type": "individual", "emails": [1, 2]}, 400, "invalid"),
            ({"name": "not an address@example.com", "type": "individual"}, 400, "invalid"),
            ({"name": "x@@example.com", "type": "individual"}, 400, "invalid"),
            ({"name": "bad_domain!.com", "type": "domain"}, 400, "invalid"),
            ({"name": "-x.com", "type": "domain"}, 400, "invalid"),
            ({"name": "a" * 64 + ".com", "type": "domain"}, 400, "invalid"),
            ({"name": "l@example.com", "type": "list", "members": ["nobody@example.com"]}, 400, "invalid"),
            ({"name": "l@example.com", "type": "list", "members": "x"}, 400, "invalid"),
            ({"name": "x@example.com", "type": "individual", "members": ["bob@example.com"]}, 400, "invalid"),
            ([1, 2, 3], 400, "invalid"),
            ("a string", 400, "invalid"),
            ({"name": 5, "type": "domain"}, 400, "invalid"),
        ]
        for body, status, code in cases:
            r = api.post("/api/principal", json=body)
            assert (r.status_code, r.json()["error"]) == (status, code), (body, r.text)
        short = api.post("/api/principal", json={"name": "x@example.com", "type": "individual", "secrets": ["abc"]})
        assert "at least 8 characters" in short.json()["details"] and short.json()["field"] == "secrets"
        for raw in (b"{not json", b"", b"\xff\xfe", b"[" * 100000):
            r = api.post("/api/principal", content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and r.json()["error"] in ("other", "invalid"), raw[:10]
        assert api.get("/api/principal/nobody@example.com").json()["error"] == "notFound"
        assert api.get("/api/principal/nobody@example.com").status_code == 404
        assert api.delete("/api/principal/nothere.test").status_code == 404
        assert api.patch("/api/principal/nobody@example.com", json={"description": "x"}).status_code == 404
        patches: list[tuple[object, str]] = [
            ({"secrets": ["short"]}, "invalid"),
            ({"password": "x"}, "unsupported"),
            ([{"action": "explode", "field": "emails", "value": "a@example.com"}], "invalid"),
            ([{"action": "set", "field": "nope", "value": 1}], "unsupported"),
            ([{"action": "addItem", "field": "quota", "value": 1}], "invalid"),
            ([{"field": "quota"}], "invalid"),
            ({"quota": -1}, "invalid"),
            ({"emails": ["bad address"]}, "invalid"),
            (None, "other"),
        ]
        for body, code in patches:
            r = api.patch("/api/principal/bob@example.com", json=body)
            assert (r.status_code, r.json()["error"]) == (400, code), (body, r.text)
        assert api.get("/api/principal", params={"types": "robots"}).status_code == 400
        assert api.get("/api/principal", params={"limit": "ten"}).status_code == 400
        assert api.get("/api/principal", params={"page": "-1"}).status_code == 400
        # IDNA: a Unicode domain is stored and listed as its A-label, found by either spelling.
        add_domain(api, "Bücher.example")
        assert api.get("/api/principal/bücher.example").json()["data"]["name"] == "xn--bcher-kva.example"
        add_account(api, "Anna@BÜCHER.example", "long enough pw")
        assert api.get("/api/principal/anna@xn--bcher-kva.example").status_code == 200


def test_auth_and_scope(server: InProcessServer) -> None:
    r = httpx.get(server.base_url + "/api/principal")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    for bad in ("Bearer", "Bearer tk_doesnotexist", "Basic Zm9vOmJhcg=="):
        r = httpx.get(server.base_url + "/api/principal", headers={"Authorization": bad})
        assert r.status_code == 401
    tid, key = make_tenant(server, "scoped")
    # The platform key acts on the default tenant, or on the one named by X-Mailwright-Tenant.
    with server.api() as admin:
        add_domain(admin, "default-tenant.test")
        r = admin.post("/api/principal", json={"name": "named.test", "type": "domain"},
                       headers={"X-Mailwright-Tenant": "scoped"})
        assert r.status_code == 200
        assert admin.get("/api/principal", headers={"X-Mailwright-Tenant": tid}).json()["data"]["total"] == 1
        assert admin.get("/api/principal", headers={"X-Mailwright-Tenant": "nope"}).status_code == 404
    with client(server, key) as api:
        assert [i["name"] for i in api.get("/api/principal").json()["data"]["items"]] == ["named.test"]
    # A revoked key stops at once.

    async def revoke(svc):  # type: ignore[no-untyped-def]
        from sqlalchemy import update

        from mailwright.storage.models import ApiKey, utcnow
        async with svc.db.write() as s:
            await s.execute(update(ApiKey).where(ApiKey.tenant_id == tid).values(revoked_at=utcnow()))

    server.run(revoke)
    with client(server, key) as api:
        assert api.get("/api/principal").status_code == 401


def test_openapi_lists_the_routes(server: InProcessServer) -> None:
    spec = httpx.get(server.base_url + "/api/openapi.json").json()
    for path, method in (("/api/principal", "get"), ("/api/principal", "post"), ("/api/principal/{name}", "patch"),
                         ("/api/principal/{name}", "delete"), ("/api/dkim", "post"),
                         ("/api/dkim/{domain}/{selector}", "delete"), ("/api/dns/{domain}", "get"),
                         ("/api/dns/records/{domain}", "get"), ("/.well-known/mta-sts.txt", "get")):
        assert spec["paths"][path][method]["summary"], (path, method)
    assert httpx.get(server.base_url + "/api/docs").status_code == 200


def test_concurrent_creates_of_one_address_give_one_winner(server: InProcessServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _, key = make_tenant(server, "race")

    def post(body: dict[str, object]) -> int:
        with client(server, key) as api:
            return api.post("/api/principal", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, [{"name": "race.test", "type": "domain"}] * 8))
    assert sorted(codes) == [200] + [409] * 7
    body = {"name": "same@race.test", "type": "individual", "secrets": ["long enough pw"]}
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, [body] * 8))
    assert sorted(codes) == [200] + [409] * 7


WEIRD_VALUES: list[object] = [None, True, -1, 2**70, 1.5, "", "\x00", "a" * 5000, "@", "a@b", "a@b..com",
                              "a b@c.test", [None], {"a": 1}, ["x@y.test", 5], "a@\U0001f642.example"]


PREHASHED = PasswordHasher(time_cost=1, memory_cost=1024).hash("long enough pw")  # no hashing per request


@pytest.fixture
def unthrottled(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    """A server whose API rate limit is out of the way: the fuzz below sends ~1,000 requests with
    one tenant key, more than `api_rate_per_minute` allows when they all fit in a minute."""
    srv = InProcessServer(tmp_path / "data", database_url, api_rate_per_minute=1_000_000).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.timeout(400)  # a few hundred requests: seconds on an idle machine, slower on a busy CI box
def test_no_input_makes_a_500(unthrottled: InProcessServer) -> None:
    """Every field of every write route, given odd values: a 4xx in the dialect's shape, never a 5xx."""
    server = unthrottled
    _, key = make_tenant(server, "fuzz")
    with client(server, key) as api:
        add_domain(api, "fuzz.test")
        add_account(api, "f@fuzz.test", "long enough pw")
        assert api.post("/api/principal", json={"name": "fl@fuzz.test", "type": "list",
                                                "members": ["f@fuzz.test"]}).status_code == 200
        base = {
            "domain": {"name": "other-fuzz.test", "type": "domain", "description": "d"},
            "individual": {"name": "n@fuzz.test", "type": "individual", "secrets": [PREHASHED],
                           "emails": ["n@fuzz.test"], "description": "d", "quota": 0},
            "list": {"name": "l@fuzz.test", "type": "list", "members": ["f@fuzz.test"]},
            "dkim": {"id": "k", "algorithm": "ed25519-sha256", "domain": "fuzz.test", "selector": "s"},
        }
        seen = 0
        for kind, body in base.items():
            path = "/api/dkim" if kind == "dkim" else "/api/principal"
            for field in body:
                for value in WEIRD_VALUES:
                    if kind == "dkim" and field == "algorithm" and value is None:
                        continue  # None = the default algorithm: a valid, slow RSA key generation
                    r = api.post(path, json={**body, field: value})
                    assert r.status_code < 500, (kind, field, value, r.text)
                    assert "error" in r.json() or r.status_code == 200
                    if r.status_code == 200:  # undo, so the next case meets the same state
                        if kind == "dkim":
                            api.delete("/api/dkim/fuzz.test/" + str(api.get("/api/dkim/fuzz.test").json()
                                                                   ["data"][-1]["selector"]))
                        else:
                            api.delete(f"/api/principal/{r.json()['data']}")
                            for name in ("other-fuzz.test", "n@fuzz.test", "l@fuzz.test"):
                                api.delete(f"/api/principal/{name}")
                    seen += 1
        patch_fields = {"f@fuzz.test": ("secrets", "emails", "description", "quota", "name", "roles"),
                        "fl@fuzz.test": ("members", "emails", "secrets"), "fuzz.test": ("description", "catchAll")}
        for target, fields in patch_fields.items():
            for field in fields:
                for value in WEIRD_VALUES[::2] if target != "f@fuzz.test" else WEIRD_VALUES:
                    r = api.patch(f"/api/principal/{target}", json={field: value})
                    assert r.status_code < 500, (target, field, value, r.text)
                    r = api.patch(f"/api/principal/{target}", json=[{"action": "addItem", "field": field,
                                                                      "value": value}])
                    assert r.status_code < 500, (target, field, value, r.text)
                    seen += 1
        for path in ("/api/principal/%00", "/api/principal/" + "a" * 3000, "/api/dns/..", "/api/dns/a..b",
                     "/api/dkim/%F0%9F%99%82", "/api/principal/%C3%BC", "/api/dns/records/-x-.test"):
            for method in ("GET", "PATCH", "DELETE"):
                r = api.request(method, path, json={"description": "x"} if method == "PATCH" else None)
                assert r.status_code < 500, (method, path, r.text)
        for params in ({"filter": "\x00"}, {"filter": "%_\\"}, {"filter": "x" * 5000}, {"types": "\x00"},
                       {"page": "99999999999999999999"}, {"limit": "1e3"}):
            r = api.get("/api/principal", params=params)
            assert r.status_code in (200, 400), (params, r.text)
        assert seen > 100


def test_changes_are_audited_without_secrets(server: InProcessServer) -> None:
    tid, key = make_tenant(server, "audited")
    with client(server, key) as api:
        add_domain(api, "audit.test")
        add_account(api, "a@audit.test", "FirstSecret1")
        assert api.patch("/api/principal/a@audit.test", json={"secrets": ["SecondSecret2"]}).status_code == 200
        assert api.post("/api/dkim", json={"algorithm": "ed25519-sha256", "domain": "audit.test",
                                           "selector": "s"}).status_code == 200
        assert api.delete("/api/dkim/audit.test/s").status_code == 200
        assert api.delete("/api/principal/a@audit.test").status_code == 200
        assert api.delete("/api/principal/audit.test").status_code == 200
        assert api.post("/api/principal", json={"name": "x@nowhere.test", "type": "individual"}).status_code == 400

    async def entries(svc):  # type: ignore[no-untyped-def]
        from mailwright.directory import audit

        async with svc.db.read() as s:
            return [e.as_dict() for e in await audit.list_entries(s, tid)]

    log = list(reversed(server.run(entries)))
    assert [(e["action"], e["target"]) for e in log] == [
        ("domain.create", "audit.test"), ("principal.create", "a@audit.test"), ("principal.update", "a@audit.test"),
        ("dkim.create", "s._domainkey.audit.test"), ("dkim.retire", "s"), ("principal.delete", "a@audit.test"),
        ("domain.delete", "audit.test")]
    assert log[2]["details"] == {"changes": ["set:secrets"]}
    assert all(e["key_id"] and e["source_ip"] == "127.0.0.1" for e in log)
    assert "Secret" not in str(log)
