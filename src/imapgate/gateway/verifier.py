"""Bounded verifier: password checks (argon2id) off the event loop, a few at a time.

Each argon2id check takes ``memory_cost`` (64 MiB by default) for its whole
run.  Running every login's check at once (50 sessions connecting after a
restart) took the gateway from 56 to 454 MB; a flood of wrong passwords could
take all the memory there is.  So checks run in a private thread pool of
``workers`` threads (about the number of cores: argon2 is CPU-bound, more
threads only add memory), and at most ``max_waiting`` more wait their turn per
class; beyond that ``run`` raises ``VerifierBusy`` at once instead of queueing
without bound.  Peak memory for checks is ``workers x memory_cost``.

Two classes: *priority* jobs (logins from a pair that logged in successfully
before, see ``throttle.py``) are started before normal ones and have their own
waiting room, so known members do not wait behind a flood of guesses.

A job keeps its worker until argon2 returns, even if the caller stopped
waiting (cancelled): the memory stays accounted for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: Verifier threads at most, whatever the core count: bounds the memory of
#: checks to MAX_WORKERS x 64 MiB on big machines.
MAX_WORKERS = 4
#: Checks that may wait for a worker, per class.  At ~50-100 ms per check and
#: two workers, the last of 128 waits a few seconds, well inside a client's
#: login timeout; more would only make clients wait longer for a refusal.
MAX_WAITING = 128


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


class VerifierBusy(Exception):
    """Too many checks waiting: refuse now, the client may retry shortly."""


_Job = tuple[Callable[[], Any], "asyncio.Future[Any]"]


class BoundedVerifier:
    def __init__(self, workers: int | None = None, max_waiting: int = MAX_WAITING) -> None:
        self.workers = workers or default_workers()
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="imapgate-verify")
        self._queues: tuple[deque[_Job], deque[_Job]] = (deque(), deque())  # (priority, normal)
        self._running = 0
        self.peak_running = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(1 for q in self._queues for _fn, fut in q if not fut.done())

    async def run(self, fn: Callable[[], T], *, priority: bool = False) -> T:
        """Run ``fn`` in a verifier thread when one is free; raises ``VerifierBusy``
        when ``max_waiting`` jobs of this class already wait."""
        loop = asyncio.get_running_loop()
        queue = self._queues[0 if priority else 1]
        if self._running >= self.workers and sum(1 for _fn, f in queue if not f.done()) >= self.max_waiting:
            raise VerifierBusy()
        fut: asyncio.Future[T] = loop.create_future()
        queue.append((fn, fut))
        self._dispatch(loop)
        return await fut

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._running < self.workers:
            job = self._next()
            if job is None:
                return
            fn, fut = job
            self._running += 1
            self.peak_running = max(self.peak_running, self._running)
            tf = self._executor.submit(fn)
            tf.add_done_callback(functools.partial(self._done_in_thread, loop, fut))

    def _done_in_thread(
        self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], tf: ThreadFuture[Any]
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._finished, loop, tf, fut)

    def _next(self) -> _Job | None:
        for queue in self._queues:
            while queue:
                job = queue.popleft()
                if not job[1].done():  # skip callers that gave up while waiting
                    return job
        return None

    def _finished(
        self, loop: asyncio.AbstractEventLoop, tf: ThreadFuture[Any], fut: asyncio.Future[Any]
    ) -> None:
        self._running -= 1
        if tf.cancelled():
            fut.cancel()
        elif not fut.done():
            exc = tf.exception()
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(tf.result())
        self._dispatch(loop)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
