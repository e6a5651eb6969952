"""Sync leadership between nodes (gateway/nodes.py) on a real PostgreSQL: one node leads (runs
the change watcher); when its lock's database connection is cut, it steps down -- stops
watching -- and the other node takes over; the first one leads again only when it gets the
lock back.  The sync engine here is a recorder of what the leadership asks of it (starting
and stopping the watcher): the lock, its loss and the takeover are PostgreSQL's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from imapgate.config import UpstreamConfig
from imapgate.gateway import nodes
from imapgate.gateway.nodes import SharedStore
from imapgate.store.engine import open_engine
from tests.support.postgres import PostgresDatabase


class WatcherRecorder:
    """What ``SharedStore`` calls on a ``SyncEngine`` for leadership."""

    def __init__(self) -> None:
        self.watching = False
        self.calls: list[str] = []

    def start_watcher(self) -> None:
        assert not self.watching, "started twice"
        self.watching = True
        self.calls.append("start")

    async def stop_watcher(self) -> None:
        self.watching = False
        self.calls.append("stop")


@pytest.fixture
def engines(postgres_db: PostgresDatabase) -> Iterator[tuple[Engine, Engine]]:
    a, b = open_engine(postgres_db.url), open_engine(postgres_db.url)
    yield a, b
    a.dispose()
    b.dispose()


async def until(cond: object, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not cond():  # type: ignore[operator]
        assert time.monotonic() - start < timeout, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_a_leader_that_lost_its_lock_steps_down_and_the_other_takes_over(
    engines: tuple[Engine, Engine], postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodes, "LEADER_RETRY", 0.2)
    upstream = UpstreamConfig(host="mail.example", port=993, user="team")
    first, second = SharedStore(engines[0], postgres_db.url), SharedStore(engines[1], postgres_db.url)
    sync_a, sync_b = WatcherRecorder(), WatcherRecorder()
    await first.start(sync_a, upstream)  # type: ignore[arg-type]
    try:
        await until(lambda: first.leading)
        await second.start(sync_b, upstream)  # type: ignore[arg-type]
        await asyncio.sleep(0.6)  # several of the follower's tries
        assert sync_a.watching and not sync_b.watching and not second.leading

        assert first.leader is not None and first.leader._conn is not None
        pid = first.leader._conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        first.leader._conn.commit()
        with postgres_db.connect(admin=True, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # the lock's connection cut

        took = await until(lambda: sync_b.watching and not sync_a.watching)
        assert took < 5
        assert second.leading and not first.leading
        assert sync_a.calls == ["start", "stop"]  # stepped down, did not go on watching
        await asyncio.sleep(0.6)
        assert not first.leading and not sync_a.watching  # the lock is the other's now

        await second.stop()  # the new leader goes away cleanly: the first takes the lock back
        await until(lambda: sync_a.watching)
        assert sync_a.calls == ["start", "stop", "start"] and first.leading
    finally:
        await first.stop()
        await second.stop()
