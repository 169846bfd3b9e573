"""Differential fuzz against Dovecot: mutate corpus messages, ask a private Dovecot 2.3 (see
make_golden.py), compare ENVELOPE/BODYSTRUCTURE/BODY/sections with ours.
Usage: diff_fuzz.py SEED N [struct]   (struct: random MIME trees instead of mutated corpus files)
Cases it found are kept in the corpus as 50_fuzz_*.eml.
"""

import importlib.util
import os
import pathlib
import random
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "src"))
spec = importlib.util.spec_from_file_location("mg", HERE / "make_golden.py")
mg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mg)
mg.WORK = pathlib.Path(f"/tmp/mw-fuzz-dovecot-{os.getpid()}")
mg.PARTS = ["1", "2", "3", "1.1", "1.2", "2.1", "2.2", "1.1.1"]


def items_for():
    its = ["ENVELOPE", "BODYSTRUCTURE", "BODY", "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]"]
    for p in mg.PARTS:
        its += [f"BODY.PEEK[{p}]", f"BODY.PEEK[{p}.MIME]"]
    return its


mg.items_for = items_for
from mailwright.mailstore.mime import fetch_section, parse_message  # noqa: E402 (needs sys.path)

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
rnd = random.Random(seed)
corpus = sorted(HERE.glob("*.eml"))
corpus = [c for c in corpus if c.stat().st_size < 5000]
TOK = [
    b"\r\n",
    b"\r\n\r\n",
    b"--",
    b"\r\n--",
    b":",
    b";",
    b'"',
    b"\\",
    b"(",
    b")",
    b"<",
    b">",
    b"@",
    b",",
    b" ",
    b"\t",
    b"=?",
    b"?=",
    b"\x80",
    b"\r\n ",
    b"boundary=",
    b"Content-Type: multipart/mixed; boundary=x\r\n",
    b"\r\n--x\r\n",
    b"message/rfc822",
    b"\r\n\r\n--x--\r\n",
]
STRUCT = len(sys.argv) > 3 and sys.argv[3] == "struct"


def gen_entity(depth: int, bounds: list[str], digest: bool) -> bytes:
    """A random MIME entity: nested multiparts with clashing/prefix boundaries, rfc822 parts,
    missing blank lines, missing close delimiters, LF-only lines, junk after boundaries."""
    nl = b"\n" if rnd.random() < 0.1 else b"\r\n"
    hdr: list[bytes] = []
    kind = rnd.choice(["text", "text", "multi", "multi", "rfc822", "none", "app"] if depth < 4 else ["text", "none"])
    own = ""
    if kind == "multi":
        own = rnd.choice(["b", "bb", "b1", "x"] + [b + rnd.choice(["", "x", "-"]) for b in bounds] + bounds)
        sub = rnd.choice(["mixed", "alternative", "digest", "related"])
        q = rnd.choice(['"%s"', "%s"])
        hdr.append(f"Content-Type: multipart/{sub}; boundary={q % own}".encode())
        digest_here = sub == "digest"
    elif kind == "rfc822":
        hdr.append(b"Content-Type: message/rfc822")
    elif kind == "text":
        hdr.append(b"Content-Type: text/plain; charset=us-ascii")
    elif kind == "app":
        hdr.append(b"Content-Type: application/octet-stream")
    if rnd.random() < 0.3:
        hdr.append(rnd.choice([b"Subject: s", b"Content-ID: <i@x>", b"MIME-Version: 1.0", b"X-Junk"]))
    out = nl.join(hdr) + (nl if hdr else b"")
    if rnd.random() < 0.9:
        out += nl  # blank line
    if kind == "multi":
        if rnd.random() < 0.3:
            out += b"preamble" + nl
        for _ in range(rnd.randrange(0, 4)):
            junk = rnd.choice([b"", b"", b"  ", b"--", b"x"])
            out += b"--" + own.encode() + junk + nl + gen_entity(depth + 1, bounds + [own], digest_here) + nl
        r = rnd.random()
        if r < 0.7:
            out += b"--" + own.encode() + b"--" + rnd.choice([b"", nl, nl + b"epilogue" + nl])
        elif r < 0.8:
            out += b"--" + own.encode()
    elif kind == "rfc822":
        out += gen_entity(depth + 1, bounds, False)
    else:
        lines = [
            rnd.choice([b"text", b"", b"--" + (rnd.choice(bounds).encode() if bounds else b"y"), b"more text"])
            for _ in range(rnd.randrange(0, 4))
        ]
        out += nl.join(lines)
    return out


out = []
bad = 0
for k in range(n):
    if STRUCT:
        raw = bytearray(b"From: a@b.example\r\nSubject: struct\r\nMIME-Version: 1.0\r\n" + gen_entity(0, [], False))
    else:
        raw = bytearray(rnd.choice(corpus).read_bytes())
    for _ in range(0 if STRUCT else rnd.randrange(1, 6)):
        op = rnd.randrange(4)
        pos = rnd.randrange(len(raw) + 1)
        if op == 0:
            raw[pos:pos] = rnd.choice(TOK)
        elif op == 1 and raw:
            del raw[pos : pos + rnd.randrange(1, 20)]
        elif op == 2 and raw:
            raw[min(pos, len(raw) - 1)] = rnd.randrange(256)
        else:
            j = rnd.randrange(len(raw) + 1)
            i = min(pos, j)
            j = max(pos, j)
            raw[pos:pos] = raw[i:j][:200]
    raw = bytes(raw)
    pathlib.Path("/tmp/mw-fuzz").mkdir(exist_ok=True)
    f = pathlib.Path(f"/tmp/mw-fuzz/{'s' if STRUCT else 'm'}{seed}_{k}.eml")
    f.write_bytes(raw)
    gold = mg.run_one(f)
    pm = parse_message(raw)
    mism = []
    for item, exp in gold.items():
        if item in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
            got = (
                {"ENVELOPE": pm.envelope, "BODYSTRUCTURE": pm.bodystructure, "BODY": pm.body}[item]
                .encode("utf-8", "surrogateescape")
                .decode("latin-1")
            )
        else:
            got = "LIT:" + (fetch_section(raw, item[10:-1]) or b"").decode("latin-1")
        if exp.startswith("STR:"):
            exp = "LIT:" + exp[4:]
        if got != exp:
            mism.append((item, exp, got))
    if mism:
        bad += 1
        print(f"=== {f}")
        for item, exp, got in mism[:4]:
            print(f"  {item}\n    exp {exp[:400]!r}\n    got {got[:400]!r}")
print("bad", bad, "of", n)
