"""Client autoconfiguration and MTA-STS, served on the HTTP listener without authentication.

* `/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=` (Thunderbird, also reached as
  `autoconfig.<domain>/mail/config-v1.1.xml` through the CNAME `dnsrecords` publishes);
* `/autodiscover/autodiscover.xml` (Outlook "POX": POST with the request XML naming
  `EMailAddress`, or GET with `?emailaddress=`; `/Autodiscover/Autodiscover.xml` too);
* `/.well-known/mta-sts.txt` (RFC 8461; mode from the `mta_sts_mode` setting, `testing` by
  default so a misconfigured certificate never bounces mail).

Endpoints advertised are this server's hostname with the configured ports (implicit TLS first,
then STARTTLS; a listener with port 0 is left out). Only domains hosted here get an answer
(404 otherwise): a hostile page must not make a client configure our server for someone
else's domain. Request XML is not parsed with an XML parser: the one element needed is
extracted with a bounded regular expression (no entity expansion, no external entities).
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from mailwright.api.auth import services
from mailwright.config import Settings
from mailwright.directory import domains
from mailwright.directory.errors import Invalid
from mailwright.directory.names import normalize_address, normalize_domain
from mailwright.dnsrecords import mta_sts_policy

router = APIRouter(tags=["client autoconfiguration"])

_EMAIL_RE = re.compile(rb"<(?:\w+:)?EMailAddress>\s*([^<\s]{1,320})\s*</(?:\w+:)?EMailAddress>", re.IGNORECASE)
_XML = "application/xml; charset=utf-8"


async def _hosted(request: Request, domain: str) -> bool:
    async with services(request).db.read() as s:
        return await domains.find_domain(s, domain) is not None


def _domain_of(request: Request, email: str | None) -> tuple[str | None, str | None]:
    """(address, domain) from the address given, else from the Host (autoconfig.<domain>)."""
    if email:
        try:
            addr = normalize_address(email)
        except Invalid:
            return None, None
        return addr, addr.rpartition("@")[2]
    host = (request.headers.get("host") or "").split(":")[0].lower()
    for prefix in ("autoconfig.", "autodiscover."):
        if host.startswith(prefix):
            try:
                return None, normalize_domain(host[len(prefix):])
            except Invalid:
                return None, None
    return None, None


def _thunderbird(settings: Settings, domain: str) -> str:
    host = escape(settings.hostname)
    servers = []
    for kind, port, sock in (("imap", settings.imaps_port, "SSL"), ("imap", settings.imap_port, "STARTTLS"),
                             ("pop3", settings.pop3s_port, "SSL"), ("pop3", settings.pop3_port, "STARTTLS")):
        if port:
            servers.append(f"""    <incomingServer type="{kind}">
      <hostname>{host}</hostname>
      <port>{port}</port>
      <socketType>{sock}</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>""")
    for port, sock in ((settings.submissions_port, "SSL"), (settings.submission_port, "STARTTLS")):
        if port:
            servers.append(f"""    <outgoingServer type="smtp">
      <hostname>{host}</hostname>
      <port>{port}</port>
      <socketType>{sock}</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>""")
    d = escape(domain)
    body = "\n".join(servers)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{d}">
    <domain>{d}</domain>
    <displayName>{d}</displayName>
    <displayShortName>{d}</displayShortName>
{body}
  </emailProvider>
</clientConfig>
"""


@router.get("/.well-known/autoconfig/mail/config-v1.1.xml", summary="Thunderbird autoconfig")
@router.get("/mail/config-v1.1.xml", include_in_schema=False)
async def autoconfig(request: Request) -> Response:
    _, domain = _domain_of(request, request.query_params.get("emailaddress"))
    if domain is None or not await _hosted(request, domain):
        return PlainTextResponse("unknown domain\n", status_code=404)
    return Response(_thunderbird(services(request).settings, domain), media_type=_XML)


def _outlook(settings: Settings, address: str) -> str:
    host = escape(settings.hostname)
    a = escape(address)
    protocols = []
    for kind, port, ssl in (("IMAP", settings.imaps_port, "on"), ("IMAP", settings.imap_port, "off"),
                            ("POP3", settings.pop3s_port, "on"),
                            ("SMTP", settings.submissions_port, "on"), ("SMTP", settings.submission_port, "off")):
        if not port:
            continue
        enc = "" if ssl == "on" else "\n        <Encryption>TLS</Encryption>"
        protocols.append(f"""      <Protocol>
        <Type>{kind}</Type>
        <Server>{host}</Server>
        <Port>{port}</Port>
        <LoginName>{a}</LoginName>
        <DomainRequired>off</DomainRequired>
        <SPA>off</SPA>
        <SSL>{ssl}</SSL>{enc}
        <AuthRequired>on</AuthRequired>
      </Protocol>""")
    body = "\n".join(protocols)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <User>
      <DisplayName>{a}</DisplayName>
    </User>
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
{body}
    </Account>
  </Response>
</Autodiscover>
"""


@router.post("/autodiscover/autodiscover.xml", summary="Outlook autodiscover (POX)")
@router.get("/autodiscover/autodiscover.xml", summary="Outlook autodiscover (?emailaddress=)")
@router.post("/Autodiscover/Autodiscover.xml", include_in_schema=False)
@router.get("/Autodiscover/Autodiscover.xml", include_in_schema=False)
async def autodiscover(request: Request) -> Response:
    email = request.query_params.get("emailaddress")
    if request.method == "POST":
        raw = await request.body()
        m = _EMAIL_RE.search(raw[:65536])
        if m is None:
            return PlainTextResponse("the request names no EMailAddress\n", status_code=400)
        email = m.group(1).decode("utf-8", "replace")
    if not email:
        return PlainTextResponse("emailaddress is required\n", status_code=400)
    addr, domain = _domain_of(request, email)
    if addr is None or domain is None:
        return PlainTextResponse("invalid email address\n", status_code=400)
    if not await _hosted(request, domain):
        return PlainTextResponse("unknown domain\n", status_code=404)
    return Response(_outlook(services(request).settings, addr), media_type=_XML)


@router.get("/.well-known/mta-sts.txt", summary="MTA-STS policy (RFC 8461)")
async def mta_sts(request: Request) -> Response:
    return PlainTextResponse(mta_sts_policy(services(request).settings))
