"""The change bus's asyncio driver (sync/buslisten.py) on a real PostgreSQL: a NOTIFY wakes the
receiver at once; after its connections were killed it reconnects and reads what it missed from
the change log -- nothing is lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from imapgate.replica import events as ev
from imapgate.replica.changes import ChangeSet
from imapgate.replica.logbus import LogChangeBus
from imapgate.store.engine import open_engine
from imapgate.sync.buslisten import BusListener, libpq_url
from tests.support.cli import closed_port
from tests.support.postgres import PostgresDatabase


def change(uid: int) -> ChangeSet:
    cs = ChangeSet()
    cs.events.append(ev.MessagesAdded(1, (uid,)))
    return cs


@pytest.fixture
def engines(postgres_db: PostgresDatabase) -> Iterator[tuple[Engine, Engine]]:
    a, b = open_engine(postgres_db.url), open_engine(postgres_db.url)
    yield a, b
    a.dispose()
    b.dispose()


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_libpq_url() -> None:
    assert libpq_url("postgresql+psycopg://u:p@h/d") == "postgresql://u:p@h/d"
    assert libpq_url("postgresql://u@h/d") == "postgresql://u@h/d"


async def test_notify_wakes_and_a_lost_connection_loses_nothing(
    engines: tuple[Engine, Engine], postgres_db: PostgresDatabase
) -> None:
    a, b = LogChangeBus(engines[0], "a"), LogChangeBus(engines[1], "b")
    got: list[int] = []
    b.subscribe_remote(lambda cs: got.append(cs.events[0].uids[0]))  # type: ignore[union-attr]
    # A long safety-net poll: what arrives quickly arrived by NOTIFY.
    listener = BusListener(b, postgres_db.url, poll_interval=30)
    await listener.start()
    try:
        await wait_until(lambda: listener.connected)
        latencies = []
        for uid in range(1, 21):
            start = time.monotonic()
            a.publish(change(uid))
            await wait_until(lambda uid=uid: uid in got, timeout=5)  # type: ignore[misc]
            latencies.append(time.monotonic() - start)
        assert got == list(range(1, 21))
        # p95 far under the 30 s safety-net poll (loose: the test machine may be loaded).
        assert sorted(latencies)[18] < 2.0, latencies
        assert listener.notifications >= 20

        # Every connection of the database dies (a PostgreSQL failover, a network cut);
        # changes are made while node b is not listening.
        assert listener.connections == 1
        postgres_db.server.terminate_connections(postgres_db.name)
        for uid in range(21, 26):
            a.publish(change(uid))
        await wait_until(lambda: listener.connections == 2 and listener.connected, timeout=20)
        await wait_until(lambda: len(got) == 25, timeout=10)
        assert got == list(range(1, 26))  # caught up from the log, in order, once each
    finally:
        await listener.stop()
    assert not listener.connected


def test_change_sets_wait_while_the_database_is_unreachable(
    engines: tuple[Engine, Engine], postgres_db: PostgresDatabase
) -> None:
    """A change set published outside a replica commit (whose own transaction carries its
    row) while PostgreSQL is away: the change set waits, later ones queue behind it, and the
    next ``flush`` once the database is back writes them in order -- the other node receives
    every one, once."""
    a, b = LogChangeBus(engines[0], "a"), LogChangeBus(engines[1], "b")
    got: list[int] = []
    b.subscribe_remote(lambda cs: got.append(cs.events[0].uids[0]))  # type: ignore[union-attr]
    assert a.append(change(1)) > 0
    reachable = a.engine
    away = open_engine(f"postgresql://imapgate:x@127.0.0.1:{closed_port()}/nowhere", migrate=False)
    try:
        a.engine = away  # connection refused: what a stopped server answers
        assert a.append(change(2)) == 0 and a.append(change(3)) == 0
        a.flush()  # still away: nothing raised, nothing lost
        assert b.poll() == 1 and got == [1]
        a.engine = reachable
        a.flush()
        assert b.poll() == 2 and got == [1, 2, 3]
        assert a.append(change(4)) > 0
        assert b.poll() == 1 and got == [1, 2, 3, 4]
    finally:
        a.engine = reachable
        away.dispose()
