"""The change bus between nodes (replica/logbus.py): what node A publishes reaches node B's
remote listeners in order, with a NOTIFY on PostgreSQL; a node that missed changes catches up,
and one that missed more than the log holds is told it is stale."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, update

from imapgate.replica import events as ev
from imapgate.replica.changes import ChangeSet
from imapgate.replica.logbus import CHANNEL, LogChangeBus
from imapgate.store import changes as rc
from imapgate.store.engine import open_engine
from imapgate.store.schema import change_log
from tests.support.store_backends import POSTGRESQL_ONLY


def change(uid: int) -> ChangeSet:
    cs = ChangeSet()
    cs.add(rc.SetSharedFlags(1, {("\\Seen",): (uid,)}, uid))
    cs.events.append(ev.FlagsChanged(1, (uid,), uid))
    return cs


@pytest.fixture
def second(store_url: str) -> Iterator[Engine]:
    engine = open_engine(store_url)
    yield engine
    engine.dispose()


def test_published_on_a_reaches_b_in_order(store_engine: Engine, second: Engine) -> None:
    a, b = LogChangeBus(store_engine, "node-a"), LogChangeBus(second, "node-b")
    local_a: list[ChangeSet] = []
    remote_a: list[ChangeSet] = []
    remote_b: list[ChangeSet] = []
    a.subscribe(local_a.append)
    a.subscribe_remote(remote_a.append)
    b.subscribe_remote(remote_b.append)
    for uid in (1, 2, 3):
        a.publish(change(uid))
    assert [c.events[0].uids for c in local_a] == [(1,), (2,), (3,)]  # type: ignore[union-attr]
    assert b.poll() == 3 and a.poll() == 0
    assert [c.events for c in remote_b] == [change(u).events for u in (1, 2, 3)]
    assert remote_a == []  # a node does not receive its own changes again
    assert b.poll() == 0  # read once


def test_a_node_that_was_away_catches_up_in_slices(store_engine: Engine, second: Engine) -> None:
    a = LogChangeBus(store_engine, "node-a")
    b = LogChangeBus(second, "node-b")
    got: list[int] = []
    b.subscribe_remote(lambda cs: got.append(cs.events[0].uids[0]))  # type: ignore[union-attr]
    for uid in range(1, 1201):  # more than one POLL_BATCH
        a.append(change(uid))
    assert b.poll() == 1200 and got == list(range(1, 1201))


def test_trimmed_beyond_what_a_node_read_makes_it_stale(store_engine: Engine, second: Engine) -> None:
    a = LogChangeBus(store_engine, "node-a")
    b = LogChangeBus(second, "node-b")
    stale: list[bool] = []
    got: list[ChangeSet] = []
    b.on_stale = lambda: stale.append(True)
    b.subscribe_remote(got.append)
    for uid in (1, 2):
        a.append(change(uid))
    with store_engine.begin() as conn:
        conn.execute(update(change_log).values(created_at=time.time() - 7200))
    a.append(change(3))
    assert a.trim() == 2
    assert b.poll() == 0 and stale == [True] and got == []  # never applies 3 as if 1 and 2 had been
    a.append(change(4))
    assert b.poll() == 1 and stale == [True]  # reloaded: reads on from there
    # A node started after the trim starts after it, not stale.
    c = LogChangeBus(second, "node-c")
    assert c.poll() == 0 and c.last_id == b.last_id


@POSTGRESQL_ONLY  # LISTEN/NOTIFY is PostgreSQL's
def test_notify_carries_only_the_row_id(store_engine: Engine, store_url: str) -> None:
    with psycopg.connect(store_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        bus = LogChangeBus(store_engine, "node-a")
        big = ChangeSet()
        big.add(rc.SetSharedFlags(1, {("\\Seen",): tuple(range(1, 50_001))}, 9))  # >> 8000 bytes
        big.events.append(ev.FlagsChanged(1, tuple(range(1, 50_001)), 9))
        bus.publish(big)
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert len(notes) == 1 and notes[0].channel == CHANNEL
    assert int(notes[0].payload) >= 1 and len(notes[0].payload) < 20
