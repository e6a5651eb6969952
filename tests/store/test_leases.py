"""Upstream connection leases on PostgreSQL (store/leases.py): two nodes (two
``UpstreamLeases`` on one database, each with its own session) never hold more than the
budget between them, a lease given back is taken by the other, a node's session ending
(closed or killed) frees its leases, and a wait for a lease is bounded.  Fair shares: the
plan's arithmetic, the survey of the nodes in ``pg_locks`` (who wants connections, who
holds a dedicated one, who waits), and a node at its share leaving a free lease to a node
below its share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from imapgate.store.engine import open_engine
from imapgate.store.leases import LeaseTimeout, UpstreamLeases, plan
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
    # One lease, two nodes: it goes round (TURN); b says it waits on its turns.
    watch = asyncio.create_task(b.watch())
    try:
        slot = await a.acquire()
        assert not await asyncio.to_thread(a.others_want)
        waiting = asyncio.create_task(b.acquire())
        deadline = time.monotonic() + 3
        while not await asyncio.to_thread(a.others_want):
            assert time.monotonic() < deadline, "a never saw b waiting"
            await asyncio.sleep(0.05)
        assert not await asyncio.to_thread(b.others_want)  # its own wait does not count
        # a (above its share of 0 on b's turn) gives the lease back: b, waiting, takes it.
        await asyncio.to_thread(a.give, slot)
        assert await asyncio.wait_for(waiting, 3) == 1
        assert not await asyncio.to_thread(a.others_want)  # b's wait is over
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        a.close()
        b.close()


def test_plan_gives_each_node_a_fair_share() -> None:
    assert plan(4, [False, False]) == [2, 2]
    # The watcher's lease counts in its node's share: still 2 + 2.
    assert plan(4, [True, False]) == [2, 2]
    assert plan(4, [False, True]) == [2, 2]
    # The remainder stays with the first nodes in pid order (no churn from it).
    assert plan(4, [False, False, False]) == [2, 1, 1]
    assert plan(5, [False, True, False]) == [2, 2, 1]
    assert plan(12, [True, False]) == [6, 6]
    # Fewer pooled leases than nodes: they go round, one turn after the other.
    assert [plan(1, [False, False], t) for t in range(3)] == [[1, 0], [0, 1], [1, 0]]
    assert [plan(2, [True, False], t) for t in range(2)] == [[2, 0], [1, 1]]
    assert [plan(2, [False] * 3, t) for t in range(3)] == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]
    for slots in range(1, 9):
        for n in range(1, 6):
            for leader in range(n):
                for turn in range(n):
                    shares = plan(slots, [i == leader for i in range(n)], turn)
                    assert sum(shares) == slots, (slots, n, leader, turn, shares)
                    assert shares[leader] >= 1
                    if slots > n:  # every node has a pooled lease of its own
                        assert all(s >= 1 + (i == leader) for i, s in enumerate(shares)), shares


async def test_the_survey_sees_the_nodes_and_their_shares(pg_engine: Engine) -> None:
    a, b = UpstreamLeases(pg_engine, ACCOUNT, 4), UpstreamLeases(pg_engine, ACCOUNT, 4)
    try:
        assert not a.survey() and (a.nodes, a.share) == (1, 4)  # alone
        assert a.try_take(dedicated=True) == 1  # the watcher's
        for _ in range(3):
            assert a.try_take() is not None
        assert not b.survey()
        assert (b.nodes, b.share) == (2, 2)  # b counts itself, a holds leases
        b.wait = 5
        waiting = asyncio.create_task(b.acquire())
        deadline = time.monotonic() + 3
        while not await asyncio.to_thread(a.survey):
            assert time.monotonic() < deadline, "a never saw b waiting"
            await asyncio.sleep(0.05)
        # b waits below its share: a (watcher + 3) is two above its share of 2.
        assert (a.nodes, a.share, a.held, a.surplus) == (2, 2, 4, 2)
        assert not await asyncio.to_thread(b.survey)  # its own wait does not count
        a.give(4)
        assert await asyncio.wait_for(waiting, 3) == 4
        assert (a.held, a.try_take()) == (3, None)
        a.close()
        # a left: b is alone again, and its share is the whole budget.
        assert not await asyncio.to_thread(b.survey) and (b.nodes, b.share) == (1, 4)
    finally:
        a.close()
        b.close()


async def test_a_node_at_its_share_leaves_a_free_lease_to_the_waiting_node(pg_engine: Engine) -> None:
    a, b = UpstreamLeases(pg_engine, ACCOUNT, 4), UpstreamLeases(pg_engine, ACCOUNT, 4)
    watches = [asyncio.create_task(x.watch()) for x in (a, b)]
    try:
        slots = [await a.acquire() for _ in range(4)]
        assert a.held == 4
        b.wait = 5
        b_waits = asyncio.create_task(b.acquire())
        deadline = time.monotonic() + 3
        while a.surplus != 2:
            assert time.monotonic() < deadline, (a.nodes, a.share, a.contended)
            await asyncio.sleep(0.05)
        # a gives one back (above its share) and at once wants another: the lease is b's.
        a.wait = 2
        a.release_soon(slots.pop())
        assert a.held == 3  # counted as given back at once
        a_waits = asyncio.create_task(a.acquire())
        got = await asyncio.wait_for(b_waits, 3)
        assert got in range(1, 5) and b.held == 1
        # b wants its second: a (3, share 2) gives one more back, and it is b's again.
        b_again = asyncio.create_task(b.acquire())
        deadline = time.monotonic() + 3
        while not (a.contended and a.surplus == 1):
            assert time.monotonic() < deadline, (a.contended, a.surplus)
            await asyncio.sleep(0.05)
        a.release_soon(slots.pop())
        assert await asyncio.wait_for(b_again, 3) and (a.held, b.held) == (2, 2)
        with pytest.raises(LeaseTimeout):
            await a_waits  # a at its share got none of the two freed while b waited
        # Nobody waits now: a at its share may borrow what b gives back.
        b.give(got)
        a.wait = 3
        assert await asyncio.wait_for(a.acquire(), 4) == got
    finally:
        for w in watches:
            w.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        a.close()
        b.close()
