"""The gateway purges audit journal entries older than ``[audit] retention``
(periodically, in a worker thread; a store error skips a round)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import Engine, create_engine

from imapgate.gateway.audit_retention import AuditRetention
from imapgate.store.engine import open_engine
from imapgate.team.audit import AuditQuery, search
from imapgate.team.journal import Journal, JournalEntry, MessageRef

DAY = 86400.0
NOW = 1_900_000_000.0


def _store(tmp_path: Path) -> Engine:
    engine = open_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    for age in (400, 200, 2):
        Journal(engine).record(
            JournalEntry(user="alice", client="c", command="EXPUNGE", mailbox="INBOX", ts=NOW - age * DAY,
                         messages=(MessageRef("INBOX", age, f"<m{age}@x>"),))
        )  # fmt: skip
    return engine


async def test_periodic_purge_keeps_what_is_within_retention(tmp_path: Path) -> None:
    engine = _store(tmp_path)
    retention = AuditRetention(engine, 365 * DAY, interval=0.05, first_delay=0.0, clock=lambda: NOW)
    retention.start()
    try:
        for _ in range(100):
            if len(search(engine, AuditQuery())) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await retention.stop()
    assert [r.entry.messages[0].uid for r in search(engine, AuditQuery())] == [2, 200]
    # A shorter retention, on demand.
    assert AuditRetention(engine, 30 * DAY, clock=lambda: NOW).purge_now() == 1
    assert search(engine, AuditQuery(message_id="m200@x")) == []


async def test_a_store_error_skips_the_round(tmp_path: Path) -> None:
    # A store that cannot be opened (its folder is gone): OperationalError, logged, 0.
    unreachable = create_engine(f"sqlite:///{tmp_path / 'gone' / 'store.sqlite3'}")
    assert await AuditRetention(unreachable, DAY).purge_once() == 0
