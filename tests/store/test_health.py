"""The store on a disk that fills up: commits that fail for the disk's sake
do not raise, memory follows upstream, and the heal writes it out."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine
from imapgate.store.health import StoreUnwritable, is_database_unreachable, is_storage_failure
from imapgate.store.schema import journal
from imapgate.team.journal import JournalEntry
from imapgate.team.users import UserDirectory
from tests.support.cli import closed_port

from .smallfs import small_fs


def rec(uid: int, *flags: str) -> MessageRecord:
    return MessageRecord(uid, tuple(flags), 0, 1_700_000_000.0 + uid, 60, 1000 + uid, f"<m{uid}@x>")


def state_of(replica: Replica) -> dict[str, object]:
    """Everything a reload from the store must give back, per folder."""
    out: dict[str, object] = {}
    for name in replica.names():
        mb = replica.get(name)
        assert mb is not None
        out[name] = (
            mb.id,
            mb.uidvalidity,
            mb.uidnext,
            mb.upstream_modseq,
            mb.synced,
            mb.modseq,
            [(r.uid, r.flags, r.modseq, r.size, r.message_id) for r in (mb.records[u] for u in mb.uids)],
            dict(mb.expunged),
        )
    return out


def test_is_storage_failure_knows_the_disk_errors() -> None:
    import sqlite3

    assert is_storage_failure(sqlite3.OperationalError("database or disk is full"))
    assert is_storage_failure(sqlite3.OperationalError("disk I/O error"))
    assert is_storage_failure(sqlite3.OperationalError("attempt to write a readonly database"))
    assert not is_storage_failure(sqlite3.OperationalError("no such table: x"))
    assert not is_storage_failure(sqlite3.IntegrityError("FOREIGN KEY constraint failed"))


def test_full_disk_keeps_memory_and_heals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with small_fs(tmp_path / "fs") as fs:
        engine = open_engine(f"sqlite:///{fs.root / 'store.sqlite3'}")
        alice = UserDirectory(engine).add("alice", "pw")
        replica = Replica(engine)
        inbox = replica.upsert_mailbox("INBOX", "/", ())
        replica.reset(inbox, 7, "initial")
        replica.add_messages(inbox, [rec(u) for u in range(1, 6)])
        replica.set_sync_state(inbox, uidnext=6, upstream_modseq=10, synced=True)
        replica.set_private_flags(inbox, alice.id, {"\\Seen": [1, 2]}, {})
        health = replica.health
        assert health.writable

        fs.fill(engine)
        caplog.set_level(logging.ERROR, "imapgate.store")
        # What the hoster did meanwhile reaches memory; no commit raises.
        entry = JournalEntry("alice", "test", "STORE", "INBOX", "1", detail="add \\Flagged")
        assert replica.set_shared_flags(inbox, {1: ("\\Flagged",)}, hook=entry.writer()) == (1,)
        assert not health.writable
        health_errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(health_errors) == 1 and "not writable" in health_errors[0].getMessage()
        assert replica.add_messages(inbox, [rec(6)]) == (6,)
        assert replica.expunge(inbox, [2]) == (2,)
        assert replica.set_private_flags(inbox, alice.id, {"\\Seen": [3]}, {"\\Seen": [1]}) == (1, 3)
        work = replica.upsert_mailbox("Work", "/", ())  # CREATE: an id at once, the row later
        replica.reset(work, 9, "initial")
        replica.add_messages(work, [rec(1, "\\Seen")])
        replica.rename_mailbox("Work", "Projects")
        assert [r for r in caplog.records if r.levelno == logging.ERROR] == health_errors  # logged once
        with pytest.raises(StoreUnwritable):
            health.require_writable("store flags")
        assert health.dirty == {inbox.id, work.id}
        assert len(health.pending) == 1

        assert not replica.repository.probe()
        fs.free()
        assert replica.repository.probe()
        dirty, pending = health.take()
        assert replica.heal(dirty, pending) == ["INBOX", "Projects"]
        health.mark_writable()

        again = Replica(engine)
        again.load()
        assert state_of(again) == state_of(replica)
        mb = again.get("INBOX")
        assert mb is not None
        assert list(again.private_state(mb, alice.id).flags["\\Seen"]) == [3]
        with engine.connect() as conn:
            rows = conn.execute(select(journal.c.command, journal.c.detail)).all()
        assert [tuple(r) for r in rows] == [("STORE", "add \\Flagged")]  # replayed, once
        # And the store takes writes as before.
        assert replica.set_shared_flags(inbox, {3: ("\\Answered",)}) == (3,)
        assert health.writable and not health.dirty
        engine.dispose()


def test_other_errors_still_raise(tmp_path: Path) -> None:
    """Only the disk's failures are absorbed: a broken hook raises, memory unchanged."""
    replica = Replica(open_engine(f"sqlite:///{tmp_path / 's.sqlite3'}"))
    inbox = replica.upsert_mailbox("INBOX", "/", ())
    replica.reset(inbox, 7, "initial")
    replica.add_messages(inbox, [rec(1)])

    def broken(_conn: object) -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError):
        replica.set_shared_flags(inbox, {1: ("\\Flagged",)}, hook=broken)  # type: ignore[arg-type]
    assert inbox.records[1].flags == ()
    assert replica.health.writable


def test_database_unreachable_is_told_from_errors_of_the_data(tmp_path: Path) -> None:
    """A PostgreSQL that refuses connections is "unreachable" (the client hears NO
    [UNAVAILABLE]); SQLite's errors and a constraint violation are not."""
    away = open_engine(f"postgresql://imapgate:x@127.0.0.1:{closed_port()}/nowhere", migrate=False)
    try:
        with pytest.raises(Exception) as refused, away.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert is_database_unreachable(refused.value)
    finally:
        away.dispose()
    assert not is_database_unreachable(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not is_database_unreachable(sqlite3.OperationalError("database or disk is full"))
