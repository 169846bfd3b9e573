"""Play a scripted IMAP session against a server and produce a normalised transcript.

Used by the differential tests (Mailwright vs Dovecot): the same script is played against
both servers, each transcript is normalised (what RFC 3501/9051 leave free is erased or made
canonical) and the two are compared line by line.

Script format (tests/data/imap_sessions/*.imap), one item per line:
  `# ...` comment; blank lines are ignored.
  `@conn NAME`     switch to connection NAME (opened on first use; its greeting is recorded).
  `@wait SECONDS`  record whatever unsolicited output arrives on this connection within SECONDS.
  `@raw TEXT`      send TEXT (backslash escapes \\r \\n \\xNN; no CRLF added) and record what
                   arrives until the connection is quiet for 0.7 s (for lines without a tag).
  `@close`         drop the current connection without LOGOUT.
  `@messages none` (header) do not preload the corpus into INBOX.
  `@readonly yes`  (header) the session only EXAMINEs: it may share an account with others.
  `@exclude NAME..` (header) leave these corpus messages out (a Dovecot bug the session would hit).
  anything else    a command line `TAG VERB ...`. Variables: $USER $PASS $PLAIN (SASL PLAIN
                   base64), $UIDVALIDITY / $HIGHESTMODSEQ (last value this connection saw), $HIGHESTMODSEQ+1.
                   `{{file:NAME}}` is a synchronising literal with the bytes of a corpus message,
                   `{{lit:TEXT}}` / `{{lit+:TEXT}}` a (non-)synchronising literal of TEXT (escapes).
                   When the server answers with a continuation request (`+`), the command stays
                   pending and the next command line is sent as-is (IDLE's DONE, SASL data).
Normalisation (each rule is an RFC freedom, see docs/imap-differences.md):
- human-readable text after OK/NO/BAD/BYE/PREAUTH and `+` is dropped (status and code kept);
  the optional codes ALERT, NONEXISTENT, CLIENTBUG and BADCHARSET's charset list are dropped;
- a CAPABILITY response code in a tagged OK equals an untagged CAPABILITY; capability lists are
  compared as sorted sets restricted to the capabilities issue 5 asks for;
- UIDVALIDITY values (also inside COPYUID/APPENDUID) become U1, U2... in order of appearance;
  mod-sequences become `<M>` (HIGHESTMODSEQ's monotonicity is checked separately);
- `\\Recent` and `* n RECENT` are erased (RFC 9051 removed \\Recent); so are untagged OKs with
  no response code (keepalives: nothing but text);
- `* OK [HIGHESTMODSEQ]` counts only once the connection used a CONDSTORE-enabling command;
- FETCH data items, flag lists, STATUS items, LIST attributes, ESEARCH return data and SEARCH
  numbers are sorted; strings compare by content (quoted = literal); mailbox names too, and
  INBOX case-insensitively; INTERNALDATE compares as an instant (UTC); ID contents are erased;
- LIST attributes that RFC 5258/6154 make optional unless asked for are dropped;
- untagged FETCH data of a FETCH that fails (NO/BAD) is dropped;
- adjacent `* n EXPUNGE` become the set of messages they remove (any order is valid);
- untagged responses to SELECT/EXAMINE/LIST/LSUB/STATUS/FETCH/STORE/CAPABILITY/LOGIN/ENABLE
  are sorted within the command.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# The capabilities issue 5 asks for; other capabilities (Dovecot's URL-PARTIAL, NOTIFY, ...) are
# not compared. Those Dovecot 2.3 lacks are checked on Mailwright alone (test_capabilities_complete).
ISSUE_CAPS = {
    "IMAP4REV1", "IMAP4REV2", "LITERAL+", "SASL-IR", "AUTH=PLAIN", "AUTH=LOGIN", "ID", "ENABLE", "IDLE",
    "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS",
    "ESEARCH", "SEARCHRES", "CONDSTORE", "QRESYNC", "QUOTA", "BINARY", "APPENDLIMIT", "MULTIAPPEND", "SORT",
    "THREAD=REFERENCES", "STATUS=SIZE", "STARTTLS", "LOGINDISABLED",
}
NOT_IN_DOVECOT = {"IMAP4REV2", "QUOTA", "APPENDLIMIT"}
COMPARED_CAPS = ISSUE_CAPS - NOT_IN_DOVECOT
SORTED_COMMANDS = {"SELECT", "EXAMINE", "LIST", "LSUB", "STATUS", "FETCH", "CAPABILITY", "LOGIN", "ENABLE",
                   "AUTHENTICATE", "NAMESPACE", "XLIST", "GETQUOTAROOT", "UID FETCH", "STORE", "UID STORE"}
MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


# ----------------------------------------------------------------------------------------- parsing
@dataclass
class Lit:
    """A string (quoted or literal): compared by content only."""

    data: bytes


@dataclass
class Atom:
    text: str


Node = Atom | Lit | list["Node"]


def tokenize(buf: bytes) -> list[Node]:
    """Parse one response (literals inlined) into nested lists of atoms and strings.

    Lenient by design: whatever a server sends must turn into something comparable."""
    pos = 0
    stack: list[list[Node]] = [[]]
    n = len(buf)
    while pos < n:
        c = buf[pos:pos + 1]
        if c in (b" ", b"\r", b"\n"):
            pos += 1
        elif c == b"(":
            stack.append([])
            pos += 1
        elif c == b")":
            if len(stack) > 1:
                inner = stack.pop()
                stack[-1].append(inner)
            else:
                stack[-1].append(Atom(")"))
            pos += 1
        elif c == b'"':
            out = bytearray()
            pos += 1
            while pos < n and buf[pos:pos + 1] != b'"':
                if buf[pos:pos + 1] == b"\\" and pos + 1 < n:
                    pos += 1
                out += buf[pos:pos + 1]
                pos += 1
            pos += 1
            stack[-1].append(Lit(bytes(out)))
        elif (m := re.compile(rb"~?\{(\d+)\+?\}\r\n").match(buf, pos)):
            size = int(m.group(1))
            stack[-1].append(Lit(buf[m.end():m.end() + size]))
            pos = m.end() + size
        else:
            start = pos
            depth = 0
            while pos < n:
                ch = buf[pos:pos + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth = max(0, depth - 1)
                elif depth == 0 and ch in (b" ", b"(", b")", b"\r", b"\n", b'"'):
                    break
                pos += 1
            if pos == start:  # lone unexpected char
                pos += 1
            stack[-1].append(Atom(buf[start:pos].decode("utf-8", "replace")))
    while len(stack) > 1:
        inner = stack.pop()
        stack[-1].append(inner)
    return stack[0]


def mailbox(node: Node) -> str:
    """A mailbox name (astring: atom, quoted or literal) compared by content; INBOX case-insensitively."""
    text = node.text if isinstance(node, Atom) else node.data.decode("utf-8", "replace") if isinstance(node, Lit) \
        else render(node)
    return "INBOX" + text[5:] if text.upper() == "INBOX" or text.upper().startswith("INBOX/") else text


def render(node: Node) -> str:
    if isinstance(node, Atom):
        return node.text
    if isinstance(node, Lit):
        return '"' + node.data.decode("utf-8", "backslashreplace").replace("\r\n", "\\r\\n") + '"'
    return "(" + " ".join(render(x) for x in node) + ")"


# ------------------------------------------------------------------------------------ normalising
@dataclass
class Normaliser:
    """Per-server state for normalisation: UIDVALIDITY aliases and seen mod-sequences."""

    uidvalidity: dict[str, str] = field(default_factory=dict)
    modseqs: list[int] = field(default_factory=list)

    def uv(self, value: str) -> str:
        if value not in self.uidvalidity:
            self.uidvalidity[value] = f"U{len(self.uidvalidity) + 1}"
        return self.uidvalidity[value]

    def modseq(self, value: str, highest: bool = False) -> str:
        if highest and value.isdigit():
            self.modseqs.append(int(value))
        return "<M>"

    # -- pieces
    def caps(self, names: list[str]) -> str:
        keep = sorted({c.upper() for c in names} & COMPARED_CAPS)
        return " ".join(keep)

    def flags(self, node: Node) -> Node:
        if not isinstance(node, list):
            return node
        items = sorted({render(x) for x in node if render(x).lower() != "\\recent"}, key=str.lower)
        return [Atom(x) for x in items]

    def internaldate(self, node: Node) -> Node:
        if not isinstance(node, Lit):
            return node
        text = node.data.decode("ascii", "replace").strip()
        m = re.match(r"(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", text)
        if not m:
            return Atom("INTERNALDATE?" + text)
        d, mon, y, hh, mm, ss, sign, zh, zm = m.groups()
        off = (int(zh) * 60 + int(zm)) * (1 if sign == "+" else -1)
        when = datetime(int(y), MONTHS.get(mon, 1), int(d), int(hh), int(mm), int(ss), tzinfo=UTC)
        ts = when.timestamp() - off * 60
        if abs(ts - time.time()) < 600:
            return Atom("<NOW>")
        return Atom(datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def code(self, text: str) -> str:
        """Normalise the inside of a response code `[...]`."""
        parts = text.split(" ", 1)
        name = parts[0].upper()
        arg = parts[1] if len(parts) > 1 else ""
        if name == "CAPABILITY":
            return "CAPABILITY " + self.caps(arg.split())
        if name == "UIDVALIDITY":
            return "UIDVALIDITY " + self.uv(arg.strip())
        if name in ("COPYUID", "APPENDUID"):
            bits = arg.split(" ", 1)
            return f"{name} {self.uv(bits[0])} {bits[1] if len(bits) > 1 else ''}".rstrip()
        if name in ("HIGHESTMODSEQ", "NOMODSEQ"):
            return f"{name} {self.modseq(arg.strip(), highest=True)}".rstrip() if arg else name
        if name == "BADCHARSET":
            return "BADCHARSET"  # the charset list is optional (RFC 3501 7.1)
        if name in ("ALERT", "NONEXISTENT", "CLIENTBUG"):
            return ""  # RFC 5530 codes are optional; Dovecot 2.3 omits NONEXISTENT on SELECT/STATUS
        if name == "MODIFIED":
            return f"MODIFIED {arg}"
        if name == "PERMANENTFLAGS":
            return "PERMANENTFLAGS " + " ".join(render(x) for x in [self.flags(tokenize(arg.encode())[0])]) \
                if arg.startswith("(") else text
        return (name + (" " + arg if arg else "")).strip()

    def status(self, prefix: str, rest: bytes) -> str:
        """`TAG|* OK|NO|BAD|BYE|PREAUTH [code] text` -> without the text."""
        text = rest.decode("utf-8", "replace").rstrip("\r\n")
        m = re.match(r"\[((?:[^\]\[]|\[[^\]]*\])*)\]", text)
        if m:
            code = self.code(m.group(1))
            return f"{prefix} [{code}]" if code else prefix
        return prefix

    def untagged(self, data: bytes) -> str:
        """Normalise one `* ...` response (literals inlined)."""
        nodes = tokenize(data[2:])
        if not nodes:
            return "*"
        first = render(nodes[0]).upper() if isinstance(nodes[0], Atom) else ""
        if first in ("OK", "NO", "BAD", "BYE", "PREAUTH"):
            rest = data[2:].split(b" ", 1)
            return self.status(f"* {first}", rest[1] if len(rest) > 1 else b"")
        if first == "CAPABILITY":
            return "* CAPABILITY " + self.caps([render(x) for x in nodes[1:]])
        if first == "ID":
            return "* ID <...>"
        if first in ("SEARCH", "SORT"):
            nums = [render(x) for x in nodes[1:] if isinstance(x, Atom)]
            mod = [x for x in nodes[1:] if isinstance(x, list)]
            if first == "SEARCH":
                nums = sorted(nums, key=lambda v: int(v) if v.isdigit() else 0)
            out = f"* {first} " + " ".join(nums)
            if mod:
                out += " (MODSEQ <M>)"
                for x in mod:
                    if len(x) == 2:
                        self.modseq(render(x[1]))
            return out.rstrip()
        if first == "ESEARCH":
            # RFC 4731: (TAG "x") [UID] then return data es_pairs in any order.
            es_out = ["* ESEARCH"]
            es_rest = nodes[1:]
            if es_rest and isinstance(es_rest[0], list):
                es_out.append(render(es_rest[0]))
                es_rest = es_rest[1:]
            if es_rest and render(es_rest[0]).upper() == "UID":
                es_out.append("UID")
                es_rest = es_rest[1:]
            es_pairs = []
            for k in range(0, len(es_rest) - 1, 2):
                key, val = render(es_rest[k]).upper(), render(es_rest[k + 1])
                if key == "MODSEQ":
                    val = self.modseq(val)
                es_pairs.append(f"{key} {val}")
            if len(es_rest) % 2:
                es_pairs.append(render(es_rest[-1]))
            return " ".join(es_out + sorted(es_pairs))
        if first == "STATUS" and len(nodes) >= 3 and isinstance(nodes[2], list):
            items = nodes[2]
            pairs = []
            for k in range(0, len(items) - 1, 2):
                key = render(items[k]).upper()
                val = render(items[k + 1])
                if key == "UIDVALIDITY":
                    val = self.uv(val)
                elif key == "HIGHESTMODSEQ":
                    val = self.modseq(val)
                elif key == "RECENT":
                    val = "<n>"
                pairs.append(f"{key} {val}")
            return f"* STATUS {mailbox(nodes[1])} (" + " ".join(sorted(pairs)) + ")"
        if first in ("LIST", "LSUB") and len(nodes) >= 4:
            attrs = sorted((render(a) for a in nodes[1]), key=str.lower) if isinstance(nodes[1], list) else []
            tail = " ".join(render(x) for x in nodes[4:])
            return f"* {first} (" + " ".join(attrs) + f") {render(nodes[2])} {mailbox(nodes[3])} {tail}".rstrip()
        if first in ("FLAGS",) and len(nodes) == 2:
            return "* FLAGS " + render(self.flags(nodes[1]))
        if len(nodes) >= 2 and isinstance(nodes[1], Atom) and nodes[1].text.upper() == "RECENT":
            return "* <n> RECENT"
        if len(nodes) >= 3 and isinstance(nodes[1], Atom) and nodes[1].text.upper() == "FETCH" \
                and isinstance(nodes[2], list):
            return f"* {render(nodes[0])} FETCH " + self.fetch(nodes[2])
        if first == "VANISHED":
            return "* " + " ".join(render(x) for x in nodes)
        return "* " + " ".join(render(x) for x in nodes)

    def fetch(self, items: list[Node]) -> str:
        pairs: list[tuple[str, str]] = []
        for k in range(0, len(items) - 1, 2):
            key = render(items[k]).upper()
            val = items[k + 1]
            if key == "FLAGS":
                val = self.flags(val)
            elif key == "INTERNALDATE":
                val = self.internaldate(val)
            elif key == "MODSEQ":
                if isinstance(val, list) and val:
                    self.modseq(render(val[0]))
                val = Atom("(<M>)")
            pairs.append((key, render(val)))
        if len(items) % 2:
            pairs.append(("?", render(items[-1])))
        return "(" + " ".join(f"{k} {v}" for k, v in sorted(pairs)) + ")"

    def response(self, data: bytes) -> str:
        if data.startswith(b"+"):
            return "+"
        if data.startswith(b"* "):
            return self.untagged(data)
        tag, _, rest = data.partition(b" ")
        word, _, more = rest.partition(b" ")
        if word.upper() in (b"OK", b"NO", b"BAD"):
            return self.status(f"{tag.decode('utf-8', 'replace')} {word.upper().decode()}", more)
        return "?? " + data.decode("utf-8", "backslashreplace").rstrip("\r\n")


# ------------------------------------------------------------------------------------------ client
class Connection:
    """A raw IMAP connection that reads whole responses (literals included)."""

    def __init__(self, port: int, timeout: float = 5) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True  # the next read reports <EOF>

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            self.closed = True
            return False
        if not chunk:
            self.closed = True
            return False
        # Acknowledge at once: a server whose socket keeps Nagle on would otherwise wait for our
        # delayed ACK (40 ms) before sending the answer to a second pipelined command.
        with contextlib.suppress(OSError, AttributeError):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        self.buf += chunk
        return True

    def read_response(self, timeout: float | None = None) -> bytes | None:
        """One response including its literals, or None on timeout/EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        pos = 0
        while True:
            nl = self.buf.find(b"\r\n", pos)
            if nl < 0:
                if not self._fill(deadline):
                    return None
                continue
            m = re.search(rb"~?\{(\d+)\+?\}$", self.buf[:nl])
            if m:
                need = nl + 2 + int(m.group(1))
                while len(self.buf) < need:
                    if not self._fill(deadline):
                        return None
                pos = need
                continue
            out, self.buf = self.buf[:nl + 2], self.buf[nl + 2:]
            return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def unescape(text: str) -> bytes:
    return text.encode("utf-8").decode("unicode_escape").encode("latin-1")


@dataclass
class Transcript:
    lines: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    norm: Normaliser = field(default_factory=Normaliser)


class SessionPlayer:
    """Plays one script against one server (port, user, password)."""

    def __init__(self, port: int, user: str, password: str, messages_dir: list[Path]) -> None:
        self.port, self.user, self.password = port, user, password
        self.dirs = messages_dir
        self.conns: dict[str, Connection] = {}
        self.pending: dict[str, bytes] = {}  # connection -> tag of a command awaiting continuation
        self.vars: dict[str, dict[str, str]] = {}
        self.condstore: set[str] = set()  # connections that enabled CONDSTORE (RFC 7162 3.1)
        self.t = Transcript()

    # -- helpers
    def record(self, conn: str, data: bytes) -> str:
        self.t.raw.append(f"{conn}< " + data.decode("utf-8", "backslashreplace").rstrip("\r\n")[:400])
        line = self.t.norm.response(data)
        # A bare untagged OK carries nothing but text: an IDLE keepalive. Dovecot's first "* OK
        # Still here" comes at a point of imap_idle_notify_interval (2 min) set by a hash of
        # user and clock, so now and then within a short IDLE.
        dropped = line in ("* <n> RECENT", "* OK") or (
            line.startswith("* OK [HIGHESTMODSEQ") and conn not in self.condstore)
        cap = re.match(r"(\S+) OK \[CAPABILITY ?(.*)\]$", line)
        if cap and cap.group(1) != "*":
            # RFC 3501 7.1: a CAPABILITY response code and an untagged CAPABILITY are equivalent.
            self.t.lines.append(f"{conn}< * CAPABILITY {cap.group(2)}".rstrip())
            self.t.lines.append(f"{conn}< {cap.group(1)} OK")
        elif not dropped:
            self.t.lines.append(f"{conn}< {line}")
        v = self.vars.setdefault(conn, {})
        if m := re.search(rb"\[UIDVALIDITY (\d+)\]", data):
            v["UIDVALIDITY"] = m.group(1).decode()
        if m := re.search(rb"\[HIGHESTMODSEQ (\d+)\]", data):
            v["HIGHESTMODSEQ"] = m.group(1).decode()
        return line

    def conn(self, name: str) -> Connection:
        if name not in self.conns:
            c = Connection(self.port)
            self.conns[name] = c
            greet = c.read_response()
            self.record(name, greet or b"<no greeting>\r\n")
        return self.conns[name]

    def file_bytes(self, name: str) -> bytes:
        for d in self.dirs:
            if (d / name).exists():
                return (d / name).read_bytes()
        raise FileNotFoundError(name)

    def expand(self, conn: str, line: str) -> list[tuple[bytes, str]]:
        """Split a command line into chunks; each chunk ends with how it is sent ('' / sync / nonsync)."""
        v = self.vars.get(conn, {})
        plain = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        line = line.replace("$USER", self.user).replace("$PASS", self.password).replace("$PLAIN", plain)
        line = line.replace("$UIDVALIDITY", v.get("UIDVALIDITY", "1"))
        line = line.replace("$HIGHESTMODSEQ+1", str(int(v.get("HIGHESTMODSEQ", "1")) + 1))
        line = line.replace("$HIGHESTMODSEQ", v.get("HIGHESTMODSEQ", "1"))
        chunks: list[tuple[bytes, str]] = []
        pos = 0
        for m in re.finditer(r"\{\{(file|lit\+?):(.*?)\}\}", line):
            head = line[pos:m.start()].encode("utf-8")
            data = self.file_bytes(m.group(2)) if m.group(1) == "file" else unescape(m.group(2))
            sync = m.group(1) != "lit+"
            chunks.append((head + f"{{{len(data)}{'' if sync else '+'}}}\r\n".encode(), "sync" if sync else ""))
            chunks.append((data, ""))
            pos = m.end()
        chunks.append((line[pos:].encode("utf-8") + b"\r\n", "end"))
        # merge: data chunk + following head
        return chunks

    def read_until_done(self, conn: str, tag: bytes, c: Connection) -> str:
        """Record responses until the tagged completion or a continuation request."""
        while True:
            data = c.read_response()
            if data is None:
                self.t.lines.append(f"{conn}< <{'EOF' if c.closed else 'TIMEOUT'}>")
                return "eof"
            line = self.record(conn, data)
            if data.startswith(b"+"):
                return "cont"
            if data.split(b" ", 1)[0] == tag:
                return "done"
            if line.startswith("* BYE") and not tag:
                return "done"

    def command(self, conn: str, line: str) -> None:
        c = self.conn(conn)
        if conn in self.pending:
            tag = self.pending.pop(conn)
            self.t.lines.append(f"{conn}> {line}")
            c.send(b"".join(data for data, _ in self.expand(conn, line)))
        else:
            tag = line.split(" ", 1)[0].encode()
            if re.search(r"CONDSTORE|QRESYNC|MODSEQ|CHANGEDSINCE", line, re.I):
                self.condstore.add(conn)
            shown = re.sub(r"\{\{file:(.*?)\}\}", r"<\1>", line)
            self.t.lines.append(f"{conn}> {shown}")
            chunks = self.expand(conn, line)
            verb = " ".join(line.split(" ")[1:3]).upper()
            start = len(self.t.lines)
            pending_data = b""
            for data, how in chunks:
                pending_data += data
                if how == "sync":
                    c.send(pending_data)
                    pending_data = b""
                    got = c.read_response()
                    if got is None:
                        self.t.lines.append(f"{conn}< <TIMEOUT waiting for continuation>")
                        return
                    self.record(conn, got)
                    if not got.startswith(b"+"):
                        return  # refused the literal: the command is over
            c.send(pending_data)
            state = self.read_until_done(conn, tag, c)
            if state == "cont":
                self.pending[conn] = tag
            self._filter_list(start, line)
            self._drop_failed_fetch(start, verb)
            self._sort_block(start, verb)
            return
        if self.read_until_done(conn, tag, c) == "cont":
            self.pending[conn] = tag

    def _drop_failed_fetch(self, start: int, verb: str) -> None:
        """A FETCH that ends in NO/BAD: its partial untagged FETCH data (how far a server got
        before failing, e.g. Dovecot's `* n FETCH (UID n)`) is not compared, only the status."""
        if verb.split(" ")[0] != "FETCH" and not verb.startswith("UID FETCH"):
            return
        block = self.t.lines[start:]
        if not block or not re.search(r"^\S+< [^*+ ]\S* (NO|BAD)", block[-1]):
            return
        self.t.lines[start:] = [x for x in block if not re.match(r"^\S+< \* \d+ FETCH ", x)]

    def _filter_list(self, start: int, line: str) -> None:
        """Drop LIST attributes the server MAY but need not return (RFC 5258 4, RFC 6154 2).

        Extended LIST: \\HasChildren/\\HasNoChildren only count when CHILDREN was asked for,
        special-use attributes only when SPECIAL-USE was. LSUB: special-use never counts."""
        words = line.upper().split()
        if len(words) < 2 or words[1] not in ("LIST", "LSUB"):
            return
        extended = words[1] == "LIST" and (line.split(" ", 2)[2:3] or [""])[0].startswith("(") \
            or " RETURN " in line.upper() or bool(re.search(r'LIST\s+\S+\s+\(', line, re.I))
        special = {"\\all", "\\archive", "\\drafts", "\\flagged", "\\junk", "\\sent", "\\trash"}
        drop: set[str] = set()
        if words[1] == "LSUB":
            drop |= special
        elif extended:
            if "CHILDREN" not in line.upper():
                drop |= {"\\haschildren", "\\hasnochildren"}
            if "SPECIAL-USE" not in line.upper():
                drop |= special
        if not drop:
            return
        for k in range(start, len(self.t.lines)):
            m = re.match(r"^(\S+< \* L(?:IST|SUB) \()([^)]*)(\).*)$", self.t.lines[k])
            if m:
                attrs = [a for a in m.group(2).split() if a.lower() not in drop]
                self.t.lines[k] = m.group(1) + " ".join(attrs) + m.group(3)

    def _sort_block(self, start: int, verb: str) -> None:
        v1 = verb.split(" ")[0]
        if v1 in SORTED_COMMANDS or verb in SORTED_COMMANDS:
            block = self.t.lines[start:]
            untagged = sorted(x for x in block if x.split("< ", 1)[-1].startswith("* "))
            others = [x for x in block if not x.split("< ", 1)[-1].startswith("* ")]
            self.t.lines[start:] = untagged + others

    def wait(self, conn: str, seconds: float) -> None:
        c = self.conn(conn)
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            data = c.read_response(timeout=left)
            if data is None:
                break
            self.record(conn, data)

    def raw(self, conn: str, text: str) -> None:
        c = self.conn(conn)
        self.t.lines.append(f"{conn}> @raw {text}")
        c.send(unescape(text))
        while True:
            data = c.read_response(timeout=0.7)
            if data is None:
                if c.closed:
                    self.t.lines.append(f"{conn}< <EOF>")
                break
            self.record(conn, data)

    def play(self, script: str) -> Transcript:
        conn = "A"
        try:
            for raw_line in script.splitlines():
                line = raw_line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if line.startswith("@"):
                    word, _, arg = line[1:].partition(" ")
                    if word == "conn":
                        conn = arg.strip()
                        self.conn(conn)
                    elif word == "wait":
                        self.wait(conn, float(arg))
                    elif word == "raw":
                        self.raw(conn, arg)
                    elif word == "close":
                        self.conns.pop(conn).close()
                    continue
                self.command(conn, line)
        finally:
            for c in self.conns.values():
                c.close()
        self.t.lines = merge_expunges(self.t.lines)
        return self.t


def merge_expunges(lines: list[str]) -> list[str]:
    """Adjacent `* n EXPUNGE` lines -> the set of sequence numbers they remove, as of before the run.

    Servers may report the same expunges in any order (Dovecot: descending; others ascending
    with renumbering); RFC 3501 7.4.1 only requires each number to be valid when it is sent."""
    out: list[str] = []
    k = 0
    pat = re.compile(r"^(\S+)< \* (\d+) EXPUNGE$")
    while k < len(lines):
        m = pat.match(lines[k])
        if not m:
            out.append(lines[k])
            k += 1
            continue
        conn, nums = m.group(1), []
        while k < len(lines) and (m2 := pat.match(lines[k])) and m2.group(1) == conn:
            nums.append(int(m2.group(2)))
            k += 1
        remaining = list(range(1, max(nums) + len(nums) + 1))
        removed = []
        for n in nums:
            if 1 <= n <= len(remaining):
                removed.append(remaining.pop(n - 1))
            else:
                removed.append(-n)
        out.append(f"{conn}< * EXPUNGED " + ",".join(str(x) for x in sorted(removed)))
    return out


def header(script: str, name: str) -> str | None:
    for line in script.splitlines():
        if line.startswith(f"@{name} "):
            return line.split(" ", 1)[1].strip()
    return None
