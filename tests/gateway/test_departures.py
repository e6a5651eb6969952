"""The texts the loser of a race reads (gateway/departures.py)."""

from __future__ import annotations

from datetime import datetime

from imapgate.gateway.departures import MAX_GROUPS, describe
from imapgate.replica.departures import Departure

NOW = datetime(2026, 12, 3, 10, 50).timestamp()
AT = datetime(2026, 12, 3, 10, 42).timestamp()


def test_one_message() -> None:
    assert describe([5], {5: Departure(5, "moved", "alice", "A", AT)}, 1, NOW) == (
        "alice moved this message to A at 10:42"
    )
    assert describe([5], {5: Departure(5, "deleted", "alice", None, AT)}, 1, NOW) == (
        "this message is gone: alice deleted it at 10:42"
    )
    assert describe([5], {5: Departure(5, "hoster", None, None, AT)}, 1, NOW) == (
        "this message is gone: it was removed at the hoster at 10:42"
    )
    # No record (pruned, or from before the gateway kept them): still a reason, no guess.
    assert describe([5], {}, 1, NOW) == "this message is gone: it was expunged meanwhile"


def test_another_day_names_the_date() -> None:
    yesterday = datetime(2026, 12, 2, 17, 5).timestamp()
    assert describe([5], {5: Departure(5, "moved", "bob", "Done", yesterday)}, 1, NOW) == (
        "bob moved this message to Done at 2026-12-02 17:05"
    )


def test_several_messages_grouped_by_who_and_where() -> None:
    found = {
        1: Departure(1, "moved", "alice", "A", AT - 60),
        2: Departure(2, "moved", "alice", "A", AT),
        3: Departure(3, "deleted", "bob", None, AT),
    }
    assert describe([1, 2, 3, 4], found, 10, NOW) == (
        "4 of 10 messages are gone: alice moved 2 to A at 10:42, bob deleted 1 at 10:42, 1 expunged meanwhile"
    )
    assert describe([1, 2], found, 2, NOW) == "these 2 messages are gone: alice moved 2 to A at 10:42"
    assert describe([3], found, 4, NOW) == "1 of 4 messages is gone: bob deleted 1 at 10:42"


def test_a_bulk_answer_stays_one_short_line() -> None:
    found = {u: Departure(u, "moved", f"user{u}", "A", AT) for u in range(1, 10)}
    text = describe(list(found), found, 9, NOW)
    assert text.count(" moved ") == MAX_GROUPS and text.endswith(f"and {9 - MAX_GROUPS} more")
