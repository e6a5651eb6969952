"""The audit journal's entries for changes made at the hoster (webmail, another
client talking to the hoster directly), as the sync finds them.

The gateway cannot know who made them: they are journaled with no user, the
client "at the hoster" and origin ``HOSTER``, in the same transaction as the
replica change the sync commits (``sync.algorithms.SyncObserver``).  New mail
in a folder the gateway already knew is an "arrived" entry per folder and sync.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import Connection

from ..protocol.sequence import SequenceSet
from ..replica.content import ContentCache
from ..replica.mailbox import MailboxIndex, MessageRecord
from ..team.audit_actions import store_action
from ..team.journal import HOSTER, JournalEntry, MessageRef
from .audit_refs import message_refs

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


class HosterJournal:
    """``SyncObserver``: journal entries for what changed at the hoster."""

    def __init__(self, content: ContentCache | None = None) -> None:
        self.content = content

    def arrived(self, mb: MailboxIndex, recs: list[MessageRecord]) -> Hook | None:
        if not recs:
            return None
        uids = sorted(r.uid for r in recs)
        refs = tuple(MessageRef(mb.name, r.uid, r.message_id) for r in sorted(recs, key=lambda r: r.uid))
        return _all([_entry("ARRIVED", mb, uids, refs, "arrived", f"{len(uids)} message(s)")])

    def flags_changed(self, mb: MailboxIndex, flags: Mapping[int, tuple[str, ...]]) -> Hook | None:
        # One entry per kind of change ("read", "deleted", ...), as a STORE would have made.
        groups: dict[tuple[str, str], list[int]] = {}
        for uid, new in flags.items():
            rec = mb.records.get(uid)
            if rec is None or set(new) == set(rec.flags):
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
        present = sorted(u for u in uids if u in mb.records)
        if not present:
            return None
        refs = message_refs(mb, present, self.content)
        return _all([_entry("EXPUNGE", mb, present, refs, "expunged")])
