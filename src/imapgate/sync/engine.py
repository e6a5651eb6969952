"""``SyncEngine``: the sync engine of one upstream account, as the service
layer sees it.

Composes the algorithms (``MailboxSync``), the scheduler and the change
watcher, and owns the mailbox locks (``locks``, a ``LockManager``) that
serialise a folder's sync with the replica updates of the gateway's own
writes.  The write path uses only the public methods here: ``locks`` /
``mailbox_lock``, ``list_lock``, ``request``, ``apply_flags``, ``fill_below``,
``sync_mailbox``, ``sync_list`` and ``spawn``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from typing import Any

from ..protocol import responses as rsp
from ..replica.mailbox import MailboxIndex
from ..replica.replica import Hook, Replica
from ..upstream.connection import UpstreamConnection
from ..upstream.pool import UpstreamPool
from .algorithms import MailboxSync, ProgressFn, selectable
from .locks import AsyncioLockManager, LockManagers, MailboxLock
from .records import FlagReport
from .scheduler import SyncScheduler
from .watcher import ChangeWatcher


class SyncEngine:
    def __init__(
        self,
        pool: UpstreamPool,
        replica: Replica,
        *,
        poll_interval: float = 60.0,
        progress: ProgressFn | None = None,
        locks: LockManagers | None = None,
    ) -> None:
        self.pool = pool
        self.replica = replica
        self.locks = locks or AsyncioLockManager()
        self._list_lock = asyncio.Lock()
        self.last_sync: dict[str, float] = {}
        self.scheduler = SyncScheduler(
            replica,
            self.locks,
            poll_interval=poll_interval,
            sync_locked=self._sync_locked,
            sync_list=self.sync_list,
        )
        self.algorithms = MailboxSync(pool, replica, progress=progress, request=self.scheduler.request)
        self.watcher = ChangeWatcher(pool, replica, self.scheduler)
        self.scheduler.watch = self.watcher

    # -- configuration and state shown elsewhere (dashboard, tests) ----------------------
    @property
    def poll_interval(self) -> float:
        return self.scheduler.poll_interval

    @property
    def progress(self) -> ProgressFn | None:
        return self.algorithms.progress

    @property
    def watch_method(self) -> str:
        """How changes at the hoster are learnt: "NOTIFY", "IDLE" or "none" (yet)."""
        return self.watcher.method

    @property
    def _notify_active(self) -> bool:
        return self.watcher.notify_active

    @property
    def _watcher_conn(self) -> UpstreamConnection | None:
        return self.watcher.conn

    def busiest_folder(self) -> str:
        return self.watcher.busiest_folder()

    # -- life cycle ----------------------------------------------------------------------
    async def initial_sync(self) -> None:
        """List every folder and bring each up to date (start-up, ``imapgate sync``)."""
        await self.sync_list()
        for name in self.replica.names():
            mb = self.replica.get(name)
            if mb is not None and selectable(mb):
                await self.sync_mailbox(name)

    def start(self, *, watch: bool = True) -> None:
        """Start the change watcher and the periodic check.  ``watch=False``: not the
        watcher (a node that is not the sync leader; ``start_watcher`` when it becomes one)."""
        self.scheduler.stopping.clear()
        self.pool.start()
        if watch:
            self.watcher.start()
        self.scheduler.start()

    def start_watcher(self) -> None:
        """Watch the hoster from now on (this node became the sync leader), after a check
        of every folder."""
        self.watcher.start(catch_up=True)

    async def stop_watcher(self) -> None:
        """Stop watching the hoster (this node is no longer the sync leader); the periodic
        check and the syncs this node's own writes ask for go on."""
        await self.watcher.halt()

    async def stop(self) -> None:
        self.scheduler.stopping.set()
        await self.watcher.stop()
        await self.scheduler.stop()

    # -- what the write path uses ---------------------------------------------------------
    def mailbox_lock(self, name: str) -> MailboxLock:
        """The lock of folder ``name`` (``locks.mailbox(name)``), as the lock itself."""
        return self.locks.lock(name)

    @property
    def list_lock(self) -> asyncio.Lock:
        """Held while a folder list is fetched and applied: one at a time, so a LIST
        answered before a folder was created is never applied after one that has it."""
        return self._list_lock

    def request(self, name: str, *, status: rsp.StatusResponse | None = None) -> None:
        """Schedule an incremental sync of ``name`` (debounced, coalesced).

        ``status``: the notification that asked for it; a sync is skipped when its
        HIGHESTMODSEQ is not above what the replica holds."""
        self.scheduler.request(name, status=status)

    def request_list(self) -> None:
        self.scheduler.request_list()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, cancelled when the engine stops (work
        that follows a client's answer; ``coro`` logs its own failures)."""
        self.scheduler.spawn(coro)

    def apply_flags(
        self, mb: MailboxIndex, reports: Mapping[int, FlagReport], *, hook: Hook | None = None
    ) -> tuple[int, ...]:
        """Apply flags upstream reported (a sync, a STORE's answer), older reports
        dropped (see ``MailboxSync.apply_flags``); returns the UIDs that changed."""
        return self.algorithms.apply_flags(mb, reports, hook=hook)

    async def fill_below(self, mb: MailboxIndex, uid: int) -> None:
        """Record every message upstream holds with a UID in [replica UIDNEXT,
        ``uid``) before the gateway records its own APPEND/COPY result ``uid``
        (caller holds the mailbox lock; see ``MailboxSync.fill_below``)."""
        await self.algorithms.fill_below(mb, uid)

    async def sync_list(self, conn: UpstreamConnection | None = None) -> None:
        """Bring the replica's folder list in line with ``LIST "" *``.  ``conn``: list on
        this connection, under ``list_lock`` held by the caller (the connection that just
        created, renamed or deleted a folder: a session always sees its own change)."""
        if conn is not None:
            await self.algorithms.sync_list(conn)
            return
        async with self._list_lock, self.pool.connection() as c:
            await self.algorithms.sync_list(c)

    async def sync_mailbox(self, name: str) -> None:
        async with self.locks.mailbox(name):
            await self._sync_locked(name)

    async def _sync_locked(self, name: str) -> None:
        hint = self.scheduler.take(name)
        mb = self.replica.get(name)
        if mb is None or not selectable(mb):
            return
        async with self.pool.connection(prefer=name) as conn:
            await self.algorithms.sync(conn, mb, hint)
        self.last_sync[name] = time.time()
