"""UidSet against a plain Python set model (Hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imapgate.replica.uidset import UidSet

ops = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "add_range", "discard_range"]),
              st.integers(1, 200), st.integers(0, 20)),
    max_size=60,
)


@given(ops)
def test_matches_set_model(operations: list[tuple[str, int, int]]) -> None:
    s = UidSet()
    model: set[int] = set()
    for op, a, length in operations:
        b = a + length
        if op == "add":
            s.add(a)
            model.add(a)
        elif op == "discard":
            s.discard(a)
            model.discard(a)
        elif op == "add_range":
            s.add_range(a, b)
            model.update(range(a, b + 1))
        else:
            s.discard_range(a, b)
            model.difference_update(range(a, b + 1))
    assert list(s) == sorted(model)
    assert len(s) == len(model)
    # ranges are disjoint, sorted and not adjacent (canonical form)
    r = s.ranges()
    assert all(r[i][1] + 1 < r[i + 1][0] for i in range(len(r) - 1))
    assert UidSet.decode(s.encode()) == s
    probe = list(range(0, 230))
    assert list(s.members_sorted(probe)) == [u in model for u in probe]
    assert all((u in s) == (u in model) for u in probe)
    for size in (0, 1, 57, 230):  # bitmaps shorter and longer than the set
        bitmap = bytearray(size)
        s.mark(bitmap)
        assert len(bitmap) == size
        assert [bool(x) for x in bitmap] == [u in model for u in range(size)]


def test_compact_for_mostly_read() -> None:
    s = UidSet.from_ranges([(1, 100_000)])
    for uid in range(5, 100_000, 997):  # ~100 scattered unread messages
        s.discard(uid)
    assert s.range_count == len(range(5, 100_000, 997)) + 1
    assert len(s.encode()) < 600
