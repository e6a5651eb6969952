"""The Message-ID index over the replica: follows adds, expunges, resets; measured at 100,000."""

from __future__ import annotations

import time
from pathlib import Path

from imapgate.replica.events import EventHub
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine
from imapgate.submission.msgindex import MessageIdIndex


def _replica(tmp_path: Path) -> Replica:
    replica = Replica(open_engine(f"sqlite:///{tmp_path / 's.sqlite3'}"), EventHub())
    replica.load()
    return replica


def _rec(uid: int, mid: str | None) -> MessageRecord:
    return MessageRecord(uid, (), 0, 1_700_000_000.0, 0, 100, mid)


def test_follows_the_replica(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    inbox = replica.upsert_mailbox("INBOX", "/", ())
    archive = replica.upsert_mailbox("Archive", "/", ())
    replica.add_messages(inbox, [_rec(1, "<a@x>"), _rec(2, "<b@x>"), _rec(3, None)])
    index = MessageIdIndex(replica)
    assert [(mb.name, r.uid) for mb, r in index.find("<a@x>")] == [("INBOX", 1)]
    replica.add_messages(archive, [_rec(10, "<a@x>")])  # a copy in another folder
    assert sorted((mb.name, r.uid) for mb, r in index.find("<a@x>")) == [("Archive", 10), ("INBOX", 1)]
    replica.expunge(inbox, [1])
    assert [(mb.name, r.uid) for mb, r in index.find("<a@x>")] == [("Archive", 10)]
    assert index.find("<nope@x>") == [] and index.find("<b@x>")[0][1].uid == 2
    replica.drop_mailbox("Archive")
    assert index.find("<a@x>") == []
    index.close()


def test_lookup_cost_at_100000_messages(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    inbox = replica.upsert_mailbox("INBOX", "/", ())
    replica.add_messages(inbox, [_rec(u, f"<{u}.{u * 7919}@customer.example>") for u in range(1, 100_001)])
    t0 = time.perf_counter()
    scan = [r for r in inbox.records.values() if r.message_id == "<99999.791892081@customer.example>"]
    t_scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = MessageIdIndex(replica)
    assert len(index) == 100_000
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(1000):
        found = index.find("<99999.791892081@customer.example>")
    t_find = (time.perf_counter() - t0) / 1000
    assert [r.uid for _, r in found] == [r.uid for r in scan] == [99999]
    print(f"100,000 messages: scan {t_scan * 1e3:.1f} ms, index build {t_build * 1e3:.0f} ms, "
          f"lookup {t_find * 1e6:.1f} us")
    # Generous bounds for a loaded machine; the point is orders of magnitude.
    assert t_find < 0.001 and t_find * 20 < t_scan
    index.close()
