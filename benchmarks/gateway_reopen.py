"""Reopening a 100,000-message folder over a distant link (30 ms round trip).

No netem here: an asyncio relay (its own process, 127.0.0.1) holds every chunk 15 ms in each
direction.  Two set-ups, same raw client, same commands:

* direct: client -> relay -> Dovecot (the client talks to the distant hoster);
* gateway: client on 127.0.0.1 -> gateway, gateway -> relay -> Dovecot (the gateway's upstream
  is the distant one; the gateway's replica is in sync, kept so by NOTIFY over the relay).

What a client does on reopen, two variants (time from the first command sent to the last tagged
OK, median of several runs after a warm-up, on an already logged-in connection):

* plain: ``SELECT Bulk`` + ``UID FETCH 1:* (FLAGS)``;
* CONDSTORE: ``SELECT Bulk (CONDSTORE)`` + ``UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE m)`` +
  ``UID SEARCH ALL``, with m the HIGHESTMODSEQ the client saw last time (nothing changed since).

Target: through the gateway >= 5 x faster (``--bandwidth`` additionally caps the relay, e.g.
``--bandwidth 100`` for 100 Mbit/s; the default is latency only, as the task specifies).

Run: ``.venv/bin/python benchmarks/gateway_reopen.py [--quick] [--messages N] [--bandwidth MBIT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import shutil
import time
from pathlib import Path

from common import (
    PASSWORD,
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
    Client,
    GatewayProcess,
    Profiler,
    header,
    make_tmp,
    median,
    realistic_bulk,
    run_relay,
    start_dovecot,
    verdict,
    wait_port,
)

from imapgate.demo.dovecot import find_free_port

FOLDER = "Bulk"
DELAY = 0.015
_HMS = re.compile(rb"HIGHESTMODSEQ (\d+)")


async def reopen_plain(c: Client, n: int) -> float:
    t0 = time.perf_counter()
    await c.ok(f"SELECT {FOLDER}")
    body = await c.ok("UID FETCH 1:* (FLAGS)")
    dt = time.perf_counter() - t0
    got = body.count(b" FETCH ")
    if got != n:
        raise RuntimeError(f"expected {n} FETCH lines, got {got}")
    return dt


async def reopen_condstore(c: Client, n: int, modseq: int) -> float:
    t0 = time.perf_counter()
    await c.ok(f"SELECT {FOLDER} (CONDSTORE)")
    await c.ok(f"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {modseq})")
    body = await c.ok("UID SEARCH ALL")
    dt = time.perf_counter() - t0
    if body.count(b" ") < n:
        raise RuntimeError("UID SEARCH ALL answer too short")
    return dt


async def side(port: int, user: str, password: str, n: int, runs: int) -> tuple[float, float]:
    c = await Client.login(port, user, password)
    first = await c.ok(f"SELECT {FOLDER} (CONDSTORE)")
    m = _HMS.search(first)
    modseq = int(m.group(1)) if m else 1
    await reopen_plain(c, n)  # warm-up
    await reopen_condstore(c, n, modseq)
    plain = [await reopen_plain(c, n) for _ in range(runs)]
    cond = [await reopen_condstore(c, n, modseq) for _ in range(runs)]
    await c.close()
    print(f"   {'plain':9s} runs: {' '.join(f'{x * 1000:.0f}' for x in plain)} ms")
    print(f"   {'CONDSTORE':9s} runs: {' '.join(f'{x * 1000:.0f}' for x in cond)} ms")
    return median(plain), median(cond)


async def rtt(port: int) -> float:
    c = await Client.login(port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        await c.ok("NOOP")
        t.append(time.perf_counter() - t0)
    await c.close()
    return median(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--bandwidth", type=float, default=None, help="relay cap in Mbit/s (default: none)")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy the gateway into this file")
    args = ap.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    n = args.messages
    bw = args.bandwidth * 1e6 / 8 if args.bandwidth else None
    link = f"{DELAY * 2000:.0f} ms RTT" + (f", {args.bandwidth:g} Mbit/s" if args.bandwidth else "")
    header(f"gateway_reopen: reopen a {n}-message folder, upstream over a {link} relay")
    tmp = make_tmp("reopen")
    dc = gw = relay = None
    try:
        dc = start_dovecot(tmp, {FOLDER: realistic_bulk(n)})
        relay_port = find_free_port()
        relay = multiprocessing.Process(target=run_relay, args=(relay_port, dc.port, DELAY, bw), daemon=True)
        relay.start()
        wait_port(relay_port)
        print(f"   NOOP round trip through the relay: {asyncio.run(rtt(relay_port)) * 1000:.1f} ms")
        gw = GatewayProcess(tmp, relay_port, ["alice"])
        print(f"   gateway ready (initial sync over the relay) in {gw.start():.1f} s")
        print("-- direct: client -> relay -> Dovecot")
        d_plain, d_cond = asyncio.run(side(relay_port, UPSTREAM_USER, UPSTREAM_PASSWORD, n, runs))
        print("-- gateway: client -> gateway -> relay -> Dovecot")
        with Profiler(gw.pid, args.profile):
            g_plain, g_cond = asyncio.run(side(gw.port, "alice", PASSWORD, n, runs))
        for name, g, d in (("plain", g_plain, d_plain), ("CONDSTORE", g_cond, d_cond)):
            print(f"   {name}: gateway {d / g:.1f} x faster")
            verdict(f"reopen {name}", g * 1000, d * 1000, "ms", "gateway >= 5 x faster (ratio <= 0.2)",
                    g * 5 <= d)
        print(f"   gateway log errors: {len(gw.error_lines())}")
    finally:
        if gw is not None:
            gw.stop()
        if relay is not None:
            relay.terminate()
            relay.join(5)
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
