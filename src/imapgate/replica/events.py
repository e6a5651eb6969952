"""Change events published by the replica, and the in-process hub that fans
them out to subscribers (IMAP sessions, the dashboard).

Subscribers are plain callables, called synchronously in the event loop's
thread right after the change is committed; they must only queue work (a
session appends to its pending updates and wakes its writer), never block.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .mailbox import MessageRecord


@dataclass(frozen=True, slots=True)
class FlagsChanged:
    mailbox_id: int
    uids: tuple[int, ...]
    modseq: int
    #: None for a shared change (everyone sees it); a user id for a change of
    #: that user's private flags (only that user's sessions see it).
    user_id: int | None = None


@dataclass(frozen=True, slots=True)
class MessagesAdded:
    mailbox_id: int
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ExpungedPrivate:
    """One user's private state of messages just expunged: which private flags
    each had (flag -> UIDs) and their private modseqs (sparse, ``floor`` else)."""

    flags: Mapping[str, frozenset[int]]
    modseqs: Mapping[int, int]
    floor: int


@dataclass(frozen=True, slots=True)
class MessagesExpunged:
    mailbox_id: int
    uids: tuple[int, ...]
    modseq: int
    #: The records of ``uids`` (same order) as they were before the expunge, and
    #: per user with loaded private state what was private about them: a session
    #: not yet told of the expunge keeps serving them (RFC 2180 §4.1.1).
    records: tuple[MessageRecord, ...] = ()
    private: Mapping[int, ExpungedPrivate] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class MailboxReset:
    """UIDVALIDITY changed or the mailbox was deleted/renamed away: sessions
    that have it selected must be closed (``* BYE`` or ``[CLOSED]``)."""

    mailbox_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ModeChanged:
    """The folder's read-state mode (private/shared \\Seen) changed."""

    mailbox_id: int


@dataclass(frozen=True, slots=True)
class MailboxListChanged:
    """A mailbox was created, deleted or renamed."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NoteAdded:
    """A team member kept an internal note on a message (team/notes.py), for the
    dashboards of every node (mail clients never see notes).  ``note`` is the note as
    plain values (``Note.to_json`` plus ``ts`` and ``message_id``): it travels between
    nodes in the change log."""

    mailbox_id: int
    uid: int
    note: dict[str, Any]


ReplicaEvent = (
    FlagsChanged
    | MessagesAdded
    | MessagesExpunged
    | MailboxReset
    | MailboxListChanged
    | ModeChanged
    | NoteAdded
)
Subscriber = Callable[[ReplicaEvent], None]


class EventHub:
    """Per-mailbox subscriptions plus global ones (mailbox list, dashboard)."""

    def __init__(self) -> None:
        self._by_mailbox: defaultdict[int, set[Subscriber]] = defaultdict(set)
        self._global: set[Subscriber] = set()
        #: Called with a mailbox id whenever a session starts or stops watching
        #: it (the sync engine watches the busiest folder upstream).
        self._interest_listeners: list[Callable[[int], None]] = []

    def subscribe(self, mailbox_id: int | None, fn: Subscriber) -> None:
        if mailbox_id is None:
            self._global.add(fn)
        else:
            self._by_mailbox[mailbox_id].add(fn)
            self._interest_changed(mailbox_id)

    def unsubscribe(self, mailbox_id: int | None, fn: Subscriber) -> None:
        if mailbox_id is None:
            self._global.discard(fn)
        else:
            subs = self._by_mailbox.get(mailbox_id)
            if subs is not None:
                subs.discard(fn)
                if not subs:
                    del self._by_mailbox[mailbox_id]
                self._interest_changed(mailbox_id)

    def add_interest_listener(self, fn: Callable[[int], None]) -> None:
        self._interest_listeners.append(fn)

    def _interest_changed(self, mailbox_id: int) -> None:
        for fn in self._interest_listeners:
            fn(mailbox_id)

    def watched_mailboxes(self) -> dict[int, int]:
        """Mailbox id -> number of sessions watching it (only those with any)."""
        return {mid: len(subs) for mid, subs in self._by_mailbox.items()}

    def publish(self, event: ReplicaEvent) -> None:
        mailbox_id = getattr(event, "mailbox_id", None)
        targets = list(self._global)
        if mailbox_id is not None:
            targets.extend(self._by_mailbox.get(mailbox_id, ()))
        for fn in targets:
            fn(event)

    def subscriber_count(self, mailbox_id: int) -> int:
        return len(self._by_mailbox.get(mailbox_id, ()))
