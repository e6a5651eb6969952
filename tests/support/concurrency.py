"""``at_once(n, fn)``: ``fn`` in ``n`` threads released together by a barrier (several nodes
acting at the same moment); the exceptions they raised, so a thread's failure fails the test."""

from __future__ import annotations

import threading
from collections.abc import Callable


def at_once(n: int, fn: Callable[[], None], *, timeout: float = 60.0) -> list[BaseException]:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # collected for the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), f"threads still running after {timeout} s"
    return errors
