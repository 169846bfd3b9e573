"""DKIM keys and DNS records through the API; signatures verify against the records it returns."""

from __future__ import annotations

import dkim
import dns.zone

from mailwright.directory import dkim as dkim_store
from mailwright.mailauth.dkim import DkimKey, dkim_sign
from mailwright.services import Services
from tests.support.management import add_domain, client, make_tenant
from tests.support.server import InProcessServer

MESSAGE = (b"From: Info <info@signed.test>\r\nTo: someone@remote.test\r\nSubject: signed\r\n"
           b"Date: Sat, 21 Nov 2026 12:00:00 +0000\r\nMessage-ID: <dkim-1@signed.test>\r\n\r\nSigned body.\r\n")


def signing_keys(srv: InProcessServer, domain: str) -> list[DkimKey]:
    async def go(svc: Services) -> list[DkimKey]:
        async with svc.db.read() as s:
            return await dkim_store.signing_keys(s, domain)

    return srv.run(go)


def test_dkim_keys_verify_against_api_dns_records(server: InProcessServer) -> None:
    _, key = make_tenant(server, "dkim")
    with client(server, key) as api:
        add_domain(api, "signed.test")
        r = api.post("/api/dkim", json={"id": "signed.test", "algorithm": "ed25519-sha256", "domain": "signed.test",
                                        "selector": "mailbux"})
        assert r.status_code == 200 and r.json()["data"] == "signed.test"
        r = api.post("/api/dkim", json={"id": "signed.test", "algorithm": "rsa-sha256", "domain": "signed.test",
                                        "selector": "rsa2026"})
        assert r.status_code == 200 and r.json()["data"] != "signed.test"  # ids stay unique
        r = api.post("/api/dkim", json={"algorithm": "rsa-sha256", "domain": "signed.test", "selector": "rsa2026"})
        assert r.status_code == 409 and r.json()["error"] == "fieldAlreadyExists"
        for bad in ({"algorithm": "dsa", "domain": "signed.test", "selector": "x"},
                    {"algorithm": "rsa-sha256", "domain": "signed.test", "selector": "bad selector!"},
                    {"algorithm": "rsa-sha256", "selector": "x"},
                    {"algorithm": "rsa-sha256", "domain": "signed.test", "selector": "x", "bits": 512}):
            assert api.post("/api/dkim", json=bad).status_code == 400, bad
        assert api.post("/api/dkim", json={"domain": "nothere.test"}).status_code == 404
        listed = api.get("/api/dkim/signed.test").json()["data"]
        assert [(k["selector"], k["algorithm"]) for k in listed] == [("mailbux", "ed25519-sha256"),
                                                                    ("rsa2026", "rsa-sha256")]
        assert api.get("/api/dkim", params={"domain": "signed.test"}).json()["data"] == listed
        assert "PRIVATE" not in api.get("/api/dkim/signed.test").text
        records = api.get("/api/dns/signed.test").json()["data"]
        assert api.get("/api/dns/records/signed.test").json()["data"] == records

    txt: dict[bytes, bytes] = {}
    for rec in records:
        if rec["type"] == "TXT":
            txt[rec["name"].encode()] = rec["content"].encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return txt.get(name if name.endswith(b".") else name + b".")

    keys = signing_keys(server, "signed.test")
    assert sorted(k.algorithm for k in keys) == ["ed25519-sha256", "rsa-sha256"]
    for k in keys:
        signed = dkim_sign(MESSAGE, [k])
        assert dkim.verify(signed, dnsfunc=dnsfunc), k.algorithm
        assert not dkim.verify(signed.replace(b"Signed body.", b"Forged body."), dnsfunc=dnsfunc)
    both = dkim_sign(MESSAGE, keys)
    d = dkim.DKIM(both)
    assert d.verify(idx=0, dnsfunc=dnsfunc) and d.verify(idx=1, dnsfunc=dnsfunc)

    # Retiring a key removes its record and stops signing with it.
    with client(server, key) as api:
        assert api.delete("/api/dkim/signed.test/rsa2026").status_code == 200
        assert api.delete("/api/dkim/signed.test/rsa2026").status_code == 404
        names = [r["name"] for r in api.get("/api/dns/signed.test").json()["data"]]
        assert "mailbux._domainkey.signed.test." in names and "rsa2026._domainkey.signed.test." not in names
    assert [k.selector for k in signing_keys(server, "signed.test")] == ["mailbux"]


def test_dns_records_cover_the_domain_and_render_as_a_zone(server: InProcessServer) -> None:
    _, key = make_tenant(server, "dns")
    with client(server, key) as api:
        add_domain(api, "zone.test")
        assert api.post("/api/dkim", json={"algorithm": "rsa-sha256", "domain": "zone.test",
                                           "selector": "s1"}).status_code == 200
        records = api.get("/api/dns/zone.test").json()["data"]
        by = {(r["type"], r["name"]): r for r in records}
        assert by[("MX", "zone.test.")]["content"] == "mx.test.local." and by[("MX", "zone.test.")]["priority"] == 10
        assert by[("TXT", "zone.test.")]["content"].startswith("v=spf1 mx")
        assert by[("TXT", "s1._domainkey.zone.test.")]["content"].startswith("v=DKIM1; k=rsa; p=")
        assert by[("TXT", "_dmarc.zone.test.")]["content"].startswith("v=DMARC1; p=")
        for srv in ("_submission._tcp", "_submissions._tcp", "_imap._tcp", "_imaps._tcp", "_pop3s._tcp"):
            assert ("SRV", f"{srv}.zone.test.") in by, srv
        port = server.ports["submissions"]
        assert by[("SRV", "_submissions._tcp.zone.test.")]["content"] == f"1 {port} mx.test.local."
        assert by[("CNAME", "autoconfig.zone.test.")]["content"] == "mx.test.local."
        assert by[("CNAME", "autodiscover.zone.test.")]["content"] == "mx.test.local."
        assert by[("TXT", "_mta-sts.zone.test.")]["content"].startswith("v=STSv1; id=")
        assert by[("TXT", "_smtp._tls.zone.test.")]["content"].startswith("v=TLSRPTv1; rua=mailto:")
        r = api.get("/api/dns/zone.test", params={"format": "zone"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert api.get("/api/dns/zone.test", params={"format": "yaml"}).status_code == 400
        assert api.get("/api/dns/unknown.test").status_code == 404
        assert api.get("/api/dns/not a domain").status_code in (400, 404)
    # The zone fragment is valid BIND syntax holding the same records (RSA TXT split and rejoined).
    zone = dns.zone.from_text("$ORIGIN zone.test.\n@ 3600 IN SOA ns. h. 1 2 3 4 5\n@ 3600 IN NS ns.\n" + r.text,
                              origin="zone.test.", relativize=False)
    dkim_rr = zone.find_rdataset("s1._domainkey.zone.test.", "TXT")
    assert b"".join(next(iter(dkim_rr)).strings).decode() == by[("TXT", "s1._domainkey.zone.test.")]["content"]
    mx = next(iter(zone.find_rdataset("zone.test.", "MX")))
    assert (mx.preference, str(mx.exchange)) == (10, "mx.test.local.")
    srv_rr = next(iter(zone.find_rdataset("_imaps._tcp.zone.test.", "SRV")))
    assert srv_rr.port == server.ports["imaps"] and str(srv_rr.target) == "mx.test.local."
