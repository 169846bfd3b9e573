"""Client autoconfiguration (Thunderbird, Outlook) and the MTA-STS policy over real HTTP."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import httpx

from tests.support.management import add_domain, client, make_tenant
from tests.support.server import InProcessServer

OUTLOOK_REQUEST = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>Jane@Auto.test</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""
NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


def test_autoconfig_autodiscover_mta_sts(server: InProcessServer) -> None:
    _, key = make_tenant(server, "auto")
    with client(server, key) as api:
        add_domain(api, "auto.test")
    base = server.base_url
    r = httpx.get(base + "/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": "jane@auto.test"})
    assert r.status_code == 200 and "xml" in r.headers["content-type"]
    root = ET.fromstring(r.content)
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "auto.test"
    incoming = {(s.get("type"), s.findtext("port"), s.findtext("socketType"))
                for s in provider.findall("incomingServer")}
    assert ("imap", str(server.ports["imaps"]), "SSL") in incoming
    assert ("imap", str(server.ports["imap"]), "STARTTLS") in incoming
    assert ("pop3", str(server.ports["pop3s"]), "SSL") in incoming
    outgoing = {(s.findtext("port"), s.findtext("socketType")) for s in provider.findall("outgoingServer")}
    assert outgoing == {(str(server.ports["submissions"]), "SSL"), (str(server.ports["submission"]), "STARTTLS")}
    assert all(s.findtext("hostname") == "mx.test.local" for s in provider.iter() if s.tag.endswith("Server"))
    # Through the autoconfig.<domain> CNAME (Host header) without a query.
    r = httpx.get(base + "/mail/config-v1.1.xml", headers={"Host": "autoconfig.auto.test"})
    assert r.status_code == 200 and b'id="auto.test"' in r.content
    assert httpx.get(base + "/.well-known/autoconfig/mail/config-v1.1.xml",
                     params={"emailaddress": "x@not-hosted.test"}).status_code == 404
    assert httpx.get(base + "/.well-known/autoconfig/mail/config-v1.1.xml",
                     params={"emailaddress": "garbage"}).status_code == 404

    r = httpx.post(base + "/autodiscover/autodiscover.xml", content=OUTLOOK_REQUEST,
                   headers={"Content-Type": "text/xml"})
    assert r.status_code == 200
    account = ET.fromstring(r.content).find(f"{NS}Response/{NS}Account")
    assert account is not None
    protos = {(p.findtext(f"{NS}Type"), p.findtext(f"{NS}Port"), p.findtext(f"{NS}SSL"))
              for p in account.findall(f"{NS}Protocol")}
    assert ("IMAP", str(server.ports["imaps"]), "on") in protos
    assert ("SMTP", str(server.ports["submissions"]), "on") in protos
    assert {p.findtext(f"{NS}LoginName") for p in account.findall(f"{NS}Protocol")} == {"jane@auto.test"}
    r = httpx.get(base + "/Autodiscover/Autodiscover.xml", params={"emailaddress": "jane@auto.test"})
    assert r.status_code == 200 and b"<Type>IMAP</Type>" in r.content
    assert httpx.post(base + "/autodiscover/autodiscover.xml", content=b"<junk").status_code == 400
    evil = OUTLOOK_REQUEST.replace("Jane@Auto.test", "x@elsewhere.test")
    assert httpx.post(base + "/autodiscover/autodiscover.xml", content=evil).status_code == 404

    r = httpx.get(base + "/.well-known/mta-sts.txt")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = r.text.split("\r\n")
    assert lines[:4] == ["version: STSv1", "mode: testing", "mx: mx.test.local", "max_age: 86400"]


def test_mta_sts_mode_is_a_setting(tmp_path: Path, database_url: str) -> None:
    srv = InProcessServer(tmp_path / "data", database_url, mta_sts_mode="enforce").start()
    try:
        assert "mode: enforce\r\n" in httpx.get(srv.base_url + "/.well-known/mta-sts.txt").text
    finally:
        srv.stop()
