"""A UID below the replica's highest that upstream holds but the replica never recorded.

The gateway records its own APPEND/COPY results from APPENDUID/COPYUID at once.  Two
concurrent APPENDs get UIDs 4 and 5; if 5 is recorded and the process dies (SIGKILL, found by
tests/integration/test_crash_recovery.py) before 4 is, every later sync used to fetch new
messages only above the highest known UID: UID 4 stayed invisible to the team for good.
The sync must notice that upstream counts more messages than the replica and fetch the gap.
"""

from __future__ import annotations

from pathlib import Path

from imapgate.protocol import commands as cmd
from imapgate.replica.mailbox import MailboxIndex

from .test_sync import UIDVALIDITY, make, new_message_line, rec, select_answer


class Upstream:
    """A folder upstream holding ``uids``; answers SELECT, NOOP, FETCH, SEARCH like Dovecot."""

    def __init__(self, uids: list[int], highest: int) -> None:
        self.uids = uids
        self.highest = highest
        self.noop: list[bytes] = []

    def __call__(self, c: cmd.Command) -> tuple[list[bytes], bytes]:
        if isinstance(c, cmd.Select):
            return select_answer(len(self.uids), self.uids[-1] + 1, self.highest), b"OK [READ-WRITE] done"
        if isinstance(c, cmd.Noop):
            return self.noop, b"OK done"
        if isinstance(c, cmd.Fetch) and c.changedsince is not None:
            return [], b"OK done"
        if isinstance(c, cmd.Fetch):
            wanted = set(c.sequence_set.iter(self.uids[-1]))
            lines = [new_message_line(i + 1, u) for i, u in enumerate(self.uids) if u in wanted]
            return lines, b"OK done"
        if isinstance(c, cmd.Search):
            return [b"* SEARCH " + b" ".join(b"%d" % u for u in self.uids)], b"OK done"
        raise AssertionError(f"unexpected {c.name}")


def own_append_recorded(replica: object, mb: MailboxIndex, uid: int) -> None:
    """What MailService.append does with an APPENDUID: the record goes in at once."""
    replica.add_messages(mb, [rec(uid)])  # type: ignore[attr-defined]


async def test_a_gap_below_the_highest_uid_is_fetched_at_the_next_select(tmp_path: Path) -> None:
    upstream = Upstream([1, 2, 3, 4, 5], highest=20)
    sync, replica, mb, _conn = make(tmp_path, upstream)
    own_append_recorded(replica, mb, 5)  # ... and the process died before UID 4's record
    assert mb.uids == [1, 2, 3, 5]
    await sync.sync_mailbox("Work")  # the first sync after a restart SELECTs (QRESYNC)
    assert mb.uids == [1, 2, 3, 4, 5]
    assert mb.records[4].message_id == "<n4@x>"
    assert mb.uidvalidity == UIDVALIDITY


async def test_a_gap_below_the_highest_uid_is_fetched_by_a_resumed_sync(tmp_path: Path) -> None:
    upstream = Upstream([1, 2, 3], highest=10)
    sync, replica, mb, conn = make(tmp_path, upstream)
    await sync.sync_mailbox("Work")  # selects: the next sync resumes on this connection
    upstream.uids += [4, 5]
    upstream.noop = [b"* 5 EXISTS"]
    own_append_recorded(replica, mb, 5)  # UID 4's APPEND failed to record (its answer was lost)
    conn.sent.clear()
    await sync.sync_mailbox("Work")
    assert "SELECT" not in [c.name for c in conn.sent]
    assert mb.uids == [1, 2, 3, 4, 5]


async def test_no_gap_costs_no_search(tmp_path: Path) -> None:
    upstream = Upstream([1, 2, 3, 4], highest=20)
    sync, _replica, mb, conn = make(tmp_path, upstream)
    await sync.sync_mailbox("Work")
    assert mb.uids == [1, 2, 3, 4]
    assert "SEARCH" not in [c.name for c in conn.sent]
