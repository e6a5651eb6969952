"""Folder listing of a mail client: ``FETCH 1:1000 (ENVELOPE BODYSTRUCTURE)`` of 1,000 realistic
messages (multipart, attachments, encoded headers: the sample team mailbox) already cached by the
gateway.

The first fetch through the gateway fills its content cache (reported as the cold figure, next to
Dovecot's first fetch); then the median of several warm runs, gateway and direct interleaved, with
the same raw client.  Target: gateway (warm) <= 1.5 x direct (warm).

Run: ``.venv/bin/python benchmarks/gateway_envelope.py [--quick] [--runs R]``.
"""

from __future__ import annotations

import argparse
import asyncio
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
    start_dovecot,
    verdict,
)

from imapgate.demo.sample_mail import SampleMessage, generate_mailbox

FOLDER = "Rich"
N = 1000
COMMAND = f"FETCH 1:{N} (ENVELOPE BODYSTRUCTURE)"


def rich_messages(n: int) -> list[SampleMessage]:
    msgs = [m for folder in generate_mailbox(scale=3).values() for m in folder]
    msgs.sort(key=lambda m: m.internal_date)
    if len(msgs) < n:
        raise RuntimeError(f"only {len(msgs)} sample messages")
    return msgs[:n]


async def timed(c: Client) -> tuple[float, int]:
    t0 = time.perf_counter()
    body, line = await c.command(COMMAND)
    dt = time.perf_counter() - t0
    if line.split(b" ")[1] != b"OK":
        raise RuntimeError(f"FETCH failed: {line!r}")
    n = body.count(b"BODYSTRUCTURE (")
    if n != N:
        raise RuntimeError(f"expected {N} BODYSTRUCTUREs, got {n}")
    return dt, len(body)


async def bench(gw: GatewayProcess, dc_port: int, runs: int) -> bool:
    direct = await Client.login(dc_port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    await direct.ok(f"SELECT {FOLDER}")
    alice = await Client.login(gw.port, "alice", PASSWORD)
    await alice.ok(f"SELECT {FOLDER}")
    g_cold, g_size = await timed(alice)
    d_cold, d_size = await timed(direct)
    print(f"   cold (first fetch): gateway {g_cold * 1000:.0f} ms ({g_size} bytes), "
          f"direct {d_cold * 1000:.0f} ms ({d_size} bytes)")
    await timed(alice)
    await timed(direct)
    g: list[float] = []
    d: list[float] = []
    for _ in range(runs):
        g.append((await timed(alice))[0])
        d.append((await timed(direct))[0])
    print(f"   gateway runs: {' '.join(f'{x * 1000:.1f}' for x in g)} ms")
    print(f"   direct runs:  {' '.join(f'{x * 1000:.1f}' for x in d)} ms")
    # A second session (another user) on the warm cache: the team case.
    bob = await Client.login(gw.port, "bob", PASSWORD)
    await bob.ok(f"SELECT {FOLDER}")
    b = [(await timed(bob))[0] for _ in range(max(3, runs // 2))]
    print(f"   bob (other user, warm cache): median {median(b) * 1000:.1f} ms")
    gm, dm = median(g), median(d)
    ok = gm <= 1.5 * dm
    verdict("envelope+bodystructure x1000 (warm)", gm * 1000, dm * 1000, "ms", "<= 1.5 x direct", ok)
    for c in (direct, alice, bob):
        await c.close()
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="py-spy the gateway into this file")
    args = ap.parse_args()
    runs = args.runs or (5 if args.quick else 15)
    header(f"gateway_envelope: {COMMAND}")
    tmp = make_tmp("envelope")
    dc = gw = None
    try:
        dc = start_dovecot(tmp, {FOLDER: rich_messages(N)})
        gw = GatewayProcess(tmp, dc.port, ["alice", "bob"])
        print(f"   gateway ready in {gw.start():.1f} s")
        with Profiler(gw.pid, args.profile):
            asyncio.run(bench(gw, dc.port, runs))
        print(f"   gateway log errors: {len(gw.error_lines())}")
    finally:
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
