"""The cost of 50 dashboards on the live event stream (issue 15): memory, and IMAP push.

``imapgate serve`` (a child process, ``[web] listen`` on) in front of a private Dovecot.  A second
child process logs 50 team members in to the dashboard (the login form, as a browser does: 50 web
sessions, httpx) and opens one ``GET /api/events`` stream per session on a raw socket, scanning
every event for its UIDs (cheap: that process shares the cores with the gateway).  This
process measures IMAP push as ``gateway_idle.py`` does: alice sends ``UID STORE n +FLAGS
(\\Flagged)``, bob sits in IDLE on the same folder; latency = alice's command leaving the client
to bob's untagged FETCH (one clock).  Every such change is also an event for each of the 50
streams (they all may read the folder), so the streams do their work while IDLE is measured.

Blocks of samples alternate: no stream, 50 streams, no stream, 50 streams, ... (the web sessions
stay logged in; the streams are opened and closed, checked against ``imapgate_event_streams`` of
``/metrics``), so a machine that gets busier shifts both columns alike.  Reported:

* the gateway's RSS before the web logins, after them, with the 50 streams open and at the end
  (target: streams + sessions <= 20 MB more);
* IDLE push p50/p99 with 0 and with 50 streams, and their ratio (target: p99 unchanged within
  noise; the spread between the blocks of one column is printed as the noise);
* how soon the dashboards got each change (same clock: both children share CLOCK_MONOTONIC);
* Dovecot's own IDLE (two sessions of the shared account) in the same run, as the reference.

Run: ``.venv/bin/python benchmarks/web_events.py [--samples N] [--dashboards N]
[--direct-samples N] [--blocks N] [--profile FILE]`` (``--profile``: py-spy, as in
``gateway_mixed.py``, during the last block with streams).  ~2 min.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import re
import shutil
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from common import (
    PASSWORD,
    Client,
    GatewayProcess,
    Profiler,
    header,
    make_tmp,
    percentile,
    realistic_bulk,
    rss_mb,
    start_dovecot,
    verdict,
    wait_port,
)
from gateway_idle import FOLDER, TARGETS, Idler, describe, direct_side, run_samples

from imapgate.demo.dovecot import find_free_port

MESSAGES = 500
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
#: The UIDs of a ``change`` event, scanned in the raw stream (chunk framing and all).
_UIDS = re.compile(rb'event: change\ndata: \{[^\n]*?"uids":\[([0-9,]*)\]')


# --------------------------------------------------------------------------- the dashboards
class Dashboards:
    """``n`` logged-in dashboard sessions; their event streams are opened and closed on command.
    Records (arrival time, uids) of every ``change`` event per stream."""

    def __init__(self, base: str, users: list[str]) -> None:
        self.base = base
        self.users = users
        self.clients: list[httpx.AsyncClient] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.arrivals: list[list[tuple[float, list[int]]]] = [[] for _ in users]
        self.connected = 0

    async def login(self) -> float:
        t0 = time.perf_counter()
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        for user in self.users:
            c = httpx.AsyncClient(base_url=self.base, timeout=httpx.Timeout(30, read=None), limits=limits)
            form = await c.get("/login")
            m = _TOKEN.search(form.text)
            assert m is not None, form.text[:300]
            r = await c.post(
                "/login",
                data={"csrf_token": m.group(1), "username": user, "password": PASSWORD, "next": "/inbox"},
            )
            if r.status_code != 303:
                raise RuntimeError(f"login of {user}: {r.status_code} {r.text[:200]}")
            self.clients.append(c)
        return time.perf_counter() - t0

    async def _stream(self, i: int, ready: asyncio.Event) -> None:
        """One ``GET /api/events`` on a raw socket (the session's cookie): this process must
        cost the shared cores as little as it can, so the bytes are scanned, not parsed (httpx
        with a JSON parse per event took about as much CPU as the gateway's whole stream work)."""
        host, port = self.base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        cookie = "; ".join(f"{k}={v}" for k, v in self.clients[i].cookies.items())
        writer.write(
            f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            f"Cookie: {cookie}\r\n\r\n".encode()
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"stream {i}: {head[:100]!r}")
            buf = b""
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                now = time.perf_counter()
                buf += data
                if not ready.is_set() and b": connected" in buf:
                    self.connected += 1
                    ready.set()
                end = buf.rfind(b"\n\n")
                if end < 0:
                    continue
                done, buf = buf[: end + 2], buf[end + 2 :]
                for m in _UIDS.finditer(done):
                    self.arrivals[i].append((now, [int(u) for u in m.group(1).split(b",") if u]))
        finally:
            writer.close()

    async def open(self) -> None:
        self.connected = 0
        for i in range(len(self.clients)):
            ready = asyncio.Event()
            self.tasks.append(asyncio.create_task(self._stream(i, ready)))
            await asyncio.wait_for(ready.wait(), 30)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.tasks.clear()

    def take(self) -> list[list[tuple[float, list[int]]]]:
        out, self.arrivals = self.arrivals, [[] for _ in self.users]
        return out

    async def stop(self) -> None:
        await self.close()
        for c in self.clients:
            await c.aclose()


def dashboards_main(conn: Connection, base: str, users: list[str]) -> None:
    """The dashboards' process: commands over ``conn`` (login, open, close, take, quit)."""

    async def main() -> None:
        d = Dashboards(base, users)
        loop = asyncio.get_running_loop()
        try:
            while True:
                cmd = await loop.run_in_executor(None, conn.recv)
                if cmd == "login":
                    conn.send(await d.login())
                elif cmd == "open":
                    await d.open()
                    conn.send(d.connected)
                elif cmd == "close":
                    await d.close()
                    conn.send(True)
                elif cmd == "take":
                    conn.send(d.take())
                elif cmd == "quit":
                    break
        finally:
            await d.stop()

    asyncio.run(main())


class DashboardProcess:
    def __init__(self, base: str, users: list[str]) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(
            target=dashboards_main, args=(child, base, users), daemon=True
        )
        self.proc.start()

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def ask(self, cmd: str, timeout: float = 300) -> Any:
        self.conn.send(cmd)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"dashboards did not answer {cmd!r} in {timeout} s")
        return self.conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.conn.send("quit")
            self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


# --------------------------------------------------------------------------- measuring
def event_streams(base: str) -> int:
    """``imapgate_event_streams`` of /metrics: streams the gateway holds open."""
    text = httpx.get(base + "/metrics", timeout=10).text
    m = re.search(r"^imapgate_event_streams\s+([0-9.e+]+)$", text, re.M)
    assert m is not None, "imapgate_event_streams not in /metrics"
    return int(float(m.group(1)))


def wait_streams(base: str, n: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (k := event_streams(base)) != n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{k} event streams open, expected {n}")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_rss(pid: int) -> float:
    total = 0.0
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(x) for x in fh.read().split()]
    except OSError:
        return 0.0
    for k in kids:
        with contextlib.suppress(OSError):
            total += rss_mb(k)
    return total


async def block(alice: Client, bob: Idler, samples: int) -> tuple[list[float], list[float], int, list[float]]:
    """One block of samples; also returns the send times (perf_counter) of the STOREs in order."""
    sends: list[float] = []
    orig_write = alice.writer.write

    def write(data: bytes) -> None:  # the send time of each STORE, for the dashboards' latency
        if b"UID STORE" in data and b".SILENT" not in data:
            sends.append(time.perf_counter())
        orig_write(data)

    alice.writer.write = write  # type: ignore[method-assign]
    try:
        lat, rtt, missed = await run_samples(alice, bob, samples, timeout=2.0, pause=0.01)
    finally:
        alice.writer.write = orig_write  # type: ignore[method-assign]
    return lat, rtt, missed, sends


def dashboard_latency(
    arrivals: list[list[tuple[float, list[int]]]], sends: list[float]
) -> tuple[list[float], list[int]]:
    """Per STORE (uid 1 + i), the latency to the slowest dashboard; and events per stream."""
    uid_sent = {1 + i % TARGETS: t for i, t in enumerate(sends)}
    worst: dict[int, float] = {}
    counts = []
    for stream in arrivals:
        n = 0
        for when, uids in stream:
            if len(uids) == 1 and uids[0] in uid_sent and when >= uid_sent[uids[0]]:
                n += 1
                worst[uids[0]] = max(worst.get(uids[0], 0.0), when - uid_sent[uids[0]])
        counts.append(n)
    return list(worst.values()), counts


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=200, help="IDLE samples per column (default 200)")
    ap.add_argument("--blocks", type=int, default=4, help="blocks per column (default 4)")
    ap.add_argument("--dashboards", type=int, default=50, help="dashboards (default 50)")
    ap.add_argument("--profile", type=Path, help="py-spy record the gateway in the last block with streams")
    ap.add_argument("--direct-samples", type=int, default=40, help="Dovecot IDLE samples (default 40)")
    args = ap.parse_args()
    per_block = max(1, args.samples // args.blocks)
    if per_block > TARGETS:
        raise SystemExit(f"at most {TARGETS} samples per block")
    header(f"web_events: {args.dashboards} dashboards on /api/events vs IMAP IDLE push")
    tmp = make_tmp("web-events")
    dc = gw = dash = None
    try:
        dc = start_dovecot(tmp, {FOLDER: realistic_bulk(MESSAGES)})
        users = [f"dash{i:02d}" for i in range(args.dashboards)]
        web_port = find_free_port()
        gw = GatewayProcess(
            tmp, dc.port, ["alice", "bob", *users], extra_toml=f'[web]\nlisten = ["127.0.0.1:{web_port}"]\n'
        )
        print(f"   gateway ready in {gw.start():.1f} s")
        wait_port(web_port)
        base = f"http://127.0.0.1:{web_port}"
        dash = DashboardProcess(base, users)
        results = asyncio.run(measure(gw, base, dash, args.dashboards, per_block, args.blocks, args.profile))
        dlat, drtt, dmissed = asyncio.run(direct_side(dc.port, args.direct_samples))
        describe("Dovecot direct    ", dlat, drtt, dmissed)
        report(results, dlat, gw)
    finally:
        if dash is not None:
            dash.stop()
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def measure(
    gw: GatewayProcess,
    base: str,
    dash: DashboardProcess,
    n: int,
    per_block: int,
    blocks: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    alice = await Client.login(gw.port, "alice", PASSWORD)
    await alice.ok(f"SELECT {FOLDER}")
    bc = await Client.login(gw.port, "bob", PASSWORD)
    await bc.ok(f"SELECT {FOLDER}")
    bob = Idler(bc)
    await bob.start()
    res: dict[str, Any] = {"lat": {0: [], n: []}, "rtt": {0: [], n: []}, "missed": {0: 0, n: 0}}
    res["blocks"] = {0: [], n: []}
    res["cpu"] = {0: 0.0, n: 0.0}
    res["dash_cpu"] = 0.0
    res["per_block"] = per_block
    res["dash_lat"], res["dash_counts"] = [], []
    # Warm-up: the first STOREs pay for cold paths (not recorded).
    await run_samples(alice, bob, 20, timeout=2.0, pause=0.01)
    res["rss_start"] = gw.rss_mb()
    login_s = dash.ask("login")
    await asyncio.sleep(1.0)
    res["rss_logged_in"], res["login_s"] = gw.rss_mb(), login_s
    res["rss_open"] = 0.0
    for b in range(2 * blocks):
        k = n if b % 2 else 0
        if k:
            opened = dash.ask("open")
            assert opened == n, opened
            wait_streams(base, n)
            if not res["rss_open"]:
                await asyncio.sleep(1.0)
                res["rss_open"] = gw.rss_mb()
        else:
            wait_streams(base, 0)
        cpu0, dcpu0 = cpu_seconds(gw.pid), cpu_seconds(dash.pid)
        with Profiler(gw.pid, profile if k and b == 2 * blocks - 1 else None):
            lat, rtt, missed, sends = await block(alice, bob, per_block)
        res["cpu"][k] += cpu_seconds(gw.pid) - cpu0
        res["dash_cpu"] += cpu_seconds(dash.pid) - dcpu0 if k else 0.0
        res["lat"][k] += lat
        res["rtt"][k] += rtt
        res["missed"][k] += missed
        res["blocks"][k].append((percentile(lat, 50), percentile(lat, 99)))
        if k:
            await asyncio.sleep(0.5)  # the last events reach the dashboards
            worst, counts = dashboard_latency(dash.ask("take"), sends)
            res["dash_lat"] += worst
            res["dash_counts"] += counts
            res["rss_end"] = gw.rss_mb()
            dash.ask("close")
        p50, p99 = ms(percentile(lat, 50)), ms(percentile(lat, 99))
        print(f"   block {b + 1}: {k:2d} streams, IDLE p50 {p50}, p99 {p99}")
    res["children_rss"] = children_rss(gw.pid)
    await bob.stop()
    await alice.close()
    return res


def report(r: dict[str, Any], dlat: list[float], gw: GatewayProcess) -> None:
    n = max(r["lat"])
    for k in (0, n):
        describe(f"gateway, {k:2d} streams", r["lat"][k], r["rtt"][k], r["missed"][k])
        cpu = r["cpu"][k] / max(1, len(r["lat"][k]) + r["missed"][k]) * 1000
        print(f"      gateway CPU per STORE (the whole block / samples): {cpu:.2f} ms")
        spread = ", ".join(f"{a * 1000:.1f}/{b * 1000:.1f}" for a, b in r["blocks"][k])
        print(f"      per block p50/p99 (ms): {spread}")
    dl, counts = r["dash_lat"], r["dash_counts"]
    print(
        f"   dashboards: {n} streams, events received per stream per block min {min(counts)}, "
        f"max {max(counts)} (expected {r['per_block']}); the slowest "
        f"dashboard got each change p50 {ms(percentile(dl, 50))}, p99 {ms(percentile(dl, 99))}, "
        f"max {ms(max(dl))}; the dashboards' own process used "
        f"{r['dash_cpu'] / max(1, len(r['lat'][n])) * 1000:.2f} ms CPU per STORE (same 2 cores)"
    )
    print(
        f"   gateway RSS: {r['rss_start']:.1f} MB before the web logins, {r['rss_logged_in']:.1f} MB "
        f"after {n} logins ({r['login_s']:.1f} s), {r['rss_open']:.1f} MB with {n} streams open, "
        f"{r['rss_end']:.1f} MB after the last block with them; child processes {r['children_rss']:.1f} MB"
    )
    grew = max(r["rss_open"], r["rss_end"]) - r["rss_start"]
    print(
        f"RESULT RSS of {n} dashboards (sessions + streams): +{grew:.1f} MB "
        f"(target <= 20 MB: {'MET' if grew <= 20 else 'MISSED'})"
    )
    p50_0, p50_n = percentile(r["lat"][0], 50), percentile(r["lat"][n], 50)
    p99_0, p99_n = percentile(r["lat"][0], 99), percentile(r["lat"][n], 99)
    noise99 = max(b for _, b in r["blocks"][0]) / max(1e-9, min(b for _, b in r["blocks"][0]))
    print(
        f"RESULT IDLE push with {n} streams vs none: p50 {ms(p50_n)} vs {ms(p50_0)} "
        f"(ratio {p50_n / p50_0:.2f}), p99 {ms(p99_n)} vs {ms(p99_0)} (ratio {p99_n / p99_0:.2f}); "
        f"noise: the blocks without streams differ by {noise99:.2f}x in p99 among themselves"
    )
    d50, d99 = percentile(dlat, 50), percentile(dlat, 99)
    verdict("IDLE push p50, 0 streams", p50_0 * 1000, d50 * 1000, "ms", "(informational)", True)
    verdict(f"IDLE push p50, {n} streams", p50_n * 1000, d50 * 1000, "ms", "(informational)", True)
    verdict("IDLE push p99, 0 streams", p99_0 * 1000, d99 * 1000, "ms", "(informational)", True)
    ok = p99_n <= max(p99_0 * 1.25, p99_0 + 0.002) and r["missed"][n] == 0
    verdict(
        f"IDLE push p99, {n} streams", p99_n * 1000, d99 * 1000, "ms", "p99 <= 1.25 x without streams", ok
    )
    print(f"   gateway log errors: {len(gw.error_lines())}")


if __name__ == "__main__":
    main()
