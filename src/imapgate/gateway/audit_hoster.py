"""The audit journal's entries for changes made at the hoster (webmail, another
client talking to the hoster directly), as the sync finds them.

The gateway cannot know who made them: they are journaled with no user, the
client "at the hoster" and origin ``HOSTER``, in the same transaction as the
replica change the sync commits (``sync.algorithms.SyncObserver``).  New mail
in a folder the gateway already knew is an "arrived" entry per folder and sync.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from sqlalchemy import Connection

from ..protocol.sequence import SequenceSet
from ..replica.content import ContentCache
from ..replica.mailbox import MailboxIndex, MessageRecord
from ..team.audit_actions import store_action
from ..team.journal import HOSTER, JournalEntry, MessageRef
from .audit_refs import message_refs, op_target

Hook = Callable[[Connection], None]

#: The client named on entries of changes made at the hoster.
AT_THE_HOSTER = "at the hoster"


def _uids_text(uids: list[int]) -> str:
    return str(SequenceSet.from_ids(uids))


def _entry(
    command: str,
    mb: MailboxIndex,
    uids: list[int],
    refs: tuple[MessageRef, ...],
    action: str,
    detail: str | None = None,
) -> JournalEntry:
    return JournalEntry(
        user=None,
        client=AT_THE_HOSTER,
        command=command,
        mailbox=mb.name,
        uids=_uids_text(uids),
        detail=detail,
        action=action,
        origin=HOSTER,
        messages=refs,
    )


def _all(entries: list[JournalEntry]) -> Hook | None:
    if not entries:
        return None

    def write(conn: Connection) -> None:
        for e in entries:
            e.write(conn)

    return write


class OwnChanges:
    """The gateway's own writes in flight, so the sync does not journal their effect
    "at the hoster" when it sees it at the hoster before the write's own commit (a
    lock-free STORE or UID EXPUNGE, the copies of an APPEND/COPY/MOVE).  Flags and
    expunges by UID; arrivals per folder (a real arrival at the hoster in that folder
    during the write goes unjournaled: rare, and the message is still there)."""

    def __init__(self) -> None:
        self.flags: Counter[tuple[str, int]] = Counter()
        self.expunges: Counter[tuple[str, int]] = Counter()
        self.all_expunges: Counter[str] = Counter()
        self.arrivals: Counter[str] = Counter()
        #: Folders a DELETE or RENAME in flight takes away.
        self.removals: Counter[str] = Counter()
        #: Folders a DELETE in flight takes away (a RENAME's new name appears in the
        #: sync's listing before its commit: the sync must go on handling those).
        self.deletions: Counter[str] = Counter()

    @contextlib.contextmanager
    def during(self, op: object) -> Iterator[None]:
        """Mark what ``op`` (a typed operation) changes at the hoster until it is done."""
        flags: list[tuple[str, int]] = []
        expunges: list[tuple[str, int]] = []
        all_expunges: list[str] = []
        arrivals: list[str] = []
        removals: list[str] = []
        deletions: list[str] = []
        name, uids = op_target(op)
        kind = type(op).__name__
        if name is not None:
            # A move without MOVE sets \\Deleted on its originals, then expunges them.
            if kind in ("StoreFlags", "MarkSeen", "Move"):
                flags = [(name, u) for u in uids]
            if kind == "Expunge" and not uids:
                all_expunges = [name]
            elif kind in ("Expunge", "Move"):
                expunges = [(name, u) for u in uids]
            if kind == "Append":
                arrivals = [name]
            if kind in ("Delete", "Rename"):
                removals = [name]
            if kind == "Delete":
                deletions = [name]
        dest = getattr(op, "dest", None)
        if isinstance(dest, str):
            arrivals.append(dest)
        self.flags.update(flags)
        self.expunges.update(expunges)
        self.all_expunges.update(all_expunges)
        self.arrivals.update(arrivals)
        self.removals.update(removals)
        self.deletions.update(deletions)
        try:
            yield
        finally:
            self.flags.subtract(flags)
            self.expunges.subtract(expunges)
            self.all_expunges.subtract(all_expunges)
            self.arrivals.subtract(arrivals)
            self.removals.subtract(removals)
            self.deletions.subtract(deletions)
            counters = (
                self.flags,
                self.expunges,
                self.all_expunges,
                self.arrivals,
                self.removals,
                self.deletions,
            )
            for counter in counters:
                counter += Counter()  # drops the keys at zero

    def is_flagging(self, mailbox: str, uid: int) -> bool:
        return self.flags[(mailbox, uid)] > 0

    def is_expunging(self, mailbox: str, uid: int) -> bool:
        return self.all_expunges[mailbox] > 0 or self.expunges[(mailbox, uid)] > 0

    def is_adding(self, mailbox: str) -> bool:
        return self.arrivals[mailbox] > 0

    def is_removing(self, mailbox: str) -> bool:
        return self.removals[mailbox] > 0

    def is_deleting(self, mailbox: str) -> bool:
        return self.deletions[mailbox] > 0


class HosterJournal:
    """``SyncObserver``: journal entries for what changed at the hoster."""

    def __init__(self, content: ContentCache | None = None, own: OwnChanges | None = None) -> None:
        self.content = content
        self.own = own or OwnChanges()

    def arrived(self, mb: MailboxIndex, recs: list[MessageRecord]) -> Hook | None:
        if not recs or self.own.is_adding(mb.name):
            return None
        uids = sorted(r.uid for r in recs)
        refs = tuple(MessageRef(mb.name, r.uid, r.message_id) for r in sorted(recs, key=lambda r: r.uid))
        return _all([_entry("ARRIVED", mb, uids, refs, "arrived", f"{len(uids)} message(s)")])

    def flags_changed(self, mb: MailboxIndex, flags: Mapping[int, tuple[str, ...]]) -> Hook | None:
        # One entry per kind of change ("read", "deleted", ...), as a STORE would have made.
        groups: dict[tuple[str, str], list[int]] = {}
        for uid, new in flags.items():
            rec = mb.records.get(uid)
            if rec is None or set(new) == set(rec.flags) or self.own.is_flagging(mb.name, uid):
                continue
            added = sorted(set(new) - set(rec.flags))
            removed = sorted(set(rec.flags) - set(new))
            mode, changed = ("add", added) if added else ("remove", removed)
            action = store_action(mode, changed)
            detail = " ".join([*(f"+{f}" for f in added), *(f"-{f}" for f in removed)])
            groups.setdefault((action, detail), []).append(uid)
        entries = [
            _entry("STORE", mb, sorted(uids), message_refs(mb, sorted(uids), self.content), action=action,
                   detail=detail)
            for (action, detail), uids in sorted(groups.items())
        ]  # fmt: skip
        return _all(entries)

    def expunged(self, mb: MailboxIndex, uids: set[int]) -> Hook | None:
        present = sorted(u for u in uids if u in mb.records and not self.own.is_expunging(mb.name, u))
        if not present:
            return None
        refs = message_refs(mb, present, self.content)
        return _all([_entry("EXPUNGE", mb, present, refs, "expunged")])

    def removing(self, name: str) -> bool:
        return self.own.is_deleting(name)

    def folder_removed(self, mb: MailboxIndex) -> Hook | None:
        # Also what a gateway DELETE did when the process was killed between the hoster's
        # answer and its own commit: the journal then still records the folder's end.
        # (The sync does not drop a folder a DELETE in flight removes: ``removing``.)
        if self.own.is_removing(mb.name):
            return None  # a RENAME in flight: its own entry says where the folder went
        uids = sorted(mb.records)
        refs = message_refs(mb, uids, self.content)
        return _all([_entry("DELETE", mb, uids, refs, "folder_deleted", f"{len(uids)} message(s) in it")])
