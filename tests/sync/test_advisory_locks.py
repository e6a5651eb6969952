"""Mailbox locks across nodes (sync/locks.py AdvisoryLockManager on store/lock.py AdvisoryLock):
two nodes on one PostgreSQL never hold a folder at once; a dead node's lock is released."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from imapgate.store.engine import open_engine
from imapgate.store.lock import UNLOCK_CHANNEL, AdvisoryLock, advisory_key
from imapgate.sync.locks import HANDOVER_MAX, AdvisoryLockManager
from tests.support.postgres import PostgresDatabase


@pytest.fixture
def nodes(postgres_db: PostgresDatabase) -> Iterator[list[Engine]]:
    engines = [open_engine(postgres_db.url) for _ in range(2)]
    yield engines
    for e in engines:
        e.dispose()


def test_keys_are_stable_and_distinct() -> None:
    assert advisory_key("mailbox", "INBOX") == advisory_key("mailbox", "INBOX")
    assert advisory_key("mailbox", "INBOX") != advisory_key("mailbox", "Sent")
    assert advisory_key("mailbox", "x") != advisory_key("leader", "x")
    assert -(2**63) <= advisory_key("mailbox", "INBOX") < 2**63


def test_one_holder_and_release_on_connection_loss(
    nodes: list[Engine], postgres_db: PostgresDatabase
) -> None:
    key = advisory_key("leader", "shared@imap")
    a, b = AdvisoryLock(nodes[0], key), AdvisoryLock(nodes[1], key)
    assert a.try_acquire() and a.held()
    assert not b.try_acquire()
    # The node's connection dies (kill -9, network): the server drops its lock.
    postgres_db.server.terminate_connections(postgres_db.name)
    assert not a.held() and not a.acquired
    # b's pooled connection died too, and a connection used a moment ago is not pinged
    # (store/engine.py PING_AFTER_IDLE): its first try may fail once, then the pool reconnects.
    try:
        got = b.try_acquire()
    except sa_exc.OperationalError:
        got = b.try_acquire()
    assert got
    b.release()
    assert a.try_acquire()
    a.release()


async def test_two_nodes_take_turns_on_a_folder(nodes: list[Engine]) -> None:
    managers = [AdvisoryLockManager(e) for e in nodes]
    inside: list[int] = []
    overlaps = 0

    async def work(node: int) -> None:
        nonlocal overlaps
        for _ in range(5):
            async with managers[node].mailbox("INBOX"):
                inside.append(node)
                if len(inside) > 1:
                    overlaps += 1
                await asyncio.sleep(0.01)
                inside.remove(node)

    await asyncio.gather(work(0), work(1), work(0))
    assert overlaps == 0
    # Other folders are independent: held by node 0, node 1 takes another at once.
    async with managers[0].mailbox("INBOX"):
        await asyncio.wait_for(managers[1].mailbox("Sent").acquire(), 2)
        await managers[1].mailbox("Sent").release()
        assert managers[0].mailbox("INBOX").locked()


async def test_a_cancelled_wait_leaves_the_lock_free(nodes: list[Engine]) -> None:
    a, b = AdvisoryLockManager(nodes[0]), AdvisoryLockManager(nodes[1])
    await a.mailbox("INBOX").acquire()
    waiter = asyncio.ensure_future(b.mailbox("INBOX").acquire())
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not b.mailbox("INBOX").locked() and not b.mailbox("INBOX").advisory.acquired
    await a.mailbox("INBOX").release()
    await asyncio.wait_for(b.mailbox("INBOX").acquire(), 2)
    await b.mailbox("INBOX").release()


async def test_local_waiters_take_the_lock_over_and_it_goes_back(nodes: list[Engine]) -> None:
    """Tasks of one node queued on a folder get its advisory lock handed over (no release,
    try and catch-up in between: the other node cannot slip in), at most HANDOVER_MAX in a
    row; with nobody left (a waiter cancelled) it goes back to the database."""
    caught_up: list[int] = []
    a = AdvisoryLockManager(nodes[0], on_acquired=lambda: caught_up.append(1))
    other = AdvisoryLock(nodes[1], advisory_key("mailbox", "INBOX"))
    lock = a.mailbox("INBOX")
    await lock.acquire()
    queued = [asyncio.ensure_future(lock.acquire()) for _ in range(HANDOVER_MAX + 2)]
    await asyncio.sleep(0.05)
    for i in range(HANDOVER_MAX + 2):
        await lock.release()
        if i < HANDOVER_MAX:  # handed over: the other node never gets in between
            assert not other.try_acquire()
        await asyncio.wait_for(asyncio.wait(queued, return_when=asyncio.FIRST_COMPLETED), 5)
        queued = [t for t in queued if not t.done()]
    assert not queued
    assert len(caught_up) == 2  # the first acquire, and the one after HANDOVER_MAX hand-overs
    # A waiter cancelled after the hand-over decided: the kept lock goes back within the grace.
    waiter = asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0.05)
    await lock.release()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    deadline = asyncio.get_running_loop().time() + 5
    while not other.try_acquire():
        assert asyncio.get_running_loop().time() < deadline, "the kept lock never went back"
        await asyncio.sleep(0.02)
    other.release()
    assert not lock.locked()


async def test_a_release_on_one_node_wakes_the_waiter_on_the_other_at_once(
    nodes: list[Engine], postgres_db: PostgresDatabase
) -> None:
    """The release's NOTIFY reaches the other node's bus listener, which nudges its waiting
    try: the folder changes hands in milliseconds, not at the waiter's next poll (which after
    a long hold is RETRY_MAX away)."""
    from imapgate.replica.logbus import LogChangeBus
    from imapgate.sync.buslisten import BusListener
    from imapgate.sync.locks import RETRY_MAX

    managers = [AdvisoryLockManager(e) for e in nodes]
    listener = BusListener(LogChangeBus(nodes[1], "b"), postgres_db.url)
    listener.subscribe(UNLOCK_CHANNEL, managers[1].unlocked)
    await listener.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while not listener.connected:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        gaps: list[float] = []
        for _ in range(3):
            held = managers[0].mailbox("INBOX")
            await held.acquire()
            waiter = asyncio.create_task(managers[1].mailbox("INBOX").acquire())
            await asyncio.sleep(3 * RETRY_MAX)  # the waiter's pause has grown to RETRY_MAX
            assert not waiter.done()
            released = asyncio.get_running_loop().time()
            await held.release()
            await asyncio.wait_for(waiter, 5)
            gaps.append(asyncio.get_running_loop().time() - released)
            await managers[1].mailbox("INBOX").release()
        assert managers[1].mailbox("INBOX").nudges >= 3
        gaps.sort()
        assert gaps[1] < RETRY_MAX / 2, gaps  # the median hand-over: well below a poll
    finally:
        await listener.stop()
