"""Flag sync of a large folder: ``UID FETCH 1:* (UID FLAGS)`` on 100,000 messages.

Time from sending the command to receiving the tagged OK, median of several runs after warm-up,
through the gateway (``imapgate serve`` in its own process) and directly against the same Dovecot,
with the same raw client, runs interleaved.  Two gateway users:

* alice: private read state as initialised from upstream (long runs of \\Seen);
* bob: private read state made scattered first: ~5 % of the messages marked unread through the
  gateway (``UID STORE ... -FLAGS.SILENT (\\Seen)``), so his \\Seen set has thousands of ranges.

Target: gateway <= 1.5 x direct.

Run: ``.venv/bin/python benchmarks/gateway_flags.py [--quick] [--messages N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
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
    realistic_bulk,
    start_dovecot,
    verdict,
)

FOLDER = "Bulk"
COMMAND = "UID FETCH 1:* (UID FLAGS)"


async def timed(c: Client, expect: int) -> float:
    t0 = time.perf_counter()
    body, line = await c.command(COMMAND)
    dt = time.perf_counter() - t0
    if not line.split(b" ")[1] == b"OK":
        raise RuntimeError(f"FETCH failed: {line!r}")
    n = body.count(b" FETCH ")
    if n != expect:
        raise RuntimeError(f"expected {expect} FETCH lines, got {n}")
    return dt


async def compare(gw_client: Client, direct: Client, n: int, runs: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        await timed(gw_client, n)
        await timed(direct, n)
    g: list[float] = []
    d: list[float] = []
    for _ in range(runs):
        g.append(await timed(gw_client, n))
        d.append(await timed(direct, n))
    print(f"   gateway runs: {' '.join(f'{x * 1000:.0f}' for x in g)} ms")
    print(f"   direct runs:  {' '.join(f'{x * 1000:.0f}' for x in d)} ms")
    return median(g), median(d)


async def scatter_unread(c: Client, n: int, fraction: float, seed: int = 5) -> int:
    """Mark ``fraction`` of the UIDs (1..n, random) unread for this user through the gateway."""
    rng = random.Random(seed)
    uids = sorted(rng.sample(range(1, n + 1), int(n * fraction)))
    for i in range(0, len(uids), 500):
        chunk = ",".join(str(u) for u in uids[i : i + 500])
        await c.ok(f"UID STORE {chunk} -FLAGS.SILENT (\\Seen)")
    return len(uids)


async def bench(gw: GatewayProcess, dc_port: int, n: int, runs: int, warmup: int) -> bool:
    direct = await Client.login(dc_port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    await direct.ok(f"SELECT {FOLDER}")
    alice = await Client.login(gw.port, "alice", PASSWORD)
    await alice.ok(f"SELECT {FOLDER}")
    print(f"-- alice (read state as upstream), {n} messages, median of {runs} after {warmup} warm-up")
    g, d = await compare(alice, direct, n, runs, warmup)
    ok1 = g <= 1.5 * d
    verdict("flags alice", g * 1000, d * 1000, "ms", "gateway <= 1.5 x direct", ok1)

    bob = await Client.login(gw.port, "bob", PASSWORD)
    await bob.ok(f"SELECT {FOLDER}")
    t0 = time.perf_counter()
    marked = await scatter_unread(bob, n, 0.05)
    print(f"-- bob: {marked} scattered messages marked unread in {time.perf_counter() - t0:.1f} s")
    body, _ = await bob.command(COMMAND)
    unseen = n - body.count(b"\\Seen")
    print(f"   bob now sees {unseen} unread (upstream-derived + scattered)")
    g2, d2 = await compare(bob, direct, n, runs, warmup)
    ok2 = g2 <= 1.5 * d2
    verdict("flags bob (scattered private \\Seen)", g2 * 1000, d2 * 1000, "ms", "<= 1.5 x direct", ok2)
    for c in (direct, alice, bob):
        await c.close()
    return ok1 and ok2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    runs = args.runs or (3 if args.quick else 7)
    warmup = 1 if args.quick else 2
    header(f"gateway_flags: {COMMAND} on {args.messages} messages")
    tmp = make_tmp("flags")
    dc = gw = None
    try:
        t0 = time.perf_counter()
        dc = start_dovecot(tmp, {FOLDER: realistic_bulk(args.messages)})
        print(f"   Dovecot populated and indexed in {time.perf_counter() - t0:.1f} s")
        gw = GatewayProcess(tmp, dc.port, ["alice", "bob"])
        print(f"   gateway ready (initial sync included) in {gw.start():.1f} s")
        asyncio.run(bench(gw, dc.port, args.messages, runs, warmup))
        errors = gw.error_lines()
        print(f"   gateway log errors: {len(errors)}")
        for line in errors[:5]:
            print("     " + line)
    finally:
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
