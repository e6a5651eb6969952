"""BoundedVerifier: concurrency bound, priority, refusal, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from imapgate.gateway.verifier import BoundedVerifier, VerifierBusy


async def until(predicate: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)


async def test_cancelled_waiters_never_run_and_a_cancelled_job_keeps_its_worker() -> None:
    v = BoundedVerifier(workers=1, max_waiting=2)
    gate = threading.Event()
    ran: list[str] = []
    running = asyncio.create_task(v.run(lambda: (gate.wait(), ran.append("first"))))
    await until(lambda: v.running == 1)
    waiting = asyncio.create_task(v.run(lambda: ran.append("cancelled")))
    await asyncio.sleep(0.01)
    waiting.cancel()
    running.cancel()  # the caller gives up; argon2 (here: the gate) still holds the thread
    await asyncio.sleep(0.01)
    assert v.running == 1, "memory of a running check stays accounted for until it ends"
    third = asyncio.create_task(v.run(lambda: ran.append("third")))
    gate.set()
    await third
    assert ran == ["first", "third"] and v.running == 0
    v.close()


async def test_priority_first_and_busy_per_class() -> None:
    v = BoundedVerifier(workers=1, max_waiting=1)
    gate = threading.Event()
    order: list[str] = []
    blocker = asyncio.create_task(v.run(gate.wait))
    await until(lambda: v.running == 1)
    normal = asyncio.create_task(v.run(lambda: order.append("normal")))
    await asyncio.sleep(0.01)
    with pytest.raises(VerifierBusy):
        await v.run(lambda: order.append("refused"))
    urgent = asyncio.create_task(v.run(lambda: order.append("priority"), priority=True))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(blocker, normal, urgent)
    assert order == ["priority", "normal"]
    v.close()


async def test_exceptions_reach_the_caller() -> None:
    v = BoundedVerifier(workers=2)

    def boom() -> None:
        raise ValueError("argon2 said no")

    with pytest.raises(ValueError, match="argon2 said no"):
        await v.run(boom)
    assert await v.run(lambda: 42) == 42 and v.running == 0
    v.close()
