"""Record Dovecot 2.3 answers for every corpus message into dovecot_golden.json.

Run as root with dovecot-imapd installed:  python make_golden.py
Each message goes into its own private maildir; /usr/lib/dovecot/imap is run in
PREAUTH mode (no daemon) and fed one FETCH per item so the answers can be parsed
without a full IMAP client.  Values are stored latin-1-decoded (lossless bytes).

The corpus: 01-46 and 48-49 are written by gen_corpus.py; 47_nul_in_headers.eml and the
50_fuzz_*.eml files are inputs on which diff_fuzz.py once found a difference (kept as-is).
Dovecot answers pipelined FETCHes concurrently, so answers are matched by item name.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
WORK = pathlib.Path("/tmp/mw-dovecot-golden")
PARTS = [
    "1",
    "2",
    "3",
    "4",
    "5",
    "1.1",
    "1.2",
    "1.3",
    "2.1",
    "2.2",
    "2.3",
    "3.1",
    "1.1.1",
    "1.1.2",
    "1.2.1",
    "2.1.1",
    "2.2.1",
    "1.1.1.1",
]
CONF = """base_dir = {w}/run
mail_location = maildir:{w}/md
log_path = {w}/dovecot.log
ssl = no
protocols = imap
mail_uid = mail
mail_gid = mail
first_valid_uid = 1
first_valid_gid = 1
"""


def items_for() -> list[str]:
    items = [
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "RFC822.SIZE",
        "BODY.PEEK[]",
        "BODY.PEEK[HEADER]",
        "BODY.PEEK[TEXT]",
        "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT)]",
        "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT RECEIVED)]",
        "BODY.PEEK[1.HEADER.FIELDS (CONTENT-TYPE)]",
        "BINARY.PEEK[]",
        "BINARY.SIZE[]",
    ]
    for p in PARTS:
        items += [
            f"BODY.PEEK[{p}]",
            f"BODY.PEEK[{p}.MIME]",
            f"BODY.PEEK[{p}.HEADER]",
            f"BODY.PEEK[{p}.TEXT]",
            f"BINARY.PEEK[{p}]",
        ]
    return items


def parse_value(buf: bytes, i: int) -> tuple[bytes, int]:
    """Return the raw bytes of one IMAP value starting at buf[i] (literal unwrapped) and new index."""
    if buf.startswith(b"NIL", i):
        return b"NIL", i + 3
    m = re.compile(rb"~?\{(\d+)\}\r\n").match(buf, i)
    if m:
        n = int(m.group(1))
        return b"LIT:" + buf[m.end() : m.end() + n], m.end() + n
    if buf[i : i + 1] == b'"':
        j = i + 1
        out = bytearray()
        while buf[j : j + 1] != b'"':
            if buf[j : j + 1] == b"\\":
                j += 1
            out += buf[j : j + 1]
            j += 1
        return b"STR:" + bytes(out), j + 1
    if buf[i : i + 1] == b"(":
        depth, j = 0, i
        while True:
            c = buf[j : j + 1]
            if c == b'"':
                j += 1
                while buf[j : j + 1] != b'"':
                    j += 2 if buf[j : j + 1] == b"\\" else 1
            elif c == b"{":
                m = re.compile(rb"\{(\d+)\}\r\n").match(buf, j)
                if m:
                    j = m.end() + int(m.group(1)) - 1
            elif c == b"(":
                depth += 1
            elif c == b")":
                depth -= 1
                if depth == 0:
                    return buf[i : j + 1], j + 1
            j += 1
    m = re.compile(rb"[^ )]+").match(buf, i)
    assert m
    return m.group(0), m.end()


def run_one(eml: pathlib.Path) -> dict[str, str]:
    if WORK.exists():
        shutil.rmtree(WORK)
    for d in ("md/cur", "md/new", "md/tmp", "run"):
        (WORK / d).mkdir(parents=True)
    shutil.copy(eml, WORK / "md/cur/1.mw:2,S")
    (WORK / "dovecot.conf").write_text(CONF.format(w=WORK))
    subprocess.run(["chown", "-R", "mail:mail", str(WORK)], check=True)
    items = items_for()
    cmds = b"s SELECT INBOX\r\n" + b"".join(f"t{n} FETCH 1 ({it})\r\n".encode() for n, it in enumerate(items))
    cmds += b"z LOGOUT\r\n"
    out = subprocess.run(
        ["/usr/lib/dovecot/imap", "-c", str(WORK / "dovecot.conf")],
        input=cmds,
        capture_output=True,
        env={"USER": "mail", "HOME": str(WORK)},
        check=False,
    ).stdout
    got: dict[str, bytes] = {}
    status: dict[str, str] = {}
    i = 0
    # Dovecot runs pipelined FETCHes concurrently: match answers by item name, not by order.
    while i < len(out):
        if out.startswith(b"* 1 FETCH (", i):
            i += len(b"* 1 FETCH (")
            while True:
                m = re.compile(rb"([A-Z0-9.]+(?:\[[^\]]*\](?:<\d+>)?)?) ").match(out, i)
                assert m, out[i : i + 80]
                i = m.end()
                val, i = parse_value(out, i)
                got[m.group(1).decode()] = val
                if out[i : i + 1] != b" ":
                    break
                i += 1
            i = out.index(b"\r\n", i) + 2
            continue
        j = out.find(b"\r\n", i)
        if j < 0:
            break
        line = out[i:j]
        i = j + 2
        m = re.match(rb"t(\d+) (OK|NO|BAD)(.*)", line)
        if m:
            status[items[int(m.group(1))]] = m.group(2).decode() + m.group(3).decode("latin-1")
    res: dict[str, str] = {}
    for it in items:
        name = it.replace(".PEEK", "")
        st = status.get(it, "MISSING")
        if not st.startswith("OK"):
            res[it] = "ERR:" + re.sub(r" \(\d.*secs\)\.", "", st)
        elif name in got:
            res[it] = got[name].decode("latin-1")
        else:
            res[it] = "NONE"
    return res


def main() -> None:
    ver = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    golden: dict[str, object] = {"dovecot_version": ver}
    for eml in sorted(HERE.glob("*.eml")):
        golden[eml.name] = run_one(eml)
        print(eml.name, len(golden[eml.name]), file=sys.stderr)  # type: ignore[arg-type]
    (HERE / "dovecot_golden.json").write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
