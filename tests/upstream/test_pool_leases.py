"""The pool with upstream leases (store/leases.py) on PostgreSQL in front of a real Dovecot:
two pools -- two nodes -- with a budget of 2 between them never hold more than 2 connections,
every operation still gets one, a pool without a lease fails with UpstreamUnavailable after
the bounded wait (the hoster does not count as down), and a closed connection gives its lease
back.  Fair shares: two busy pools with a budget of 4 keep 2 connections each open (no
reconnect per operation), an idle one gives its share back to the other, and a budget of 1
still serves two busy pools."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from imapgate.config import UpstreamConfig
from imapgate.demo.dovecot import DovecotServer
from imapgate.protocol import commands as cmd
from imapgate.store.engine import open_engine
from imapgate.store.leases import UpstreamLeases
from imapgate.upstream.connection import UpstreamUnavailable
from imapgate.upstream.pool import UpstreamPool
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient
from tests.support.postgres import PostgresDatabase
from tests.support.tcp import established_at

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_engine(postgres_db: PostgresDatabase) -> Iterator[Engine]:
    engine = open_engine(postgres_db.url)
    yield engine
    engine.dispose()


def pools(dc: DovecotServer, engine: Engine, budget: int = 2) -> list[UpstreamPool]:
    cfg = UpstreamConfig(
        host="127.0.0.1",
        port=dc.port,
        tls="none",
        user="shared",
        password="shared-secret",
        max_connections=budget,
    )
    account = f"shared@127.0.0.1:{dc.port}"
    return [UpstreamPool(cfg, leases=UpstreamLeases(engine, account, budget)) for _ in range(2)]


async def test_two_pools_share_the_budget(
    fresh_dovecot: Callable[..., DovecotServer], pg_engine: Engine
) -> None:
    dc = fresh_dovecot()
    nodes = pools(dc, pg_engine)
    for p in nodes:
        p.start()
    leases = [p.leases for p in nodes]
    peak = 0
    done = 0

    async def op(p: UpstreamPool, folder: str) -> None:
        nonlocal peak, done
        async with p.connection(folder):
            peak = max(peak, sum(lease.held for lease in leases if isinstance(lease, UpstreamLeases)))
            await asyncio.sleep(0.05)
        done += 1

    try:
        await asyncio.wait_for(
            asyncio.gather(*(op(nodes[i % 2], ("INBOX", "Archive")[i % 3 % 2]) for i in range(24))), 60
        )
        assert done == 24
        assert 1 <= peak <= 2, peak
        assert sum(p.open_connections for p in nodes) <= 2
    finally:
        for p in nodes:
            await p.close()
        for lease in leases:
            assert isinstance(lease, UpstreamLeases)
            lease.close()


async def test_no_lease_within_the_wait_is_unavailable_not_down(
    fresh_dovecot: Callable[..., DovecotServer], pg_engine: Engine
) -> None:
    dc = fresh_dovecot()
    a, b = pools(dc, pg_engine)
    assert isinstance(a.leases, UpstreamLeases) and isinstance(b.leases, UpstreamLeases)
    b.leases.wait = 0.3
    try:
        async with a.connection("INBOX"), a.connection("Archive"):
            assert a.leases.held == 2
            start = time.monotonic()
            with pytest.raises(UpstreamUnavailable, match="no upstream connection free: all 2"):
                async with b.connection("INBOX"):
                    pass
            assert time.monotonic() - start >= 0.3
            assert not b.down and b.open_connections == 0
        # a's connections are idle now; closed, they give their leases back and b gets one.
        await a.close()
        deadline = time.monotonic() + 5
        while a.leases.held:
            assert time.monotonic() < deadline, "leases not given back after close"
            await asyncio.sleep(0.02)
        b.leases.wait = 5
        async with b.connection("INBOX") as conn:
            assert conn.alive and b.leases.held == 1
    finally:
        await a.close()
        await b.close()
        a.leases.close()
        b.leases.close()


def test_imap_client_gets_no_unavailable_when_the_budget_is_spent(
    fresh_dovecot: Callable[..., DovecotServer],
    postgres_db: PostgresDatabase,
    pg_engine: Engine,
    tmp_path: Path,
) -> None:
    """Another node holds the lease the watcher leaves free: a command that needs the hoster
    waits the bounded time, then NO [UNAVAILABLE] saying the budget is spent."""
    dc = fresh_dovecot()
    with GatewayHarness(
        upstream_port=dc.port,
        data_dir=tmp_path / "gw",
        store={"url": postgres_db.url},
        upstream={"max_connections": 2},
        users={"bob": "bob-pw"},
    ) as gw:
        leases = gw.gw.nodes.leases
        assert leases is not None
        leases.wait = 0.5
        other = UpstreamLeases(pg_engine, leases.account, 2)
        # The watcher holds its lease first: taken later, it would leave the other node's
        # one free for the STORE (under load the watcher's start can come after this).
        gw.wait_for(lambda: gw.gw.sync.watcher.conn is not None, what="the watcher's connection")
        try:
            # The other node waits (and says so): the gateway gives its pool's lease back.
            other.wait = 20
            asyncio.run(other.acquire())
            c = RawClient(gw.host, gw.port)
            c.login("bob", "bob-pw")
            c.command(b"S", b"SELECT INBOX")
            lines = c.command(b"F", b"UID STORE 1 +FLAGS (\\Flagged)")
            assert lines[-1].startswith(b"F NO [UNAVAILABLE]"), lines
            assert b"all 2 upstream connections of" in lines[-1], lines
            other.close()
            lines = c.command(b"G", b"UID STORE 1 +FLAGS (\\Flagged)")
            assert lines[-1].startswith(b"G OK"), lines
            c.close()
        finally:
            other.close()


def dovecot_logins(dc: DovecotServer) -> int:
    """Logins of the shared account Dovecot logged so far (one per connection opened)."""
    try:
        return dc.log_path.read_text(encoding="utf-8", errors="replace").count("Login: user=<shared>")
    except FileNotFoundError:
        return 0


class Load:
    """Workers looping one short operation (a NOOP on a folder) on a pool until stopped."""

    def __init__(self, pool: UpstreamPool, workers: int) -> None:
        self.pool = pool
        self.done = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._work(("INBOX", "Archive")[i % 2])) for i in range(workers)]

    async def _work(self, folder: str) -> None:
        while not self._stop.is_set():
            try:
                async with self.pool.connection(folder) as conn:
                    await conn.check(lambda tag: cmd.Noop(tag))
                    await asyncio.sleep(0.01)
                self.done += 1
            except Exception as exc:
                self.failures.append(repr(exc))
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 30)


async def test_two_busy_pools_keep_their_shares_open(
    fresh_dovecot: Callable[..., DovecotServer], pg_engine: Engine
) -> None:
    """Budget 4, two busy nodes: each ends with 2 leases and keeps its connections (far
    fewer logins at Dovecot than operations); never more than 4 at Dovecot; a node that
    stops wanting gives its share back when idle, and the other borrows it."""
    dc = fresh_dovecot()
    a, b = nodes = pools(dc, pg_engine, budget=4)
    la, lb = (p.leases for p in nodes)
    assert isinstance(la, UpstreamLeases) and isinstance(lb, UpstreamLeases)
    for lease in (la, lb):
        lease.idle_after = 1.0
    for p in nodes:
        p.start()
    peak = peak_held = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak, peak_held
        while sampling:
            peak = max(peak, established_at(dc.port))
            peak_held = max(peak_held, la.held + lb.held)
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    load_a = load_b = None
    try:
        load_a = Load(a, 6)
        deadline = time.monotonic() + 10
        while la.held < 4:  # alone, a borrows the whole budget
            assert time.monotonic() < deadline, la.held
            await asyncio.sleep(0.05)
        load_b = Load(b, 6)
        deadline = time.monotonic() + 10
        while (la.held, lb.held) != (2, 2):
            assert time.monotonic() < deadline, (la.held, lb.held, la.share, lb.share)
            await asyncio.sleep(0.05)
        # Settled (the last connections opened): both busy for 3 s.
        await asyncio.sleep(0.5)
        logins, ops = dovecot_logins(dc), load_a.done + load_b.done
        opened = a.stats_opened + b.stats_opened
        held: set[tuple[int, int]] = set()
        end = time.monotonic() + 3
        while time.monotonic() < end:
            held.add((la.held, lb.held))
            await asyncio.sleep(0.05)
        logins, ops = dovecot_logins(dc) - logins, load_a.done + load_b.done - ops
        opened = a.stats_opened + b.stats_opened - opened
        print(f"both busy 3 s: {ops} operations, {logins} logins at Dovecot, {opened} opened, leases {held}")
        assert held == {(2, 2)}, held
        assert ops >= 100, ops
        assert opened == 0, f"{opened} connections opened for {ops} operations"
        # Dovecot's log may still be writing the last logins of the hand-over.
        assert logins <= 2, f"{logins} logins for {ops} operations: connections are reopened"
        # b stops wanting: its connections close after idle_after, a borrows their leases.
        await load_b.stop()
        deadline = time.monotonic() + 10
        while (la.held, lb.held) != (4, 0):
            assert time.monotonic() < deadline, (la.held, lb.held)
            await asyncio.sleep(0.05)
        await load_a.stop()
        assert not load_a.failures and not load_b.failures, (load_a.failures + load_b.failures)[:5]
    finally:
        sampling = False
        await sampler
        for load in (load_a, load_b):
            if load is not None:
                await load.stop()
        for p in nodes:
            await p.close()
        la.close()
        lb.close()
    assert 2 <= peak <= 4 and peak_held <= 4, (peak, peak_held)


async def test_a_budget_of_one_serves_two_busy_pools(
    fresh_dovecot: Callable[..., DovecotServer], pg_engine: Engine
) -> None:
    """One lease, two busy nodes: it goes round (TURN), both get work done, nobody
    waits out LEASE_WAIT, and Dovecot never has more than one connection."""
    dc = fresh_dovecot()
    nodes = pools(dc, pg_engine, budget=1)
    for p in nodes:
        p.start()
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, established_at(dc.port))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    loads = [Load(p, 3) for p in nodes]
    try:
        await asyncio.sleep(5)
    finally:
        for load in loads:
            await load.stop()
        sampling = False
        await sampler
        for p in nodes:
            await p.close()
        for p in nodes:
            assert isinstance(p.leases, UpstreamLeases)
            p.leases.close()
    print(f"budget 1: operations per node {[x.done for x in loads]}, peak {peak} at Dovecot")
    assert not any(x.failures for x in loads), [x.failures[:3] for x in loads]
    assert all(x.done >= 20 for x in loads), [x.done for x in loads]
    assert peak == 1, peak


async def test_the_watchers_connection_counts_in_its_nodes_share(
    fresh_dovecot: Callable[..., DovecotServer], pg_engine: Engine
) -> None:
    """Budget 4, node a holds a dedicated connection (the sync leader's watcher): with both
    busy, a keeps the watcher and one pooled connection, b two -- 2 leases each."""
    dc = fresh_dovecot()
    a, b = nodes = pools(dc, pg_engine, budget=4)
    la, lb = (p.leases for p in nodes)
    assert isinstance(la, UpstreamLeases) and isinstance(lb, UpstreamLeases)
    for p in nodes:
        p.start()
    watcher = await a.dedicated("watcher")
    loads: list[Load] = []
    try:
        loads = [Load(a, 4), Load(b, 4)]
        deadline = time.monotonic() + 10
        while (la.held, lb.held, la.share, lb.share) != (2, 2, 2, 2):
            assert time.monotonic() < deadline, (la.held, lb.held, la.share, lb.share)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        opened = a.stats_opened + b.stats_opened
        seen: set[tuple[int, int]] = set()
        for _ in range(30):
            seen.add((la.held, lb.held))
            await asyncio.sleep(0.05)
        assert seen == {(2, 2)}, seen
        assert a.stats_opened + b.stats_opened == opened  # nothing reopened meanwhile
        assert watcher.alive  # a's two leases: the watcher's and one pooled
        assert established_at(dc.port) == 4
        assert all(x.done > 20 for x in loads), [x.done for x in loads]
    finally:
        for load in loads:
            await load.stop()
        await a.release_dedicated(watcher)
        for p in nodes:
            await p.close()
        la.close()
        lb.close()
    assert not any(x.failures for x in loads), [x.failures[:3] for x in loads]
