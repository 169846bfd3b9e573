#!/usr/bin/env python3
"""Account provisioning benchmark: N accounts through the management API vs the Argon2id floor.

Starts ``python -m mailwright serve`` on a fresh temporary data dir (SQLite by default,
``--database-url`` for PostgreSQL; the API rate limit is switched off for the run), adds one
domain, then creates N accounts (``POST /api/principal``, type individual, one password each)
with 1 and with K concurrent clients, and reports accounts/s.

Next to it, the Argon2id hash rate measured alone on the same machine with the configured
parameters (``argon2_time_cost``, ``argon2_memory_kib``, ``argon2_parallelism``): hashes/s on
one thread and on as many threads as there are cores. Creating an account hashes its password
once, so the hash rate is the ceiling; the difference is the API + database cost.

Wall-clock rates depend on what else the machine is doing, so the benchmark also reports CPU
time, which does not: the server process's CPU milliseconds per account (from /proc, Linux)
next to the CPU milliseconds of one Argon2id hash. Their difference is what the API, the
database and the client-side work of the server cost per account. The load average at the
start and end is printed too.

    python3 bench/accounts_bench.py                  # N=1000, concurrency 1 and 8
    python3 bench/accounts_bench.py -n 200 --conc 4  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from mailwright.config import Settings  # noqa: E402

LISTENERS = ("http", "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, database_url: str | None, token: str) -> tuple[subprocess.Popen[bytes], str]:
    ports = {name: free_port() for name in LISTENERS}
    cmd = [sys.executable, "-m", "mailwright", "serve", "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    env = {**os.environ, "MAILWRIGHT_ADMIN_TOKEN": token, "MAILWRIGHT_API_RATE_PER_MINUTE": "0",
           "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{ports['http']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve did not come up")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its waited-for children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def hash_cpu_ms(settings: Settings, count: int = 20) -> float:
    hasher = PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib,
                            parallelism=settings.argon2_parallelism)
    t0 = time.thread_time()
    for _ in range(count):
        hasher.hash("password-000000-x")
    return (time.thread_time() - t0) * 1000 / count


def create_accounts(base: str, token: str, domain: str, prefix: str, n: int, conc: int) -> float:
    """Create n accounts with conc concurrent clients; returns elapsed seconds."""
    headers = {"Authorization": f"Bearer {token}"}
    clients = [httpx.Client(base_url=base, headers=headers, timeout=120) for _ in range(conc)]

    def one(i: int) -> None:
        addr = f"{prefix}{i}@{domain}"
        r = clients[i % conc].post("/api/principal", json={"name": addr, "type": "individual",
                                                            "secrets": [f"password-{i:06d}-x"], "emails": [addr]})
        if r.status_code != 200:
            raise RuntimeError(f"{addr}: {r.status_code} {r.text}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    return elapsed


def hash_rate(settings: Settings, threads: int, seconds: float = 5.0) -> float:
    """Argon2id hashes/s with the configured cost, on `threads` threads (argon2-cffi frees the GIL)."""
    hasher = PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib,
                            parallelism=settings.argon2_parallelism)
    stop = time.perf_counter() + seconds

    def work(_: int) -> int:
        count = 0
        while time.perf_counter() < stop:
            hasher.hash("password-000000-x")
            count += 1
        return count

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(work, range(threads)))
    return total / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="accounts per run [1000]")
    ap.add_argument("--conc", type=int, default=8, help="concurrent clients of the second run [8]")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    settings = Settings()
    cores = os.cpu_count() or 1
    token = "bench-" + os.urandom(12).hex()
    results: dict[str, Any] = {"n": args.n, "cores": cores, "argon2": {
        "time_cost": settings.argon2_time_cost, "memory_kib": settings.argon2_memory_kib,
        "parallelism": settings.argon2_parallelism}}
    with tempfile.TemporaryDirectory(prefix="mw-accounts-bench-") as tmp:
        proc, base = start_server(Path(tmp) / "data", args.database_url, token)
        try:
            r = httpx.post(base + "/api/principal", headers={"Authorization": f"Bearer {token}"},
                           json={"name": "bench.test", "type": "domain"})
            r.raise_for_status()
            print(f"load average at start: {os.getloadavg()[0]:.1f} ({cores} cores)", flush=True)
            for conc, prefix in ((1, "seq"), (args.conc, "par")):
                cpu0 = cpu_seconds(proc.pid)
                elapsed = create_accounts(base, token, "bench.test", prefix, args.n, conc)
                cpu_ms = (cpu_seconds(proc.pid) - cpu0) * 1000 / args.n
                results[f"accounts_per_s_conc{conc}"] = args.n / elapsed
                results[f"server_cpu_ms_per_account_conc{conc}"] = cpu_ms
                print(f"API: {args.n} accounts, {conc} client(s): {elapsed:.1f} s = {args.n / elapsed:.1f} accounts/s; "
                      f"server CPU {cpu_ms:.1f} ms/account", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    results["hash_cpu_ms"] = hash_cpu_ms(settings)
    results["hashes_per_s_1thread"] = hash_rate(settings, 1)
    results[f"hashes_per_s_{cores}threads"] = hash_rate(settings, cores)
    print(f"Argon2id alone (t={settings.argon2_time_cost}, m={settings.argon2_memory_kib} KiB, "
          f"p={settings.argon2_parallelism}): {results['hashes_per_s_1thread']:.1f} hashes/s on 1 thread, "
          f"{results[f'hashes_per_s_{cores}threads']:.1f} hashes/s on {cores} threads")
    seq, par = results["accounts_per_s_conc1"], results[f"accounts_per_s_conc{args.conc}"]
    print(f"accounts/s vs hash floor: sequential {seq / results['hashes_per_s_1thread']:.0%} of 1-thread rate, "
          f"concurrent {par / results[f'hashes_per_s_{cores}threads']:.0%} of {cores}-thread rate")
    per = results["hash_cpu_ms"]
    for conc in (1, args.conc):
        acc = results[f"server_cpu_ms_per_account_conc{conc}"]
        print(f"CPU per account ({conc} client(s)): {acc:.1f} ms = Argon2id {per:.1f} ms + the rest {acc - per:.1f} ms "
              f"({(acc - per) / acc:.0%} of the account's CPU)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
