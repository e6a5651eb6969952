"""Sync engine against a scripted upstream: what it makes of the answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from imapgate.protocol import commands as cmd
from imapgate.protocol import responses as rsp
from imapgate.replica.events import EventHub
from imapgate.replica.mailbox import MailboxIndex, MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine
from imapgate.sync.engine import SyncEngine

from .scripted import ScriptedConnection, ScriptedPool

UIDVALIDITY = 77
DATE = b'INTERNALDATE "10-Sep-2024 09:14:03 +0200"'


def rec(uid: int, *flags: str) -> MessageRecord:
    return MessageRecord(uid, tuple(flags), 0, 1_700_000_000.0 + uid, 60, 1000 + uid, f"<m{uid}@x>")


def new_message_line(seq: int, uid: int, flags: bytes = b"") -> bytes:
    header = b"Message-ID: <n%d@x>\r\n" % uid
    return b"* %d FETCH (UID %d FLAGS (%s) %s RFC822.SIZE %d BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n%s)" % (
        seq,
        uid,
        flags,
        DATE,
        500 + uid,
        len(header),
        header,
    )


def make(tmp_path: Path, script: Any) -> tuple[SyncEngine, Replica, MailboxIndex, ScriptedConnection]:
    engine = open_engine(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    replica = Replica(engine, EventHub())
    mb = replica.upsert_mailbox("Work", "/", ())
    replica.reset(mb, UIDVALIDITY, "initial")
    replica.add_messages(mb, [rec(1), rec(2), rec(3)])
    replica.set_sync_state(mb, uidnext=4, upstream_modseq=10, synced=True)
    conn = ScriptedConnection(script)
    sync = SyncEngine(ScriptedPool(conn), replica)  # type: ignore[arg-type]
    return sync, replica, mb, conn


def select_answer(exists: int, uidnext: int, highest: int) -> list[bytes]:
    return [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.",
        b"* %d EXISTS" % exists,
        b"* OK [UIDVALIDITY %d] UIDs valid" % UIDVALIDITY,
        b"* OK [UIDNEXT %d] Predicted next UID" % uidnext,
        b"* OK [HIGHESTMODSEQ %d] Highest" % highest,
    ]


async def test_unsolicited_flag_updates_in_new_message_fetch_are_not_new_messages(tmp_path: Path) -> None:
    """Another session's flag changes arrive as FETCH responses in the middle of
    the answer to the fetch of new messages: one for a new UID of the batch (it
    must not become a second record: UNIQUE constraint), one for a known UID
    (not a new message either: no size, no date)."""

    def script(c: cmd.Command) -> tuple[list[bytes], bytes]:
        if isinstance(c, cmd.Select):
            return select_answer(5, 6, 12), b"OK [READ-WRITE] done"
        if isinstance(c, cmd.Fetch) and c.changedsince is None:
            return [
                b"* 4 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (11))",
                new_message_line(4, 4, b"\\Seen"),
                b"* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (12))",
                new_message_line(5, 5),
                b"* 5 FETCH (UID 5 FLAGS (\\Answered) MODSEQ (12))",
            ], b"OK done"
        return [], b"OK done"

    sync, replica, mb, _conn = make(tmp_path, script)
    await sync.sync_mailbox("Work")
    assert mb.uids == [1, 2, 3, 4, 5]
    assert mb.records[4].size == 504 and mb.records[4].message_id == "<n4@x>"
    assert mb.records[4].flags == ("\\Seen",)
    # The later flag update of a new message wins over the flags of its record.
    assert mb.records[5].flags == ("\\Answered",) and mb.records[5].size == 505
    # A flag update of a known message is a flag update, not a record.
    assert mb.records[2].size == 1002 and mb.records[2].flags == ("\\Flagged",)
    again = Replica(replica.engine)
    again.load()
    mb2 = again.get("Work")
    assert mb2 is not None and mb2.uids == [1, 2, 3, 4, 5]


async def test_unsolicited_fetch_of_a_uid_above_the_batch_is_no_record(tmp_path: Path) -> None:
    """A flag update for a UID above the batch (the message arrived after the
    SELECT) must not make a record without size or date: the next range
    fetches that message properly, and its record must be the real one."""

    def script(c: cmd.Command) -> tuple[list[bytes], bytes]:
        if isinstance(c, cmd.Select):
            return select_answer(4, 5, 12), b"OK [READ-WRITE] done"
        if isinstance(c, cmd.Fetch):
            first = c.sequence_set.ranges[0][0]
            if first == 4:
                return [
                    new_message_line(4, 4),
                    b"* 5 EXISTS",
                    b"* 5 FETCH (UID 9 FLAGS (\\Seen) MODSEQ (13))",
                ], b"OK done"
            if first == 5:
                return [new_message_line(5, 9, b"\\Seen")], b"OK done"
        if isinstance(c, cmd.Search):
            return [b"* SEARCH 1 2 3 4 9"], b"OK done"
        return [], b"OK done"

    sync, _replica, mb, _conn = make(tmp_path, script)
    await sync.sync_mailbox("Work")
    assert mb.uids == [1, 2, 3, 4, 9]
    assert mb.records[9].size == 509 and mb.records[9].internal_date > 0
    assert mb.records[9].message_id == "<n9@x>"


def test_older_flag_reports_lose_against_newer_ones(tmp_path: Path) -> None:
    """Two writers' STORE answers reach the replica in the wrong order: the
    flags with the higher upstream MODSEQ stay, whatever the order of arrival."""
    sync, _replica, mb, _conn = make(tmp_path, lambda c: ([], b"OK done"))
    assert sync.apply_flags(mb, {1: (("\\Flagged", "\\Seen"), 12)}) == (1,)
    assert sync.apply_flags(mb, {1: (("\\Flagged",), 11)}) == ()  # older: dropped
    assert mb.records[1].flags == ("\\Flagged", "\\Seen")
    # At or below the synced HIGHESTMODSEQ (10), a report is older than the replica.
    assert sync.apply_flags(mb, {2: (("\\Answered",), 9)}) == ()
    assert mb.records[2].flags == ()
    # Without a MODSEQ (a server without CONDSTORE) a report is taken as it is.
    assert sync.apply_flags(mb, {2: (("\\Answered",), None)}) == (2,)


async def test_resync_on_a_connection_with_the_folder_selected_needs_no_select(tmp_path: Path) -> None:
    noop_lines: list[bytes] = []

    def script(c: cmd.Command) -> tuple[list[bytes], bytes]:
        if isinstance(c, cmd.Select):
            return select_answer(3, 4, 10), b"OK [READ-WRITE] done"
        if isinstance(c, cmd.Noop):
            return noop_lines, b"OK done"
        if isinstance(c, cmd.Fetch) and c.changedsince is not None:
            assert c.changedsince == 10 and c.vanished
            return [
                b"* VANISHED (EARLIER) 2",
                b"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (12))",
                b"* 2 FETCH (UID 3 FLAGS (\\Answered) MODSEQ (14))",
            ], b"OK done"
        if isinstance(c, cmd.Fetch):
            assert c.sequence_set.ranges[0][0] == 4
            return [new_message_line(3, 4)], b"OK done"
        raise AssertionError(f"unexpected {c.name}")

    sync, _replica, mb, conn = make(tmp_path, script)
    await sync.sync_mailbox("Work")  # the first sync selects
    assert [c.name for c in conn.sent] == ["SELECT"]
    conn.sent.clear()
    # Meanwhile upstream: UID 2 expunged, UID 1 flagged (the NOOP tells), UID 3
    # answered (only the fetch tells), a new message 4.
    noop_lines[:] = [b"* VANISHED 2", b"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (12))", b"* 3 EXISTS"]
    await sync.sync_mailbox("Work")
    assert [c.name for c in conn.sent] == ["NOOP", "FETCH", "FETCH"]
    assert mb.uids == [1, 3, 4]
    assert mb.records[1].flags == ("\\Flagged",) and mb.records[3].flags == ("\\Answered",)
    # The floor moves to what the NOOP showed, not to the fetch's 14: an expunge
    # between the NOOP and the fetch would be in neither answer.
    assert mb.upstream_modseq == 12


async def test_requests_are_debounced_and_skipped_when_nothing_is_new(tmp_path: Path) -> None:
    selects = 0

    def script(c: cmd.Command) -> tuple[list[bytes], bytes]:
        nonlocal selects
        if isinstance(c, cmd.Select):
            selects += 1
            return select_answer(3, 4, 10 + selects), b"OK [READ-WRITE] done"
        return [], b"OK done"

    sync, _replica, mb, conn = make(tmp_path, script)

    def status(highest: int) -> rsp.StatusResponse:
        return rsp.StatusResponse("Work", {"MESSAGES": 3, "UIDNEXT": 4, "HIGHESTMODSEQ": highest})

    # A burst of notifications: one sync.
    for h in (11, 12, 13):
        sync.request("Work", status=status(h))
    await drain(sync)
    assert selects == 1 and len(conn.sent) == 1
    conn.sent.clear()
    # A notification for what the replica already has: no sync at all.
    sync.request("Work", status=status(mb.upstream_modseq))
    await drain(sync)
    assert conn.sent == []
    # Anything newer, or a request that says nothing, syncs (without a SELECT now).
    sync.request("Work", status=status(mb.upstream_modseq + 1))
    await drain(sync)
    assert [c.name for c in conn.sent] == ["NOOP", "FETCH"]
    conn.sent.clear()
    sync.request("Work")
    await drain(sync)
    assert [c.name for c in conn.sent] == ["NOOP", "FETCH"]
    # A notification showing more mail than the replica has is never skipped.
    conn.sent.clear()
    sync.request("Work", status=rsp.StatusResponse("Work", {"MESSAGES": 4, "HIGHESTMODSEQ": 1}))
    await drain(sync)
    assert conn.sent != []


async def test_pooled_connections_signals_are_left_to_notify(tmp_path: Path) -> None:
    sync, _replica, _mb, conn = make(tmp_path, lambda c: ([], b"OK done"))
    pool = sync.pool
    assert isinstance(pool, ScriptedPool)
    # The engine listens through the pool's listener API (nobody's callback replaced).
    assert pool.listeners == [sync.watcher.on_unsolicited]
    conn.selected = "Work"
    sync.watcher.notify_active = True
    pool.unsolicited(rsp.Exists(4))
    assert not sync.scheduler._scheduled
    sync.watcher.notify_active = False
    pool.unsolicited(rsp.Exists(4))
    assert sync.scheduler._scheduled == {"Work"}
    await sync.stop()


async def drain(sync: SyncEngine) -> None:
    while sync.scheduler._tasks:
        await asyncio.gather(*list(sync.scheduler._tasks))
