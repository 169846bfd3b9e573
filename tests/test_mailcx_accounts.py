"""mail.cx dialect, accounts: every documented curl example (run with the real curl binary),
each documented field and error code, `/api/me` for both kinds of credential, system domains.
"""

from __future__ import annotations

import re
from datetime import datetime

import httpx

from mailwright.directory import apikeys
from mailwright.services import Services
from tests.support.mailcx import add_system_domain, bearer, curl, sign_up
from tests.support.server import InProcessServer

CREATE = """curl -X POST https://api.mail.cx/api/accounts \\
  -H "Content-Type: application/json" \\
  -d '{"address":"demo@mail.cx","password":"supersecret"}'"""

SIGN_IN = """curl -X POST https://api.mail.cx/api/token \\
  -H "Content-Type: application/json" \\
  -d '{"address":"demo@mail.cx","password":"supersecret"}'"""

ME = """curl https://api.mail.cx/api/me \\
  -H "Authorization: Bearer YOUR_TOKEN\""""

DELETE = """curl -X DELETE https://api.mail.cx/api/account \\
  -H "Authorization: Bearer YOUR_TOKEN\""""

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
JWT = re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$")


def _err(r: object, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]


def test_documented_examples(server: InProcessServer) -> None:
    add_system_domain(server, "mail.cx")

    r = curl(server, CREATE)
    assert r.status == 201, r.body
    created = r.json()
    assert set(created) == {"id", "address", "token"}
    assert UUID.match(created["id"]) and created["address"] == "demo@mail.cx" and JWT.match(created["token"])

    # The token works at once, without a separate sign-in.
    r = curl(server, ME, YOUR_TOKEN=created["token"])
    assert r.status == 200, r.body
    me = r.json()
    assert set(me) == {"id", "address", "role", "quota", "used", "created_at"}
    assert me["id"] == created["id"] and me["address"] == "demo@mail.cx" and me["role"] == "user"
    assert me["quota"] == 41943040 and me["used"] == 0
    assert datetime.fromisoformat(me["created_at"].replace("Z", "+00:00")).tzinfo is not None
    assert me["created_at"].endswith("Z")

    r = curl(server, SIGN_IN)
    assert r.status == 200, r.body
    signed = r.json()
    assert set(signed) == {"id", "address", "token"}
    assert signed["id"] == created["id"] and signed["address"] == "demo@mail.cx" and JWT.match(signed["token"])

    # Errors, exactly as documented.
    _err(curl(server, CREATE), 409, "address_taken")
    _err(curl(server, CREATE.replace("demo@mail.cx", "not-an-address")), 400, "invalid_address")
    _err(curl(server, CREATE.replace("demo@mail.cx", "demo@elsewhere.example")), 400, "invalid_address")
    _err(curl(server, SIGN_IN.replace("supersecret", "wrongpass")), 401, "invalid_credentials")
    _err(curl(server, SIGN_IN.replace("demo@mail.cx", "nobody@mail.cx")), 401, "invalid_credentials")
    # Password minimum 6.
    _err(curl(server, CREATE.replace("demo@", "short@").replace("supersecret", "12345")), 400, "invalid_password")
    assert curl(server, CREATE.replace("demo@", "six@").replace("supersecret", "123456")).status == 201
    # Case and surrounding space in the address do not make a second account.
    _err(curl(server, CREATE.replace("demo@mail.cx", "DEMO@Mail.CX")), 409, "address_taken")

    r = curl(server, DELETE, YOUR_TOKEN=signed["token"])
    assert r.status == 204 and r.body == b""
    # Everything is gone: the token, the sign-in, and the address is free again.
    _err(curl(server, ME, YOUR_TOKEN=created["token"]), 401, "unauthorized")
    _err(curl(server, SIGN_IN), 401, "invalid_credentials")
    assert curl(server, CREATE).status == 201


def test_bad_tokens_and_bodies(server: InProcessServer) -> None:
    add_system_domain(server, "mail.cx")
    acct = sign_up(server, "x@mail.cx")
    base = server.base_url
    assert httpx.get(f"{base}/api/me").json()["error"] == "unauthorized"
    for tok in ("eyJhbGciOiJIUzI1NiJ9.e30.bad", acct["token"][:-3] + "abc", "garbage", "tk_unknown"):
        r = httpx.get(f"{base}/api/me", headers=bearer(tok))
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", (tok, r.text)
    r = httpx.get(f"{base}/api/messages", headers=bearer("tk_unknown"))
    assert r.status_code == 401
    # A stale mailbox JWT does not stop an anonymous sign-up; an unknown Pro token does.
    r = httpx.post(f"{base}/api/accounts", json={"address": "y@mail.cx", "password": "supersecret"},
                   headers=bearer("eyJhbGciOiJIUzI1NiJ9.e30.bad"))
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/api/accounts", json={"address": "z@mail.cx", "password": "supersecret"},
                   headers=bearer("tm_pro_unknown"))
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = httpx.post(f"{base}/api/accounts", json={"address": "z@mail.cx", "password": "supersecret"},
                   headers=bearer(acct["token"]))  # a plain mailbox's own token: like anonymous
    assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/api/accounts", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = httpx.post(f"{base}/api/accounts", json={"address": 5, "password": "supersecret"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_address"
    r = httpx.post(f"{base}/api/token", json=["x"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = httpx.post(f"{base}/api/token", json={"address": "x@mail.cx"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_credentials"


def test_me_decides_by_credential(server: InProcessServer) -> None:
    add_system_domain(server, "mail.cx")
    acct = sign_up(server, "who@mail.cx")
    base = server.base_url

    async def tenant_key(svc: Services) -> str:
        from mailwright.directory import tenants

        async with svc.db.write() as s:
            t = await tenants.ensure_default_tenant(s)
            _, key = await apikeys.create_key(s, prefix="tk_", scope="tenant", tenant_id=t.id,
                                              permissions={"mail.cx": ["emails"]})
            return key

    tk = server.run(tenant_key)
    r = httpx.get(f"{base}/api/me", headers=bearer(tk))
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["success"] is True
    d = b["data"]
    assert d["scope"] == "tenant" and d["prefix"] == "tk_" and d["admin"] is False
    assert d["grants"] == {"mail.cx": ["emails"]} and d["tenant_id"] and d["key_id"]
    # The platform key, sent as X-API-Key this time.
    r = httpx.get(f"{base}/api/me", headers={"X-API-Key": str(server.admin_key)})
    assert r.json()["success"] is True and r.json()["data"]["admin"] is True
    # The mailbox JWT gets the mailbox shape.
    r = httpx.get(f"{base}/api/me", headers=bearer(acct["token"]))
    assert r.json()["address"] == "who@mail.cx" and "success" not in r.json()


def test_system_domain_admin_api(server: InProcessServer) -> None:
    base = server.base_url
    with server.api() as api:
        r = api.post("/api/admin/system-domains", json={"domain": "Free.Example"})
        assert r.status_code == 201, r.text
        assert r.json()["data"]["domain"] == "free.example"
        assert api.post("/api/admin/system-domains", json={"domain": "free.example"}).json()["error"] == \
            "fieldAlreadyExists"
        assert api.post("/api/admin/system-domains", json={"domain": "bad..name"}).status_code == 400
        assert api.post("/api/admin/system-domains", json={}).json()["error"] == "fieldMissing"
        names = [d["domain"] for d in api.get("/api/admin/system-domains").json()["data"]]
        assert "free.example" in names
    acct = sign_up(server, "a@free.example")
    assert httpx.get(f"{base}/api/me", headers=bearer(acct["token"])).status_code == 200
    # Only the platform key may manage system domains.
    r = httpx.get(f"{base}/api/admin/system-domains", headers=bearer(acct["token"]))
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = httpx.get(f"{base}/api/admin/system-domains")
    assert r.status_code == 401
    with server.api() as api:
        assert api.delete("/api/admin/system-domains/nothere.example").json()["error"] == "notFound"
        assert api.delete("/api/admin/system-domains/free.example").status_code == 200
        names = [d["domain"] for d in api.get("/api/admin/system-domains").json()["data"]]
        assert "free.example" not in names
    # Removing the domain removed its mailboxes.
    assert httpx.get(f"{base}/api/me", headers=bearer(acct["token"])).status_code == 401
    r = httpx.post(f"{base}/api/accounts", json={"address": "b@free.example", "password": "supersecret"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_address"


def test_token_expiry_and_signing(server: InProcessServer) -> None:
    import time

    from mailwright.directory import jwt_tokens

    add_system_domain(server, "mail.cx")
    acct = sign_up(server, "exp@mail.cx")
    assert server.svc is not None
    st = server.svc.settings
    base = server.base_url
    fresh = jwt_tokens.issue(st, acct["id"], "exp@mail.cx")
    assert httpx.get(f"{base}/api/me", headers=bearer(fresh)).status_code == 200
    # Seven days of validity, then 401.
    old = jwt_tokens.issue(st, acct["id"], "exp@mail.cx", now=time.time() - 7 * 24 * 3600 - 5)
    r = httpx.get(f"{base}/api/me", headers=bearer(old))
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    almost = jwt_tokens.issue(st, acct["id"], "exp@mail.cx", now=time.time() - 7 * 24 * 3600 + 60)
    assert httpx.get(f"{base}/api/me", headers=bearer(almost)).status_code == 200
    # Signed with another secret: refused. The key file persists for the next start.
    import jwt as pyjwt

    forged = pyjwt.encode({"sub": acct["id"], "iat": int(time.time()), "exp": int(time.time()) + 60},
                          "not-the-secret-but-long-enough-for-hs256!", algorithm="HS256")
    assert httpx.get(f"{base}/api/me", headers=bearer(forged)).status_code == 401
    unsigned = pyjwt.encode({"sub": acct["id"], "iat": int(time.time()), "exp": int(time.time()) + 60},
                            None, algorithm="none")
    assert httpx.get(f"{base}/api/me", headers=bearer(unsigned)).status_code == 401
    assert (st.data_dir / "jwt.key").exists()


def test_concurrent_sign_ups_of_one_address(server: InProcessServer) -> None:
    """Racing sign-ups for one address: exactly one 201, the others 409 address_taken, no 500."""
    from concurrent.futures import ThreadPoolExecutor

    add_system_domain(server, "mail.cx")

    def attempt(_: int) -> httpx.Response:
        return httpx.post(f"{server.base_url}/api/accounts",
                          json={"address": "race@mail.cx", "password": "supersecret"}, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 7, [r.text for r in results]
    assert all(r.json()["error"] == "address_taken" for r in results if r.status_code == 409)
