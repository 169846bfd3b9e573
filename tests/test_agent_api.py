"""Agent-inbox dialect (myagentmail): every documented request, response field and error.

Runs against a real in-process node (HTTP API, SMTP, IMAP) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import imaplib
import smtplib
import uuid
from email.message import EmailMessage

import httpx
import pytest

from tests.support.agent import client, make_inbox, make_tenant
from tests.support.server import InProcessServer


def _is_uuid(v: object) -> bool:
    try:
        uuid.UUID(str(v))
        return True
    except ValueError:
        return False


def test_create_inbox_documented_fields(server: InProcessServer) -> None:
    t = make_tenant(server, "acme")
    assert t["apiKey"].startswith("tk_")
    with client(server, t["apiKey"], header="x-api-key") as api:
        r = api.post("/v1/inboxes", json={"username": "scout", "displayName": "Scout Bot"})
        assert r.status_code == 201, r.text
        b = r.json()
        assert _is_uuid(b["id"]) and _is_uuid(b["workspaceId"])
        assert b["workspaceId"] == t["defaultWorkspaceId"]
        assert b["username"] == "scout"
        assert b["domain"] == "mx.test.local"  # default domain: the hostname, made a system domain
        assert b["email"] == b["canonicalEmail"] == "scout@mx.test.local"
        assert b["displayName"] == "Scout Bot"
        assert b["addresses"] == [{"address": "scout@mx.test.local", "isPrimary": True}]
        assert b["existed"] is False
        assert b["apiKey"].startswith("ak_")
        pw = b["imapPassword"]
        assert isinstance(pw, str) and len(pw) >= 16
        assert b["imap"] == {"host": "mx.test.local", "port": server.ports["imaps"], "tls": True,
                             "username": "scout@mx.test.local", "password": pw}
        assert b["smtp"] == {"host": "mx.test.local", "port": server.ports["submission"], "starttls": True,
                             "username": "scout@mx.test.local", "password": pw}
        assert b["createdAt"].endswith("Z")

        # Idempotent repeat: 200, existed, no credentials.
        r2 = api.post("/v1/inboxes", json={"username": "scout"})
        assert r2.status_code == 200, r2.text
        b2 = r2.json()
        assert b2["existed"] is True and b2["id"] == b["id"]
        assert "apiKey" not in b2 and "imapPassword" not in b2
        assert b2["imap"]["password"] is None and b2["smtp"]["password"] is None

        # GET does not repeat the password (stored only as Argon2id): documented difference.
        g = api.get(f"/v1/inboxes/{b['id']}")
        assert g.status_code == 200 and g.json()["canonicalEmail"] == "scout@mx.test.local"
        assert "imapPassword" not in g.json() and g.json()["imap"]["password"] is None
        assert [i["id"] for i in api.get("/v1/inboxes").json()["inboxes"]] == [b["id"]]

    # The returned credentials log in over IMAP and the ak_ key reads the inbox.
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        assert imap.login("scout@mx.test.local", pw)[0] == "OK"
    finally:
        imap.logout()
    with client(server, b["apiKey"]) as api:
        assert api.get(f"/v1/inboxes/{b['id']}").status_code == 200

    # Rotate: a new password works, the old one does not.
    with client(server, t["apiKey"]) as api:
        r = api.post(f"/v1/inboxes/{b['id']}/rotate-password")
        assert r.status_code == 200, r.text
        new_pw = r.json()["imapPassword"]
        assert new_pw != pw and r.json()["imap"]["password"] == new_pw
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("scout@mx.test.local", pw)
    finally:
        imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        assert imap.login("scout@mx.test.local", new_pw)[0] == "OK"
    finally:
        imap.logout()


def test_username_fallback_strict_rules_and_limits(server: InProcessServer) -> None:
    a = make_tenant(server, "alpha")
    b = make_tenant(server, "Beta Corp")
    make_inbox(server, a["apiKey"], "scout")
    with client(server, b["apiKey"]) as api:
        # Collision with another tenant: sequential fallback, no tenant suffix.
        r = api.post("/v1/inboxes", json={"username": "scout"})
        assert r.status_code == 201 and r.json()["username"] == "scout1", r.text
        # Retrying the same request returns that inbox instead of creating scout2.
        r = api.post("/v1/inboxes", json={"username": "scout"})
        assert r.status_code == 200 and r.json()["username"] == "scout1" and r.json()["existed"] is True
        # strict: 409 USERNAME_TAKEN with the recovery fields.
        r = api.post("/v1/inboxes?strict=true", json={"username": "scout"})
        assert r.status_code == 409, r.text
        e = r.json()
        assert e["code"] == "USERNAME_TAKEN" and isinstance(e["error"], str)
        assert e["requestedUsername"] == "scout" and e["attemptedUsername"] == "scout"
        assert e["domain"] == "mx.test.local"
        # Username rules.
        for bad in ["bad name", "a!b", ".lead", "trail.", "a..b", "", "x" * 61, 42]:
            r = api.post("/v1/inboxes", json={"username": bad})
            assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST", (bad, r.text)
        r = api.post("/v1/inboxes", json={"username": "Mixed.Case-ok_1"})
        assert r.status_code == 201 and r.json()["username"] == "mixed.case-ok_1"
        # Auto-generated from the tenant name when omitted.
        r = api.post("/v1/inboxes", json={})
        assert r.status_code == 201 and r.json()["username"] == "beta-corp", r.text
        # A domain that is neither a system domain nor the tenant's.
        r = api.post("/v1/inboxes", json={"username": "x", "domain": "elsewhere.test"})
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST"
        # workspaceId (tenant master only).
        ws = api.post("/v1/workspaces", json={"name": "agents"})
        assert ws.status_code == 201, ws.text
        r = api.post("/v1/inboxes", json={"username": "inws", "workspaceId": ws.json()["id"]})
        assert r.status_code == 201 and r.json()["workspaceId"] == ws.json()["id"]
        r = api.post("/v1/inboxes", json={"username": "x", "workspaceId": str(uuid.uuid4())})
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        r = api.post("/v1/inboxes", content=b"not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400

    # Plan limit: 403 with error + code.
    async def limit(svc: object) -> None:
        from mailwright.storage.models import Tenant

        async with svc.db.write() as s:  # type: ignore[attr-defined]
            t = await s.get(Tenant, a["id"])
            t.max_mailboxes = 1
    server.run(limit)
    with client(server, a["apiKey"]) as api:
        r = api.post("/v1/inboxes", json={"username": "second"})
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "PLAN_LIMIT_REACHED" and r.json()["error"]
        # The idempotent return still works at the limit.
        assert api.post("/v1/inboxes", json={"username": "scout"}).status_code == 200


def test_key_tier_matrix(server: InProcessServer) -> None:
    """Each tier sees exactly its scope: sa_ everything, tk_ its tenant, wk_ its workspace, ak_ its inbox."""
    a = make_tenant(server, "tenant-a")
    b = make_tenant(server, "tenant-b")
    with client(server, a["apiKey"]) as api:
        ws = api.post("/v1/workspaces", json={"name": "w1"}).json()
        wk = api.post(f"/v1/workspaces/{ws['id']}/keys", json={"name": "bot"}).json()["key"]
    assert wk.startswith("wk_")
    a_default = make_inbox(server, a["apiKey"], "a-default")
    a_ws = make_inbox(server, wk, "a-ws")
    assert a_ws["workspaceId"] == ws["id"]
    b_inbox = make_inbox(server, b["apiKey"], "b-inbox")
    ak = a_ws["apiKey"]
    keys = {"sa": server.admin_key, "tk": a["apiKey"], "wk": wk, "ak": ak}
    visible = {
        "sa": {a_default["id"], a_ws["id"], b_inbox["id"]},
        "tk": {a_default["id"], a_ws["id"]},
        "wk": {a_ws["id"]},
        "ak": {a_ws["id"]},
    }
    every = [a_default, a_ws, b_inbox]
    for tier, key in keys.items():
        assert key is not None
        with client(server, key) as api:
            listed = {i["id"] for i in api.get("/v1/inboxes").json()["inboxes"]}
            assert listed == visible[tier], tier
            for inbox in every:
                code = api.get(f"/v1/inboxes/{inbox['id']}").status_code
                assert code == (200 if inbox["id"] in visible[tier] else 404), (tier, inbox["username"])
                code = api.get(f"/v1/inboxes/{inbox['id']}/messages").status_code
                assert code == (200 if inbox["id"] in visible[tier] else 404), (tier, inbox["username"])
            # Tenants: platform only.
            code = api.get("/v1/tenants").status_code
            assert code == (200 if tier == "sa" else 403), tier
            code = api.post("/v1/tenants", json={"name": f"new-{tier}"}).status_code
            assert code == (201 if tier == "sa" else 403), tier
            # Creating inboxes: sa_, tk_, wk_; not ak_.
            r = api.post("/v1/inboxes", json={"username": f"made-by-{tier}"})
            assert r.status_code == (403 if tier == "ak" else 201), (tier, r.text)
            # Workspaces: create tk_/sa_; list sees own scope; ak_ none.
            r = api.post("/v1/workspaces", json={"name": f"ws-{tier}"})
            assert r.status_code == (201 if tier in ("sa", "tk") else 403), tier
            r = api.get("/v1/workspaces")
            if tier == "ak":
                assert r.status_code == 403
            elif tier == "wk":
                assert [w["id"] for w in r.json()["workspaces"]] == [ws["id"]]
            code = api.get(f"/v1/workspaces/{b['defaultWorkspaceId']}").status_code
            assert code == (200 if tier == "sa" else 403 if tier == "ak" else 404), tier
    # No key / a bad key / a key of another dialect.
    assert httpx.get(server.base_url + "/v1/inboxes").status_code == 401
    r = httpx.get(server.base_url + "/v1/inboxes", headers={"X-API-Key": "tk_nope"})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"

    async def foreign_keys(svc: object) -> list[str]:
        from mailwright.directory import apikeys

        async with svc.db.write() as s:  # type: ignore[attr-defined]
            _, pro = await apikeys.create_key(s, prefix="tm_pro_", tenant_id=a["id"])
            _, mxm = await apikeys.create_key(s, prefix="mxm_", tenant_id=a["id"], permissions={})
        return [pro, mxm]
    for key in server.run(foreign_keys):
        r = httpx.get(server.base_url + "/v1/inboxes", headers={"X-API-Key": key})
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", key[:7]
    paths = httpx.get(server.base_url + "/api/openapi.json").json()["paths"]
    assert {"/v1/inboxes", "/v1/inboxes/{inbox_id}/send", "/v1/webhooks", "/v1/events"} <= set(paths)


def test_tenants_and_workspace_keys(server: InProcessServer) -> None:
    with server.api() as api:
        r = api.post("/v1/tenants", json={"name": "t1"})
        assert r.status_code == 201
        t = r.json()
        assert {"id", "name", "status", "createdAt", "apiKey", "defaultWorkspaceId"} <= set(t)
        assert api.post("/v1/tenants", json={"name": "t1"}).status_code == 409
        assert api.post("/v1/tenants", json={}).status_code == 400
        assert t["id"] in [x["id"] for x in api.get("/v1/tenants").json()["tenants"]]
        assert api.get(f"/v1/tenants/{t['id']}").json()["name"] == "t1"
    with client(server, t["apiKey"]) as api:
        ws = api.post("/v1/workspaces", json={"name": "w"}).json()
        assert ws["name"] == "w" and ws["isDefault"] is False
        assert api.get(f"/v1/workspaces/{ws['id']}").json()["id"] == ws["id"]
        r = api.post(f"/v1/workspaces/{ws['id']}/keys", json={"name": "k"})
        assert r.status_code == 201
        k = r.json()
        assert k["key"].startswith("wk_") and k["id"]
        listed = api.get(f"/v1/workspaces/{ws['id']}/keys").json()["keys"]
        assert [x["id"] for x in listed] == [k["id"]]
        assert all("key" not in x for x in listed)  # shown once
    with client(server, k["key"]) as wapi:
        assert wapi.get("/v1/inboxes").status_code == 200
    with client(server, t["apiKey"]) as api:
        r = api.delete(f"/v1/workspaces/{ws['id']}/keys/{k['id']}")
        assert r.status_code == 200 and r.json() == {"revoked": True, "id": k["id"]}
        assert api.delete(f"/v1/workspaces/{ws['id']}/keys/{k['id']}").status_code == 404
    with client(server, k["key"]) as wapi:
        assert wapi.get("/v1/inboxes").status_code == 401
    with client(server, t["apiKey"]) as api:
        inbox = api.post("/v1/inboxes", json={"username": "inw", "workspaceId": ws["id"]}).json()
        r = api.delete(f"/v1/workspaces/{ws['id']}")
        assert r.status_code == 409, r.text  # still has an inbox
        assert api.delete(f"/v1/inboxes/{inbox['id']}").json() == {"deleted": True, "id": inbox["id"]}
        assert api.get(f"/v1/inboxes/{inbox['id']}").status_code == 404
        assert api.delete(f"/v1/workspaces/{ws['id']}").status_code == 200
        assert api.delete(f"/v1/workspaces/{t['defaultWorkspaceId']}").status_code == 403
    with server.api() as api:
        assert api.delete(f"/v1/tenants/{t['id']}").json() == {"deleted": True, "id": t["id"]}
        assert api.get(f"/v1/tenants/{t['id']}").status_code == 404
    with client(server, t["apiKey"]) as api:
        assert api.get("/v1/inboxes").status_code == 401


def test_cli_tenant_create(server: InProcessServer, tmp_path: object) -> None:
    # In-process (typer's runner) rather than a subprocess: the same command code, without paying
    # an interpreter start-up; `serve`'s own subprocess tests cover the entry point.
    from typer.testing import CliRunner

    from mailwright.cli import app

    out = CliRunner().invoke(app, ["tenant", "create", "cli-tenant", "--database-url", server.settings.database_url,
                                   "--data-dir", str(server.settings.data_dir)])
    assert out.exit_code == 0, out.output
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("tk_") and " " not in key
    with client(server, key) as api:
        r = api.post("/v1/inboxes", json={"username": "from-cli"})
        assert r.status_code == 201, r.text
    with server.api() as api:  # the CLI and the API share the rule: names are unique
        assert api.post("/v1/tenants", json={"name": "cli-tenant"}).status_code == 409


def test_admin_token_acts_as_platform(tmp_path: object, database_url: str) -> None:
    from pathlib import Path

    srv = InProcessServer(Path(str(tmp_path)) / "d2", database_url, admin_token="env-admin-token-123").start()
    try:
        with client(srv, "env-admin-token-123") as api:
            r = api.post("/v1/tenants", json={"name": "via-env"})
            assert r.status_code == 201 and r.json()["apiKey"].startswith("tk_")
    finally:
        srv.stop()


def _smtp_deliver(server: InProcessServer, rcpt: str, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as s:
        s.sendmail("sender@remote.test", [rcpt], msg.as_bytes())


def test_messages_attachments_threads_and_send(server: InProcessServer) -> None:
    t = make_tenant(server, "msgs")
    a = make_inbox(server, t["apiKey"], "alice")
    b = make_inbox(server, t["apiKey"], "bob")
    msg = EmailMessage()
    msg["From"] = "Remote <sender@remote.test>"
    msg["To"] = a["email"]
    msg["Subject"] = "Report attached"
    msg["Message-ID"] = "<report-1@remote.test>"
    msg.set_content("See the attachment.\n")
    pdf = b"%PDF-1.4 fake\x00\x01\x02" * 50
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="report.pdf")
    _smtp_deliver(server, a["email"], msg)

    with client(server, a["apiKey"]) as api:
        lst = api.get(f"/v1/inboxes/{a['id']}/messages").json()["messages"]
        assert len(lst) == 1
        m = lst[0]
        assert m["from"] == "sender@remote.test" and m["fromName"] == "Remote"
        assert m["to"] == [a["email"]] and m["subject"] == "Report attached"
        assert m["preview"].startswith("See the attachment") and m["messageId"] == "<report-1@remote.test>"
        assert m["threadId"] and m["receivedAt"].endswith("Z") and m["hasAttachments"] is True
        full = api.get(f"/v1/inboxes/{a['id']}/messages/{m['id']}").json()
        assert full["plainBody"].strip() == "See the attachment."
        r = api.get(f"/v1/inboxes/{a['id']}/messages/{m['id']}/attachments")
        assert r.status_code == 200
        atts = r.json()["attachments"]
        assert atts == [{"id": atts[0]["id"], "filename": "report.pdf", "contentType": "application/pdf",
                         "sizeBytes": len(pdf)}]
        dl = api.get(f"/v1/inboxes/{a['id']}/messages/{m['id']}/attachments/{atts[0]['id']}")
        assert dl.status_code == 200 and dl.content == pdf
        assert dl.headers["content-type"].startswith("application/pdf")
        assert api.get(f"/v1/inboxes/{a['id']}/messages/{m['id']}/attachments/99").status_code == 404
        assert api.get(f"/v1/inboxes/{a['id']}/messages/999999").status_code == 404
        assert api.get(f"/v1/inboxes/{a['id']}/messages/abc").status_code == 404
        raw = api.get(f"/v1/inboxes/{a['id']}/messages/{m['id']}/raw")
        assert raw.headers["content-type"].startswith("message/rfc822") and b"report.pdf" in raw.content

        # Reply by RFC Message-ID (inReplyTo), to a list of recipients, html + text.
        r = api.post(f"/v1/inboxes/{a['id']}/send", json={
            "to": ["sender@remote.test", b["email"]], "subject": "Report attached",
            "plainBody": "Thanks!", "htmlBody": "<p>Thanks!</p>", "replyTo": "replies@remote.test",
            "inReplyTo": "<report-1@remote.test>"})
        assert r.status_code == 200, r.text
        s = r.json()
        assert set(s) >= {"id", "threadId", "status", "messageId"}
        assert s["status"] == "queued"  # remote.test goes through the outbound queue
        assert s["threadId"] == m["threadId"]
        assert s["messageId"].startswith("<") and s["messageId"].endswith("@mx.test.local>")
        # (The queue's bounce for remote.test may join the thread a moment later: look at ours.)
        threads = api.get(f"/v1/inboxes/{a['id']}/threads").json()["threads"]
        assert len(threads) == 1 and threads[0]["id"] == m["threadId"] and threads[0]["messageCount"] >= 2
        th = api.get(f"/v1/inboxes/{a['id']}/threads/{m['threadId']}").json()
        assert [x["id"] for x in th["messages"]][:2] == [m["id"], s["id"]]
        assert th["messages"][1]["direction"] == "outbound"
        assert api.get(f"/v1/inboxes/{a['id']}/threads/nope").status_code == 404
        sent = api.get(f"/v1/inboxes/{a['id']}/messages/{s['id']}").json()
        assert sent["inReplyTo"] == "<report-1@remote.test>" and sent["subject"] == "Re: Report attached"
        assert sent["htmlBody"].strip() == "<p>Thanks!</p>"
        # Errors: no recipient, bad address, unknown parent, another tenant's inbox.
        assert api.post(f"/v1/inboxes/{a['id']}/send", json={"subject": "x"}).status_code == 400
        assert api.post(f"/v1/inboxes/{a['id']}/send", json={"to": "not an address"}).status_code == 400
        r = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": b["email"], "replyToMessageId": "424242"})
        assert r.status_code == 404
        assert api.post(f"/v1/inboxes/{b['id']}/send", json={"to": a["email"]}).status_code == 404
        # Read state and delete.
        r = api.patch(f"/v1/inboxes/{a['id']}/messages/{m['id']}", json={"read": True})
        assert r.status_code == 200 and r.json()["read"] is True
        assert api.patch(f"/v1/inboxes/{a['id']}/messages/{m['id']}", json={"read": "yes"}).status_code == 400
        assert api.delete(f"/v1/inboxes/{a['id']}/messages/{m['id']}").json() == {"deleted": True, "id": m["id"]}
        assert api.get(f"/v1/inboxes/{a['id']}/messages/{m['id']}").status_code == 404
        left = [x["id"] for x in api.get(f"/v1/inboxes/{a['id']}/messages").json()["messages"]]
        assert m["id"] not in left and s["id"] in left  # (a bounce from the queue may have arrived too)
    with client(server, b["apiKey"]) as api:
        got = api.get(f"/v1/inboxes/{b['id']}/messages").json()["messages"]
        assert [x["subject"] for x in got] == ["Re: Report attached"]


def test_send_limit_is_429_with_retry_after(server: InProcessServer) -> None:
    t = make_tenant(server, "limited")
    a = make_inbox(server, t["apiKey"], "sender")

    async def limit(svc: object) -> None:
        from mailwright.storage.models import Principal

        async with svc.db.write() as s:  # type: ignore[attr-defined]
            p = await s.get(Principal, a["id"])
            p.send_per_hour = 1
    server.run(limit)
    with client(server, a["apiKey"]) as api:
        assert api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "1"}).status_code == 200
        r = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "2"})
        assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED"
        assert int(r.headers["Retry-After"]) >= 1


def test_drafts(server: InProcessServer) -> None:
    t = make_tenant(server, "drafty")
    a = make_inbox(server, t["apiKey"], "writer")
    b = make_inbox(server, t["apiKey"], "reader")
    with client(server, b["apiKey"]) as api:
        first = api.post(f"/v1/inboxes/{b['id']}/send", json={"to": a["email"], "subject": "Question",
                                                              "plainBody": "Ready?"}).json()
    with client(server, a["apiKey"]) as api:
        parent = api.get(f"/v1/inboxes/{a['id']}/messages").json()["messages"][0]
        r = api.post(f"/v1/inboxes/{a['id']}/drafts", json={"to": b["email"], "plainBody": "Almost",
                                                            "replyToMessageId": parent["id"]})
        assert r.status_code == 201, r.text
        d = r.json()
        assert d["to"] == [b["email"]] and d["plainBody"] == "Almost" and d["replyToMessageId"] == parent["id"]
        assert d["subject"] == "Re: Question"
        r = api.patch(f"/v1/inboxes/{a['id']}/drafts/{d['id']}", json={"plainBody": "Yes, ready."})
        assert r.status_code == 200 and r.json()["id"] == d["id"] and r.json()["plainBody"] == "Yes, ready."
        assert [x["id"] for x in api.get(f"/v1/inboxes/{a['id']}/drafts").json()["drafts"]] == [d["id"]]
        assert api.get(f"/v1/inboxes/{a['id']}/drafts/{d['id']}").json()["to"] == [b["email"]]
        # The draft is visible to IMAP clients in Drafts (one version, not two).
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
        try:
            assert imap.login(a["canonicalEmail"], a["imapPassword"])[0] == "OK"
            typ, data = imap.select("Drafts", readonly=True)
            assert typ == "OK" and data[0] == b"1"
            typ, data = imap.fetch("1", "(FLAGS BODY.PEEK[TEXT])")
            assert b"\\Draft" in data[0][0] and b"Yes, ready." in data[0][1]  # type: ignore[index]
        finally:
            imap.logout()
        r = api.post(f"/v1/inboxes/{a['id']}/drafts/{d['id']}/send")
        assert r.status_code == 200, r.text
        s = r.json()
        assert s["status"] == "sent" and s["threadId"] == parent["threadId"] and s["draftId"] == d["id"]
        assert api.get(f"/v1/inboxes/{a['id']}/drafts").json()["drafts"] == []
        assert api.post(f"/v1/inboxes/{a['id']}/drafts/{d['id']}/send").status_code == 404
        # Delete.
        d2 = api.post(f"/v1/inboxes/{a['id']}/drafts", json={"subject": "scratch"}).json()
        assert api.post(f"/v1/inboxes/{a['id']}/drafts/{d2['id']}/send").status_code == 400  # no recipients
        assert api.delete(f"/v1/inboxes/{a['id']}/drafts/{d2['id']}").json() == {"deleted": True, "id": d2["id"]}
        assert api.get(f"/v1/inboxes/{a['id']}/drafts/{d2['id']}").status_code == 404
    with client(server, b["apiKey"]) as api:
        got = api.get(f"/v1/inboxes/{b['id']}/threads/{first['threadId']}").json()["messages"]
        assert [m["subject"] for m in got] == ["Question", "Re: Question"]
        full = api.get(f"/v1/inboxes/{b['id']}/messages/{got[1]['id']}").json()
        assert full["plainBody"].strip() == "Yes, ready." and full["inReplyTo"] == first["messageId"]


def test_idempotency_key(server: InProcessServer) -> None:
    t = make_tenant(server, "idem")
    with client(server, t["apiKey"]) as api:
        h = {"Idempotency-Key": "create-1"}
        r1 = api.post("/v1/inboxes", json={"username": "once"}, headers=h)
        r2 = api.post("/v1/inboxes", json={"username": "once"}, headers=h)
        assert r1.status_code == r2.status_code == 201
        assert r1.json() == r2.json()  # the first result, credentials included, replayed
        assert r2.headers.get("idempotent-replayed") == "true"
        r3 = api.post("/v1/inboxes", json={"username": "other"}, headers=h)
        assert r3.status_code == 422
        a = r1.json()

        # The stored first answer holds the password and ak_ key only encrypted.
        async def stored(svc: object) -> list[str]:
            from sqlalchemy import select

            from mailwright.storage.models import IdempotencyRecord

            async with svc.db.read() as s:  # type: ignore[attr-defined]
                return [str(b) for b in (await s.execute(select(IdempotencyRecord.body))).scalars()]
        bodies = server.run(stored)
        assert bodies and not any(a["imapPassword"] in b or a["apiKey"] in b for b in bodies)
        # Send: a retry does not send twice.
        hs = {"Idempotency-Key": "send-1"}
        s1 = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "x"}, headers=hs)
        s2 = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "x"}, headers=hs)
        assert s1.status_code == s2.status_code == 200 and s1.json() == s2.json()
        inbound = [m for m in api.get(f"/v1/inboxes/{a['id']}/messages").json()["messages"]
                   if m["direction"] == "inbound"]
        assert len(inbound) == 1
        # Every create honours it: workspaces, keys, webhooks, drafts, tenants.
        ws_id = t["defaultWorkspaceId"]
        for path, body in [("/v1/workspaces", {"name": "w"}), ("/v1/webhooks", {"url": "http://127.0.0.1:9/x"}),
                           (f"/v1/inboxes/{a['id']}/drafts", {"to": a["email"], "subject": "d"}),
                           (f"/v1/workspaces/{ws_id}/keys", {"name": "k"})]:
            x1 = api.post(path, json=body, headers={"Idempotency-Key": "k-" + path})
            x2 = api.post(path, json=body, headers={"Idempotency-Key": "k-" + path})
            assert x1.status_code == 201 and x1.json() == x2.json(), path
        assert len(api.get("/v1/webhooks").json()["webhooks"]) == 1
        assert len(api.get(f"/v1/workspaces/{ws_id}/keys").json()["keys"]) == 1
        # Draft send: the retry gets the first answer, not "draft not found".
        did = api.get(f"/v1/inboxes/{a['id']}/drafts").json()["drafts"][0]["id"]
        d1 = api.post(f"/v1/inboxes/{a['id']}/drafts/{did}/send", headers={"Idempotency-Key": "ds"})
        d2 = api.post(f"/v1/inboxes/{a['id']}/drafts/{did}/send", headers={"Idempotency-Key": "ds"})
        assert d1.status_code == d2.status_code == 200 and d1.json() == d2.json()
        # Another key with the same Idempotency-Key is a different request.
        other = make_tenant(server, "idem-2")
    with client(server, other["apiKey"]) as api:
        r = api.post("/v1/inboxes", json={"username": "once"}, headers={"Idempotency-Key": "create-1"})
        assert r.status_code == 201 and r.json()["username"] == "once1"
    with server.api() as api:
        x1 = api.post("/v1/tenants", json={"name": "idem-t"}, headers={"Idempotency-Key": "t"})
        x2 = api.post("/v1/tenants", json={"name": "idem-t"}, headers={"Idempotency-Key": "t"})
        assert x1.status_code == x2.status_code == 201 and x1.json() == x2.json()


def test_concurrent_creates_are_idempotent(server: InProcessServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    t = make_tenant(server, "racy")

    def create(_: int) -> tuple[int, str]:
        with client(server, t["apiKey"]) as api:
            r = api.post("/v1/inboxes", json={"username": "same"})
            return r.status_code, r.json()["id"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(create, range(6)))
    assert sorted(code for code, _ in results) == [200] * 5 + [201]
    assert len({i for _, i in results}) == 1


def test_paused_inbox_cannot_send_or_log_in(server: InProcessServer) -> None:
    t = make_tenant(server, "pausing")
    a = make_inbox(server, t["apiKey"], "sleepy")
    with client(server, t["apiKey"]) as api:
        r = api.patch(f"/v1/inboxes/{a['id']}", json={"status": "paused", "displayName": "Sleepy"})
        assert r.status_code == 200 and r.json()["status"] == "paused" and r.json()["displayName"] == "Sleepy"
        assert api.patch(f"/v1/inboxes/{a['id']}", json={"status": "gone"}).status_code == 400
    with client(server, a["apiKey"]) as api:
        r = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "x"})
        assert r.status_code == 403 and r.json()["code"] == "INBOX_PAUSED"
        assert api.patch(f"/v1/inboxes/{a['id']}", json={"status": "active"}).status_code == 403  # ak_ may not
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(a["canonicalEmail"], a["imapPassword"])
    finally:
        imap.logout()
    with client(server, t["apiKey"]) as api:
        assert api.patch(f"/v1/inboxes/{a['id']}", json={"status": "active"}).json()["status"] == "active"
    with client(server, a["apiKey"]) as api:
        r = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "x"})
        assert r.status_code == 200 and r.json()["status"] == "sent"


def test_send_over_the_size_limit(tmp_path: object, database_url: str) -> None:
    from pathlib import Path

    srv = InProcessServer(Path(str(tmp_path)) / "d3", database_url, max_message_size=20_000).start()
    try:
        t = make_tenant(srv, "sizes")
        a = make_inbox(srv, t["apiKey"], "a")
        with client(srv, a["apiKey"]) as api:
            r = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "x" * 30_000})
            assert r.status_code == 400 and "size limit" in r.json()["error"]
            r = api.post(f"/v1/inboxes/{a['id']}/send", json={"to": a["email"], "plainBody": "x" * 10_000})
            assert r.status_code == 200
    finally:
        srv.stop()
