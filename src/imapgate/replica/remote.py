"""Another node's change set, applied to this node's replica in memory.

The other node already committed the rows (``change_log`` is written after its
commit, ``replica/logbus.py``); what is left is this node's memory and its
sessions.  Each row change is replayed on the ``MailboxIndex`` objects in
place -- sessions hold references to them and to the users' ``PrivateState``
-- then the change set's events go to the local ``EventHub`` as if this node
had made the change, so IDLE sessions here hear of it at once.

A change that only a rebuild can express (a heal's ``ReplaceMailbox``) is not
replayed: the mailbox is reloaded from the store and its sessions are told to
reconnect (``MailboxReset``), never left on an old picture.  No SQL here
except that reload; no asyncio.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..store import changes as rc
from .changes import ChangeSet
from .events import MailboxReset
from .mailbox import MailboxIndex, MessageRecord, PrivateState, intern_flags
from .uidset import UidSet

if TYPE_CHECKING:
    from .replica import Replica

#: Columns of ``UpdateMailbox`` that are plain attributes of ``MailboxIndex``.
_PLAIN = ("delimiter", "uidvalidity", "uidnext", "upstream_modseq", "seen_mode", "synced")


def apply_remote(replica: Replica, changes: ChangeSet) -> None:
    """Replay ``changes`` (committed by another node) here and tell the sessions."""
    reload: set[int] = set()
    for change in changes.rows.items:
        _apply(replica, change, reload)
    if reload:
        rebuild(replica, "a folder was rebuilt on another gateway node")
        return
    for event in changes.events:
        replica.hub.publish(event)


def rebuild(replica: Replica, reason: str) -> None:
    """Reload the whole replica from the store (this node missed changes, or one
    cannot be replayed): every session is told to reconnect, since the objects
    its view holds are replaced."""
    before = list(replica.by_id)
    replica.load()
    for mailbox_id in before:
        replica.hub.publish(MailboxReset(mailbox_id, reason))


def _apply(replica: Replica, c: rc.RowChange, reload: set[int]) -> None:
    if isinstance(c, rc.SetMeta):
        return  # read from the store where it matters (the read-state mode at start)
    if isinstance(c, rc.InsertMailbox):
        _insert(replica, c)
        return
    mb = replica.by_id.get(c.mailbox_id)
    if mb is None:
        return  # a folder this node never had (created and dropped meanwhile)
    if isinstance(c, rc.UpdateMailbox):
        _update(replica, mb, c.values)
    elif isinstance(c, rc.DeleteMailbox):
        replica.by_id.pop(mb.id, None)
        if replica.by_name.get(mb.name) is mb:
            del replica.by_name[mb.name]
    elif isinstance(c, rc.ClearMessages):
        mb.uids, mb.records, mb.expunged, mb.private = [], {}, {}, {}
        mb.recent = UidSet()
    elif isinstance(c, rc.AddMessages):
        for row in c.rows:
            mb.add(
                MessageRecord(
                    row.uid,
                    intern_flags(row.flags),
                    row.modseq,
                    row.internal_date,
                    row.tz_offset,
                    row.size,
                    row.message_id,
                )
            )
            mb.shared_highest = max(mb.shared_highest, row.modseq)
        if mb.synced:
            mb.recent.update(row.uid for row in c.rows)
    elif isinstance(c, rc.SetSharedFlags):
        for flags, uids in c.by_flags.items():
            new = intern_flags(tuple(flags))
            for uid in uids:
                rec = mb.records.get(uid)
                if rec is not None:
                    rec.flags, rec.modseq = new, c.modseq
        _raise(mb, c.modseq)
    elif isinstance(c, rc.ExpungeMessages):
        mb.remove(set(c.uids), c.modseq)
        _raise(mb, c.modseq)
    elif isinstance(c, rc.TrimExpunged):
        mb.expunged = {u: m for u, m in mb.expunged.items() if m >= c.below_modseq}
    elif isinstance(c, rc.RestampMessages):
        for rec in mb.records.values():
            rec.modseq = c.modseq
        _raise(mb, c.modseq)
    else:
        _apply_private(mb, c, reload)


def _apply_private(mb: MailboxIndex, c: rc.RowChange, reload: set[int]) -> None:
    """Per-user state: only users whose state this node has loaded need it (others
    are read from the store when first used)."""
    if isinstance(c, rc.WritePrivateSets):
        state = mb.private.get(c.user_id)
        if state is not None:
            for flag, encoded in c.sets.items():
                state.flags[flag] = UidSet.decode(encoded)
    elif isinstance(c, rc.SetPrivateModseqs):
        state = mb.private.get(c.user_id)
        if state is not None:
            for uid in c.uids:
                state.modseqs[uid] = c.modseq
            state.highest = max(state.highest, c.modseq)
        mb.modseq = max(mb.modseq, c.modseq)
    elif isinstance(c, rc.CompactPrivateModseqs):
        state = mb.private.get(c.user_id)
        if state is not None:
            _compact(state, c.floor)
    elif isinstance(c, rc.DropPrivateFlag):
        for state in mb.private.values():
            state.flags.pop(c.flag, None)
    elif isinstance(c, (rc.ReplaceMailbox, rc.ParkMailboxName)):
        reload.add(mb.id)


def _compact(state: PrivateState, floor: int) -> None:
    state.floor = max(state.floor, floor)
    state.modseqs = {u: m for u, m in state.modseqs.items() if m > floor}


def _raise(mb: MailboxIndex, modseq: int) -> None:
    mb.modseq = max(mb.modseq, modseq)
    mb.shared_highest = max(mb.shared_highest, modseq)


def _insert(replica: Replica, c: rc.InsertMailbox) -> None:
    if c.mailbox_id in replica.by_id:
        return
    mb = MailboxIndex.new(c.mailbox_id, c.name, c.delimiter, tuple(c.attributes))
    replica.by_id[mb.id] = mb
    replica.by_name[mb.name] = mb
    replica.mailbox_ids.seen(mb.id)


def _update(replica: Replica, mb: MailboxIndex, values: Mapping[str, object]) -> None:
    for key, value in values.items():
        if key == "name" and value != mb.name:
            if replica.by_name.get(mb.name) is mb:
                del replica.by_name[mb.name]
            mb.name = str(value)
            replica.by_name[mb.name] = mb
        elif key == "attributes":
            mb.attributes = tuple(str(value).split()) if value else ()
        elif key == "modseq":
            mb.modseq = max(mb.modseq, int(str(value)))
        elif key in _PLAIN:
            setattr(mb, key, value)
