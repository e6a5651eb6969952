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
#: short write holds it for milliseconds; a sync for longer, so the pause doubles.
RETRY_FIRST = 0.002
RETRY_MAX = 0.05


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

    def locked(self) -> bool:
        return self.local.locked()

    async def acquire(self) -> bool:
        await self.local.acquire()
        try:
            delay = RETRY_FIRST
            # Polled, never a blocking pg_advisory_lock: a cancelled wait leaves no
            # thread stuck in the database.
            while not await self._try():
                await asyncio.sleep(delay)
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
        try:
            await asyncio.to_thread(self.advisory.release)
        finally:
            self.local.release()

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

    def lock(self, name: str) -> NodeMailboxLock:
        lock = self._locks.get(name)
        if lock is None:
            advisory = AdvisoryLock(self.engine, advisory_key("mailbox", name))
            lock = self._locks[name] = NodeMailboxLock(asyncio.Lock(), advisory, self._acquired)
        return lock

    def mailbox(self, name: str) -> NodeMailboxLock:
        return self.lock(name)

    def _acquired(self) -> None:
        if self.on_acquired is not None:
            self.on_acquired()


#: What ``SyncEngine.mailbox_lock`` hands out and ``locks`` is, on one node or several.
MailboxLock = asyncio.Lock | NodeMailboxLock
LockManagers = AsyncioLockManager | AdvisoryLockManager
