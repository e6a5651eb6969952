"""The pool's queue with fake connections: folder affinity, the bound, and no
connection lost when a waiter gives up."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from imapgate.config import UpstreamConfig
from imapgate.protocol import commands as cmd
from imapgate.protocol import responses as rsp
from imapgate.upstream import pool as pool_module
from imapgate.upstream.connection import CommandResult
from imapgate.upstream.pool import UpstreamPool

OK = CommandResult(rsp.TaggedResponse("T", "OK"))


class FakeConnection:
    opened = 0

    def __init__(self, config: UpstreamConfig, *, name: str = "", on_unsolicited: Any = None) -> None:
        FakeConnection.opened += 1
        self.name = name
        self.alive = True
        self.closed_reason: str | None = None
        self.selected: str | None = None
        self.selected_uidvalidity = 1
        self.known_uid = 0
        self.last_used = time.monotonic()
        self.capabilities = frozenset({"IMAP4REV1"})
        self.enabled: frozenset[str] = frozenset()
        self.selects = 0

    async def connect(self) -> None:
        await asyncio.sleep(0)

    async def select(self, mailbox: str, **_: Any) -> CommandResult:
        self.selects += 1
        await asyncio.sleep(0.001)
        self.selected = mailbox
        return OK

    async def check(self, build: Callable[[str], cmd.Command], **_: Any) -> CommandResult:
        await asyncio.sleep(0)
        return OK

    async def close(self, reason: str = "closed") -> None:
        self.alive = False
        self.closed_reason = self.closed_reason or reason

    async def logout(self) -> None:
        await self.close("logged out")


def make(n: int) -> UpstreamPool:
    cfg = UpstreamConfig(host="127.0.0.1", port=1, tls="none", max_connections=n)
    return UpstreamPool(cfg, connection_factory=FakeConnection)  # type: ignore[arg-type]


async def test_waits_briefly_for_the_busy_connection_that_has_the_folder() -> None:
    pool = make(2)
    async with pool.connection("A") as a, pool.connection("B") as b:
        pass
    assert {a.selected, b.selected} == {"A", "B"}

    async def hold_a(seconds: float) -> None:
        async with pool.connection("A", need_uid=0):
            await asyncio.sleep(seconds)

    holder = asyncio.create_task(hold_a(0.01))
    await asyncio.sleep(0)
    # B's connection is idle, A's is busy for less than MATCH_WAIT: wait for it.
    async with pool.connection("A", need_uid=0) as got:
        assert got is a
    await holder
    assert a.selects == 1 and b.selects == 1
    # Busy for longer than MATCH_WAIT: re-select the idle one.
    holder = asyncio.create_task(hold_a(pool_module.MATCH_WAIT * 4))
    await asyncio.sleep(0)
    async with pool.connection("A", need_uid=0) as got:
        assert got is b and b.selects == 2
    await holder


async def test_reselects_a_connection_whose_folder_has_another_one() -> None:
    pool = make(3)
    async with pool.connection("A") as a1, pool.connection("A") as a2, pool.connection("B") as b:
        pass
    async with pool.connection("C") as got:
        assert got in (a1, a2) and b.selected == "B"


async def test_many_callers_stay_within_the_bound_and_nothing_leaks() -> None:
    pool = make(3)
    rng = random.Random(7)
    busy = 0
    peak = 0
    in_use: set[Any] = set()

    async def op(i: int) -> None:
        nonlocal busy, peak
        folder = rng.choice(["A", "B", None])
        try:
            async with asyncio.timeout(rng.choice([0.002, 1.0, 1.0])):
                async with pool.connection(folder, need_uid=0) as conn:
                    assert conn not in in_use, "a connection lent twice"
                    assert folder is None or conn.selected == folder
                    in_use.add(conn)
                    busy += 1
                    peak = max(peak, busy)
                    try:
                        await asyncio.sleep(rng.random() * 0.003)
                    finally:
                        busy -= 1
                        in_use.discard(conn)
        except TimeoutError:
            pass  # gave up while queued, or cancelled inside (the connection is closed)

    await asyncio.gather(*(op(i) for i in range(300)))
    assert peak <= 3
    assert pool.open_connections == len(pool._idle) <= 3
    assert not pool._lent and not [w for w in pool._waiters if not w.future.done()]
    # The pool still serves.
    async with pool.connection("A"):
        pass
    await pool.close()


async def test_dedicated_takes_a_slot_at_the_bound() -> None:
    pool = make(2)
    async with pool.connection("A"), pool.connection("B"):
        pass
    watcher = await pool.dedicated("watcher")
    assert pool.open_connections == 2
    async with pool.connection("B") as c:
        assert c is not watcher
    await pool.release_dedicated(watcher)
    assert pool.open_connections == 1


@pytest.fixture(autouse=True)
def _count() -> None:
    FakeConnection.opened = 0


async def test_a_caller_for_another_folder_is_not_starved() -> None:
    """Every connection has B selected and B callers keep coming: the caller
    for A still gets one soon (and selects A on it)."""
    pool = make(2)
    async with pool.connection("B"), pool.connection("B"):
        pass
    stop = asyncio.Event()

    async def b_load() -> None:
        while not stop.is_set():
            async with pool.connection("B", need_uid=0):
                await asyncio.sleep(0.002)

    loaders = [asyncio.create_task(b_load()) for _ in range(8)]
    await asyncio.sleep(0.02)
    t0 = time.monotonic()
    async with asyncio.timeout(1.0):
        async with pool.connection("A", need_uid=0) as conn:
            assert conn.selected == "A"
    assert time.monotonic() - t0 < 0.5
    stop.set()
    await asyncio.gather(*loaders)


async def test_background_work_waits_while_a_client_waits() -> None:
    """The search indexer's connection: taken only when no caller waits and one is free,
    so a client never queues behind it for more than one short operation."""
    pool = make(2)
    got: list[str] = []
    async with pool.connection("A"), pool.connection("B"):
        client = asyncio.create_task(_use(pool, "A", got, "client"))
        await asyncio.sleep(0.01)
        background = asyncio.create_task(_background(pool, got))
        await asyncio.sleep(0.1)
        assert got == []  # both connections lent, a client waiting: no background work
    await asyncio.gather(client, background)
    assert sorted(got) == ["background", "client"]
    assert pool.peak_open == 2


async def _use(pool: UpstreamPool, name: str, got: list[str], tag: str) -> None:
    async with pool.connection(name):
        got.append(tag)
        await asyncio.sleep(0.01)


async def _background(pool: UpstreamPool, got: list[str]) -> None:
    async with pool.background_connection("C"):
        got.append("background")
