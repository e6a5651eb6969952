"""Replica: changes persist, survive a reload, publish events, keep modseqs."""

from __future__ import annotations

import threading
import time

from sqlalchemy import event, select

from imapgate.replica.events import EventHub, FlagsChanged, MessagesAdded, MessagesExpunged, ReplicaEvent
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.changes import WritePrivateSets
from imapgate.store.engine import open_engine
from imapgate.store.repository import _write_private_sets
from imapgate.store.schema import private_flags
from imapgate.team.users import UserDirectory
from tests.support.store_backends import POSTGRESQL_ONLY


def rec(uid: int, *flags: str) -> MessageRecord:
    return MessageRecord(uid, tuple(flags), 0, 1_700_000_000.0 + uid, 60, 1000 + uid, f"<m{uid}@x>")


def make(store_url: str) -> tuple[Replica, list[ReplicaEvent]]:
    engine = open_engine(store_url)
    hub = EventHub()
    events: list[ReplicaEvent] = []
    hub.subscribe(None, events.append)
    return Replica(engine, hub), events


def test_lifecycle_and_reload(store_url: str) -> None:
    replica, events = make(store_url)
    alice = UserDirectory(replica.engine).add("alice", "pw")
    mb = replica.upsert_mailbox("INBOX", "/", ())
    replica.reset(mb, 1234, "initial")
    assert replica.add_messages(mb, [rec(1), rec(2, "\\Flagged"), rec(5)]) == (1, 2, 5)
    m_add = mb.modseq
    assert replica.set_shared_flags(mb, {1: ["\\Answered"], 2: ["\\Flagged"]}) == (1,)
    assert mb.records[1].modseq > m_add and mb.records[2].modseq == m_add
    assert replica.set_private_flags(mb, alice.id, {"\\Seen": [1, 2]}, {}) == (1, 2)
    m_priv = mb.modseq
    assert replica.highest_modseq_for(mb, alice.id) == m_priv
    assert replica.highest_modseq_for(mb, None) < m_priv  # other users don't see it
    assert replica.expunge(mb, [2, 99]) == (2,)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("MessagesAdded") == 1 and kinds.count("MessagesExpunged") == 1
    priv = [e for e in events if isinstance(e, FlagsChanged) and e.user_id == alice.id]
    assert priv and priv[0].uids == (1, 2)
    assert any(isinstance(e, MessagesAdded) for e in events)
    assert any(isinstance(e, MessagesExpunged) and e.uids == (2,) for e in events)

    again = Replica(replica.engine)
    again.load()
    mb2 = again.get("INBOX")
    assert mb2 is not None
    assert mb2.uids == [1, 5] and mb2.uidvalidity == 1234 and mb2.uidnext == 6
    assert mb2.records[1].flags == ("\\Answered",)
    assert mb2.modseq == mb.modseq and mb2.expunged == {2: mb.expunged[2]}
    state = again.private_state(mb2, alice.id)
    assert list(state.flags["\\Seen"]) == [1]  # 2 was expunged
    private = again.private_flags_of(mb2)
    assert again.flags_for(mb2, mb2.records[1], state, private) == ("\\Answered", "\\Seen")
    assert again.flags_for(mb2, mb2.records[5], state, private) == ()


def test_uidvalidity_reset_clears(store_url: str) -> None:
    replica, _ = make(store_url)
    mb = replica.upsert_mailbox("Support", "/", ())
    replica.reset(mb, 1, "initial")
    replica.add_messages(mb, [rec(1), rec(2)])
    replica.reset(mb, 2, "UIDVALIDITY changed")
    assert mb.uids == [] and mb.uidvalidity == 2
    again = Replica(replica.engine)
    again.load()
    got = again.get("Support")
    assert got is not None and got.uids == [] and got.uidvalidity == 2


def test_rename_with_children(store_url: str) -> None:
    replica, _ = make(store_url)
    replica.upsert_mailbox("Projects", "/", ())
    replica.upsert_mailbox("Projects/Web", "/", ())
    replica.rename_mailbox("Projects", "Archive/Projects")
    assert replica.names() == ["Archive/Projects", "Archive/Projects/Web"]


def test_seen_mode_switch_by_config_drops_stale_private_state(store_url: str) -> None:
    replica, _ = make(store_url)
    alice = UserDirectory(replica.engine).add("alice", "pw")
    mb = replica.upsert_mailbox("Queue", "/", ())
    replica.reset(mb, 7, "initial")
    replica.add_messages(mb, [rec(1, "\\Seen"), rec(2)])
    replica.load()  # records the mode in force (private)
    mb = replica.get("Queue")
    assert mb is not None
    replica.set_private_flags(mb, alice.id, {}, {"\\Seen": [1]})  # alice: 1 unread again
    # Same config on restart: alice's state stays.
    again = Replica(replica.engine)
    again.load()
    q = again.get("Queue")
    assert q is not None and 1 not in again.private_state(q, alice.id).flags["\\Seen"]
    # Config switches the folder to shared and back to private: stale marks do not return.
    Replica(replica.engine, seen_modes={"Queue": "shared"}).load()
    back = Replica(replica.engine)
    back.load()
    q = back.get("Queue")
    assert q is not None and 1 in back.private_state(q, alice.id).flags["\\Seen"]


def test_expunge_rewrites_only_private_sets_that_held_an_expunged_uid(store_url: str) -> None:
    replica, _ = make(store_url)
    users = UserDirectory(replica.engine)
    alice, bob, carol = (users.add(n, "pw") for n in ("alice", "bob", "carol"))
    mb = replica.upsert_mailbox("INBOX", "/", ())
    replica.reset(mb, 1234, "initial")
    replica.add_messages(mb, [rec(1), rec(2), rec(3)])
    replica.set_private_flags(mb, alice.id, {"\\Seen": [1, 2]}, {})
    replica.set_private_flags(mb, bob.id, {"\\Seen": [1]}, {})
    replica.private_state(mb, carol.id)  # loaded, empty
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "private_flags" in statement:
            statements.append(statement.split()[0])

    event.listen(replica.engine, "before_cursor_execute", count)
    try:
        assert replica.expunge(mb, [2]) == (2,)
    finally:
        event.remove(replica.engine, "before_cursor_execute", count)
    assert statements == ["INSERT"]  # alice's \\Seen set only (one upsert)
    again = Replica(replica.engine)
    again.load()
    mb2 = again.get("INBOX")
    assert mb2 is not None
    assert list(again.private_state(mb2, alice.id).flags["\\Seen"]) == [1]
    assert list(again.private_state(mb2, bob.id).flags["\\Seen"]) == [1]
    assert list(again.private_state(mb2, carol.id).flags["\\Seen"]) == []


def test_status_counts_follow_every_kind_of_change(store_url: str) -> None:
    """STATUS UNSEEN/DELETED/SIZE are cached per folder state: every change
    (new mail, shared flags, expunge, UIDVALIDITY reset) must show at once."""
    replica, _events = make(store_url)
    mb = replica.upsert_mailbox("INBOX", "/", ())
    replica.reset(mb, 1, "initial")
    replica.add_messages(mb, [rec(1, "\\Seen"), rec(2), rec(3, "\\Deleted")])
    assert mb.shared_counts() == (2, 1, 1001 + 1002 + 1003)
    replica.set_shared_flags(mb, {2: ["\\Seen"]})
    assert mb.shared_counts() == (1, 1, 1001 + 1002 + 1003)
    replica.set_shared_flags(mb, {2: ["\\Seen", "\\Deleted"]})
    assert mb.shared_counts() == (1, 2, 1001 + 1002 + 1003)
    replica.expunge(mb, [3])
    assert mb.shared_counts() == (0, 1, 1001 + 1002)
    replica.add_messages(mb, [rec(4)])
    assert mb.shared_counts() == (1, 1, 1001 + 1002 + 1004)
    replica.reset(mb, 2, "UIDVALIDITY changed")
    assert mb.shared_counts() == (0, 0, 0)
    replica.add_messages(mb, [rec(1), rec(2)])
    assert mb.shared_counts() == (2, 0, 1001 + 1002)


def test_two_writers_of_one_users_first_private_set_both_succeed(store_url: str) -> None:
    """Two nodes write the same user's first private set of a folder at once (both
    first SELECTs): the second write replaces the first, it does not fail on the key."""
    replica, _ = make(store_url)
    users = UserDirectory(replica.engine)
    alice = users.add("alice", "pw")
    mb = replica.upsert_mailbox("INBOX", "/", ())
    replica.reset(mb, 1234, "initial")
    replica.add_messages(mb, [rec(1), rec(2)])
    other = Replica(replica.engine)  # a second node's replica on the same store
    other.load()
    other_mb = other.get("INBOX")
    assert other_mb is not None
    other.private_state(other_mb, alice.id)
    replica.private_state(mb, alice.id)
    replica.set_private_flags(mb, alice.id, {"\\Seen": [1]}, {})
    other.set_private_flags(other_mb, alice.id, {"\\Seen": [2]}, {})
    again = Replica(replica.engine)
    again.load()
    again_mb = again.get("INBOX")
    assert again_mb is not None
    assert list(again.private_state(again_mb, alice.id).flags["\\Seen"]) == [2]  # the later write


@POSTGRESQL_ONLY  # SQLite has one writer at a time: no such race
def test_concurrent_first_private_sets_do_not_fail_on_the_key(store_url: str) -> None:
    """The race itself, on PostgreSQL: a second transaction writes the same set while
    the first is uncommitted; it waits for it and then replaces its row (with a
    delete-then-insert it failed on the primary key)."""
    replica, _ = make(store_url)
    alice = UserDirectory(replica.engine).add("alice", "pw")
    mb = replica.upsert_mailbox("INBOX", "/", ())
    first = replica.engine.connect()
    tx = first.begin()
    _write_private_sets(first, WritePrivateSets(mb.id, alice.id, {"\\Seen": b"1"}))
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with replica.engine.begin() as conn:
                _write_private_sets(conn, WritePrivateSets(mb.id, alice.id, {"\\Seen": b"2"}))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)  # the second waits on the first's row
    tx.commit()
    first.close()
    thread.join(10)
    assert not errors, errors
    with replica.engine.connect() as conn:
        rows = conn.execute(select(private_flags.c.uids).where(private_flags.c.user_id == alice.id)).all()
    assert [bytes(r.uids) for r in rows] == [b"2"]
