"""A session's view of its selected mailbox (RFC 9051 §7.5.2, RFC 2180).

The view owns the session's sequence-number map: the UIDs the client has been
told about, in order.  Replica events only *queue* changes here; ``flush``
turns them into untagged responses when the session may send them:

* EXPUNGE (or VANISHED under QRESYNC) only when ``allow_expunge``: never
  during FETCH, STORE or SEARCH (non-UID), never while no command runs,
  except in IDLE — otherwise sequence numbers would shift under the client;
* EXISTS for new messages and FETCH for flag changes at any command end.

Until an expunge is announced, the expunged message keeps its sequence
number and the view keeps serving it (RFC 2180 §4.1.1): its flags and modseq
as this user last saw them, its size and date, and content from the cache.

Two pieces of per-session state live here too:

* ``\\Recent`` (RFC 3501 §2.3.2): a message that arrived while the gateway ran
  is recent in the first read-write session that learns about it (at SELECT,
  or when an EXISTS announces it), which claims it from the folder
  (``MailboxIndex.claim_recent``); EXAMINE shows the unclaimed ones without
  claiming them.  A session that enabled IMAP4rev2 neither sees nor claims any.
* keyword announcement (RFC 3501 §7.2.6): the keywords in the last FLAGS
  response; a FETCH carrying a keyword not in it is preceded by a new FLAGS
  and ``OK [PERMANENTFLAGS]`` (``announce_keywords``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence

from ..protocol import response_writer as rw
from ..protocol import responses as rsp
from ..protocol.response_writer import flags_body
from ..protocol.sequence import SequenceSet
from ..replica.events import (
    ExpungedPrivate,
    FlagsChanged,
    MailboxReset,
    MessagesAdded,
    MessagesExpunged,
    ModeChanged,
    ReplicaEvent,
)
from ..replica.mailbox import MailboxIndex, MessageRecord, PrivateState, intern_flags
from ..replica.replica import Replica
from ..replica.uidset import UidSet

#: Below this many UIDs, set membership is tested one by one (a bisect each)
#: instead of walking the set's ranges.
_FEW = 64
#: A range marked with slices costs about as much as this many UIDs merged one by one.
_RANGE_COST = 16
#: A bitmap indexed by UID (one byte per UID up to the highest) is used when the
#: highest UID is at most this many times the number of UIDs asked for.
_DENSE_FACTOR = 4
#: Flag combinations remembered as "every keyword in it announced": a cache,
#: cleared when it grows past this (a folder has a few dozen combinations).
_MAX_CHECKED_TUPLES = 4096

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
RECENT = "\\Recent"

#: An expunged message as the view keeps it until the expunge is announced:
#: its record before the expunge and this user's private part of it.
Ghost = tuple[MessageRecord, ExpungedPrivate | None]


class SelectedView:
    def __init__(
        self,
        replica: Replica,
        mb: MailboxIndex,
        *,
        user_id: int,
        readonly: bool,
        wake: Callable[[], None],
        recent: bool = True,
        rights: str = "swt",
    ) -> None:
        self.replica = replica
        self.mb = mb
        self.user_id = user_id
        self.readonly = readonly
        #: The flag rights (RFC 4314 ``s``, ``w``, ``t``) the user had at SELECT:
        #: PERMANENTFLAGS lists only the flags they may change.
        self.flag_rights = rights
        self.wake = wake
        self.uids: list[int] = list(mb.uids)
        #: ``uids`` as a set, built on first use after a change (``uid_set``).
        self._uid_set: frozenset[int] | None = None
        self.private = replica.private_flags_of(mb)
        self.state: PrivateState | None = replica.private_state(mb, user_id) if self.private else None
        self.pending_expunged: set[int] = set()
        self.pending_flags: set[int] = set()
        self.pending_new = False
        self.reset_reason: str | None = None
        #: Flag changes this session made itself and already reported.
        self.suppress: set[int] = set()
        #: Expunged messages whose expunge this session has not announced yet.
        self.ghosts: dict[int, Ghost] = {}
        #: Does this session take part in \\Recent (not after ENABLE IMAP4rev2)?
        self.track_recent = recent
        #: The messages that are \\Recent in this session.
        self.recent = mb.claim_recent(0, take=not readonly) if recent else UidSet()
        #: The RECENT count the client was last told.
        self.recent_told = len(self.recent)
        #: Keywords listed in the last FLAGS response (``flags_lines``).
        self.announced: set[str] = set(mb.keywords()) | self._private_keywords()
        self._checked: set[tuple[str, ...]] = set()
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
            if ev.records:
                snap = ev.private.get(self.user_id) if self.private else None
                self.ghosts.update((r.uid, (r, snap)) for r in ev.records)
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

    def uid_set(self) -> frozenset[int]:
        """The view's UIDs as a set, kept until the view changes: a broad text search
        (30,000 hits of 100,000) intersects with it instead of building it each time."""
        if self._uid_set is None:
            self._uid_set = frozenset(self.uids)
        return self._uid_set

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
        seqs, uids = self.resolve_columns(s, uid=uid)
        return list(zip(seqs, uids, strict=True))

    def resolve_columns(self, s: SequenceSet, *, uid: bool) -> tuple[Sequence[int], list[int]]:
        """``resolve`` as two parallel columns (sequence numbers, UIDs).

        Built from slices of the sequence map, one step per range of the set:
        ``1:*`` over 100,000 messages costs a list copy, not 100,000 tuples.
        """
        uids = self.uids
        spans: list[tuple[int, int]] = []  # 0-based [i, j) slices of self.uids
        if uid:
            largest = uids[-1] if uids else 0
            for a, b in s.resolve(largest):
                i = bisect_left(uids, a)
                j = bisect_right(uids, b, i)
                if i < j:
                    spans.append((i, j))
        else:
            n = len(uids)
            for a, b in s.resolve(n):
                if a <= n:
                    spans.append((a - 1, min(b, n)))
        if len(spans) == 1:
            i, j = spans[0]
            return range(i + 1, j + 1), uids[i:j]
        seqs: list[int] = []
        out: list[int] = []
        for i, j in spans:
            seqs.extend(range(i + 1, j + 1))
            out.extend(uids[i:j])
        return seqs, out

    def seq_out_of_range(self, s: SequenceSet) -> bool:
        n = len(self.uids)
        return any(max(a, b) > n for a, b in s.ranges if a != 0 and b != 0) or (n == 0 and bool(s.ranges))

    # -- flags as this user sees them ----------------------------------------------------
    def record(self, uid: int) -> MessageRecord | None:
        """The message's record, also for one expunged but not yet announced."""
        rec = self.mb.records.get(uid)
        if rec is None:
            ghost = self.ghosts.get(uid)
            return ghost[0] if ghost is not None else None
        return rec

    def flags_of(self, uid: int) -> tuple[str, ...]:
        rec = self.mb.records.get(uid)
        if rec is not None:
            flags = self.replica.flags_for(self.mb, rec, self.state, self.private)
        else:
            ghost = self.ghosts.get(uid)
            if ghost is None:
                return ()
            flags = self._ghost_flags(ghost)
        if self.recent and uid in self.recent:
            return intern_flags((*flags, RECENT))
        return flags

    def modseq_of(self, uid: int) -> int:
        rec = self.mb.records.get(uid)
        if rec is None:
            ghost = self.ghosts.get(uid)
            if ghost is None:
                return self.mb.modseq
            rec, snap = ghost
            return max(rec.modseq, snap.modseqs.get(uid, snap.floor)) if snap is not None else rec.modseq
        return self.replica.modseq_for(self.mb, rec, self.state)

    def _ghost_flags(self, ghost: Ghost) -> tuple[str, ...]:
        """An expunged message's flags as this user saw them just before."""
        rec, snap = ghost
        private = self.private
        if not private:
            return rec.flags
        shown = [f for f in rec.flags if f not in private]
        if snap is not None:
            shown.extend(f for f, uids in snap.flags.items() if f in private and rec.uid in uids)
        return intern_flags(shown)

    def _special_positions(self, uids: Sequence[int]) -> list[int]:
        """Positions in ascending ``uids`` whose flags the bulk forms cannot
        compute from the replica: expunged (not yet announced) and \\Recent ones."""
        found: list[int] = []
        n = len(uids)
        for members in (self.ghosts, self.recent):
            for u in members:
                i = bisect_left(uids, u)
                if i < n and uids[i] == u:
                    found.append(i)
        return found

    def _ghost_positions(self, uids: Sequence[int]) -> list[int]:
        n = len(uids)
        found = []
        for u in self.ghosts:
            i = bisect_left(uids, u)
            if i < n and uids[i] == u:
                found.append(i)
        return found

    def _private_keywords(self) -> set[str]:
        """Private keywords (``[folders] private_flags``) this user has on some message."""
        state = self.state
        if state is None:
            return set()
        return {f for f, s in state.flags.items() if s and f in self.private and not f.startswith("\\")}

    # -- keyword announcement (RFC 3501 §7.2.6) ------------------------------------------
    def flags_lines(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the keywords announced."""
        flags = (*SYSTEM_FLAGS, *sorted(self.announced))
        # Offer \* (new keywords) only when the hoster can keep them.
        permanent_flags = self.mb.permanent_flags
        keywords_ok = permanent_flags is None or "\\*" in permanent_flags
        permanent = () if self.readonly else (*flags, "\\*") if keywords_ok else flags
        if "w" not in self.flag_rights:
            # RFC 4314 §4: \\Seen needs s, \\Deleted t, every other flag (and \\*) w.
            allowed = {"\\Seen"} if "s" in self.flag_rights else set()
            if "t" in self.flag_rights:
                allowed.add("\\Deleted")
            permanent = tuple(f for f in permanent if f in allowed)
        else:
            denied = {f for f, r in (("\\Seen", "s"), ("\\Deleted", "t")) if r not in self.flag_rights}
            permanent = tuple(f for f in permanent if f not in denied)
        return [
            rw.write_response(rsp.Flags(flags)),
            rw.write_response(rsp.UntaggedStatus("OK", rsp.PermanentFlagsCode(permanent), "Limited")),
        ]

    def announce_keywords(self, combos: Iterable[tuple[str, ...]]) -> list[bytes]:
        """New FLAGS/PERMANENTFLAGS responses when a keyword in any of the flag
        combinations ``combos`` has not been announced yet (send them before the
        FETCH that carries it); else nothing.  Combinations already checked
        (interned tuples) cost one set lookup."""
        checked = self._checked
        new: set[str] = set()
        for t in combos:
            if t in checked:
                continue
            for f in t:
                if not f.startswith("\\") and f not in self.announced:
                    new.add(f)
            if len(checked) >= _MAX_CHECKED_TUPLES:
                checked.clear()
            checked.add(t)
        if not new:
            return []
        self.announced |= new
        return self.flags_lines()

    def highest_modseq(self) -> int:
        return self.replica.highest_modseq_for(self.mb, self.user_id if self.private else None)

    def modseq_bound(self) -> int:
        """No message of the view has a modseq (``modseq_of``) above this: a
        CHANGEDSINCE at or above it has nothing to report."""
        state = self.state
        if state is None:
            return self.highest_modseq()
        return max(self.highest_modseq(), state.highest, state.floor)

    def first_unseen(self) -> int:
        """Sequence number of the first message without \\Seen for this user, or 0."""
        uids = self.uids
        if self.ghosts:
            # Expunged but not announced (not at SELECT): as the client sees them.
            return next((i + 1 for i, u in enumerate(uids) if "\\Seen" not in self.flags_of(u)), 0)
        if "\\Seen" in self.private and self.state is not None:
            seen = self.state.flags.get("\\Seen")
            if seen is None:
                return 1 if uids else 0
            i = _first_not_in(uids, seen)
            return i + 1 if i < len(uids) else 0
        if uids == self.mb.uids:
            uid = self.mb.first_unseen_shared()
            return self.seq_of(uid) if uid else 0
        for i, u in enumerate(uids):
            if "\\Seen" not in self.flags_of(u):
                return i + 1
        return 0

    # -- bulk forms for whole-folder FETCH/SEARCH ---------------------------------------
    def changed_since(self, uids: Sequence[int], recs: Sequence[MessageRecord], since: int) -> list[int]:
        """Positions ``i`` where ``modseq_of(uids[i]) > since`` (``recs[i]`` is the
        record of ``uids[i]``): one comparison per message, the user's private
        changes looked up from their sparse modseq map."""
        if since >= self.modseq_bound():
            return []
        keep = self._changed_since(uids, recs, since)
        if self.ghosts:
            ghosts = self._ghost_positions(uids)
            if ghosts:
                drop = set(ghosts)
                add = [i for i in ghosts if self.modseq_of(uids[i]) > since]
                keep = sorted([i for i in keep if i not in drop] + add)
        return keep

    def _changed_since(self, uids: Sequence[int], recs: Sequence[MessageRecord], since: int) -> list[int]:
        state = self.state
        if state is None or (not state.modseqs and state.floor <= since):
            return [i for i, r in enumerate(recs) if r.modseq > since]
        if state.floor > since:
            # Compacted private history: every message counts as changed at floor.
            get, floor = state.modseqs.get, state.floor
            return [
                i
                for i, (u, r) in enumerate(zip(uids, recs, strict=True))
                if max(r.modseq, get(u, floor)) > since
            ]
        mine = {u for u, m in state.modseqs.items() if m > since}
        if not mine:
            return [i for i, r in enumerate(recs) if r.modseq > since]
        return [i for i, (u, r) in enumerate(zip(uids, recs, strict=True)) if r.modseq > since or u in mine]

    def modseqs(self, uids: Sequence[int], recs: Sequence[MessageRecord]) -> list[int]:
        """``modseq_of`` of each of ``uids`` (with their records ``recs``)."""
        out = self._modseqs(uids, recs)
        if self.ghosts:
            for i in self._ghost_positions(uids):
                out[i] = self.modseq_of(uids[i])
        return out

    def _modseqs(self, uids: Sequence[int], recs: Sequence[MessageRecord]) -> list[int]:
        out = [r.modseq for r in recs]
        state = self.state
        if state is None:
            return out
        floor = state.floor
        if floor:
            out = [m if m > floor else floor for m in out]
        private = state.modseqs
        if not private:
            return out
        if len(private) < len(uids):
            # Sparse private changes: patch their positions (UIDs ascending).
            for u, m in private.items():
                i = bisect_left(uids, u)
                if i < len(uids) and uids[i] == u:
                    out[i] = max(recs[i].modseq, m)
            return out
        return [max(r.modseq, private.get(u, floor)) for u, r in zip(uids, recs, strict=True)]

    def flag_wires(self, uids: Sequence[int], recs: Sequence[MessageRecord]) -> list[bytes]:
        """Wire form of each message's flags as this user sees them (``flags_of``),
        computed per distinct flag combination, not per message."""
        return self.flag_wires_announced(uids, recs)[0]

    def flag_wires_announced(
        self, uids: Sequence[int], recs: Sequence[MessageRecord]
    ) -> tuple[list[bytes], list[bytes]]:
        """``flag_wires`` and the keyword announcement (``announce_keywords``)
        to send before them, from the same distinct flag combinations."""
        shared = [r.flags for r in recs]
        combos = set(shared)
        private = self.private
        state = self.state
        mine = (
            [(f, s) for f, s in state.flags.items() if f in private and s]
            if private and state is not None
            else []
        )
        if not private:
            wire = {t: flags_body(t) for t in combos}
            out = list(map(wire.__getitem__, shared))
            announce = self.announce_keywords(combos)
        else:
            hidden = {t: intern_flags([f for f in t if f not in private]) for t in combos}
            announce = self.announce_keywords([*hidden.values(), tuple(f for f, _ in mine)])
            without = {t: flags_body(v) for t, v in hidden.items()}
            if not mine:
                out = list(map(without.__getitem__, shared))
            elif len(mine) > 1:
                # Several private flags in use (not the default set-up): per message.
                replica, mb = self.replica, self.mb
                out = [flags_body(replica.flags_for(mb, r, state, private)) for r in recs]
            else:
                flag, members = mine[0]
                with_ = {t: flags_body(intern_flags([*v, flag])) for t, v in hidden.items()}
                out = _pick_by_mask(_membership(uids, members), shared, without, with_)
        if self.ghosts or self.recent:
            # Few messages (expunged meanwhile, \\Recent): one by one.
            special = self._special_positions(uids)
            for i in special:
                out[i] = flags_body(self.flags_of(uids[i]))
            if self.ghosts:
                announce += self.announce_keywords(self.flags_of(uids[i]) for i in special)
        return out, announce

    # -- flushing --------------------------------------------------------------------
    def take_expunges(self, *, qresync: bool) -> list[bytes]:
        """EXPUNGE (or VANISHED) responses for the messages expunged since the
        last announcement, removing them from the sequence map.  Only for a
        moment where the client allows sequence numbers to shift."""
        out: list[bytes] = []
        if not self.pending_expunged:
            return out
        gone = sorted((u for u in self.pending_expunged if self.seq_of(u)), reverse=True)
        self.pending_expunged.clear()
        self.ghosts.clear()
        if not gone:
            return out
        if self.recent:
            self.recent.difference_update(gone)
        if qresync:
            out.append(rw.vanished_line(SequenceSet.from_ids(gone)))
            drop = set(gone)
            self.uids = [u for u in self.uids if u not in drop]
            self._uid_set = None
        else:
            # Highest sequence number first: each number is valid when sent.
            for u in gone:
                seq = self.seq_of(u)
                out.append(rw.expunge_line(seq))
                del self.uids[seq - 1]
            self._uid_set = None
        for u in gone:
            self.pending_flags.discard(u)
        return out

    def flush(self, *, allow_expunge: bool, condstore: bool, qresync: bool) -> list[bytes]:
        """Untagged responses for what changed since the last flush."""
        out: list[bytes] = self.take_expunges(qresync=qresync) if allow_expunge else []
        exists = False
        if self.pending_new:
            self.pending_new = False
            known_max = self.uids[-1] if self.uids else 0
            i = bisect_left(self.mb.uids, known_max + 1)
            fresh = self.mb.uids[i:]
            if fresh:
                self.uids.extend(fresh)
                self._uid_set = None
                if self.track_recent and self.mb.recent:
                    # This session is the first to learn of them: \\Recent here.
                    self.recent.update(self.mb.claim_recent(fresh[0], take=not self.readonly))
                out.append(rw.exists_line(len(self.uids)))
                exists = True
        if self.track_recent and (exists or len(self.recent) != self.recent_told):
            # RFC 3501 clients expect RECENT with EXISTS (RFC 9051 removed it).
            self.recent_told = len(self.recent)
            out.append(rw.recent_line(self.recent_told))
        if self.pending_flags:
            changed = sorted(self.pending_flags - self.suppress)
            self.pending_flags.clear()
            self.suppress.clear()
            lines: list[bytes] = []
            combos: list[tuple[str, ...]] = []
            for u in changed:
                seq = self.seq_of(u)
                if not seq or u not in self.mb.records:
                    continue
                flags = self.flags_of(u)
                combos.append(flags)
                lines.append(
                    rw.fetch_flags_line(seq, u, flags_body(flags), self.modseq_of(u) if condstore else None)
                )
            out.extend(self.announce_keywords(combos))
            out.extend(lines)
        else:
            self.suppress.clear()
        return out

    def flags_line(self, seq: int, uid: int, condstore: bool) -> bytes:
        return rw.fetch_flags_line(
            seq, uid, flags_body(self.flags_of(uid)), self.modseq_of(uid) if condstore else None
        )


def _first_not_in(uids: Sequence[int], members: UidSet) -> int:
    """Position of the first of ascending ``uids`` not in ``members`` (len if none).

    The first unread message is usually near the start: test a few UIDs one
    by one, then jump range by range (one bisect per range up to the gap)."""
    n = len(uids)
    for i in range(min(n, _FEW)):
        if uids[i] not in members:
            return i
    i = min(n, _FEW)
    if i == n:
        return n
    for a, b in members.ranges():
        if b < uids[i]:
            continue
        if uids[i] < a:
            return i
        i = bisect_right(uids, b, i)
        if i >= n:
            break
    return i


def _pick_by_mask(
    mask: bytearray,
    shared: list[tuple[str, ...]],
    without: dict[tuple[str, ...], bytes],
    with_: dict[tuple[str, ...], bytes],
) -> list[bytes]:
    """``with_[t]`` where the mask is 1, ``without[t]`` elsewhere: the majority
    case filled by one C-level ``map``, the minority patched where
    ``bytearray.find`` points (a user's unread mail is usually a few percent)."""
    n = len(mask)
    ones = mask.count(1)
    if ones * 2 >= n:
        out, patch, odd = list(map(with_.__getitem__, shared)), without, 0
    else:
        out, patch, odd = list(map(without.__getitem__, shared)), with_, 1
    k = mask.find(odd)
    while k != -1:
        out[k] = patch[shared[k]]
        k = mask.find(odd, k + 1)
    return out


def _membership(uids: Sequence[int], members: UidSet) -> bytearray:
    """For ascending ``uids``: 1 where the UID is in ``members``, else 0.

    UIDs dense enough (the usual folder) go through a bitmap indexed by UID,
    marked one slice per range: no search at all.  Otherwise a set of few
    ranges is marked range by range with slices of the mask, and a scattered
    one (thousands of ranges) is merged with the UIDs in one pass.  No object
    per UID or per range that the cyclic GC tracks (lists per range made a GC
    pass over the whole replica likely during a 100,000-line listing)."""
    n = len(uids)
    if n < _FEW:
        return bytearray(u in members for u in uids)
    lo, hi = uids[0], uids[-1]
    if hi <= _DENSE_FACTOR * n:
        bitmap = bytearray(hi + 1)
        members.mark(bitmap)
        return bytearray(map(bitmap.__getitem__, uids))
    if members.range_count * _RANGE_COST > n:
        return bytearray(members.members_sorted(uids))
    mask = bytearray(n)
    ones = b"\x01" * n
    i = 0
    for a, b in members.ranges():
        if b < lo:
            continue
        if a > hi:
            break
        # ``uids`` ascend without repeats: x sits at most x - uids[i] places
        # after i, which bounds both searches to about one range's length.
        if i >= n:
            break
        i = bisect_left(uids, a, i, min(n, i + max(0, a - uids[i]) + 1))
        if i >= n:
            break
        j = bisect_right(uids, b, i, min(n, i + max(0, b - uids[i]) + 1))
        if i < j:
            mask[i:j] = ones[i:j]
        i = j
    return mask
