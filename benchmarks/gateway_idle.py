"""IDLE fan-out latency: user A changes a flag, how soon does user B (in IDLE) hear of it?

Through the gateway: alice sends ``UID STORE n +FLAGS (\\Flagged)`` (then ``-FLAGS`` on the next
pass, so every command is a change); bob and 10 more sessions (other users) sit in IDLE on the
same folder.  Latency = from alice's command leaving the client to bob's untagged FETCH for that
message arriving (one client process, one clock).  The 10 other idlers must receive every change
too (checked).

Directly: two sessions of the shared Dovecot account, one STOREs, the other IDLEs (Dovecot
notices the change through its index files; fewer samples, since each takes a while).

Target: gateway p99 <= 50 ms.

Run: ``.venv/bin/python benchmarks/gateway_idle.py [--quick] [--samples N] [--direct-samples N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
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
    percentile,
    realistic_bulk,
    start_dovecot,
    verdict,
)

FOLDER = "Team"
MESSAGES = 2000
#: Messages the samples cycle through (cleared of \Flagged first).
TARGETS = 100
_FETCH = re.compile(rb"\* (\d+) FETCH \(([^\r\n]*)\)\r\n")


class Idler:
    """A session in IDLE; records when each (seq, flagged?) change arrives."""

    def __init__(self, client: Client) -> None:
        self.c = client
        self.arrivals: dict[tuple[int, bool], float] = {}
        self.lines = 0
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.c.writer.write(b"I IDLE\r\n")
        line = await self.c.readline()
        if not line.startswith(b"+"):
            raise RuntimeError(f"IDLE refused: {line!r}")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            line = await self.c.readline()
            now = time.perf_counter()
            m = _FETCH.match(line)
            if m is None:
                continue
            self.lines += 1
            flagged = b"\\Flagged" in m.group(2)
            self.arrivals.setdefault((int(m.group(1)), flagged), now)
            self.changed.set()

    async def wait_for(self, key: tuple[int, bool], timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        while key not in self.arrivals:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return None
        return self.arrivals.pop(key)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.c.close()


async def run_samples(
    storer: Client, idler: Idler, samples: int, timeout: float, pause: float
) -> tuple[list[float], list[float], int]:
    """Returns (fan-out latencies, STORE round trips, timeouts)."""
    await storer.ok(f"UID STORE 1:{TARGETS} -FLAGS.SILENT (\\Flagged)")
    await asyncio.sleep(max(1.0, timeout / 4))  # let any notification of the reset pass
    idler.arrivals.clear()
    lat: list[float] = []
    rtt: list[float] = []
    missed = 0
    for i in range(samples):
        uid = 1 + i % TARGETS
        add = (i // TARGETS) % 2 == 0
        tag = storer.next_tag()
        t0 = time.perf_counter()
        storer.writer.write(f"{tag} UID STORE {uid} {'+' if add else '-'}FLAGS (\\Flagged)\r\n".encode())
        _, line = await storer.read_response(tag)
        rtt.append(time.perf_counter() - t0)
        if line.split(b" ")[1] != b"OK":
            raise RuntimeError(f"STORE failed: {line!r}")
        got = await idler.wait_for((uid, add), timeout)
        if got is None:
            missed += 1
        else:
            lat.append(got - t0)
        if pause:
            await asyncio.sleep(pause)
    return lat, rtt, missed


def describe(name: str, lat: list[float], rtt: list[float], missed: int) -> None:
    print(
        f"   {name}: {len(lat)} samples, p50 {percentile(lat, 50) * 1000:.1f} ms, "
        f"p90 {percentile(lat, 90) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms, "
        f"max {max(lat) * 1000:.1f} ms; STORE round trip median {median(rtt) * 1000:.1f} ms; "
        f"timeouts {missed}"
    )


async def gateway_side(gw: GatewayProcess, samples: int) -> tuple[list[float], list[float], int, list[int]]:
    alice = await Client.login(gw.port, "alice", PASSWORD)
    await alice.ok(f"SELECT {FOLDER}")
    idlers: list[Idler] = []
    for user in ["bob"] + [f"user{i}" for i in range(10)]:
        c = await Client.login(gw.port, user, PASSWORD)
        await c.ok(f"SELECT {FOLDER}")
        idler = Idler(c)
        await idler.start()
        idlers.append(idler)
    lat, rtt, missed = await run_samples(alice, idlers[0], samples, timeout=2.0, pause=0.01)
    await asyncio.sleep(0.2)
    others = [i.lines for i in idlers[1:]]
    for i in idlers:
        await i.stop()
    await alice.close()
    return lat, rtt, missed, others


async def direct_side(port: int, samples: int) -> tuple[list[float], list[float], int]:
    a = await Client.login(port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    await a.ok(f"SELECT {FOLDER}")
    b = await Client.login(port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    await b.ok(f"SELECT {FOLDER}")
    idler = Idler(b)
    await idler.start()
    lat, rtt, missed = await run_samples(a, idler, samples, timeout=10.0, pause=0.01)
    await idler.stop()
    await a.close()
    return lat, rtt, missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer direct samples")
    ap.add_argument("--samples", type=int, default=None, help="gateway samples (default 300)")
    ap.add_argument("--direct-samples", type=int, default=None, help="direct samples (default 40)")
    args = ap.parse_args()
    samples = args.samples or (200 if args.quick else 300)
    dsamples = args.direct_samples or (10 if args.quick else 40)
    header("gateway_idle: STORE by one user -> FETCH in another user's IDLE")
    tmp = make_tmp("idle")
    dc = gw = None
    try:
        dc = start_dovecot(tmp, {FOLDER: realistic_bulk(MESSAGES)})
        users = ["alice", "bob"] + [f"user{i}" for i in range(10)]
        gw = GatewayProcess(tmp, dc.port, users)
        print(f"   gateway ready in {gw.start():.1f} s")
        lat, rtt, missed, others = asyncio.run(gateway_side(gw, samples))
        describe("gateway", lat, rtt, missed)
        print(f"   FETCH lines received by the 10 other idlers: min {min(others)}, max {max(others)} "
              f"(expected {samples} each)")
        dlat, drtt, dmissed = asyncio.run(direct_side(dc.port, dsamples))
        describe("direct ", dlat, drtt, dmissed)
        g99, d99 = percentile(lat, 99), percentile(dlat, 99) if dlat else float("nan")
        ok = g99 <= 0.050 and missed == 0 and min(others) >= samples
        verdict("IDLE fan-out p50", percentile(lat, 50) * 1000, percentile(dlat, 50) * 1000, "ms",
                "(informational)", True)
        verdict("IDLE fan-out p99", g99 * 1000, d99 * 1000, "ms", "gateway p99 <= 50 ms", ok)
        print(f"   gateway log errors: {len(gw.error_lines())}")
    finally:
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
