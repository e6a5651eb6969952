"""A session's view of its selected mailbox (RFC 9051 §7.5.2, RFC 2180).

The view owns the session's sequence-number map: the UIDs the client has been
told about, in order.  Replica events only *queue* changes here; ``flush``
turns them into untagged responses when the session may send them:

* EXPUNGE (or VANISHED under QRESYNC) only when ``allow_expunge``: never
  during FETCH, STORE or SEARCH (non-UID), never while no command runs,
  except in IDLE — otherwise sequence numbers would shift under the client;
* EXISTS for new messages and FETCH for flag changes at any command end.

Until an expunge is announced, the expunged message keeps its sequence
number; requests for it get what the view still knows (RFC 2180 §4.1).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from ..protocol import response_writer as rw
from ..protocol.sequence import SequenceSet
from ..replica.events import (
    FlagsChanged,
    MailboxReset,
    MessagesAdded,
    MessagesExpunged,
    ModeChanged,
    ReplicaEvent,
)
from ..replica.mailbox import MailboxIndex, PrivateState, flags_wire
from ..replica.replica import Replica


class SelectedView:
    def __init__(
        self,
        replica: Replica,
        mb: MailboxIndex,
        *,
        user_id: int,
        readonly: bool,
        wake: Callable[[], None],
    ) -> None:
        self.replica = replica
        self.mb = mb
        self.user_id = user_id
        self.readonly = readonly
        self.wake = wake
        self.uids: list[int] = list(mb.uids)
        self.private = replica.private_flags_of(mb)
        self.state: PrivateState | None = replica.private_state(mb, user_id) if self.private else None
        self.pending_expunged: set[int] = set()
        self.pending_flags: set[int] = set()
        self.pending_new = False
        self.reset_reason: str | None = None
        #: Flag changes this session made itself and already reported.
        self.suppress: set[int] = set()
        replica.hub.subscribe(mb.id, self.on_event)

    def close(self) -> None:
        self.replica.hub.unsubscribe(self.mb.id, self.on_event)

    # -- events ----------------------------------------------------------------------
    def on_event(self, ev: ReplicaEvent) -> None:
        if isinstance(ev, FlagsChanged):
            if ev.user_id is not None and ev.user_id != self.user_id:
                return  # another user's private change: invisible here
            self.pending_flags.update(ev.uids)
        elif isinstance(ev, MessagesAdded):
            self.pending_new = True
        elif isinstance(ev, MessagesExpunged):
            self.pending_expunged.update(ev.uids)
        elif isinstance(ev, MailboxReset):
            self.reset_reason = ev.reason
        elif isinstance(ev, ModeChanged):
            self.private = self.replica.private_flags_of(self.mb)
            self.state = self.replica.private_state(self.mb, self.user_id) if self.private else None
        else:
            return
        self.wake()

    @property
    def has_pending(self) -> bool:
        return bool(self.pending_expunged or self.pending_flags or self.pending_new or self.reset_reason)

    # -- sequence map ----------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int:
        """1-based sequence number of ``uid`` in this view, or 0."""
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else 0

    def resolve(self, s: SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) pairs named by a sequence set or UID set, in ascending order.

        UID sets: ``*`` is the largest UID in the view; UIDs not in the view are
        ignored (RFC 9051 §6.4.8).  Sequence sets: numbers beyond EXISTS are
        the caller's error (checked with ``seq_out_of_range``).
        """
        out: list[tuple[int, int]] = []
        uids = self.uids
        if uid:
            largest = uids[-1] if uids else 0
            for a, b in s.resolve(largest):
                i = bisect_left(uids, a)
                while i < len(uids) and uids[i] <= b:
                    out.append((i + 1, uids[i]))
                    i += 1
        else:
            n = len(uids)
            for a, b in s.resolve(n):
                for seq in range(a, min(b, n) + 1):
                    out.append((seq, uids[seq - 1]))
        return out

    def seq_out_of_range(self, s: SequenceSet) -> bool:
        n = len(self.uids)
        return any(max(a, b) > n for a, b in s.ranges if a != 0 and b != 0) or (n == 0 and bool(s.ranges))

    # -- flags as this user sees them ----------------------------------------------------
    def flags_of(self, uid: int) -> tuple[str, ...]:
        rec = self.mb.records.get(uid)
        if rec is None:
            return ()
        return self.replica.flags_for(self.mb, rec, self.state, self.private)

    def modseq_of(self, uid: int) -> int:
        rec = self.mb.records.get(uid)
        if rec is None:
            return self.mb.modseq
        return self.replica.modseq_for(self.mb, rec, self.state)

    def highest_modseq(self) -> int:
        return self.replica.highest_modseq_for(self.mb, self.user_id if self.private else None)

    # -- flushing --------------------------------------------------------------------
    def flush(self, *, allow_expunge: bool, condstore: bool, qresync: bool) -> list[bytes]:
        """Untagged responses for what changed since the last flush."""
        out: list[bytes] = []
        if allow_expunge and self.pending_expunged:
            gone = sorted((u for u in self.pending_expunged if self.seq_of(u)), reverse=True)
            self.pending_expunged.clear()
            if gone:
                if qresync:
                    out.append(b"* VANISHED " + bytes(SequenceSet.from_ids(gone)) + b"\r\n")
                    drop = set(gone)
                    self.uids = [u for u in self.uids if u not in drop]
                else:
                    # Highest sequence number first: each number is valid when sent.
                    for u in gone:
                        seq = self.seq_of(u)
                        out.append(b"* %d EXPUNGE\r\n" % seq)
                        del self.uids[seq - 1]
                for u in gone:
                    self.pending_flags.discard(u)
        if self.pending_new:
            self.pending_new = False
            known_max = self.uids[-1] if self.uids else 0
            i = bisect_left(self.mb.uids, known_max + 1)
            fresh = self.mb.uids[i:]
            if fresh:
                self.uids.extend(fresh)
                out.append(b"* %d EXISTS\r\n" % len(self.uids))
                # RFC 3501 clients expect RECENT with EXISTS; the gateway never
                # marks messages \Recent (it is per-session state upstream).
                out.append(b"* 0 RECENT\r\n")
        if self.pending_flags:
            changed = sorted(self.pending_flags - self.suppress)
            self.pending_flags.clear()
            self.suppress.clear()
            for u in changed:
                seq = self.seq_of(u)
                if not seq or u not in self.mb.records:
                    continue
                out.append(self.flags_line(seq, u, condstore))
        else:
            self.suppress.clear()
        return out

    def flags_line(self, seq: int, uid: int, condstore: bool) -> bytes:
        return rw.fetch_flags_line(
            seq, uid, flags_wire(self.flags_of(uid)), self.modseq_of(uid) if condstore else None
        )
