"""Login cost: connect + LOGIN + LOGOUT through the gateway vs directly at Dovecot.

Three measurements, gateway and Dovecot in the same run, same client:

1. **Cold burst** (gateway only): 50 sessions of 50 different users log in at
   once right after the gateway started (empty verified-credentials cache, so
   50 argon2id checks of 64 MiB each).  The gateway's RSS is sampled every
   2 ms and its kernel high-water mark (VmHWM) read before and after; all 50
   must log in.  Target: the peak stays within the verifier's bound
   (workers x 64 MiB over the idle RSS, + 32 MB slack).
2. **Parallel reconnects** (the issue's workload): 10 clients in parallel, each
   15 times connect + LOGIN + LOGOUT (waiting for the tagged LOGOUT answer);
   wall time of the whole run, median of ``--repeats``.  Through the gateway
   each client is its own team member, logged in once before (warm cache, as
   all day long in a team); directly, the shared account.  Target: gateway
   <= 1.5 x direct.
3. **Single login** latency, warm cache: ``--samples`` sequential logins, the
   LOGIN command's round trip on a fresh connection (and the whole cycle).
   Target: gateway p50 <= 5 ms.

Dovecot checks a PLAIN password from a passwd-file (no hashing at all); the
gateway an argon2id hash, or its cache.

Run: ``.venv/bin/python benchmarks/gateway_login.py [--quick] [--repeats N] [--samples N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import threading
import time

from common import (
    PASSWORD,
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
    Client,
    GatewayProcess,
    header,
    make_tmp,
    median,
    percentile,
    realistic_bulk,
    rss_mb,
    start_dovecot,
    tagged_status,
    verdict,
)

CLIENTS = 10
CYCLES = 15
BURST = 50
MIB = 1024 * 1024


def hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Samples a process's RSS every ``interval`` s in a thread (the event loop is busy)."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def cycle(port: int, user: str, password: str) -> float:
    """connect + LOGIN + LOGOUT; returns the LOGIN round trip in seconds."""
    c = await Client.connect(port)
    try:
        t0 = time.perf_counter()
        _, line = await c.command(f"LOGIN {user} {password}")
        took = time.perf_counter() - t0
        if tagged_status(line) != b"OK":
            raise RuntimeError(f"LOGIN {user}: {line!r}")
        await c.command("LOGOUT")
    finally:
        c.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(c.writer.wait_closed(), 2)
    return took


async def parallel(port: int, users: list[str], password: str, cycles: int) -> float:
    """Every user in parallel, ``cycles`` logins each; wall seconds."""

    async def one(user: str) -> None:
        for _ in range(cycles):
            await cycle(port, user, password)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(u) for u in users))
    return time.perf_counter() - t0


async def sequential(port: int, user: str, password: str, n: int) -> tuple[list[float], list[float]]:
    logins: list[float] = []
    cycles: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        logins.append(await cycle(port, user, password))
        cycles.append(time.perf_counter() - t0)
    return logins, cycles


def ms(v: float) -> str:
    return f"{v * 1000:.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, 100 samples")
    ap.add_argument("--repeats", type=int, default=None, help="parallel runs per side (default 5)")
    ap.add_argument("--samples", type=int, default=None, help="single logins per side (default 300)")
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    samples = args.samples or (100 if args.quick else 300)
    header("gateway_login: connect + LOGIN + LOGOUT, gateway vs direct")
    tmp = make_tmp("login")
    dc = gw = None
    try:
        dc = start_dovecot(tmp, {"INBOX": realistic_bulk(200)}, max_userip_connections=200)
        users = [f"user{i:02d}" for i in range(BURST)]
        t0 = time.perf_counter()
        gw = GatewayProcess(tmp, dc.port, users)
        print(f"   {len(users)} users added in {time.perf_counter() - t0:.1f} s; "
              f"gateway ready in {gw.start():.1f} s")
        workers = min(os.cpu_count() or 1, 4)

        # 1. cold burst
        time.sleep(0.5)
        idle_rss, hwm_before = gw.rss_mb(), hwm_mb(gw.pid)

        async def burst() -> tuple[float, list[float]]:
            t0 = time.perf_counter()
            lat = await asyncio.gather(*(cycle(gw.port, u, PASSWORD) for u in users))
            return time.perf_counter() - t0, list(lat)

        with RssSampler(gw.pid) as sampler:
            took, lat = asyncio.run(burst())
        hwm_after = hwm_mb(gw.pid)
        peak = max(sampler.peak, hwm_after if hwm_after > hwm_before else 0.0)
        bound = idle_rss + workers * 64 + 32
        print(f"   cold burst: {BURST} logins of {BURST} users at once in {took:.2f} s "
              f"(LOGIN p50 {ms(percentile(lat, 50))}, max {ms(max(lat))}); RSS idle {idle_rss:.0f} MB, "
              f"sampled peak {sampler.peak:.0f} MB, VmHWM {hwm_before:.0f} -> {hwm_after:.0f} MB")
        print(f"RESULT cold burst RSS peak: {peak:.0f} MB, +{peak - idle_rss:.0f} MB over idle "
              f"(target <= idle + {workers} workers x 64 MiB + 32 = {bound:.0f} MB: "
              f"{'MET' if peak <= bound else 'MISSED'})")

        # 2. parallel reconnects (cache warm from the burst)
        team = users[:CLIENTS]
        shared = [UPSTREAM_USER] * CLIENTS
        asyncio.run(parallel(dc.port, shared, UPSTREAM_PASSWORD, 2))  # warm Dovecot
        asyncio.run(parallel(gw.port, team, PASSWORD, 1))
        g_runs: list[float] = []
        d_runs: list[float] = []
        for _ in range(repeats):
            d_runs.append(asyncio.run(parallel(dc.port, shared, UPSTREAM_PASSWORD, CYCLES)))
            g_runs.append(asyncio.run(parallel(gw.port, team, PASSWORD, CYCLES)))
        print(f"   parallel {CLIENTS} x {CYCLES}: gateway runs {', '.join(f'{v:.2f}' for v in g_runs)} s; "
              f"direct {', '.join(f'{v:.2f}' for v in d_runs)} s")
        g, d = median(g_runs), median(d_runs)
        verdict(f"{CLIENTS} clients x {CYCLES} connect+LOGIN+LOGOUT", g, d, "s", "gateway <= 1.5 x direct",
                g <= 1.5 * d)

        # 3. single login, warm
        g_login, g_cycle = asyncio.run(sequential(gw.port, users[0], PASSWORD, samples))
        d_login, d_cycle = asyncio.run(sequential(dc.port, UPSTREAM_USER, UPSTREAM_PASSWORD, samples))
        for name, lo, cy in (("gateway", g_login, g_cycle), ("direct ", d_login, d_cycle)):
            print(f"   {name}: LOGIN p50 {ms(percentile(lo, 50))}, p99 {ms(percentile(lo, 99))}; "
                  f"whole cycle p50 {ms(percentile(cy, 50))}, p99 {ms(percentile(cy, 99))}")
        verdict("single LOGIN p50 (warm cache)", percentile(g_login, 50) * 1000,
                percentile(d_login, 50) * 1000, "ms", "gateway p50 <= 5 ms", percentile(g_login, 50) <= 0.005)
        verdict("single LOGIN p99 (warm cache)", percentile(g_login, 99) * 1000,
                percentile(d_login, 99) * 1000, "ms", "(informational)", True)
        errors = gw.error_lines()
        print(f"   gateway RSS at the end {gw.rss_mb():.0f} MB; gateway log errors: {len(errors)}")
        for line in errors[:5]:
            print(f"      {line}")
    finally:
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
