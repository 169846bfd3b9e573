"""mailwright.mailauth against a real authoritative DNS server (NSD, tests/support/dnsserver.py).

Nothing here touches the internet: every lookup goes to 127.0.0.1. The addresses 192.0.2.x
used as "other" SMTP clients are only matched against SPF ip4: ranges, never contacted.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Iterator

import dkim as dkimpy
import dns.message
import dns.query
import dns.rdatatype
import pytest
from authres import FeatureContext
from authres import dmarc as authres_dmarc

from mailwright.mailauth import (
    AuthResult,
    DkimKey,
    Resolver,
    check_inbound,
    dkim_sign,
    generate_dkim_key,
    organizational_domain,
    parse_dmarc_record,
    strip_forged_results,
    verify_dkim,
)
from mailwright.mailauth.dmarc import DmarcRecordError, evaluate_dmarc, from_domains
from mailwright.mailauth.spf import check_spf
from tests.support.dnsserver import DnsServer, dns_server, free_port, txt_strings

__all__ = ["dns_server"]  # the factory fixture, re-exported so tests in this module can use it

DnsFactory = Callable[..., DnsServer]

ED_PRIV, ED_TXT = generate_dkim_key("ed25519-sha256")
RSA_PRIV, RSA_TXT = generate_dkim_key("rsa-sha256")
OTHER_PRIV, _OTHER_TXT = generate_dkim_key("ed25519-sha256")  # never published

ZONES: dict[str, list[tuple[str, str, str]]] = {
    # p=reject domain, signs with both algorithms
    "a.test": [
        ("@", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
        ("@", "MX", "10 mx.a.test."),
        ("mx", "A", "127.0.0.1"),
        ("_dmarc", "TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@a.test"),
        ("ed._domainkey", "TXT", ED_TXT),
        ("rsa._domainkey", "TXT", RSA_TXT),
        ("bounce", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ],
    # p=quarantine domain with a softfail SPF record
    "q.test": [
        ("@", "TXT", "v=spf1 ip4:127.0.0.1 ~all"),
        ("_dmarc", "TXT", "v=DMARC1; p=quarantine"),
        ("ed._domainkey", "TXT", ED_TXT),
    ],
    # no SPF, no DMARC, but a DKIM key
    "plain.test": [
        ("www", "A", "127.0.0.1"),
        ("ed._domainkey", "TXT", ED_TXT),
    ],
    "neutral.test": [("@", "TXT", "v=spf1 ip4:127.0.0.1 ?all")],
    "broken.test": [
        ("@", "TXT", "v=spf1 ip4:127.0.0.1 frobnicate -all"),
        ("_dmarc", "TXT", "v=DMARC1; p=bogus"),
    ],
    # strict alignment; organizational-domain policy with sp= for subdomains
    "strict.test": [
        ("_dmarc", "TXT", "v=DMARC1; p=reject; adkim=s; aspf=s"),
        ("bounce", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
        ("ed._domainkey", "TXT", ED_TXT),
    ],
    "org.test": [
        ("_dmarc", "TXT", "v=DMARC1; p=reject; sp=quarantine"),
        ("mail", "TXT", "v=spf1 -all"),
        ("own", "TXT", "v=spf1 -all"),
        ("_dmarc.own", "TXT", "v=DMARC1; p=none"),
    ],
    "helo.test": [("mx", "TXT", "v=spf1 ip4:127.0.0.1 -all"), ("mx", "A", "127.0.0.1")],
}


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer(ZONES) as srv:
        yield srv


@pytest.fixture(scope="module")
def resolver(server: DnsServer) -> Resolver:
    return Resolver([server.host], port=server.port, timeout=2.0)


def make_message(
    from_addr: str = "Alice <alice@a.test>",
    body: str = "Hello Bob,\r\n\r\nlunch at noon?\r\n",
    subject: str = "Lunch",
    extra: str = "",
) -> bytes:
    return (
        f"From: {from_addr}\r\n"
        "To: Bob <bob@b.test>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Sat, 21 Nov 2026 12:00:00 +0000\r\n"
        "Message-ID: <m1@a.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"{extra}"
        "\r\n"
        f"{body}"
    ).encode()


def ed_key(domain: str = "a.test", selector: str = "ed") -> DkimKey:
    return DkimKey(domain, selector, "ed25519-sha256", ED_PRIV)


def rsa_key(domain: str = "a.test") -> DkimKey:
    return DkimKey(domain, "rsa", "rsa-sha256", RSA_PRIV)


def inbound(
    message: bytes,
    resolver: Resolver,
    *,
    client_ip: str = "127.0.0.1",
    mail_from: str = "alice@a.test",
    helo: str = "mx.a.test",
    rng: random.Random | None = None,
) -> AuthResult:
    return asyncio.run(
        check_inbound(
            message,
            client_ip=client_ip,
            helo=helo,
            mail_from=mail_from,
            authserv_id="mx.mailwright.test",
            resolver=resolver,
            rng=rng,
        )
    )


def parse_header(header: str) -> object:
    unfolded = re.sub(r"\r\n[ \t]+", " ", header)
    return FeatureContext(authres_dmarc).parse(unfolded)


# -- the DNS server itself ------------------------------------------------------------------------


def test_long_txt_is_split_into_255_byte_strings(server: DnsServer) -> None:
    assert len(RSA_TXT) > 255
    q = dns.message.make_query("rsa._domainkey.a.test.", dns.rdatatype.TXT)
    r = dns.query.tcp(q, server.host, port=server.port, timeout=2)
    (rrset,) = r.answer
    strings = rrset[0].strings
    assert len(strings) == 2
    assert all(len(s) <= 255 for s in strings)
    assert b"".join(strings).decode() == RSA_TXT


def test_txt_strings_escaping() -> None:
    assert txt_strings('a"b\\c') == '"a\\"b\\\\c"'
    assert txt_strings("x" * 256) == '"' + "x" * 255 + '" "x"'


def test_set_records_reloads_and_adds_zones(dns_server: DnsFactory) -> None:
    srv = dns_server({"c.test": [("@", "TXT", "one")]})
    res = srv.resolver()
    assert res.txt_sync("c.test") == [b"one"]
    srv.set_records("c.test", [("@", "TXT", "two"), ("www", "A", "127.0.0.2")])
    assert res.txt_sync("c.test") == [b"two"]
    assert [r.to_text() for r in res.query_sync("www.c.test", "A")] == ["127.0.0.2"]
    srv.set_records("d.test", [("@", "TXT", "new zone")])
    assert res.txt_sync("d.test") == [b"new zone"]
    assert res.txt_sync("c.test") == [b"two"]
    assert res.txt_sync("nothing.c.test") == []


# -- keys and signing -----------------------------------------------------------------------------


def test_generated_key_formats() -> None:
    assert ED_TXT.startswith("v=DKIM1; k=ed25519; p=")
    assert len(ED_PRIV) == 44  # base64 of the 32-byte seed, as dkimpy wants it
    assert RSA_TXT.startswith("v=DKIM1; k=rsa; p=")
    assert RSA_PRIV.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    with pytest.raises(ValueError):
        generate_dkim_key("dsa")
    with pytest.raises(ValueError):
        Resolver([], port=53)


def test_sign_and_verify_ed25519_and_rsa(resolver: Resolver) -> None:
    signed = dkim_sign(make_message(), [ed_key(), rsa_key()])
    assert signed.count(b"DKIM-Signature:") == 2
    assert signed.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=a.test;")
    sig = dkimpy.util.parse_tag_value(signed.split(b"\r\nDKIM-Signature:")[0].split(b":", 1)[1])
    signed_headers = [h.strip() for h in sig[b"h"].split(b":")]
    assert signed_headers.count(b"from") == 2  # From is oversigned
    assert b"cc" not in signed_headers  # absent fields are not signed
    results = asyncio.run(verify_dkim(signed, resolver))
    assert [(r.result, r.domain, r.selector, r.algorithm) for r in results] == [
        ("pass", "a.test", "ed", "ed25519-sha256"),
        ("pass", "a.test", "rsa", "rsa-sha256"),
    ]


def test_lf_only_message_keeps_its_line_endings(resolver: Resolver) -> None:
    msg = make_message().replace(b"\r\n", b"\n")
    signed = dkim_sign(msg, [ed_key()])
    assert b"\r" not in signed
    assert [r.result for r in asyncio.run(verify_dkim(signed, resolver))] == ["pass"]


def test_dkimpy_verifies_our_ed25519_dns_value() -> None:
    """dkimpy's own verify, fed the TXT value we publish, accepts our signature."""
    signed = dkim_sign(make_message(), [ed_key()])

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        assert name == b"ed._domainkey.a.test."
        return ED_TXT.encode()

    assert dkimpy.verify(signed, dnsfunc=dnsfunc)


def test_dkimpy_verifies_through_resolver_dnsfunc(resolver: Resolver) -> None:
    signed = dkim_sign(make_message(), [rsa_key()])
    assert dkimpy.verify(signed, dnsfunc=resolver.dkim_dnsfunc())


def test_ed25519_pem_private_key_accepted(resolver: Resolver) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    seed = __import__("base64").b64decode(ED_PRIV)
    pem = ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signed = dkim_sign(make_message(), [DkimKey("a.test", "ed", "ed25519-sha256", pem)])
    assert [r.result for r in asyncio.run(verify_dkim(signed, resolver))] == ["pass"]


def test_tampered_body_and_header_fail(resolver: Resolver) -> None:
    signed = dkim_sign(make_message(), [ed_key(), rsa_key()])
    body_changed = signed.replace(b"lunch at noon?", b"lunch at one?")
    assert [r.result for r in asyncio.run(verify_dkim(body_changed, resolver))] == ["fail", "fail"]
    subject_changed = signed.replace(b"Subject: Lunch", b"Subject: Dinner")
    assert [r.result for r in asyncio.run(verify_dkim(subject_changed, resolver))] == ["fail", "fail"]
    second_from = b"From: mallory@evil.test\r\n" + signed
    assert {r.result for r in asyncio.run(verify_dkim(second_from, resolver))} == {"fail"}


def test_unpublished_key_and_garbage_signature(resolver: Resolver) -> None:
    signed = dkim_sign(make_message(), [DkimKey("a.test", "missing", "ed25519-sha256", OTHER_PRIV)])
    (res,) = asyncio.run(verify_dkim(signed, resolver))
    assert (res.result, res.selector) == ("permerror", "missing")
    garbage = b"DKIM-Signature: this is not a tag list\r\n" + make_message()
    (res,) = asyncio.run(verify_dkim(garbage, resolver))
    assert res.result == "permerror"
    assert asyncio.run(verify_dkim(make_message(), resolver)) == []


def test_wrong_key_in_dns_fails(resolver: Resolver) -> None:
    signed = dkim_sign(make_message(), [DkimKey("a.test", "ed", "ed25519-sha256", OTHER_PRIV)])
    assert [r.result for r in asyncio.run(verify_dkim(signed, resolver))] == ["fail"]


def test_sign_requires_from() -> None:
    with pytest.raises(ValueError):
        dkim_sign(b"To: x@y.test\r\n\r\nbody\r\n", [ed_key()])


# -- SPF ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_ip", "mail_from", "helo", "expected", "domain"),
    [
        ("127.0.0.1", "alice@a.test", "mx.a.test", "pass", "a.test"),
        ("192.0.2.1", "alice@a.test", "mx.a.test", "fail", "a.test"),
        ("::ffff:127.0.0.1", "<alice@a.test>", "mx.a.test", "pass", "a.test"),
        ("192.0.2.1", "alice@q.test", "mx.q.test", "softfail", "q.test"),
        ("127.0.0.1", "alice@q.test", "mx.q.test", "pass", "q.test"),
        ("192.0.2.1", "alice@neutral.test", "x.test", "neutral", "neutral.test"),
        ("127.0.0.1", "alice@plain.test", "x.test", "none", "plain.test"),
        ("127.0.0.1", "alice@nxdomain.a.test", "x.test", "none", "nxdomain.a.test"),
        # a name no server is authoritative for is answered REFUSED: that is temporary
        ("127.0.0.1", "alice@unserved.example", "x.test", "temperror", "unserved.example"),
        ("127.0.0.1", "alice@broken.test", "x.test", "permerror", "broken.test"),
        # null sender: the HELO identity is checked
        ("127.0.0.1", "", "mx.helo.test", "pass", "mx.helo.test"),
        ("192.0.2.1", "<>", "mx.helo.test", "fail", "mx.helo.test"),
        ("127.0.0.1", "", "[127.0.0.1]", "none", "[127.0.0.1]"),
    ],
)
def test_spf(resolver: Resolver, client_ip: str, mail_from: str, helo: str, expected: str, domain: str) -> None:
    res = asyncio.run(check_spf(client_ip=client_ip, helo=helo, mail_from=mail_from, resolver=resolver))
    assert (res.result, res.domain) == (expected, domain)
    assert res.identity == ("mailfrom" if mail_from.strip("<>") else "helo")


def test_spf_concurrent_checks_use_their_own_resolvers(dns_server: DnsFactory) -> None:
    one = dns_server({"x.test": [("@", "TXT", "v=spf1 ip4:127.0.0.1 -all")]})
    two = dns_server({"x.test": [("@", "TXT", "v=spf1 -all")]})
    r1 = Resolver([one.host], port=one.port, timeout=2)
    r2 = Resolver([two.host], port=two.port, timeout=2)

    async def both() -> list[str]:
        checks = [
            check_spf(client_ip="127.0.0.1", helo="h.test", mail_from="a@x.test", resolver=r) for r in [r1, r2] * 10
        ]
        return [res.result for res in await asyncio.gather(*checks)]

    assert asyncio.run(both()) == ["pass", "fail"] * 10


# -- DMARC and the full verdict -------------------------------------------------------------------


def test_inbound_all_pass(resolver: Resolver) -> None:
    signed = dkim_sign(make_message(), [ed_key(), rsa_key()])
    res = inbound(signed, resolver)
    assert res.spf == "pass" and res.spf_domain == "a.test"
    assert res.dkim == [("pass", "a.test", "ed"), ("pass", "a.test", "rsa")]
    assert (res.dmarc, res.dmarc_policy, res.dmarc_domain, res.action) == ("pass", "reject", "a.test", "accept")
    assert res.header.startswith("Authentication-Results: mx.mailwright.test;\r\n\tspf=pass smtp.mailfrom=a.test;")
    parsed = parse_header(res.header)
    methods = [(r.method, r.result) for r in parsed.results]  # type: ignore[attr-defined]
    assert methods == [("spf", "pass"), ("dkim", "pass"), ("dkim", "pass"), ("dmarc", "pass")]
    assert "dkim=pass header.d=a.test header.a=ed25519-sha256 header.s=ed header.b=" in res.header
    assert "dmarc=pass (p=reject dis=none) header.from=a.test" in res.header


def test_dmarc_pass_by_aligned_dkim_despite_spf_fail(resolver: Resolver) -> None:
    signed = dkim_sign(make_message(), [ed_key()])
    res = inbound(signed, resolver, client_ip="192.0.2.7")
    assert res.spf == "fail"
    assert (res.dmarc, res.action) == ("pass", "accept")


def test_dmarc_pass_by_relaxed_spf_alignment(resolver: Resolver) -> None:
    res = inbound(make_message(), resolver, mail_from="bounce+123@bounce.a.test")
    assert (res.spf, res.spf_domain) == ("pass", "bounce.a.test")
    assert res.dkim == []
    assert "dkim=none" in res.header
    assert (res.dmarc, res.action) == ("pass", "accept")


def test_dmarc_fail_reject(resolver: Resolver) -> None:
    forged = dkim_sign(make_message(), [DkimKey("plain.test", "ed", "ed25519-sha256", ED_PRIV)])
    res = inbound(forged, resolver, client_ip="192.0.2.7")
    assert res.dkim == [("pass", "plain.test", "ed")]  # valid, but not aligned with a.test
    assert (res.spf, res.dmarc, res.dmarc_policy, res.action) == ("fail", "fail", "reject", "reject")
    assert "dmarc=fail (p=reject dis=reject) header.from=a.test" in res.header


def test_dmarc_fail_quarantine(resolver: Resolver) -> None:
    msg = make_message(from_addr="carol@q.test")
    tampered = dkim_sign(msg, [ed_key("q.test")]).replace(b"noon", b"one")
    res = inbound(tampered, resolver, client_ip="192.0.2.7", mail_from="carol@q.test")
    assert res.spf == "softfail"
    assert res.dkim == [("fail", "q.test", "ed")]
    assert (res.dmarc, res.dmarc_policy, res.action) == ("fail", "quarantine", "quarantine")


def test_no_dmarc_record(resolver: Resolver) -> None:
    msg = make_message(from_addr="dave@plain.test")
    res = inbound(msg, resolver, client_ip="192.0.2.7", mail_from="dave@plain.test")
    assert (res.spf, res.dmarc, res.dmarc_policy, res.action) == ("none", "none", None, "accept")
    assert "dmarc=none header.from=plain.test" in res.header


def test_dmarc_invalid_record_is_permerror(resolver: Resolver) -> None:
    msg = make_message(from_addr="eve@broken.test")
    res = inbound(msg, resolver, mail_from="eve@broken.test")
    assert (res.spf, res.dmarc, res.action) == ("permerror", "permerror", "accept")
    parse_header(res.header)


def test_dmarc_strict_alignment(resolver: Resolver) -> None:
    msg = make_message(from_addr="s@strict.test")
    # SPF passes for bounce.strict.test, but aspf=s needs the exact From domain.
    res = inbound(msg, resolver, mail_from="b@bounce.strict.test")
    assert res.spf == "pass"
    assert (res.dmarc, res.action) == ("fail", "reject")
    # A DKIM signature by the exact domain aligns.
    res = inbound(dkim_sign(msg, [ed_key("strict.test")]), resolver, mail_from="b@bounce.strict.test")
    assert (res.dmarc, res.action) == ("pass", "accept")


def test_dmarc_organizational_domain_and_sp(resolver: Resolver) -> None:
    msg = make_message(from_addr="x@mail.org.test")
    res = inbound(msg, resolver, mail_from="x@mail.org.test")
    assert res.spf == "fail"
    assert (res.dmarc, res.dmarc_policy, res.action) == ("fail", "quarantine", "quarantine")
    # a subdomain with its own record uses that record's p
    msg = make_message(from_addr="x@own.org.test")
    res = inbound(msg, resolver, mail_from="x@own.org.test")
    assert (res.dmarc, res.dmarc_policy, res.action) == ("fail", "none", "accept")


def test_null_sender_uses_helo_for_spf_and_alignment(resolver: Resolver) -> None:
    msg = make_message(from_addr="MAILER-DAEMON@helo.test")
    res = inbound(msg, resolver, mail_from="", helo="mx.helo.test")
    assert (res.spf, res.spf_domain) == ("pass", "mx.helo.test")
    assert "spf=pass smtp.helo=mx.helo.test" in res.header
    assert res.dmarc == "none"


def test_multiple_from_domains_is_permerror(resolver: Resolver) -> None:
    msg = make_message(from_addr="a@a.test, b@plain.test")
    res = inbound(msg, resolver)
    assert (res.dmarc, res.action) == ("permerror", "accept")


def test_dmarc_changes_mid_test(dns_server: DnsFactory) -> None:
    srv = dns_server({"m.test": [("@", "TXT", "v=spf1 -all"), ("_dmarc", "TXT", "v=DMARC1; p=none")]})
    res_ = Resolver([srv.host], port=srv.port, timeout=2)
    msg = make_message(from_addr="m@m.test")
    assert inbound(msg, res_, mail_from="m@m.test").action == "accept"
    srv.set_records("m.test", [("@", "TXT", "v=spf1 -all"), ("_dmarc", "TXT", "v=DMARC1; p=reject")])
    assert inbound(msg, res_, mail_from="m@m.test").action == "reject"


def test_dns_timeout_is_temperror_not_exception() -> None:
    dead = Resolver(["127.0.0.1"], port=free_port(), timeout=0.5)
    signed = dkim_sign(make_message(), [ed_key()])
    res = inbound(signed, dead)
    assert res.spf == "temperror"
    assert res.dkim == [("temperror", "a.test", "ed")]
    assert (res.dmarc, res.dmarc_policy, res.action) == ("temperror", None, "accept")
    parsed = parse_header(res.header)
    assert [r.result for r in parsed.results] == ["temperror"] * 3  # type: ignore[attr-defined]


def test_pct_sampling() -> None:
    rec = parse_dmarc_record("v=DMARC1; p=reject; pct=50")

    def action(sample: float) -> str:
        return evaluate_dmarc(
            from_domain="a.test",
            record=rec,
            record_domain="a.test",
            spf_result="fail",
            spf_domain="a.test",
            dkim_results=[],
            sample=sample,
        ).action

    assert action(0.1) == "reject"
    assert action(0.7) == "quarantine"


def test_parse_dmarc_record() -> None:
    rec = parse_dmarc_record("v=DMARC1;p=Quarantine; sp=reject; adkim=s; pct=20; fo=1")
    assert (rec.p, rec.sp, rec.adkim, rec.aspf, rec.pct) == ("quarantine", "reject", "s", "r", 20)
    assert parse_dmarc_record("v=DMARC1; rua=mailto:x@a.test").p == "none"
    for bad in ("v=DMARC2; p=none", "p=none; v=DMARC1", "v=DMARC1; p=maybe", "v=DMARC1; adkim=x; p=none"):
        with pytest.raises(DmarcRecordError):
            parse_dmarc_record(bad)


def test_organizational_domain() -> None:
    assert organizational_domain("mail.a.test") == "a.test"
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("Sub.Example.COM.") == "example.com"
    assert organizational_domain("com") == "com"


def test_from_domains_unfolds_and_dedups() -> None:
    msg = b'From: "A, B" <a@X.test>,\r\n\tc@x.test\r\nSubject: s\r\n\r\nFrom: body@y.test\r\n'
    assert from_domains(msg) == ["x.test"]


def test_prepend_and_strip_forged(resolver: Resolver) -> None:
    forged_ar = "Authentication-Results: mx.mailwright.test;\r\n\tdkim=pass header.d=a.test\r\n"
    other_ar = "Authentication-Results: other.example; spf=pass smtp.mailfrom=a.test\r\n"
    msg = make_message(extra=forged_ar + other_ar, from_addr="dave@plain.test")
    cleaned = strip_forged_results(msg, "MX.mailwright.test")
    assert b"dkim=pass header.d=a.test" not in cleaned
    assert other_ar.encode() in cleaned
    assert cleaned.endswith(b"\r\n\r\nHello Bob,\r\n\r\nlunch at noon?\r\n")
    res = inbound(cleaned, resolver, mail_from="dave@plain.test", client_ip="192.0.2.9")
    out = res.prepend_to(cleaned)
    assert out.startswith(b"Authentication-Results: mx.mailwright.test;\r\n\tspf=none")
    assert out.endswith(cleaned)
