"""Acceptance: the agent flow end to end, on SQLite and PostgreSQL.

workspace key -> inboxes A and B -> SMTP AUTH on submission with A's returned credentials ->
A sends to B through the API -> B's webhook (a real HTTP server) gets a signed
message.received -> B replies through the API -> A sees the reply in the same thread over the
API and over IMAP.
"""

from __future__ import annotations

import email
import imaplib
import smtplib
import ssl

from mailwright.events.webhooks import verify_signature
from tests.support.agent import client, make_tenant, wait_for, webhook_receiver
from tests.support.server import InProcessServer


def test_agent_flow_end_to_end(server: InProcessServer) -> None:
    t = make_tenant(server, "agents-inc")
    with client(server, t["apiKey"]) as api:
        ws = api.post("/v1/workspaces", json={"name": "support-bots"}).json()
        r = api.post(f"/v1/workspaces/{ws['id']}/keys", json={"name": "bot runner"})
        assert r.status_code == 201
        wk = r.json()["key"]

    with client(server, wk) as api:
        a = api.post("/v1/inboxes", json={"username": "agent-a", "displayName": "Agent A"}).json()
        b = api.post("/v1/inboxes", json={"username": "agent-b"}).json()
    assert a["workspaceId"] == b["workspaceId"] == ws["id"]

    # SMTP login (submission, STARTTLS) with A's returned credentials.
    smtp_conf = a["smtp"]
    assert smtp_conf["port"] == server.ports["submission"] and smtp_conf["starttls"] is True
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", smtp_conf["port"], timeout=30) as s:
        s.ehlo("agent.test")
        s.starttls(context=ctx)
        s.ehlo("agent.test")
        code, _ = s.login(smtp_conf["username"], smtp_conf["password"])
        assert code == 235

    with webhook_receiver() as rec:
        with client(server, wk) as api:
            hook = api.post("/v1/webhooks", json={"url": rec.url, "events": ["message.received"]}).json()
        # A -> B through the API.
        with client(server, a["apiKey"]) as api:
            r = api.post(f"/v1/inboxes/{a['id']}/send", json={
                "to": b["email"], "subject": "Can you take ticket 42?", "plainBody": "Details inside."})
            assert r.status_code == 200, r.text
            sent = r.json()
        assert sent["status"] == "sent"
        received = wait_for(lambda: [x for x in rec.received if x.json["data"]["inboxId"] == b["id"]])
        ev = received[0]
        assert verify_signature(hook["secret"], ev.headers["x-mailwright-signature"], ev.body)
        assert ev.json["type"] == "message.received" and ev.json["data"]["rfcMessageId"] == sent["messageId"]

    # B replies through the API, to the message the webhook named.
    with client(server, b["apiKey"]) as api:
        r = api.post(f"/v1/inboxes/{b['id']}/send", json={
            "to": a["email"], "plainBody": "On it.", "replyToMessageId": ev.json["data"]["messageId"]})
        assert r.status_code == 200, r.text
        reply = r.json()

    # A sees the reply in the same thread over the API...
    with client(server, a["apiKey"]) as api:
        thread = api.get(f"/v1/inboxes/{a['id']}/threads/{sent['threadId']}").json()
        assert [m["subject"] for m in thread["messages"]] == ["Can you take ticket 42?",
                                                              "Re: Can you take ticket 42?"]
        assert thread["messages"][1]["messageId"] == reply["messageId"]
        assert thread["messages"][1]["inReplyTo"] == sent["messageId"]

    # ... and over IMAP, with the threading headers a mail client uses.
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    try:
        assert imap.login(a["imap"]["username"], a["imapPassword"])[0] == "OK"
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data[0] == b"1"
        typ, data = imap.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK"
        msg = email.message_from_bytes(data[0][1])  # type: ignore[index]
        assert msg["Message-ID"] == reply["messageId"]
        assert msg["In-Reply-To"] == sent["messageId"]
        assert sent["messageId"] in msg["References"]
        assert msg["Subject"] == "Re: Can you take ticket 42?"
        typ, data = imap.select("Sent")
        assert typ == "OK" and data[0] == b"1"
    finally:
        imap.logout()
