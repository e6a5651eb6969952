"""The in-process ``LockManager``: one ``asyncio.Lock`` per mailbox name.

Lives next to the asyncio driver (the sync engine), not in ``replica/``,
which knows no event loop.  The PostgreSQL implementation (advisory locks)
replaces it for several nodes.
"""

from __future__ import annotations

import asyncio


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
