"""The ``LockManager`` implementations: one ``asyncio.Lock`` per mailbox name
(one node), and the same plus a PostgreSQL advisory lock per mailbox (several
nodes on one database: ``AdvisoryLockManager``).

Live next to the asyncio driver (the sync engine), not in ``replica/``,
which knows no event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Engine

from ..store.lock import AdvisoryLock, advisory_key

#: First and longest pause between two tries of a taken advisory lock (seconds): a
#: short write holds it for milliseconds; a sync for longer, so the pause doubles.  The
#: holder's release wakes the waiters of every node at once (NOTIFY, ``nudge``), so the
#: longest pause is only the safety net for a notification lost with its connection.
RETRY_FIRST = 0.002
RETRY_MAX = 0.2
#: Local tasks in a row that take a folder's advisory lock over from the previous local holder
#: without it going back to the database in between; then it is given back (the other nodes'
#: turn).  A hand-over saves the release, the next try and the catch-up: 5 to 8 round trips.
HANDOVER_MAX = 8
#: Seconds a kept advisory lock waits for the local task it was kept for (one that was
#: cancelled meanwhile never comes): then it is given back.
HANDOVER_GRACE = 0.1


class AsyncioLockManager:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, name: str) -> asyncio.Lock:
        """The lock itself, for callers that need ``locked()`` or a timed acquire."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def mailbox(self, name: str) -> asyncio.Lock:
        # An asyncio.Lock is its own async context manager.
        return self.lock(name)


class NodeMailboxLock:
    """A mailbox held by this node's task (the local lock: tasks of one node queue
    here, not at the database) and by this node against the others (the advisory
    lock, on a pooled connection of its own while held)."""

    def __init__(
        self, local: asyncio.Lock, advisory: AdvisoryLock, on_acquired: Callable[[], None] | None = None
    ) -> None:
        self.local = local
        self.advisory = advisory
        self.on_acquired = on_acquired
        #: Local tasks waiting for ``local`` (a release hands the advisory lock to them).
        self._waiting = 0
        #: The advisory lock is held for the next local holder (no local holder now).
        self._kept = False
        self._streak = 0
        self._giving: asyncio.Future[None] | None = None
        #: Set when the advisory lock was released somewhere (``nudge``): try again now.
        self._released = asyncio.Event()
        #: Tries that a release's notification started (for tests and the curious).
        self.nudges = 0

    def nudge(self) -> None:
        """The advisory lock was released on some node: a waiting try goes at once."""
        if not self._released.is_set():
            self._released.set()
            self.nudges += 1

    def locked(self) -> bool:
        return self.local.locked()

    async def acquire(self) -> bool:
        self._waiting += 1
        try:
            await self.local.acquire()
        finally:
            self._waiting -= 1
        if self._kept:
            # Handed over by the previous local holder: the folder never left this node, so
            # no other node wrote it under the lock meanwhile -- nothing to catch up on.
            self._kept = False
            self._streak += 1
            return True
        self._streak = 0
        try:
            delay = RETRY_FIRST
            # Polled, never a blocking pg_advisory_lock: a cancelled wait leaves no
            # thread stuck in the database.
            while True:
                self._released.clear()  # before the try: a release during it is not missed
                if await self._try():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), delay)
                delay = min(delay * 2, RETRY_MAX)
        except BaseException:
            self.local.release()
            raise
        if self.on_acquired is not None:
            # Catch up on what the previous holder (maybe another node) did before acting:
            # the lock is where writes to one folder line up across nodes.
            try:
                self.on_acquired()
            except BaseException:
                await self.release()
                raise
        return True

    async def _try(self) -> bool:
        attempt = asyncio.ensure_future(asyncio.to_thread(self.advisory.try_acquire))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The try runs on in its thread and may still win the lock: wait for it,
            # then give the lock back, so the other nodes are not locked out.
            with contextlib.suppress(Exception):
                await attempt
            await asyncio.to_thread(self.advisory.release)
            raise

    async def release(self) -> None:
        if self._waiting and self._streak < HANDOVER_MAX:
            self._kept = True
            self.local.release()
            asyncio.get_running_loop().call_later(HANDOVER_GRACE, self._unclaimed)
            return
        try:
            await asyncio.to_thread(self.advisory.release)
        finally:
            self.local.release()

    def _unclaimed(self) -> None:
        if self._kept and not self.local.locked() and self._giving is None:
            self._giving = asyncio.ensure_future(self._give_back())

    async def _give_back(self) -> None:
        """The kept advisory lock found no taker: back to the database."""
        try:
            async with self.local:
                if self._kept:
                    self._kept = False
                    await asyncio.to_thread(self.advisory.release)
        finally:
            self._giving = None

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


class AdvisoryLockManager:
    """Per-mailbox locks across every node on one PostgreSQL database."""

    def __init__(self, engine: Engine, *, on_acquired: Callable[[], None] | None = None) -> None:
        self.engine = engine
        #: Called on the loop right after a lock was taken (the change bus's catch-up).
        self.on_acquired = on_acquired
        self._locks: dict[str, NodeMailboxLock] = {}
        self._by_key: dict[int, NodeMailboxLock] = {}

    def lock(self, name: str) -> NodeMailboxLock:
        lock = self._locks.get(name)
        if lock is None:
            advisory = AdvisoryLock(self.engine, advisory_key("mailbox", name), announce=True)
            lock = self._locks[name] = NodeMailboxLock(asyncio.Lock(), advisory, self._acquired)
            self._by_key[advisory.key] = lock
        return lock

    def unlocked(self, payload: str) -> None:
        """An advisory lock was released on some node (a NOTIFY on ``UNLOCK_CHANNEL``, its
        key as the payload)."""
        try:
            lock = self._by_key.get(int(payload))
        except ValueError:
            return  # not a key
        if lock is not None:
            lock.nudge()

    def mailbox(self, name: str) -> NodeMailboxLock:
        return self.lock(name)

    def _acquired(self) -> None:
        if self.on_acquired is not None:
            self.on_acquired()


#: What ``SyncEngine.mailbox_lock`` hands out and ``locks`` is, on one node or several.
MailboxLock = asyncio.Lock | NodeMailboxLock
LockManagers = AsyncioLockManager | AdvisoryLockManager
