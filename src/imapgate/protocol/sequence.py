"""Sequence sets and UID sets (``1:5,7,10:*``, ``$``) — RFC 9051 §9 sequence-set.

``*`` is kept symbolic (``STAR``) until a caller resolves the set against the
current largest number; ``$`` (RFC 5182 SEARCHRES) is ``SequenceSet.saved()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

#: Stands for ``*`` in a range bound; never a valid nz-number.
STAR: Final = 0


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """Ranges as written by the peer: ``(start, end)`` with ``STAR`` for ``*``."""

    ranges: tuple[tuple[int, int], ...]
    is_saved: bool = False

    @classmethod
    def saved(cls) -> SequenceSet:
        """The ``$`` marker: the result saved by ``SEARCH RETURN (SAVE)``."""
        return cls((), True)

    @classmethod
    def single(cls, n: int) -> SequenceSet:
        return cls(((n, n),))

    @classmethod
    def all(cls) -> SequenceSet:
        """``1:*``."""
        return cls(((1, STAR),))

    @classmethod
    def from_ids(cls, ids: Iterable[int]) -> SequenceSet:
        """The most compact set holding exactly ``ids`` (any order, repeats allowed)."""
        ranges: list[tuple[int, int]] = []
        for n in sorted(set(ids)):
            if ranges and ranges[-1][1] + 1 == n:
                ranges[-1] = (ranges[-1][0], n)
            else:
                ranges.append((n, n))
        return cls(tuple(ranges))

    @property
    def uses_star(self) -> bool:
        return any(a == STAR or b == STAR for a, b in self.ranges)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with ``*`` replaced by ``largest``.

        Per RFC 9051 ``n:m`` equals ``m:n``. With ``largest == 0`` (empty
        mailbox) a ``*`` resolves to nothing.
        """
        spans: list[tuple[int, int]] = []
        for a, b in self.ranges:
            if a == STAR:
                a = largest
            if b == STAR:
                b = largest
            if a == 0 or b == 0:
                continue
            if a > b:
                a, b = b, a
            spans.append((a, b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return merged

    def iter(self, largest: int) -> Iterator[int]:
        """Every number in the set, ascending, bounded above by ``largest`` only via ``*``."""
        for a, b in self.resolve(largest):
            yield from range(a, b + 1)

    def contains(self, n: int, largest: int) -> bool:
        for a, b in self.ranges:
            a = largest if a == STAR else a
            b = largest if b == STAR else b
            if a > b:
                a, b = b, a
            if a <= n <= b:
                return True
        return False

    def __bytes__(self) -> bytes:
        if self.is_saved:
            return b"$"
        parts: list[bytes] = []
        for a, b in self.ranges:
            sa = b"*" if a == STAR else b"%d" % a
            if a == b:
                parts.append(sa)
            else:
                parts.append(sa + b":" + (b"*" if b == STAR else b"%d" % b))
        return b",".join(parts)

    def __str__(self) -> str:
        return bytes(self).decode("ascii")
