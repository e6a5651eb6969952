"""The change bus: every committed change set, to whoever listens.

``ChangeBus`` is the interface (publish a change set; subscribe a callback,
get back the function that unsubscribes it).  ``InProcessChangeBus`` is the
one-node implementation: callbacks run synchronously in the publisher's
thread (the event loop's) right after the commit, so they must only queue
work.  The PostgreSQL issue adds a LISTEN/NOTIFY bus behind the same
interface, whose subscribers on other nodes apply the change set to their own
replica.

The local fan-out to sessions by mailbox (``events.EventHub``) is one
subscriber of the bus.

``recorder``: a bus that carries change sets beyond this process writes them
*inside the transaction that commits their rows* (the replica runs the hook it
returns last in that transaction), so a change is either committed and on its
way to the other nodes, or neither -- a process killed between a commit and a
second write can no longer leave the other nodes behind the store.  The change
set's events are known before its commit for this reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Connection

from .changes import ChangeSet

#: A write to run inside a store transaction (as ``store.repository.Hook``).
RecordHook = Callable[[Connection], None]
ChangeListener = Callable[[ChangeSet], None]
Unsubscribe = Callable[[], None]


class ChangeBus(Protocol):
    def publish(self, changes: ChangeSet) -> None: ...

    def subscribe(self, fn: ChangeListener) -> Unsubscribe: ...

    def recorder(self, changes: ChangeSet) -> RecordHook | None:
        """What records ``changes`` for others in the commit's transaction (None: nothing)."""
        ...


class InProcessChangeBus:
    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    def publish(self, changes: ChangeSet) -> None:
        # A copy: a listener may unsubscribe while being called.
        for fn in list(self._listeners):
            fn(changes)

    def recorder(self, changes: ChangeSet) -> RecordHook | None:
        return None  # one process: the listeners are called on publish, nothing to record

    def subscribe(self, fn: ChangeListener) -> Unsubscribe:
        self._listeners.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return unsubscribe
