"""Tenant isolation: every management endpoint, called with another tenant's key (or a key of
the wrong kind), answers 404/400/403 and changes nothing; the per-key rate limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from mailwright.directory import apikeys
from mailwright.services import Services
from tests.support.management import add_account, add_domain, client, make_tenant
from tests.support.server import InProcessServer


def snapshot(api: httpx.Client) -> dict[str, Any]:
    return {
        "list": api.get("/api/principal").json(),
        "u": api.get("/api/principal/u@owned.test").json(),
        "l": api.get("/api/principal/l@owned.test").json(),
        "d": api.get("/api/principal/owned.test").json(),
        "dkim": api.get("/api/dkim/owned.test").json(),
        "dns": api.get("/api/dns/owned.test").json(),
    }


FOREIGN_CALLS: list[tuple[str, str, Any, set[int]]] = [
    ("GET", "/api/principal/u@owned.test", None, {404}),
    ("GET", "/api/principal/l@owned.test", None, {404}),
    ("GET", "/api/principal/owned.test", None, {404}),
    ("PATCH", "/api/principal/u@owned.test", {"secrets": ["taken over!"], "description": "x"}, {404}),
    ("PATCH", "/api/principal/u@owned.test", [{"action": "addItem", "field": "emails", "value": "z@mine.test"}],
     {404}),
    ("PATCH", "/api/principal/l@owned.test", {"members": ["me@mine.test"]}, {404}),
    ("PATCH", "/api/principal/owned.test", {"description": "mine now"}, {404}),
    ("DELETE", "/api/principal/u@owned.test", None, {404}),
    ("DELETE", "/api/principal/l@owned.test", None, {404}),
    ("DELETE", "/api/principal/owned.test", None, {404}),
    ("POST", "/api/principal", {"name": "owned.test", "type": "domain"}, {409}),
    ("POST", "/api/principal", {"name": "new@owned.test", "type": "individual", "secrets": ["long enough"]}, {400}),
    ("POST", "/api/principal", {"name": "me2@mine.test", "type": "individual", "emails": ["u@owned.test"]},
     {400}),
    ("POST", "/api/principal", {"name": "u@owned.test", "type": "individual", "secrets": ["long enough"]}, {400}),
    ("POST", "/api/principal", {"name": "l@owned.test", "type": "list", "members": ["me@mine.test"]}, {400}),
    ("POST", "/api/principal", {"name": "grab@mine.test", "type": "list", "members": ["u@owned.test"]}, {400}),
    ("PATCH", "/api/principal/me@mine.test", [{"action": "addItem", "field": "emails", "value": "x@owned.test"}],
     {400}),
    ("POST", "/api/dkim", {"algorithm": "ed25519-sha256", "domain": "owned.test", "selector": "evil"}, {404}),
    ("GET", "/api/dkim/owned.test", None, {404}),
    ("GET", "/api/dkim?domain=owned.test", None, {404}),
    ("DELETE", "/api/dkim/owned.test/sel", None, {404}),
    ("GET", "/api/dns/owned.test", None, {404}),
    ("GET", "/api/dns/records/owned.test", None, {404}),
    ("GET", "/api/dns/owned.test?format=zone", None, {404}),
]


def call(api: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    return api.request(method, path, json=body) if body is not None else api.request(method, path)


def test_foreign_tenant_matrix(server: InProcessServer) -> None:
    _, owner_key = make_tenant(server, "owner")
    _, other_key = make_tenant(server, "intruder")
    with client(server, owner_key) as owner:
        add_domain(owner, "owned.test")
        add_account(owner, "u@owned.test", "owner password")
        assert owner.post("/api/principal", json={"name": "l@owned.test", "type": "list",
                                                  "members": ["u@owned.test", "ext@far.test"]}).status_code == 200
        assert owner.post("/api/dkim", json={"algorithm": "ed25519-sha256", "domain": "owned.test",
                                             "selector": "sel"}).status_code == 200
        before = snapshot(owner)
    with client(server, other_key) as other:
        add_domain(other, "mine.test")
        add_account(other, "me@mine.test", "intruder password")
        for method, path, body, expected in FOREIGN_CALLS:
            r = call(other, method, path, body)
            assert r.status_code in expected, (method, path, r.status_code, r.text)
            assert "error" in r.json() and "data" not in r.json(), r.text
            assert "ext@far.test" not in r.text and "DKIM1" not in r.text  # nothing of theirs is shown
        listed = other.get("/api/principal").json()["data"]
        assert {i["name"] for i in listed["items"]} == {"mine.test", "me@mine.test"} and listed["total"] == 2
    # The answers for someone else's object equal those for a missing one (no existence leak).
    with client(server, other_key) as other:
        a = other.get("/api/principal/u@owned.test")
        b = other.get("/api/principal/nobody@nowhere.test")
        assert (a.status_code, a.json()["error"]) == (b.status_code, b.json()["error"]) == (404, "notFound")
    with client(server, owner_key) as owner:
        assert snapshot(owner) == before


def test_keys_of_other_kinds_are_refused_everywhere(server: InProcessServer) -> None:
    async def keys(svc: Services) -> list[str]:
        out = []
        async with svc.db.write() as s:
            for prefix in ("ak_", "wk_", "mxm_"):
                _, k = await apikeys.create_key(s, prefix=prefix)
                out.append(k)
        return out

    for key in server.run(keys):
        with client(server, key) as api:
            for method, path, body, _ in FOREIGN_CALLS + [("GET", "/api/principal", None, set())]:
                r = call(api, method, path, body)
                assert (r.status_code, r.json()["error"]) == (403, "forbidden"), (key[:4], method, path, r.text)
    for method, path, body, _ in FOREIGN_CALLS:
        r = call(httpx.Client(base_url=server.base_url), method, path, body)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", (method, path)


def test_rate_limit_per_key(tmp_path: Path, database_url: str) -> None:
    srv = InProcessServer(tmp_path / "data", database_url, api_rate_per_minute=5).start()
    try:
        _, k1 = make_tenant(srv, "busy")
        _, k2 = make_tenant(srv, "calm")
        with client(srv, k1) as api:
            codes = [api.get("/api/principal").status_code for _ in range(5)]
            assert codes == [200] * 5
            r = api.get("/api/principal")
            assert r.status_code == 429 and r.json()["error"] == "tooManyRequests"
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        with client(srv, k2) as api:
            assert api.get("/api/principal").status_code == 200  # another key has its own budget
        with srv.api() as admin:  # the platform operator's key is not limited
            assert {admin.get("/api/principal").status_code for _ in range(8)} == {200}
        # Callers without a valid key are limited per IP, so key guessing is throttled too.
        bad = httpx.Client(base_url=srv.base_url, headers={"Authorization": "Bearer tk_guess"})
        codes = [bad.get("/api/principal").status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]
    finally:
        srv.stop()
