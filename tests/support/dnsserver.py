"""A real authoritative DNS server (NSD) on 127.0.0.1 for tests.

Why NSD: it runs as any user with every path pointed into a temporary directory (no
/var/lib state, no control keys), starts in a few milliseconds, serves UDP and TCP on one
port, and reloads changed zone files on SIGHUP. Debian package: ``nsd``.

Usage::

    with DnsServer({"a.test": [("@", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
                               ("mx", "A", "127.0.0.1")]}) as dns:
        resolver = Resolver([dns.host], port=dns.port, timeout=2)
        ...
        dns.set_records("a.test", [...])   # rewrite + reload, returns once it is served

or, in pytest, the ``dns_server`` factory fixture (import it into conftest.py)::

    def test_x(dns_server):
        dns = dns_server({"a.test": [...]})

Records are ``(name, type, value)``: ``name`` is ``"@"``, relative to the zone or absolute
with a trailing dot; ``value`` is zone-file text, except for TXT (and SPF) where it is the
plain string to publish: it is quoted and split into 255-byte character-strings here, which
is what RSA-2048 DKIM keys need. A TXT value that already starts with ``"`` is passed
through untouched (for tests that want exact character-string boundaries). Each zone gets
an SOA and an NS record unless the test supplies them. TTLs are 1 second.

NSD is authoritative only: a name outside every given zone is answered REFUSED, which
resolvers (and so SPF/DKIM/DMARC) treat as a temporary error, not NXDOMAIN. Put names that
must not exist *inside* a served zone (``nothing.a.test``), or serve a parent zone ``"test"``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

if TYPE_CHECKING:
    from mailwright.mailauth.resolver import Resolver

__all__ = ["DnsServer", "DnsServerError", "dns_server", "find_nsd", "free_port", "txt_strings"]

Record = tuple[str, str, str]

_START_TIMEOUT = 10.0


class DnsServerError(RuntimeError):
    """The DNS server could not be started or did not serve what it was given."""


def find_nsd() -> str:
    """Path of the ``nsd`` binary (it lives in /usr/sbin, often not on a user's PATH)."""
    path = shutil.which("nsd") or shutil.which("nsd", path="/usr/sbin:/usr/local/sbin")
    if not path:
        raise DnsServerError("nsd not found: install the Debian package 'nsd' (scripts/debian-packages.txt)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is currently free for both UDP and TCP on ``host``.

    The kernel picks a TCP port; we then check UDP on the same number. There is a window
    before NSD binds it, which :class:`DnsServer` covers by retrying with a new port.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise DnsServerError("no free UDP+TCP port found")


def txt_strings(value: str) -> str:
    """Zone-file text for a TXT value: quoted character-strings of at most 255 bytes each.

    The split is on bytes of the UTF-8 encoding, never inside an escape, and ``"`` and
    ``\\`` are escaped. Non-printable bytes are written as ``\\DDD``.
    """
    raw = value.encode("utf-8")
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    out = []
    for chunk in chunks:
        esc = []
        for byte in chunk:
            ch = chr(byte)
            if ch in ('"', "\\"):
                esc.append("\\" + ch)
            elif 0x20 <= byte < 0x7F:
                esc.append(ch)
            else:
                esc.append(f"\\{byte:03d}")
        out.append('"' + "".join(esc) + '"')
    return " ".join(out)


def _zone_text(zone: str, records: list[Record], serial: int) -> str:
    origin = zone.rstrip(".") + "."
    lines = [f"$ORIGIN {origin}", "$TTL 1"]
    types = {rtype.upper() for name, rtype, _ in records if name in ("@", origin)}
    if "SOA" not in types:
        lines.append(f"@ IN SOA ns.{origin} hostmaster.{origin} {serial} 3600 600 86400 1")
    if "NS" not in types:
        lines.append("@ IN NS localhost.")
    for name, rtype, value in records:
        rtype = rtype.upper()
        if rtype == "SOA":  # keep the serial ours so reloads are visible
            parts = value.split()
            if len(parts) >= 7:
                parts[2] = str(serial)
                value = " ".join(parts)
        if rtype in ("TXT", "SPF") and not value.lstrip().startswith('"'):
            value = txt_strings(value)
        lines.append(f"{name} IN {rtype} {value}")
    return "\n".join(lines) + "\n"


class DnsServer:
    """NSD serving ``zones`` on ``host``:``port`` (UDP and TCP) from a temporary directory.

    A context manager; :meth:`start` returns once every zone answers its SOA query with the
    current serial, and :meth:`stop` kills the server and removes the directory.
    """

    def __init__(self, zones: dict[str, list[Record]], host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.zones: dict[str, list[Record]] = {z.rstrip(".").lower(): list(r) for z, r in zones.items()}
        self._serials: dict[str, int] = {}
        self._mtimes: dict[str, float] = {}
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DnsServer({self.host}:{self.port}, zones={sorted(self.zones)})"

    def resolver(self, timeout: float = 2.0) -> Resolver:
        """A :class:`mailwright.mailauth.Resolver` pointed at this server."""
        from mailwright.mailauth.resolver import Resolver

        return Resolver([self.host], port=self.port, timeout=timeout)

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise DnsServerError("server not started")
        return self._dir

    @property
    def log(self) -> str:
        """NSD's log and stderr so far (for assertion messages)."""
        out = []
        for name in ("nsd.log", "stderr.log"):
            try:
                out.append((self.directory / name).read_text(errors="replace"))
            except (OSError, DnsServerError):
                pass
        return "\n".join(out)

    def start(self) -> None:
        """Write the zones and config, start NSD and wait until every zone is served."""
        if self._proc is not None:
            return
        self._dir = Path(tempfile.mkdtemp(prefix="mailwright-dns-"))
        for zone, records in self.zones.items():
            self._write_zone(zone, records)
        last_error = ""
        for _attempt in range(5):  # another process may grab the port before NSD binds it
            try:
                self._spawn(free_port(self.host))
                return
            except DnsServerError as exc:
                last_error = f"{exc}\n{self.log}"
                self._kill()
        self._cleanup_dir()
        raise DnsServerError(f"nsd did not start: {last_error}")

    def stop(self) -> None:
        """Kill NSD (and its children) and remove the temporary directory. Idempotent."""
        self._kill()
        self._cleanup_dir()

    def _spawn(self, port: int) -> None:
        self.port = port
        self._write_config()
        self._stderr = open(self.directory / "stderr.log", "ab")  # closed in _kill()
        self._proc = subprocess.Popen(
            [find_nsd(), "-d", "-c", str(self.directory / "nsd.conf")],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            start_new_session=True,  # own process group: _kill() reaches nsd's forked children
        )
        self._wait_serving(list(self.zones))

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            # nsd's forked children (xfrd, server) share the group; make sure none linger.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _cleanup_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- zone data ----------------------------------------------------------------------------

    def set_records(self, zone: str, records: list[Record]) -> None:
        """Replace all records of ``zone`` (or add a new zone) and wait until NSD serves them.

        An existing zone is reloaded in place (SIGHUP, same port). A new zone needs a new
        config, which NSD reads only at start, so the server is restarted on the same port.
        """
        zone = zone.rstrip(".").lower()
        is_new = zone not in self.zones
        self.zones[zone] = list(records)
        if self._proc is None:
            return
        self._write_zone(zone, self.zones[zone])
        if is_new:
            port = self.port
            self._kill()
            self._spawn(port)
            return
        os.kill(self._proc.pid, signal.SIGHUP)
        self._wait_serving([zone])

    def _zone_file(self, zone: str) -> Path:
        return self.directory / f"{zone}.zone"

    def _write_zone(self, zone: str, records: list[Record]) -> None:
        serial = self._serials.get(zone, 0) + 1
        self._serials[zone] = serial
        path = self._zone_file(zone)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_zone_text(zone, records, serial))
        os.replace(tmp, path)
        # NSD reloads on SIGHUP only if the mtime changed; two writes within the file
        # system's timestamp granularity would look unchanged, so force it forward.
        stamp = max(time.time(), self._mtimes.get(zone, 0.0) + 1.0)
        self._mtimes[zone] = stamp
        os.utime(path, (stamp, stamp))

    def _write_config(self) -> None:
        d = self.directory
        zones = "".join(f"zone:\n  name: {zone}\n  zonefile: {self._zone_file(zone)}\n" for zone in self.zones)
        # database "" = no nsd.db; username "" = do not drop privileges; all state files in d.
        (d / "nsd.conf").write_text(
            f"""server:
  ip-address: {self.host}@{self.port}
  port: {self.port}
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{d}"
  database: ""
  zonelistfile: "{d}/zone.list"
  xfrdfile: "{d}/xfrd.state"
  xfrdir: "{d}"
  pidfile: "{d}/nsd.pid"
  logfile: "{d}/nsd.log"
  server-count: 1
  verbosity: 1
  hide-version: yes
  round-robin: no
remote-control:
  control-enable: no
{zones}"""
        )

    def _soa_serial(self, zone: str) -> int | None:
        q = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
        try:
            r = dns.query.udp(q, self.host, port=self.port, timeout=0.2)
        except (dns.exception.Timeout, OSError):
            return None
        if r.rcode() != dns.rcode.NOERROR:
            return None
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)  # type: ignore[attr-defined]
        return None

    def _wait_serving(self, zones: list[str]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        pending = list(zones)
        while pending:
            if self._proc is None or self._proc.poll() is not None:
                raise DnsServerError("nsd exited")
            zone = pending[0]
            if self._soa_serial(zone) == self._serials[zone]:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise DnsServerError(f"zone {zone} not served with serial {self._serials[zone]}")
            time.sleep(0.02)


@pytest.fixture
def dns_server() -> Iterator[Callable[..., DnsServer]]:
    """Factory fixture: ``dns_server(zones) -> DnsServer`` (started; stopped at teardown)."""
    servers: list[DnsServer] = []

    def factory(zones: dict[str, list[Record]], **kwargs: Any) -> DnsServer:
        srv = DnsServer(zones, **kwargs)
        srv.start()
        servers.append(srv)
        return srv

    yield factory
    for srv in servers:
        srv.stop()
