"""The order of lock-free writes against removals of the same message
(gateway/inflight.py)."""

from __future__ import annotations

import asyncio

from imapgate.gateway.inflight import InFlight
from imapgate.replica.mailbox import MailboxIndex


def _mb(mailbox_id: int = 1) -> MailboxIndex:
    return MailboxIndex(mailbox_id, f"F{mailbox_id}", "/", (), 1, 1, 0, 0, 0, None, True)


async def test_a_removal_waits_for_a_store_of_its_message_and_a_store_for_a_removal() -> None:
    flight, mb = InFlight(), _mb()
    order: list[str] = []
    store_in = asyncio.Event()
    release_store = asyncio.Event()

    async def store() -> None:
        async with flight.storing(mb, [5]):
            store_in.set()
            await release_store.wait()
            order.append("store done")

    async def move() -> None:
        await store_in.wait()
        async with flight.removing(mb, [5, 6], "alice"):
            order.append("move")
            assert flight.remover_of(mb, 6) == "alice"
            await asyncio.sleep(0.05)
        order.append("move done")

    async def late_store() -> None:
        await asyncio.sleep(0.02)  # the move is waiting or running by now
        async with flight.storing(mb, [6]):
            order.append("late store")

    tasks = [asyncio.create_task(t()) for t in (store, move, late_store)]
    await asyncio.sleep(0.01)
    assert order == []  # the move waits for the STORE on its way upstream
    release_store.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert order == ["store done", "move", "move done", "late store"]
    assert flight.remover_of(mb, 6) is None


async def test_two_removals_of_one_message_run_one_after_the_other_others_side_by_side() -> None:
    flight = InFlight()
    mb, other = _mb(1), _mb(2)
    running: list[str] = []
    peak: list[int] = []

    async def remove(name: str, box: MailboxIndex, uids: list[int]) -> None:
        async with flight.removing(box, uids, name):
            running.append(name)
            peak.append(len(running))
            await asyncio.sleep(0.03)
            running.remove(name)

    await asyncio.wait_for(
        asyncio.gather(remove("a", mb, [1, 2]), remove("b", mb, [2, 3]), remove("c", other, [2])), 2
    )
    assert max(peak) == 2  # a and c (another folder) together, b after a


async def test_stores_do_not_wait_for_each_other() -> None:
    flight, mb = InFlight(), _mb()
    inside = 0
    peak = 0

    async def store() -> None:
        nonlocal inside, peak
        async with flight.storing(mb, [1]):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.02)
            inside -= 1

    await asyncio.wait_for(asyncio.gather(*(store() for _ in range(3))), 2)
    assert peak == 3
