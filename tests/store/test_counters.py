"""Shared counters (store/counters.py): values handed out once, also by several nodes at once."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from imapgate.store.counters import advance, value
from tests.support.concurrency import at_once


def test_advance_raises_to_the_floor_then_by(store_engine: Engine) -> None:
    with store_engine.begin() as conn:
        assert value(conn, "c") is None
        assert advance(conn, "c", by=10) == 10
        assert advance(conn, "c", by=10, floor=5) == 20  # floor below: ignored
        assert advance(conn, "c", by=1, floor=100) == 101
        assert advance(conn, "other", by=3, floor=7) == 10
        assert value(conn, "c") == 101


def test_nodes_advancing_at_once_never_share_a_value(store_engine: Engine) -> None:
    blocks: list[int] = []
    lock = threading.Lock()

    def node() -> None:
        for _ in range(25):
            with store_engine.begin() as conn:
                top = advance(conn, "modseq:1", by=8)
            with lock:
                blocks.append(top)

    assert at_once(4, node) == []
    assert sorted(blocks) == [8 * (i + 1) for i in range(100)]
