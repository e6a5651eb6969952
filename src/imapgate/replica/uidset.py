"""A compact, mutable set of UIDs kept as sorted disjoint ranges.

Per-user flags (``\\Seen`` of 100,000 messages × 50 users) are stored this way,
as Cyrus keeps seen state: a team reads most mail, so a user's seen set is a
few hundred ranges, not 100,000 entries.  Encoded for the store as varints of
(gap, length) pairs.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator


class UidSet:
    __slots__ = ("_ends", "_starts")

    def __init__(self, uids: Iterable[int] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for a, b in _ranges(sorted(set(uids))):
            self._starts.append(a)
            self._ends.append(b)

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> UidSet:
        s = cls()
        for a, b in ranges:
            s.add_range(a, b)
        return s

    def copy(self) -> UidSet:
        s = UidSet()
        s._starts = self._starts.copy()
        s._ends = self._ends.copy()
        return s

    def __contains__(self, uid: int) -> bool:
        i = bisect_right(self._starts, uid) - 1
        return i >= 0 and self._ends[i] >= uid

    def __len__(self) -> int:
        return sum(b - a + 1 for a, b in zip(self._starts, self._ends, strict=True))

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[int]:
        for a, b in zip(self._starts, self._ends, strict=True):
            yield from range(a, b + 1)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UidSet) and self._starts == other._starts and self._ends == other._ends

    def __repr__(self) -> str:
        return f"UidSet({self.ranges()!r})"

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def mark(self, bitmap: bytearray) -> None:
        """Set ``bitmap[uid] = 1`` for every member ``uid < len(bitmap)``: one
        slice assignment per range, no Python object per UID (bulk flag listings)."""
        size = len(bitmap)
        ones = b"\x01" * size
        for a, b in zip(self._starts, self._ends, strict=True):
            if a >= size:
                break
            bitmap[a : b + 1] = ones[a : b + 1]

    @property
    def range_count(self) -> int:
        return len(self._starts)

    def add(self, uid: int) -> None:
        self.add_range(uid, uid)

    def add_range(self, a: int, b: int) -> None:
        starts, ends = self._starts, self._ends
        # First range that could touch [a, b]: the one before a's position.
        i = bisect_right(starts, a) - 1
        if i >= 0 and ends[i] >= a - 1:
            if ends[i] >= b:
                return
            a = starts[i]
        else:
            i += 1
        j = i
        while j < len(starts) and starts[j] <= b + 1:
            b = max(b, ends[j])
            j += 1
        starts[i:j] = [a]
        ends[i:j] = [b]

    def discard(self, uid: int) -> None:
        self.discard_range(uid, uid)

    def discard_range(self, a: int, b: int) -> None:
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, a) - 1
        if i < 0 or ends[i] < a:
            i += 1
        new_s: list[int] = []
        new_e: list[int] = []
        j = i
        while j < len(starts) and starts[j] <= b:
            s, e = starts[j], ends[j]
            if s < a:
                new_s.append(s)
                new_e.append(a - 1)
            if e > b:
                new_s.append(b + 1)
                new_e.append(e)
            j += 1
        starts[i:j] = new_s
        ends[i:j] = new_e

    def update(self, uids: Iterable[int]) -> None:
        for a, b in _ranges(sorted(set(uids))):
            self.add_range(a, b)

    def difference_update(self, uids: Iterable[int]) -> None:
        for a, b in _ranges(sorted(set(uids))):
            self.discard_range(a, b)

    def members_sorted(self, sorted_uids: Iterable[int]) -> Iterator[bool]:
        """For ascending ``sorted_uids``, yield membership of each in one merge
        pass (O(n + ranges)): the per-user FETCH FLAGS hot path."""
        starts, ends = self._starts, self._ends
        n = len(starts)
        i = 0
        for uid in sorted_uids:
            while i < n and ends[i] < uid:
                i += 1
            yield i < n and starts[i] <= uid

    # -- storage ---------------------------------------------------------------
    def encode(self) -> bytes:
        out = bytearray()
        prev = 0
        for a, b in zip(self._starts, self._ends, strict=True):
            _varint(out, a - prev)
            _varint(out, b - a)
            prev = b
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> UidSet:
        s = cls()
        pos = 0
        prev = 0
        n = len(data)
        while pos < n:
            gap, pos = _read_varint(data, pos)
            length, pos = _read_varint(data, pos)
            a = prev + gap
            b = a + length
            s._starts.append(a)
            s._ends.append(b)
            prev = b
        return s


def _ranges(sorted_unique: list[int]) -> Iterator[tuple[int, int]]:
    it = iter(sorted_unique)
    try:
        a = b = next(it)
    except StopIteration:
        return
    for n in it:
        if n == b + 1:
            b = n
        else:
            yield a, b
            a = b = n
    yield a, b


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    value = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated UID set encoding")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
