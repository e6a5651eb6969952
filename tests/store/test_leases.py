"""Upstream connection leases on PostgreSQL (store/leases.py): two nodes (two
``UpstreamLeases`` on one database, each with its own session) never hold more than the
budget between them, a lease given back is taken by the other, a node's session ending
(closed or killed) frees its leases, and a wait for a lease is bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from imapgate.store.engine import open_engine
from imapgate.store.leases import LeaseTimeout, UpstreamLeases
from tests.support.postgres import PostgresDatabase

ACCOUNT = "shared@127.0.0.1:143"


@pytest.fixture
def pg_engine(postgres_db: PostgresDatabase) -> Iterator[Engine]:
    engine = open_engine(postgres_db.url)
    yield engine
    engine.dispose()


def test_two_nodes_share_one_budget(pg_engine: Engine) -> None:
    a, b = UpstreamLeases(pg_engine, ACCOUNT, 2), UpstreamLeases(pg_engine, ACCOUNT, 2)
    try:
        first, second = a.try_take(), a.try_take()
        assert {first, second} == {1, 2}
        assert a.try_take() is None  # a does not take a slot twice on its own session
        assert b.try_take() is None  # nor does b get one while a holds both
        assert first is not None
        a.give(first)
        assert b.try_take() == first
        assert a.try_take() is None
        assert (a.held, b.held) == (1, 1)
        # Another account's budget is its own.
        other = UpstreamLeases(pg_engine, "other@127.0.0.1:143", 2)
        assert other.try_take() == 1
        other.close()
    finally:
        a.close()
        b.close()


def test_a_closed_or_killed_node_frees_its_leases(pg_engine: Engine, postgres_db: PostgresDatabase) -> None:
    a, b = UpstreamLeases(pg_engine, ACCOUNT, 1), UpstreamLeases(pg_engine, ACCOUNT, 1)
    try:
        assert a.try_take() == 1
        a.close()
        assert b.try_take() == 1
        # Killed: its database session ends without any unlock (as with kill -9 of the node).
        with postgres_db.connect(admin=True, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
        deadline = time.monotonic() + 5
        while (got := a.try_take()) is None:
            assert time.monotonic() < deadline, "the killed session's lease was not freed"
            time.sleep(0.05)
        assert got == 1
    finally:
        a.close()
        b.close()


def test_lost_lease_connection_forgets_its_leases(pg_engine: Engine, postgres_db: PostgresDatabase) -> None:
    a = UpstreamLeases(pg_engine, ACCOUNT, 2)
    try:
        assert a.try_take() == 1
        with postgres_db.connect(admin=True, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
        with pytest.raises(sa_exc.DBAPIError):
            a.try_take()  # the session is gone: an error, and its leases count as lost
        assert a.held == 0
        assert a.try_take() == 1  # a new session takes leases again
    finally:
        a.close()


async def test_acquire_waits_for_a_lease_then_times_out(pg_engine: Engine) -> None:
    a, b = UpstreamLeases(pg_engine, ACCOUNT, 1), UpstreamLeases(pg_engine, ACCOUNT, 1)
    b.wait = 0.3
    try:
        slot = await a.acquire()
        start = time.monotonic()
        with pytest.raises(LeaseTimeout, match="all 1 upstream connections of shared@"):
            await b.acquire()
        assert 0.3 <= time.monotonic() - start < 3
        # A lease given back while b waits goes to b.
        b.wait = 5
        waiting = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        a.release_soon(slot)
        assert await asyncio.wait_for(waiting, 3) == 1
    finally:
        a.close()
        b.close()


async def test_a_waiting_node_is_seen_by_the_others(pg_engine: Engine) -> None:
    a, b = UpstreamLeases(pg_engine, ACCOUNT, 1), UpstreamLeases(pg_engine, ACCOUNT, 1)
    try:
        slot = await a.acquire()
        assert not a.others_want() and not b.others_want()
        waiting = asyncio.create_task(b.acquire())
        deadline = time.monotonic() + 3
        while not await asyncio.to_thread(a.others_want):
            assert time.monotonic() < deadline, "a never saw b waiting"
            await asyncio.sleep(0.05)
        assert not await asyncio.to_thread(b.others_want)  # its own wait does not count
        # Contended: a gives the lease back and keeps off it while b takes it.
        a.contended = True
        await asyncio.to_thread(a.give, slot)
        assert await asyncio.wait_for(waiting, 3) == 1
        assert not await asyncio.to_thread(a.others_want)  # b's wait is over
    finally:
        a.close()
        b.close()
