"""Another node's changes replayed on this node's replica (replica/remote.py) through the
change-log bus, on both backends: two replicas on one store end with the same picture in memory,
and this node's sessions get the events."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, select

from imapgate.replica.events import MailboxReset
from imapgate.replica.mailbox import MailboxIndex
from imapgate.store.schema import change_log
from imapgate.team.users import UserDirectory
from tests.support.replica_nodes import node, rec


def picture(mb: MailboxIndex) -> object:
    return (
        mb.name,
        mb.uidvalidity,
        mb.uidnext,
        mb.uids,
        {u: (r.flags, r.modseq) for u, r in mb.records.items()},
        mb.expunged,
        mb.modseq,
    )


def test_two_replicas_on_one_store_agree(store_engine: Engine) -> None:
    alice = UserDirectory(store_engine).add("alice", "pw")
    a, _bus_a, _ = node(store_engine, "a")
    b, bus_b, events_b = node(store_engine, "b")
    mb = a.upsert_mailbox("Support", "/", ())
    a.reset(mb, 77, "initial")
    a.set_sync_state(mb, synced=True)
    a.add_messages(mb, [rec(u) for u in range(1, 11)])
    bus_b.poll()
    other = b.get("Support")
    assert other is not None
    b.private_state(other, alice.id)  # alice has a session on node b: her state is loaded there

    a.set_shared_flags(mb, {3: ["\\Flagged"], 4: ["\\Answered", "$Label1"]})
    a.set_private_flags(mb, alice.id, {"\\Seen": [1, 2, 5]}, {})
    a.expunge(mb, [2, 9])
    a.rename_mailbox("Support", "Archive/Support")
    assert bus_b.poll() >= 4
    moved = b.get("Archive/Support")
    assert moved is other and b.get("Support") is None  # the same object, renamed in place
    assert picture(moved) == picture(mb)
    state_a, state_b = a.private_state(mb, alice.id), b.private_state(moved, alice.id)
    assert list(state_b.flags["\\Seen"]) == list(state_a.flags["\\Seen"]) == [1, 5]
    assert state_b.modseqs == state_a.modseqs
    kinds = [type(e).__name__ for e in events_b]
    assert {"MessagesAdded", "FlagsChanged", "MessagesExpunged", "MailboxListChanged"} <= set(kinds)
    # Node b's own next change continues above a's modseqs: never one a handed out.
    b.set_shared_flags(moved, {1: ["\\Flagged"]})
    assert moved.records[1].modseq > max(r.modseq for r in mb.records.values())

    a.drop_mailbox("Archive/Support")
    bus_b.poll()
    assert b.get("Archive/Support") is None
    assert any(isinstance(e, MailboxReset) for e in events_b)


def log_rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r.payload for r in conn.execute(select(change_log.c.payload).order_by(change_log.c.id))]


def test_a_commit_and_its_log_row_are_one_transaction(store_engine: Engine) -> None:
    """The log row is written inside the commit: it is there when this node's own listeners
    hear of the change (nothing left to write after the commit, so a node killed at that point
    has told the others already); a commit that fails writes neither; every transition is one
    row, a rows-only one (sync state) included, without any flush."""
    a, bus_a, _ = node(store_engine, "a")
    b, bus_b, _ = node(store_engine, "b")
    mb = a.upsert_mailbox("INBOX", "/", ())
    a.reset(mb, 7, "initial")
    a.add_messages(mb, [rec(1)])
    seen_at_publish: list[int] = []
    bus_a.subscribe(lambda cs: seen_at_publish.append(len(log_rows(store_engine))))
    before = len(log_rows(store_engine))
    a.set_shared_flags(mb, {1: ["\\Flagged"]})
    assert seen_at_publish == [before + 1]  # the row was committed before the local publish
    assert len(log_rows(store_engine)) == before + 1  # and publish did not append a second one

    a.set_sync_state(mb, uidnext=5, synced=True)  # no event announces it
    assert len(log_rows(store_engine)) == before + 2
    bus_b.poll()
    other = b.get("INBOX")
    assert other is not None and other.uidnext == 5 and other.synced
    assert other.records[1].flags == ("\\Flagged",)

    def broken(conn: Connection) -> None:
        raise RuntimeError("the journal write failed")

    rows = len(log_rows(store_engine))
    with pytest.raises(RuntimeError):
        a.set_shared_flags(mb, {1: ["\\Seen"]}, hook=broken)
    assert len(log_rows(store_engine)) == rows  # rolled back together: no news of it
    assert bus_b.poll() == 0 and other.records[1].flags == ("\\Flagged",)
    assert mb.records[1].flags == ("\\Flagged",)  # and this node's memory unchanged
