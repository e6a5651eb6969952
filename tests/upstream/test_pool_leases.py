"""The pool with upstream leases (store/leases.py) on PostgreSQL in front of a real Dovecot:
two pools -- two nodes -- with a budget of 2 between them never hold more than 2 connections,
every operation still gets one, a pool without a lease fails with UpstreamUnavailable after
the bounded wait (the hoster does not count as down), and a closed connection gives its lease
back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from imapgate.config import UpstreamConfig
from imapgate.demo.dovecot import DovecotServer
from imapgate.store.engine import open_engine
from imapgate.store.leases import UpstreamLeases
from imapgate.upstream.connection import UpstreamUnavailable
from imapgate.upstream.pool import UpstreamPool
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient
from tests.support.postgres import PostgresDatabase

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
