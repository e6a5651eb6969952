"""Message-ID → the replica's copies of that message, in every folder.

The reply guard looks up the Message-IDs a submitted reply names (In-Reply-To,
then References: up to 100 of them); scanning every record of a 100,000-message
replica costs ~3 ms of event-loop time per Message-ID, so a long References
chain over several large folders would stall every session for a second; the
index answers in ~0.5 µs (``tests/submission/test_msgindex.py`` measures both).

The index follows the replica through its events: ``MessagesAdded`` adds
entries; expunges and resets leave stale entries behind, which every lookup
checks against the replica (the record must exist and carry that Message-ID)
and drops.  When stale entries may have piled up (a reset, a deleted folder,
many expunges) the index is rebuilt at the next lookup (~30 ms for 100,000
messages).  Entries pack (mailbox id, UID) into one int: ~70 bytes per message,
7 MB for 100,000 (the Message-ID strings are the replica's own objects, not
copies).
"""

from __future__ import annotations

from ..replica.events import MailboxListChanged, MailboxReset, MessagesAdded, MessagesExpunged, ReplicaEvent
from ..replica.mailbox import MailboxIndex, MessageRecord
from ..replica.replica import Replica

_UID_BITS = 32
_UID_MASK = (1 << _UID_BITS) - 1
#: Expunged messages seen since the last build before the next lookup rebuilds:
#: their entries are stale until a lookup meets them.
REBUILD_AFTER_EXPUNGED = 20_000

Entry = int | list[int]


class MessageIdIndex:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._by_id: dict[str, Entry] = {}
        self._dirty = True
        self._expunged = 0
        replica.hub.subscribe(None, self._on_event)

    def close(self) -> None:
        self.replica.hub.unsubscribe(None, self._on_event)

    def __len__(self) -> int:
        self._ensure()
        return len(self._by_id)

    # -- following the replica ----------------------------------------------------------
    def _on_event(self, event: ReplicaEvent) -> None:
        if isinstance(event, MessagesAdded):
            if self._dirty:
                return  # the rebuild will see them
            mb = self.replica.by_id.get(event.mailbox_id)
            if mb is None:
                return
            for uid in event.uids:
                rec = mb.records.get(uid)
                if rec is not None and rec.message_id:
                    self._add(rec.message_id, (mb.id << _UID_BITS) | uid)
        elif isinstance(event, MessagesExpunged):
            self._expunged += len(event.uids)
            if self._expunged > REBUILD_AFTER_EXPUNGED:
                self._dirty = True
        elif isinstance(event, (MailboxReset, MailboxListChanged)):
            self._dirty = True

    def _add(self, message_id: str, key: int) -> None:
        got = self._by_id.get(message_id)
        if got is None:
            self._by_id[message_id] = key
        elif isinstance(got, int):
            if got != key:
                self._by_id[message_id] = [got, key]
        elif key not in got:
            got.append(key)

    def _ensure(self) -> None:
        if not self._dirty:
            return
        self._by_id = {}
        for mb in self.replica.by_id.values():
            base = mb.id << _UID_BITS
            for rec in mb.records.values():
                if rec.message_id:
                    self._add(rec.message_id, base | rec.uid)
        self._dirty = False
        self._expunged = 0

    # -- lookups ------------------------------------------------------------------------
    def find(self, message_id: str) -> list[tuple[MailboxIndex, MessageRecord]]:
        """The replica's messages with this Message-ID (exact match), in every folder."""
        self._ensure()
        got = self._by_id.get(message_id)
        if got is None:
            return []
        keys = [got] if isinstance(got, int) else list(got)
        found: list[tuple[MailboxIndex, MessageRecord]] = []
        live: list[int] = []
        for key in keys:
            mb = self.replica.by_id.get(key >> _UID_BITS)
            rec = mb.records.get(key & _UID_MASK) if mb is not None else None
            if mb is not None and rec is not None and rec.message_id == message_id:
                found.append((mb, rec))
                live.append(key)
        if len(live) != len(keys):
            if not live:
                del self._by_id[message_id]
            else:
                self._by_id[message_id] = live[0] if len(live) == 1 else live
        return found
