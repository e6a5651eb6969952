"""Another node's changes replayed on this node's replica (replica/remote.py) through the
change-log bus, on both backends: two replicas on one store end with the same picture in memory,
and this node's sessions get the events."""

from __future__ import annotations

from sqlalchemy import Engine

from imapgate.replica.coordination import SharedMailboxIdAllocator, SharedModseqAllocator
from imapgate.replica.events import EventHub, MailboxReset, ReplicaEvent
from imapgate.replica.logbus import LogChangeBus
from imapgate.replica.mailbox import MailboxIndex, MessageRecord
from imapgate.replica.remote import apply_remote
from imapgate.replica.replica import Replica
from imapgate.team.users import UserDirectory


def node(engine: Engine, name: str) -> tuple[Replica, LogChangeBus, list[ReplicaEvent]]:
    bus = LogChangeBus(engine, name)
    hub = EventHub()
    events: list[ReplicaEvent] = []
    hub.subscribe(None, events.append)
    replica = Replica(
        engine,
        hub,
        bus=bus,
        modseqs=SharedModseqAllocator(engine),
        mailbox_ids=SharedMailboxIdAllocator(engine),
    )
    replica.load()
    bus.subscribe_remote(lambda cs: apply_remote(replica, cs))
    return replica, bus, events


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


def rec(uid: int, *flags: str) -> MessageRecord:
    return MessageRecord(uid, tuple(flags), 0, 1.7e9 + uid, 0, 100 + uid, f"<{uid}@x>")


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
