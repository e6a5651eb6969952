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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .changes import ChangeSet

ChangeListener = Callable[[ChangeSet], None]
Unsubscribe = Callable[[], None]


class ChangeBus(Protocol):
    def publish(self, changes: ChangeSet) -> None: ...

    def subscribe(self, fn: ChangeListener) -> Unsubscribe: ...


class InProcessChangeBus:
    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    def publish(self, changes: ChangeSet) -> None:
        # A copy: a listener may unsubscribe while being called.
        for fn in list(self._listeners):
            fn(changes)

    def subscribe(self, fn: ChangeListener) -> Unsubscribe:
        self._listeners.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return unsubscribe
