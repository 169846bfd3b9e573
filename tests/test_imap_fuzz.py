"""IMAP fuzzing: thousands of random and mutated command lines against one live server.

Every response must be a well-formed IMAP response (untagged `*`, continuation `+`, or a tagged
OK/NO/BAD); after each fuzzed line a sentinel NOOP must still be answered on the same
connection (or the server closed it deliberately, e.g. LOGOUT or an over-long line); the server
must never log an exception (each one is a command or a connection task that blew up); and at
the end a fresh connection still gets its NOOP answered. Bounded in time (< 60 s).

Lines come from hypothesis: grammar-shaped commands with random tags, atoms, sequence sets,
sections, partials, quoted strings, literals (honest and lying sizes, LITERAL+), unbalanced
parentheses, huge numbers, NULs and 8-bit bytes; plus byte-level mutations of the valid lines in
tests/data/imap_sessions.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.imap_session import Connection
from tests.support.server import InProcessServer

SESSIONS = Path(__file__).parent / "data" / "imap_sessions"
PASSWORD = "fuzz-password-1"
TIME_BUDGET = 45.0
RESPONSE = re.compile(rb"^(\* |\+( |\r\n)|[!-~]+ (OK|NO|BAD)( |\r\n))")

COMMANDS = ["CAPABILITY", "NOOP", "LOGIN", "AUTHENTICATE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME",
            "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "STATUS", "APPEND", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE",
            "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID", "IDLE", "ENABLE", "ID", "NAMESPACE", "SORT",
            "THREAD", "GETQUOTA", "GETQUOTAROOT", "ESEARCH", "XLIST", "BOGUS", "LOGOUT"]
ATOMS = ["FLAGS", "UID", "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE", "RFC822", "RFC822.SIZE",
         "RFC822.HEADER", "RFC822.TEXT", "ENVELOPE", "BODYSTRUCTURE", "INTERNALDATE", "MODSEQ", "ALL", "FAST", "FULL",
         "+FLAGS", "-FLAGS.SILENT", "FLAGS.SILENT", "\\Seen", "\\Deleted", "\\Bogus", "$Kw", "\\*", "INBOX", "Trash",
         "OR", "NOT", "SEEN", "UNSEEN", "SINCE", "BEFORE", "ON", "LARGER", "SMALLER", "HEADER", "SUBJECT", "TEXT",
         "CHARSET", "UTF-8", "RETURN", "MIN", "MAX", "COUNT", "SAVE", "$", "CHANGEDSINCE", "UNCHANGEDSINCE",
         "VANISHED", "QRESYNC", "CONDSTORE", "REFERENCES", "ORDEREDSUBJECT", "REVERSE", "DATE", "ARRIVAL",
         "MESSAGES", "UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ", "SIZE", "NIL", "PLAIN", "DONE", "*", "01-Jan-2023"]

numbers = st.one_of(st.integers(0, 100), st.sampled_from([4294967295, 4294967296, 2**63, 10**40, -1]))
seqset = st.lists(st.one_of(numbers.map(str), st.just("*"),
                            st.tuples(numbers, st.one_of(numbers.map(str), st.just("*"))).map(
                                lambda t: f"{t[0]}:{t[1]}")), min_size=1, max_size=4).map(",".join)
section = st.lists(st.one_of(st.integers(0, 5).map(str), st.sampled_from(
    ["HEADER", "TEXT", "MIME", "HEADER.FIELDS (FROM", "HEADER.FIELDS.NOT (SUBJECT)", "1.2", ""])),
    max_size=3).map(".".join)
partial = st.one_of(st.just(""), st.tuples(numbers, numbers).map(lambda t: f"<{t[0]}.{t[1]}>"),
                    numbers.map(lambda n: f"<{n}>"))
fetch_att = st.tuples(st.sampled_from(["BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"]), section,
                      partial).map(lambda t: f"{t[0]}[{t[1]}]{t[2]}")
quoted = st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
raw_bytes = st.binary(max_size=40)


@st.composite
def literal(draw: st.DrawFn) -> bytes:
    data = draw(st.binary(max_size=60))
    size = draw(st.one_of(st.just(len(data)), st.integers(0, 80), st.sampled_from([4294967295, 10**12])))
    plus = draw(st.sampled_from(["", "+"]))
    return f"{{{size}{plus}}}\r\n".encode() + data


token = st.one_of(
    st.sampled_from(ATOMS).map(str.encode), seqset.map(str.encode), fetch_att.map(str.encode),
    quoted.map(lambda s: s.encode("utf-8")), st.sampled_from([b"(", b")", b"((", b"))", b"[", b"]"]),
    numbers.map(lambda n: str(n).encode()), raw_bytes, st.sampled_from([b"\x00", b"\xff\xfe", b"a" * 5000]),
)


@st.composite
def command_line(draw: st.DrawFn) -> bytes:
    tag = draw(st.one_of(st.from_regex(r"\A[A-Za-z0-9.]{1,8}\Z"), st.sampled_from(["*", "+", "", "a b", "\x00"])))
    cmd = draw(st.sampled_from(COMMANDS))
    if cmd == "UID":
        cmd += " " + draw(st.sampled_from(["FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "SORT", "BOGUS"]))
    args = draw(st.lists(token, max_size=8))
    if draw(st.integers(0, 9)) == 0:  # literals are rarer: a lying one stalls the line until timeout
        args.insert(draw(st.integers(0, len(args))), draw(literal()))
    line = tag.encode("utf-8") + b" " + cmd.encode() + b"".join(b" " + a for a in args)
    return line.replace(b"\r\n", b"\r\n") + b"\r\n"


def _corpus_lines() -> list[bytes]:
    out = []
    for p in sorted(SESSIONS.glob("*.imap")):
        for line in p.read_text().splitlines():
            if line and not line.startswith(("#", "@")) and " " in line and "{{" not in line:
                out.append(line.replace("$USER", "x").replace("$PASS", "y").encode() + b"\r\n")
    return out


CORPUS = _corpus_lines()


@st.composite
def mutated_line(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 3)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"(", b")", b"{5}\r\n", b"\x00", b"\xc3", b" ", b"*", b"\r\n",
                                                  b"99999999999", b'"', b"\\"]))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 5))]
        elif op == "dup":
            data[pos:pos] = data[pos:pos + 20]
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return bytes(data)


class TimeUp(Exception):
    """The fuzzing time budget is spent."""


class ErrorRecords(logging.Handler):
    """Collects ERROR+ records of the server (logged exceptions are bugs)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("mailwright"):
            self.records.append(record)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessServer, str]]:
    tmp = tmp_path_factory.mktemp("imapfuzz")
    srv = InProcessServer(tmp / "data", f"sqlite+aiosqlite:///{tmp / 'mw.db'}").start()
    addr = "fuzz@fuzz.test"
    with srv.api() as api:
        assert api.post("/api/principal", json={"name": "fuzz.test", "type": "domain"}).status_code == 200
        r = api.post("/api/principal", json={"name": addr, "type": "individual", "secrets": [PASSWORD],
                                             "emails": [addr]})
        assert r.status_code == 200, r.text
        pid = str(r.json()["data"])
    from mailwright.mailstore.messages import Target, deliver

    msgs = sorted(SESSIONS.glob("messages/*.eml"))[:8]

    async def load(svc: object) -> None:
        for p in msgs:
            await deliver(svc, p.read_bytes(), [Target(pid, "INBOX", "")])  # type: ignore[arg-type]

    srv.run(load)  # type: ignore[arg-type]
    try:
        yield srv, addr
    finally:
        srv.stop()


class Client:
    """One logged-in, selected connection that is re-opened whenever the server drops it."""

    def __init__(self, port: int, user: str) -> None:
        self.port, self.user = port, user
        self.conn: Connection | None = None
        self.n = 0
        self.reconnects = 0
        self.bad: list[str] = []

    def _open(self) -> Connection:
        c = Connection(self.port, timeout=5)
        greet = c.read_response()
        assert greet is not None and greet.startswith(b"* OK"), greet
        c.send(f'L LOGIN "{self.user}" "{PASSWORD}"\r\nS SELECT INBOX\r\n'.encode())
        for tag in (b"L ", b"S "):
            while True:
                r = c.read_response()
                assert r is not None, "no answer to LOGIN/SELECT"
                if r.startswith(tag):
                    assert r.startswith(tag + b"OK"), r
                    break
        return c

    def play(self, line: bytes) -> None:
        if self.conn is None or self.conn.closed:
            self.conn = self._open()
            self.reconnects += 1
        c = self.conn
        self.n += 1
        sentinel = f"Z{self.n} NOOP\r\n".encode()
        # Keep the sentinel from being swallowed: fill a short-changed literal, end an IDLE or a
        # SASL exchange. Only a huge literal the server waits for, or a TLS/DEFLATE switch, can
        # still eat it; for those do not wait long.
        extra = b""
        if re.search(rb"\{\d+\+?\}", line):
            extra += b"x" * 100 + b"\r\n"
        if re.search(rb"IDLE|AUTHENTICATE", line, re.I):
            extra += b"DONE\r\n"
        c.send(line + extra + sentinel)
        eats = re.search(rb"\{\d{4,}\+?\}|STARTTLS|COMPRESS", line, re.I)
        deadline = time.monotonic() + (0.3 if eats else 2.0)
        while True:
            r = c.read_response(timeout=max(0.05, deadline - time.monotonic()))
            if r is None:
                # Dropped (LOGOUT, over-long line, ...) or the sentinel was eaten as literal/SASL/IDLE data
                # and the server is waiting for more: both legitimate; start again on a fresh connection.
                c.close()
                self.conn = None
                return
            if not RESPONSE.match(r):
                self.bad.append(f"{line[:120]!r} -> {r[:160]!r}")
            if r.startswith(f"Z{self.n} ".encode()):
                return


def test_list_bad_names_answered_cleanly(fuzz_server: tuple[InProcessServer, str]) -> None:
    """Fuzz finding: a control character or broken modified UTF-7 in a LIST reference or pattern
    made mutf7.decode raise ValueError out of LIST (logged, NO [SERVERBUG]). Now a clean BAD, like
    CREATE/SELECT of such names (Dovecot: LIST OK with no match, CREATE NO; RFC 3501 5.1.3 does not
    say which); 8-bit from a client without UTF8=ACCEPT is taken as UTF-8 (no match, OK)."""
    srv, user = fuzz_server
    errors = ErrorRecords()
    logging.getLogger().addHandler(errors)
    c = Connection(srv.ports["imap"])
    answers: dict[bytes, bytes] = {}
    try:
        c.read_response()
        c.send(f'L LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
        lines = {b"a": b'LIST "" "a\x01*"', b"b": b'LIST "\x1f" "*"', b"c": b'LIST "" "&Jjo"',
                 b"d": b'LIST "" ("INBOX" "x\x02")', b"e": b'LSUB "" "\x7f*"', b"f": b'LIST "" "\xff\xfe*"',
                 b"g": b'CREATE "a\x01b"', b"h": b'LIST "" Projects/*'}
        for tag, line in lines.items():
            c.send(tag + b" " + line + b"\r\n")
        for tag in [b"L", *lines]:
            while (r := c.read_response()) is not None and not r.startswith(tag + b" "):
                pass
            assert r is not None, tag
            answers[tag] = r.split(b" ")[1]
    finally:
        c.close()
        logging.getLogger().removeHandler(errors)
    assert answers == {b"L": b"OK", b"a": b"BAD", b"b": b"BAD", b"c": b"BAD", b"d": b"BAD", b"e": b"OK",
                       b"f": b"OK", b"g": b"BAD", b"h": b"OK"}, answers
    assert not errors.records, [r.getMessage() for r in errors.records]


def test_fuzz_command_lines(fuzz_server: tuple[InProcessServer, str]) -> None:
    srv, user = fuzz_server
    errors = ErrorRecords()
    logging.getLogger().addHandler(errors)
    client = Client(srv.ports["imap"], user)
    stop = time.monotonic() + TIME_BUDGET
    spent = [0.0]

    @settings(max_examples=5000, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(command_line(), mutated_line()))
    def run(line: bytes) -> None:
        if time.monotonic() > stop:
            raise TimeUp  # ends the run (generate phase only: nothing to shrink)
        t0 = time.monotonic()
        client.play(line)
        spent[0] += time.monotonic() - t0

    try:
        run()
    except TimeUp:
        pass
    finally:
        logging.getLogger().removeHandler(errors)
    print(f"fuzz: {client.n} lines, {client.reconnects} connections, {spent[0]:.1f}s talking to the server")
    # thousands on an idle machine; the floor only guards against a harness that stopped fuzzing
    assert client.n >= 300, f"only {client.n} lines in {TIME_BUDGET}s"
    traces = [f"{r.name}: {r.getMessage()}\n{logging.Formatter().formatException(r.exc_info) if r.exc_info else ''}"
              for r in errors.records]
    problems = []
    if client.bad:
        problems.append(f"{len(client.bad)} malformed responses, first:\n" + "\n".join(client.bad[:12]))
    if traces:
        problems.append(f"{len(traces)} server errors logged, first:\n" + "\n".join(traces[:3]))
    assert not problems, "\n\n".join(problems)
    # the server is still up: a fresh connection is served
    fresh = Connection(srv.ports["imap"])
    try:
        assert (fresh.read_response() or b"").startswith(b"* OK")
        fresh.send(b"n NOOP\r\n")
        assert (fresh.read_response() or b"").startswith(b"n OK")
    finally:
        fresh.close()
