"""IMAP COMPRESS=DEFLATE (RFC 4978) over real sockets, plain and TLS, with a zlib client."""

from __future__ import annotations

import socket
import ssl
import time
import zlib

from tests.imap_support import deliver_raw, make_account, simple_message
from tests.support.server import InProcessServer

PASSWORD = "correct horse battery"


class DeflateClient:
    """A raw IMAP client that can switch to DEFLATE both ways (what RFC 4978 clients do)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(20)
        self.out: zlib._Compress | None = None
        self.inz: zlib._Decompress | None = None
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        if self.out is not None:
            data = self.out.compress(data) + self.out.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += self.inz.decompress(chunk) if self.inz is not None else chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        ln, _, self.buf = self.buf.partition(b"\r\n")
        return ln

    def cmd(self, tag: str, text: str | bytes) -> tuple[list[bytes], bytes]:
        self.send(f"{tag} ".encode() + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> tuple[list[bytes], bytes]:
        untagged: list[bytes] = []
        while True:
            ln = self.line()
            if ln.startswith(f"{tag} ".encode()):
                return untagged, ln
            untagged.append(ln)

    def compress(self) -> None:
        _, ok = self.cmd("c", "COMPRESS DEFLATE")
        assert ok.startswith(b"c OK"), ok
        assert not self.buf  # nothing may follow the OK uncompressed
        self.out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inz = zlib.decompressobj(-15)


def _login(c: DeflateClient, user: str) -> None:
    _, ok = c.cmd("l", f'LOGIN {user} "{PASSWORD}"')
    assert ok.startswith(b"l OK"), ok


def test_compressed_session_fetches_idles_and_survives_abuse(server: InProcessServer) -> None:
    user = make_account(server)
    for i in range(1, 41):
        deliver_raw(server, user, simple_message(i, body="lorem ipsum dolor sit amet " * 40))
    c = DeflateClient(socket.create_connection(("127.0.0.1", server.ports["imap"])))
    _login(c, user)
    caps, _ = c.cmd("k", "CAPABILITY")
    assert b"COMPRESS=DEFLATE" in caps[0]
    c.compress()
    untagged, ok = c.cmd("s", "SELECT INBOX")
    assert ok.startswith(b"s OK") and b"* 40 EXISTS" in untagged
    # a bulk fetch comes back whole through the inflater
    c.send(b"f FETCH 1:* (UID ENVELOPE BODY.PEEK[])\r\n")
    got = b""
    while True:
        ln = c.line()
        got += ln + b"\r\n"
        if ln.startswith(b"f "):
            break
    assert got.count(b"lorem ipsum") == 40 * 40 and b"f OK" in got
    # pipelining inside the compressed stream: two commands in one write
    c.send(b"p1 NOOP\r\np2 UID SEARCH SUBJECT \"message 7\"\r\n")
    _, t1 = c.until("p1")
    found, t2 = c.until("p2")
    assert t1.startswith(b"p1 OK") and t2.startswith(b"p2 OK") and found == [b"* SEARCH 7"]
    # IDLE pushes come compressed too
    c.send(b"i IDLE\r\n")
    assert c.line().startswith(b"+")
    deliver_raw(server, user, simple_message(99))
    assert c.line() == b"* 41 EXISTS"
    c.send(b"DONE\r\n")
    _, ok = c.until("i")
    assert ok.startswith(b"i OK")
    # a second COMPRESS is refused, the stream goes on
    _, again = c.cmd("c2", "COMPRESS DEFLATE")
    assert again.startswith(b"c2 NO [COMPRESSIONACTIVE]")
    # a "deflate bomb": 60 MB of one line from ~60 KB on the wire -> BAD, then business as usual
    bomb = b"x BOGUS " + b"A" * 60_000_000 + b"\r\n"
    start = time.monotonic()
    c.send(bomb)
    c.send(b"n NOOP\r\n")
    _, bad = c.until("x")
    _, ok = c.until("n")
    assert bad.startswith(b"x BAD") and ok.startswith(b"n OK"), (bad, ok)
    assert time.monotonic() - start < 30
    c.cmd("z", "LOGOUT")
    c.sock.close()
    # garbage that is not a deflate stream ends that connection only
    g = DeflateClient(socket.create_connection(("127.0.0.1", server.ports["imap"])))
    _login(g, user)
    g.compress()
    g.sock.sendall(b"\xff\xfe garbage that no inflater accepts \x00" * 10)
    try:
        while True:
            g._fill()
    except (ConnectionError, OSError, zlib.error):
        pass
    g.sock.close()
    h = DeflateClient(socket.create_connection(("127.0.0.1", server.ports["imap"])))
    _login(h, user)
    h.cmd("z", "LOGOUT")
    h.sock.close()


def test_compress_under_implicit_tls(server: InProcessServer) -> None:
    user = make_account(server)
    deliver_raw(server, user, simple_message(1))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = DeflateClient(ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.ports["imaps"]))))
    _login(c, user)
    c.compress()
    untagged, ok = c.cmd("s", "SELECT INBOX")
    assert ok.startswith(b"s OK") and b"* 1 EXISTS" in untagged
    fetched, ok = c.cmd("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert ok.startswith(b"f OK") and any(b"FETCH" in ln for ln in fetched)
    c.cmd("z", "LOGOUT")
    c.sock.close()


def test_compress_is_refused_before_login_and_with_a_bad_mechanism(server: InProcessServer) -> None:
    user = make_account(server)
    c = DeflateClient(socket.create_connection(("127.0.0.1", server.ports["imap"])))
    _, before = c.cmd("a", "COMPRESS DEFLATE")
    assert before.startswith((b"a BAD", b"a NO")), before
    _login(c, user)
    _, bad = c.cmd("b", "COMPRESS LZMA")
    assert bad.startswith(b"b NO"), bad
    _, bad = c.cmd("d", "COMPRESS")
    assert bad.startswith(b"d BAD"), bad
    _, ok = c.cmd("e", "NOOP")  # still uncompressed and working
    assert ok.startswith(b"e OK")
    c.sock.close()
