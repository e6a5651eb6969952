"""SEARCH evaluated on the replica, as one user sees the mailbox.

Flags (including each user's private ones), UIDs, sequence numbers, sizes,
internal dates and modseqs are answered locally.  Criteria that need the
message content (BODY, TEXT, SUBJECT, FROM, HEADER, SENT*) are asked upstream,
each such key once, as a UID set; the boolean tree is then combined locally,
so ``UNSEEN SUBJECT x`` means *this user's* unseen.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import overload

from ..protocol import search as s
from .view import SelectedView

#: Resolves one content criterion to the UIDs that match it (asked upstream).
ContentSearch = Callable[[s.SearchKey], Awaitable[set[int]]]

CONTENT_KEYS = (s.SearchText, s.SearchHeader)
_SENT = ("SENTBEFORE", "SENTON", "SENTSINCE")


def content_keys(keys: tuple[s.SearchKey, ...]) -> list[s.SearchKey]:
    """Every key in the tree that must be answered upstream."""
    out: list[s.SearchKey] = []

    def walk(k: s.SearchKey) -> None:
        if isinstance(k, CONTENT_KEYS) or (isinstance(k, s.SearchDate) and k.which in _SENT):
            out.append(k)
        elif isinstance(k, s.SearchNot):
            walk(k.key)
        elif isinstance(k, s.SearchOr):
            walk(k.left)
            walk(k.right)
        elif isinstance(k, s.SearchAnd):
            for sub in k.keys:
                walk(sub)

    for key in keys:
        walk(key)
    return out


class Evaluator:
    def __init__(
        self, view: SelectedView, content: dict[s.SearchKey, set[int]], saved: set[int] | None
    ) -> None:
        self.view = view
        self.content = content
        self.saved = saved or set()
        self.now = time.time()
        self.largest_uid = view.uids[-1] if view.uids else 0
        self.exists = len(view.uids)
        #: Highest modseq among matched messages, when a MODSEQ key was used.
        self.modseq_used = False

    def matches(self, seq: int, uid: int, keys: tuple[s.SearchKey, ...]) -> bool:
        return all(self.match(seq, uid, k) for k in keys)

    def match(self, seq: int, uid: int, k: s.SearchKey) -> bool:
        view = self.view
        rec = view.mb.records.get(uid)
        if rec is None:
            return False  # expunged meanwhile: matches nothing
        if isinstance(k, s.SearchAll):
            return True
        if isinstance(k, s.SearchFlag):
            # flags_of includes \\Recent in the session that has it (RECENT, OLD).
            return (k.flag in view.flags_of(uid)) == k.present
        if isinstance(k, s.SearchNew):
            flags = view.flags_of(uid)
            return "\\Recent" in flags and "\\Seen" not in flags
        if isinstance(k, s.SearchKeywordKey):
            return (k.keyword in view.flags_of(uid)) == k.present
        if isinstance(k, s.SearchSize):
            return rec.size > k.size if k.larger else rec.size < k.size
        if isinstance(k, s.SearchSequence):
            if k.sequence_set.is_saved:
                return uid in self.saved
            return k.sequence_set.contains(seq, self.exists)
        if isinstance(k, s.SearchUid):
            if k.sequence_set.is_saved:
                return uid in self.saved
            return k.sequence_set.contains(uid, self.largest_uid)
        if isinstance(k, s.SearchModseq):
            self.modseq_used = True
            return view.modseq_of(uid) >= k.modseq
        if isinstance(k, s.SearchAge):
            age = self.now - rec.internal_date
            return age <= k.seconds if k.younger else age >= k.seconds
        if isinstance(k, s.SearchDate) and k.which not in _SENT:
            # Internal date compared by the day in the message's own time zone.
            tz = timezone(timedelta(minutes=rec.tz_offset))
            day = datetime.fromtimestamp(rec.internal_date, UTC).astimezone(tz).date()
            if k.which == "BEFORE":
                return day < k.date
            if k.which == "ON":
                return day == k.date
            return day >= k.date
        if isinstance(k, s.SearchNot):
            return not self.match(seq, uid, k.key)
        if isinstance(k, s.SearchOr):
            return self.match(seq, uid, k.left) or self.match(seq, uid, k.right)
        if isinstance(k, s.SearchAnd):
            return all(self.match(seq, uid, sub) for sub in k.keys)
        # Content criteria were resolved upstream beforehand.
        return uid in self.content.get(k, set())


def uses_modseq(keys: tuple[s.SearchKey, ...]) -> bool:
    """Does the search have a MODSEQ criterion (a CONDSTORE enabling command)?"""

    def walk(k: s.SearchKey) -> bool:
        if isinstance(k, s.SearchModseq):
            return True
        if isinstance(k, s.SearchNot):
            return walk(k.key)
        if isinstance(k, s.SearchOr):
            return walk(k.left) or walk(k.right)
        if isinstance(k, s.SearchAnd):
            return any(walk(sub) for sub in k.keys)
        return False

    return any(walk(k) for k in keys)


def _set_only(keys: tuple[s.SearchKey, ...]) -> bool:
    """Only ALL and (non-saved) sequence/UID sets: answerable from the sequence map."""
    for k in keys:
        if isinstance(k, s.SearchAll):
            continue
        if isinstance(k, (s.SearchSequence, s.SearchUid)) and not k.sequence_set.is_saved:
            continue
        if isinstance(k, s.SearchAnd) and _set_only(k.keys):
            continue
        return False
    return True


def _by_sets(view: SelectedView, keys: tuple[s.SearchKey, ...]) -> tuple[Sequence[int], list[int]]:
    """``ALL``/set searches as slices of the sequence map: the intersection of
    the sets named, no per-message evaluation (``UID SEARCH ALL`` of 100,000)."""
    flat: list[s.SearchKey] = []

    def walk(k: s.SearchKey) -> None:
        if isinstance(k, s.SearchAnd):
            for sub in k.keys:
                walk(sub)
        elif not isinstance(k, s.SearchAll):
            flat.append(k)

    for key in keys:
        walk(key)
    if not flat:
        return range(1, len(view.uids) + 1), list(view.uids)
    first, rest = flat[0], flat[1:]
    assert isinstance(first, (s.SearchSequence, s.SearchUid))
    seqs, uids = view.resolve_columns(first.sequence_set, uid=isinstance(first, s.SearchUid))
    if not rest:
        return seqs, uids
    ev = Evaluator(view, {}, None)
    keep = [i for i, (q, u) in enumerate(zip(seqs, uids, strict=True)) if ev.matches(q, u, tuple(rest))]
    return [seqs[i] for i in keep], [uids[i] for i in keep]


class _SeqsOf(Sequence[int]):
    """Sequence numbers of ``hits`` (sorted UIDs of ``view_uids``), computed on first use:
    a UID SEARCH of 30,000 hits never needs them."""

    def __init__(self, view_uids: list[int], hits: list[int]) -> None:
        self._view = view_uids
        self._hits = hits
        self._seqs: list[int] | None = None

    def _all(self) -> list[int]:
        if self._seqs is None:
            view = self._view
            self._seqs = [bisect_left(view, u) + 1 for u in self._hits]
        return self._seqs

    def __len__(self) -> int:
        return len(self._hits)

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[int]: ...
    def __getitem__(self, i: int | slice) -> int | Sequence[int]:
        return self._all()[i]

    def __iter__(self) -> Iterator[int]:
        return iter(self._all())


async def evaluate(
    view: SelectedView,
    keys: tuple[s.SearchKey, ...],
    content_search: ContentSearch,
    saved: set[int] | None = None,
) -> tuple[Sequence[int], list[int], Evaluator]:
    """Sequence numbers and UIDs (parallel, ascending) of every message in the
    view matching all ``keys``."""
    content: dict[s.SearchKey, set[int]] = {}
    for key in content_keys(keys):
        if key not in content:
            content[key] = await content_search(key)
    ev = Evaluator(view, content, saved)
    records = view.mb.records
    if _set_only(keys) and all(map(records.__contains__, view.uids)):
        # Every message of the view still exists, so a set search needs no
        # per-message test (an expunged one would match nothing).
        seqs, uids = _by_sets(view, keys)
        return seqs, uids, ev
    seqs_out: list[int] = []
    uids_out: list[int] = []
    positive = [content[k] for k in keys if k in content and isinstance(k, CONTENT_KEYS)]
    if positive:
        # A text key at the top level must match: only its hits need the other keys
        # (``SUBJECT x UNSEEN`` of 100,000 messages tests a few, not every one), and
        # none when every key is such a text key.
        candidates = set.intersection(*sorted(positive, key=len))
        if len(positive) == len(keys):
            hits = sorted(u for u in candidates & view.uid_set() if u in records)
            return _SeqsOf(view.uids, hits), hits, ev
        uids = view.uids
        n = len(uids)
        for uid in sorted(candidates):
            i = bisect_left(uids, uid)
            if i < n and uids[i] == uid and ev.matches(i + 1, uid, keys):
                seqs_out.append(i + 1)
                uids_out.append(uid)
        return seqs_out, uids_out, ev
    for i, uid in enumerate(view.uids):
        if ev.matches(i + 1, uid, keys):
            seqs_out.append(i + 1)
            uids_out.append(uid)
    return seqs_out, uids_out, ev
