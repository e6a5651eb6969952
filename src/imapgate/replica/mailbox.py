"""In-memory index of one mailbox: the hot data every session reads.

Messages are kept in UID order (a list of UIDs plus a dict of records) so a
session's sequence map is a slice of the list and ``FETCH 1:* (FLAGS)`` is one
pass.  Flag tuples are interned and their wire form cached, since a team
mailbox has few distinct flag combinations but 100,000 messages.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from .uidset import UidSet

T = TypeVar("T")

_FLAG_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}
_FLAG_BYTES: dict[tuple[str, ...], bytes] = {}


def intern_flags(flags: tuple[str, ...] | list[str] | frozenset[str] | set[str]) -> tuple[str, ...]:
    """One shared, canonical (sorted, deduplicated) tuple per flag combination."""
    key = tuple(sorted(set(flags)))
    got = _FLAG_TUPLES.get(key)
    if got is None:
        got = _FLAG_TUPLES[key] = key
    return got


def flags_wire(flags: tuple[str, ...]) -> bytes:
    """``\\Seen $Label1`` (the inside of a flag list) for an interned tuple, cached."""
    got = _FLAG_BYTES.get(flags)
    if got is None:
        got = _FLAG_BYTES[flags] = " ".join(flags).encode("utf-8")
    return got


@dataclass(slots=True)
class MessageRecord:
    uid: int
    flags: tuple[str, ...]  # shared flags, interned
    modseq: int  # gateway modseq of the last shared change
    internal_date: float  # seconds since the epoch
    tz_offset: int  # minutes east of UTC, for INTERNALDATE as the server gave it
    size: int
    message_id: str | None = None


@dataclass(slots=True)
class PrivateState:
    """One user's private flags in one mailbox (DESIGN decision 5)."""

    flags: dict[str, UidSet] = field(default_factory=dict)
    #: Sparse: modseq of this user's last private change per UID.
    modseqs: dict[int, int] = field(default_factory=dict)
    highest: int = 0
    #: Private changes at or below ``floor`` were compacted away: every message
    #: counts as privately changed at ``floor`` (a CHANGEDSINCE older than that
    #: returns every message — a superset, which RFC 7162 clients handle).
    floor: int = 0

    def modseq(self, uid: int) -> int:
        return self.modseqs.get(uid, self.floor)


@dataclass
class MailboxIndex:
    id: int
    name: str
    delimiter: str | None
    attributes: tuple[str, ...]
    uidvalidity: int
    uidnext: int
    #: The gateway's modseq counter: the highest modseq handed out.
    modseq: int
    #: Highest modseq of a shared change (what users without private changes see).
    shared_highest: int
    upstream_modseq: int
    seen_mode: str | None
    synced: bool
    uids: list[int] = field(default_factory=list)
    records: dict[int, MessageRecord] = field(default_factory=dict)
    #: UIDs expunged, with the modseq of the expunge, for QRESYNC VANISHED.
    expunged: dict[int, int] = field(default_factory=dict)
    private: dict[int, PrivateState] = field(default_factory=dict)
    #: Upstream's PERMANENTFLAGS from its last SELECT (None: not seen yet).
    #: Without ``\\*`` the hoster cannot keep new keywords.
    permanent_flags: tuple[str, ...] | None = None
    #: Messages that arrived while the gateway ran (RFC 3501 \\Recent) and that no
    #: read-write session has seen yet: the next one to see them claims them
    #: (``claim_recent``).  Memory only: never stored, never sent upstream.
    recent: UidSet = field(default_factory=UidSet)
    #: Read-only summaries (SELECT, STATUS, SEARCH ALL) by name, each with the
    #: ``_version()`` it was computed at (see ``_summary``).
    _summaries: dict[str, tuple[tuple[int, int], object]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def new(
        cls, mailbox_id: int, name: str, delimiter: str | None, attributes: tuple[str, ...]
    ) -> MailboxIndex:
        """A folder just created: no messages, not synced yet."""
        return cls(
            id=mailbox_id,
            name=name,
            delimiter=delimiter,
            attributes=attributes,
            uidvalidity=0,
            uidnext=1,
            modseq=1,
            shared_highest=1,
            upstream_modseq=0,
            seen_mode=None,
            synced=False,
        )

    @property
    def exists(self) -> int:
        return len(self.uids)

    def _version(self) -> tuple[int, int]:
        # Every change of a message (added, flags set, expunged, reset) takes a
        # new modseq, so (modseq, count) identifies the messages' state.
        return self.modseq, len(self.records)

    def _summary(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, cached until the next change of the folder's messages."""
        version = self._version()
        cached = self._summaries.get(name)
        if cached is None or cached[0] != version:
            cached = self._summaries[name] = (version, compute())
        return cast(T, cached[1])

    def keywords(self) -> tuple[str, ...]:
        """Sorted keywords (non-system flags) in any message's shared flags,
        found among the few distinct flag tuples."""

        def compute() -> tuple[str, ...]:
            combos = {r.flags for r in self.records.values()}
            return tuple(sorted({f for t in combos for f in t if not f.startswith("\\")}))

        return self._summary("keywords", compute)

    def uids_text(self) -> bytes:
        """Every UID, ascending, as ``1 2 3`` (the answer to ``UID SEARCH ALL``,
        the same for every user of the folder)."""
        return self._summary("uids_text", lambda: " ".join(map(str, self.uids)).encode("ascii"))

    def shared_counts(self) -> tuple[int, int, int]:
        """(messages without shared \\Seen, messages with \\Deleted, total size) for
        STATUS, which clients send for every folder on every check."""

        def compute() -> tuple[int, int, int]:
            unseen = deleted = size = 0
            for r in self.records.values():
                flags = r.flags
                if "\\Seen" not in flags:
                    unseen += 1
                if "\\Deleted" in flags:
                    deleted += 1
                size += r.size
            return unseen, deleted, size

        return self._summary("counts", compute)

    def first_unseen_shared(self) -> int:
        """UID of the first message whose shared flags lack \\Seen (0: none)."""
        records = self.records
        return self._summary(
            "first_unseen", lambda: next((u for u in self.uids if "\\Seen" not in records[u].flags), 0)
        )

    def claim_recent(self, first_uid: int, *, take: bool) -> UidSet:
        """The unclaimed recent messages with a UID of at least ``first_uid`` (a
        session learns messages in ascending UID order); ``take``: they are
        this session's from now on and recent in no other (a read-write
        session), else they stay for the next one (EXAMINE, RFC 3501 §6.3.2)."""
        got = UidSet.from_ranges((max(a, first_uid), b) for a, b in self.recent.ranges() if b >= first_uid)
        if take and got:
            self.recent.discard_range(first_uid, max(b for _, b in got.ranges()))
        return got

    def next_modseq(self) -> int:
        self.modseq += 1
        return self.modseq

    def add(self, rec: MessageRecord) -> None:
        if rec.uid in self.records:
            self.records[rec.uid] = rec
            return
        self.records[rec.uid] = rec
        if not self.uids or rec.uid > self.uids[-1]:
            self.uids.append(rec.uid)
        else:
            self.uids.insert(bisect_left(self.uids, rec.uid), rec.uid)
        if rec.uid >= self.uidnext:
            self.uidnext = rec.uid + 1

    def remove(self, uids: set[int] | frozenset[int], modseq: int) -> list[int]:
        """Drop ``uids``; return those that were present, ascending."""
        gone = sorted(u for u in uids if u in self.records)
        if not gone:
            return []
        for u in gone:
            del self.records[u]
            self.expunged[u] = modseq
        drop = set(gone)
        self.uids = [u for u in self.uids if u not in drop]
        if self.recent:
            self.recent.difference_update(gone)
        for state in self.private.values():
            for s in state.flags.values():
                s.difference_update(gone)
            for u in gone:
                state.modseqs.pop(u, None)
        return gone

    def uid_to_index(self, uid: int) -> int:
        """0-based position of ``uid`` in UID order, or -1."""
        i = bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else -1
