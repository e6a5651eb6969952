"""Gateway memory and initial sync with a 100,000-message folder.

Starts ``imapgate serve`` on an empty store in front of a Dovecot folder of 100,000 messages and
reports: the initial sync time (from the gateway's log: first line to "ready"), the RSS of the
gateway process once synced, after one session (alice) fetched all flags, and after a second user
(bob) did too (each user's private read state is loaded); the store file size; then the restart
time and RSS with the store already filled.

The direct figure for comparison is the RSS of Dovecot's ``imap`` process serving one session that
fetched all flags (Dovecot keeps its index mmapped; its RSS is small by design), and Dovecot's
index size on disk next to the gateway's store.  Target: gateway RSS <= 150 MB.

Run: ``.venv/bin/python benchmarks/gateway_memory.py [--quick] [--messages N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from datetime import datetime
from pathlib import Path

from common import (
    PASSWORD,
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
    Client,
    GatewayProcess,
    header,
    make_tmp,
    realistic_bulk,
    rss_mb,
    start_dovecot,
    verdict,
)

from imapgate.demo.dovecot import DovecotServer

FOLDER = "Bulk"
COMMAND = "UID FETCH 1:* (UID FLAGS)"


def log_sync_seconds(log: Path) -> float | None:
    """Seconds from the gateway's first log line to its "ready" line."""
    stamps: list[datetime] = []
    ready = None
    for line in log.read_text(errors="replace").splitlines():
        try:
            when = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            continue
        stamps.append(when)
        if " ready: " in line:
            ready = when
    if not stamps or ready is None:
        return None
    return (ready - stamps[0]).total_seconds()


def imap_processes(dc: DovecotServer) -> list[int]:
    out = []
    for pid in dc.processes():
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() == "imap":
                    out.append(pid)
        except OSError:
            continue
    return out


def dovecot_index_bytes(dc: DovecotServer) -> int:
    folder = dc.folder_path(UPSTREAM_USER, FOLDER)
    return sum(p.stat().st_size for p in folder.glob("dovecot*") if p.is_file())


async def fetch_all(port: int, user: str, password: str) -> Client:
    c = await Client.login(port, user, password)
    await c.ok(f"SELECT {FOLDER}")
    _, line = await c.command(COMMAND)
    if b" OK" not in line:
        raise RuntimeError(line)
    return c


async def gateway_sessions(gw: GatewayProcess, n: int) -> dict[str, float]:
    out = {}
    alice = await fetch_all(gw.port, "alice", PASSWORD)
    await asyncio.sleep(0.5)
    out["alice fetched all flags"] = gw.rss_mb()
    # Scatter bob's read state (5 % unread) the way gateway_flags does, then fetch.
    bob = await fetch_all(gw.port, "bob", PASSWORD)
    uids = list(range(7, n + 1, 20))
    for i in range(0, len(uids), 500):
        await bob.ok(f"UID STORE {','.join(map(str, uids[i:i + 500]))} -FLAGS.SILENT (\\Seen)")
    await bob.command(COMMAND)
    await asyncio.sleep(0.5)
    out["bob (scattered \\Seen) fetched all flags too"] = gw.rss_mb()
    await alice.close()
    await bob.close()
    return out


async def direct_session(dc: DovecotServer) -> float:
    before = set(imap_processes(dc))
    c = await fetch_all(dc.port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    await asyncio.sleep(0.3)
    mine = [p for p in imap_processes(dc) if p not in before] or imap_processes(dc)
    rss = max(rss_mb(p) for p in mine)
    await c.close()
    return rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="(same work: the figures need the full folder)")
    ap.add_argument("--messages", type=int, default=100_000)
    args = ap.parse_args()
    n = args.messages
    header(f"gateway_memory: {n} messages")
    tmp = make_tmp("memory")
    dc = gw = None
    try:
        t0 = time.perf_counter()
        dc = start_dovecot(tmp, {FOLDER: realistic_bulk(n)})
        print(f"   Dovecot populated and indexed (doveadm index) in {time.perf_counter() - t0:.1f} s")
        gw = GatewayProcess(tmp, dc.port, ["alice", "bob"])
        ready = gw.start()
        sync = log_sync_seconds(gw.log_path)
        print(f"   initial sync: gateway ready after {ready:.1f} s (process start included); "
              f"log: start to ready {sync:.1f} s")
        time.sleep(1.0)
        rss = {"synced, no session": gw.rss_mb()}
        rss.update(asyncio.run(gateway_sessions(gw, n)))
        for what, mb in rss.items():
            print(f"   gateway RSS, {what}: {mb:.0f} MB")
        store = gw.store_bytes()
        print(f"   store: {store / 1e6:.1f} MB on disk (SQLite + WAL); "
              f"Dovecot index files of the folder: {dovecot_index_bytes(dc) / 1e6:.1f} MB")
        gw.stop()
        restart = gw.start()
        time.sleep(1.0)
        print(f"   restart with a filled store: ready after {restart:.1f} s, RSS {gw.rss_mb():.0f} MB")
        d_rss = asyncio.run(direct_session(dc))
        peak = max(rss.values())
        verdict("gateway RSS (peak of the above)", peak, d_rss, "MB",
                "gateway <= 150 MB; direct = Dovecot imap process", peak <= 150)
        print(f"   gateway log errors: {len(gw.error_lines())}")
    finally:
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
