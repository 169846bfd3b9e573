"""Differential fuzz against Dovecot's *save* path: mutate corpus messages (CR/LF runs, folds,
address and MIME punctuation), IMAP APPEND them to a private Dovecot 2.3 and compare ENVELOPE,
BODYSTRUCTURE, RFC822.SIZE and BODY[] sections with mailstore.mime.

Unlike diff_fuzz.py / make_golden.py (files copied into a Maildir, served as they are), this goes
through Dovecot's save, which stores LF line ends: that is what a real delivery sees (CR CR LF
loses a CR, the top-level ENVELOPE reads its header through one more CRLF -> LF pass, ...).

Usage (root, dovecot-imapd installed), from the repository root:
    .venv/bin/python tests/data/mime/append_fuzz.py SEED COUNT
Messages ending in a lone CR are skipped (Dovecot drops that CR on save; a kept difference, see
docs/imap-differences.md). Cases it found are in tests/test_mime.py (APPEND_CASES, BINARY_CASES).
"""

from __future__ import annotations

import pathlib
import random
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.support.dovecot import PASSWORD, Dovecot  # noqa: E402
from tests.support.imap_session import Connection  # noqa: E402

from mailwright.mailstore import mime  # noqa: E402 (needs sys.path)

NOISE = [b"\r", b"\r\r", b"\r\r\r\n", b"\r\r\n", b"\n", b"\r\n\r\n", b" \r\r\n ", b"\r\r\n\t", b"\r\n ", b"  ",
         b"\\", b"(", b")", b'"', b"<", b">", b"@", b",", b";", b":", b"\r\n\t", b"=", b"\t"]
ITEMS = ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE", "BODY[]", "BODY[HEADER]", "BODY[TEXT]", "BODY[1]",
         "BODY[1.MIME]", "BODY[2]"]


def mutate(rnd: random.Random, files: list[pathlib.Path]) -> bytes:
    raw = bytearray(rnd.choice(files).read_bytes())
    for _ in range(rnd.randint(1, 4)):
        i = rnd.randrange(len(raw) + 1)
        raw[i:i] = rnd.choice(NOISE)
    return bytes(raw)


def ours(raw: bytes, pm: mime.ParsedMessage, item: str) -> bytes:
    if item == "ENVELOPE":
        return pm.envelope.encode("utf-8", "surrogateescape")
    if item == "BODYSTRUCTURE":
        return pm.bodystructure.encode("utf-8", "surrogateescape")
    if item == "RFC822.SIZE":
        return str(mime.virtual_size(raw)).encode()
    data = mime.fetch_section(raw, item[5:-1]) or b""
    return b"{%d}\r\n" % len(data) + data


def main(seed: int, count: int) -> int:
    rnd = random.Random(seed)
    files = [p for p in sorted(pathlib.Path(__file__).parent.glob("*.eml")) if 0 < p.stat().st_size < 4000]
    msgs = [m for m in (mutate(rnd, files) for _ in range(count)) if not m.endswith(b"\r")]
    dovecot = Dovecot(pool=2).start()
    try:
        c = Connection(dovecot.port)
        c.read_response()

        def cmd(line: bytes) -> list[bytes]:
            c.send(b"x " + line + b"\r\n")
            out = []
            while (r := c.read_response()) is not None:
                out.append(r)
                if r.startswith(b"x "):
                    return out
            raise RuntimeError(f"Dovecot closed the connection after {line[:60]!r}")

        cmd(f'LOGIN "{dovecot.new_user()}" "{PASSWORD}"'.encode())
        for raw in msgs:
            assert cmd(b"APPEND INBOX {%d+}\r\n" % len(raw) + raw)[-1].startswith(b"x OK")
        cmd(b"SELECT INBOX")
        bad = 0
        for i, raw in enumerate(msgs, 1):
            pm = mime.parse_message(raw)
            for item in ITEMS:
                r = b"".join(cmd(f"FETCH {i} ({item.replace('BODY[', 'BODY.PEEK[')})".encode())[:-1])
                m = re.match(rb"\* \d+ FETCH \(" + re.escape(item.encode()) + rb" (.*)\)\r\n$", r, re.S)
                got = m.group(1) if m else r
                if got.startswith(b'"'):  # a quoted string equals the literal with the same bytes
                    got = b"{%d}\r\n" % (len(got) - 2) + got[1:-1]
                want = ours(raw, pm, item)
                if got != want:
                    bad += 1
                    print(f"message {i} {item}\n  dovecot {got!r}\n  ours    {want!r}\n  raw     {raw!r}")
        print(f"seed {seed}: {len(msgs)} messages, {bad} differences")
        return 1 if bad else 0
    finally:
        dovecot.stop()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1, int(sys.argv[2]) if len(sys.argv) > 2 else 100))
