#!/usr/bin/env python3
"""Inbound SMTP benchmark: Mailwright vs Postfix->Dovecot, same machine, same load, same run.

For each message size (1 KiB, 10 KiB, 100 KiB) and concurrency (1, 8, 32) it runs the peers'
load generator (``../shared/bench/peers/smtp_load.py``: N messages, K per session, a random
recipient of user1..user100@bench.test) against

* **Mailwright**: ``python -m mailwright serve`` on a fresh temporary data dir (SQLite by
  default, ``--database-url`` for PostgreSQL), users created through the management API.
  Mailwright answers 250 only after the message is committed and fsynced into the mailbox,
  so its end-to-end time is its acceptance time (checked: the stored count must reach N).
* **Postfix->Dovecot**: ``postfix_dovecot.sh start DIR`` (Postfix smtpd -> queue -> LMTP ->
  Dovecot Maildir), ``stop`` at the end. End to end = from the first MAIL FROM until the
  N-th message is in a Maildir (polled with ``postfix_dovecot.sh count``).

Before the measured runs each server gets ``--warmup`` messages (300, 1 KiB, C=4; not counted),
so the first cell does not measure a cold page cache and an empty database file.

Prints a table: accepted msg/s, p50/p99 latency, end-to-end msg/s for both, and the ratios
Mailwright/Postfix. ``--json FILE`` also writes every run. Needs root for Postfix
(``--no-postfix`` to skip it).

    python3 bench/smtp_bench.py                      # full matrix, N=3000 (1500 for 100 KiB)
    python3 bench/smtp_bench.py -n 500 --sizes 1024 --conc 8   # quick iteration
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("MW_PEERS_DIR", ROOT.parent / "shared" / "bench" / "peers"))
SMTP_LOAD = PEERS / "smtp_load.py"
PF_SCRIPT = PEERS / "postfix_dovecot.sh"
ADMIN = "bench-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailwright:
    def __init__(self, base: Path, database_url: str | None, workers: int, verify: bool) -> None:
        self.dir = base / "mailwright"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.workers = workers
        self.verify = verify
        self.http = free_port()
        self.smtp = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mailwright", "serve", "--data-dir", str(self.dir), "--hostname", "mx.bench.local",
               "--http-port", str(self.http), "--smtp-port", str(self.smtp), "--workers", str(self.workers)]
        for name in ("submission", "submissions", "imap", "imaps", "pop3", "pop3s"):
            cmd += [f"--{name}-port", "0"]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        env = {**os.environ, "MAILWRIGHT_ADMIN_TOKEN": ADMIN, "MAILWRIGHT_LOG_LEVEL": "warning",
               "MAILWRIGHT_SMTP_VERIFY_INBOUND": "true" if self.verify else "false"}
        log = open(self.dir / "serve.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mailwright serve exited; see " + str(self.dir / "serve.log"))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        self._api("POST", "/api/principal", {"name": "bench.test", "type": "domain"})
        for i in range(1, 101):
            addr = f"user{i}@bench.test"
            self._api("POST", "/api/principal", {"name": addr, "type": "individual", "secrets": ["benchpass"],
                                                 "emails": [addr]})

    def _api(self, method: str, path: str, body: Any) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", method=method,
                                     data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def count(self) -> int:
        if self.database_url:
            return -1  # PostgreSQL: trust the 250s (they are only sent after the commit)
        db = sqlite3.connect(f"file:{self.dir / 'mailwright.db'}?mode=ro", uri=True, timeout=30)
        try:
            return int(db.execute("SELECT count(*) FROM mailbox_entries").fetchone()[0])
        finally:
            db.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class PostfixDovecot:
    def __init__(self, base: Path) -> None:
        self.dir = base / "postfix"
        # Free ports, so a second benchmark (IMAP) or a stray instance cannot collide with us.
        self.smtp = free_port()
        self.env = {**os.environ, "PORT_SMTP": str(self.smtp), "PORT_IMAP": str(free_port()),
                    "PORT_POP3": str(free_port())}

    def _run(self, cmd: str) -> str:
        out = subprocess.run(["bash", str(PF_SCRIPT), cmd, str(self.dir)], capture_output=True, text=True,
                             timeout=600, env=self.env)
        if out.returncode != 0:
            raise RuntimeError(f"postfix_dovecot.sh {cmd} failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
        return out.stdout

    def start(self) -> None:
        self._run("start")

    def count(self) -> int:
        return int(self._run("count").strip() or 0)

    def stop(self) -> None:
        try:
            self._run("stop")
        except RuntimeError as exc:
            print(exc, file=sys.stderr)


def load(port: int, n: int, size: int, conc: int, per_session: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(SMTP_LOAD), "--port", str(port), "-n", str(n), "-s", str(size),
                          "-c", str(conc), "-k", str(per_session), "--users", "100", "--domain", "bench.test",
                          "--json"], capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"smtp_load failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_one(target: Any, port: int, n: int, size: int, conc: int, k: int, e2e_timeout: float) -> dict[str, Any]:
    before = target.count()
    t0 = time.time()
    res = load(port, n, size, conc, k)
    start = res.get("t_start_epoch", t0)
    want = before + res["ok"]
    if before < 0:
        res["e2e_s"] = res["elapsed_s"]
    else:
        deadline = time.time() + e2e_timeout
        got = target.count()
        while got < want and time.time() < deadline:
            time.sleep(0.05)
            got = target.count()
        done = time.time()
        res["stored"] = got - before
        res["e2e_s"] = round(max(done - start, res["elapsed_s"]) if got >= want else float("nan"), 3)
    res["e2e_msgs_per_s"] = round(res["ok"] / res["e2e_s"], 1) if res["e2e_s"] and res["e2e_s"] == res["e2e_s"] else 0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000, help="messages per run (100 KiB runs use n/2)")
    ap.add_argument("--sizes", default="1024,10240,102400")
    ap.add_argument("--conc", default="1,8,32")
    ap.add_argument("-k", type=int, default=10, help="messages per SMTP session")
    ap.add_argument("--database-url", default=None, help="Mailwright on PostgreSQL instead of SQLite")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--verify", action="store_true", help="Mailwright checks SPF/DKIM/DMARC (needs working DNS)")
    ap.add_argument("--no-postfix", action="store_true")
    ap.add_argument("--only-postfix", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write every run as JSON lines here")
    ap.add_argument("--base", type=Path, default=None, help="work dir (default: a temp dir)")
    ap.add_argument("--warmup", type=int, default=300,
                    help="messages sent to each server before the measured runs (not counted)")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    concs = [int(x) for x in a.conc.split(",")]
    base = a.base or Path(tempfile.mkdtemp(prefix="mw-smtp-bench-"))
    base.chmod(0o755)  # Postfix and Dovecot run as other users and need to reach their dirs
    results: list[dict[str, Any]] = []
    targets: list[tuple[str, Any, int]] = []
    mw = pf = None
    try:
        if not a.only_postfix:
            mw = Mailwright(base, a.database_url, a.workers, a.verify)
            mw.start()
            targets.append(("mailwright", mw, mw.smtp))
        if not a.no_postfix:
            pf = PostfixDovecot(base)
            pf.start()
            targets.append(("postfix", pf, pf.smtp))
        if a.warmup:  # first-run costs (page cache, the SQLite file growing, code paths never run)
            for _name, target, port in targets:
                run_one(target, port, a.warmup, 1024, 4, a.k, e2e_timeout=600)
        for size in sizes:
            n = a.n if size < 100_000 else max(1, a.n // 2)
            for conc in concs:
                for name, target, port in targets:
                    res = run_one(target, port, n, size, conc, a.k, e2e_timeout=600)
                    res.update(target_name=name, size_b=size, conc=conc)
                    results.append(res)
                    print(f"{name:10s} size={size:6d} c={conc:2d} n={n}: {res['msgs_per_s']:8.1f} msg/s "
                          f"p50={res['lat_p50_ms']:.1f}ms p99={res['lat_p99_ms']:.1f}ms "
                          f"e2e={res['e2e_msgs_per_s']} msg/s errors={res['errors']}", flush=True)
                    if a.json:
                        with open(a.json, "a") as fh:
                            fh.write(json.dumps(res) + "\n")
    finally:
        if mw is not None:
            mw.stop()
        if pf is not None:
            pf.stop()
    print_table(results)


def print_table(results: list[dict[str, Any]]) -> None:
    by: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["size_b"], r["conc"]), {})[r["target_name"]] = r
    print()
    print("| size | C | Mailwright accept msg/s | p50 / p99 ms | Postfix→Dovecot accept msg/s | p50 / p99 ms "
          "| MW e2e msg/s | PF e2e msg/s | ratio accept | ratio e2e |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (size, conc), pair in sorted(by.items()):
        mw, pf = pair.get("mailwright"), pair.get("postfix")

        def cell(r: dict[str, Any] | None, key: str) -> str:
            return "–" if r is None else str(r[key])

        def lat(r: dict[str, Any] | None) -> str:
            return "–" if r is None else f"{r['lat_p50_ms']:.1f} / {r['lat_p99_ms']:.1f}"

        ra = f"{mw['msgs_per_s'] / pf['msgs_per_s']:.2f}" if mw and pf and pf["msgs_per_s"] else "–"
        re_ = f"{mw['e2e_msgs_per_s'] / pf['e2e_msgs_per_s']:.2f}" if mw and pf and pf["e2e_msgs_per_s"] else "–"
        label = f"{size // 1024} KiB"
        print(f"| {label} | {conc} | {cell(mw, 'msgs_per_s')} | {lat(mw)} | {cell(pf, 'msgs_per_s')} | {lat(pf)} "
              f"| {cell(mw, 'e2e_msgs_per_s')} | {cell(pf, 'e2e_msgs_per_s')} | {ra} | {re_} |")


if __name__ == "__main__":
    main()
