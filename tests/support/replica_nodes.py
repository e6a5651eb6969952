"""Replicas of several gateway nodes in one test process: each with its own change-log bus
(``LogChangeBus``), shared allocators and event hub on one store, the way
``gateway/nodes.py`` wires a node (for the store-level multi-node tests, both backends)."""

from __future__ import annotations

from sqlalchemy import Engine

from imapgate.replica.coordination import SharedMailboxIdAllocator, SharedModseqAllocator
from imapgate.replica.events import EventHub, ReplicaEvent
from imapgate.replica.logbus import LogChangeBus
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.remote import apply_remote
from imapgate.replica.replica import Replica


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


def rec(uid: int, *flags: str) -> MessageRecord:
    return MessageRecord(uid, tuple(flags), 0, 1.7e9 + uid, 0, 100 + uid, f"<{uid}@x>")
