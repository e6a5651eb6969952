"""When folders are synced: requests debounced and coalesced per mailbox, the
periodic check, and the engine's background tasks.

A request names a folder and, when it came from a notification, the
HIGHESTMODSEQ it announced: a sync is skipped when the replica already has
that (a notification repeated, or the gateway's own write coming back).
Every ``poll_interval`` every folder is checked as a safety net; without
NOTIFY the folders sessions have open but the IDLE watcher does not sit on
are checked every ``ACTIVE_POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from ..protocol import responses as rsp
from ..replica.replica import Replica
from ..store.health import DATABASE_UNREACHABLE, is_database_unreachable
from ..upstream.connection import UpstreamError, UpstreamUnavailable
from .algorithms import selectable
from .locks import LockManagers

log = logging.getLogger("imapgate.sync")

#: Seconds a requested sync waits, so that a burst of notifications (a busy
#: team writing) gives one sync instead of one per change.
DEBOUNCE = 0.05
#: Seconds before a sync that failed because the database was unreachable is asked for again.
DATABASE_RETRY = 2.0
#: Without NOTIFY the watcher IDLEs on one folder (the one most sessions have
#: open); the other folders that sessions have open are checked this often
#: (seconds), the rest every ``poll_interval``.
ACTIVE_POLL_SECONDS = 10.0


class WatchState(Protocol):
    """What the periodic check needs to know of the change watcher."""

    @property
    def notify_active(self) -> bool: ...

    @property
    def watched_folder(self) -> str | None: ...

    def folders_in_use(self) -> dict[str, int]: ...


class SyncScheduler:
    def __init__(
        self,
        replica: Replica,
        locks: LockManagers,
        *,
        poll_interval: float,
        sync_locked: Callable[[str], Awaitable[None]],
        sync_list: Callable[[], Awaitable[None]],
    ) -> None:
        self.replica = replica
        self.locks = locks
        self.poll_interval = poll_interval
        self._sync_locked = sync_locked
        self._sync_list = sync_list
        #: Set by the engine once the watcher exists.
        self.watch: WatchState | None = None
        self.stopping = asyncio.Event()
        self._scheduled: set[str] = set()
        self._list_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        #: Highest HIGHESTMODSEQ announced for a mailbox since its last sync began.
        self._hints: dict[str, int] = {}
        #: Mailboxes with a sync request that says nothing about what changed.
        self._blind: set[str] = set()

    # -- requests ----------------------------------------------------------------------
    def request(self, name: str, *, status: rsp.StatusResponse | None = None) -> None:
        """Schedule an incremental sync of ``name`` (debounced, coalesced).

        ``status``: the notification that asked for it; a sync is skipped when its
        HIGHESTMODSEQ is not above what the replica holds."""
        if self.stopping.is_set():
            return
        highest = status.items.get("HIGHESTMODSEQ") if status is not None else None
        if highest is None or status is None or self._status_disagrees(name, status):
            self._blind.add(name)
        else:
            self._hints[name] = max(self._hints.get(name, 0), highest)
        if name in self._scheduled:
            return
        self._scheduled.add(name)
        self.spawn(self._run_requested(name))

    async def _request_later(self, name: str) -> None:
        await asyncio.sleep(DATABASE_RETRY)
        self.request(name)

    def request_list(self) -> None:
        if self._list_scheduled or self.stopping.is_set():
            return
        self._list_scheduled = True
        self.spawn(self._run_list())

    def take(self, name: str) -> int:
        """A sync of ``name`` begins: what was announced up to now is what it
        covers (requests from here on schedule the next one).  Returns the
        highest HIGHESTMODSEQ announced (0: none)."""
        self._scheduled.discard(name)
        self._blind.discard(name)
        return self._hints.pop(name, 0)

    def _status_disagrees(self, name: str, status: rsp.StatusResponse) -> bool:
        """True when STATUS shows what HIGHESTMODSEQ alone might not: another
        UIDVALIDITY, more mail than the replica has."""
        mb = self.replica.get(name)
        if mb is None or not mb.synced:
            return True
        items = status.items
        return (
            items.get("UIDVALIDITY", mb.uidvalidity) != mb.uidvalidity
            or items.get("UIDNEXT", 0) > mb.uidnext
            or items.get("MESSAGES", mb.exists) != mb.exists
        )

    def _nothing_new(self, name: str) -> bool:
        """Every request since the last sync came with a HIGHESTMODSEQ the
        replica already has (a notification repeated, or for changes seen)."""
        mb = self.replica.get(name)
        return (
            mb is not None
            and mb.synced
            and name not in self._blind
            and 0 < self._hints.get(name, 0) <= mb.upstream_modseq
        )

    # -- tasks ----------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; it is cancelled when the engine stops.
        For work that follows a client's answer (e.g. \\Seen set at the hoster
        after a FETCH): the caller must log its own failures."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        self.stopping.clear()
        self._poller = asyncio.create_task(self._poll_loop(), name="sync-poller")

    async def stop(self) -> None:
        self.stopping.set()
        tasks = [self._poller, *self._tasks]
        for t in tasks:
            if t is not None:
                t.cancel()
        for t in tasks:
            if t is not None:
                with contextlib.suppress(BaseException):
                    await t

    async def _run_requested(self, name: str) -> None:
        began = False
        try:
            await asyncio.sleep(DEBOUNCE)
            async with self.locks.mailbox(name):
                began = True  # from here the request is consumed (no await before)
                if self._nothing_new(name):
                    self._scheduled.discard(name)
                    self._hints.pop(name, None)
                    return
                await self._sync_locked(name)
        except (UpstreamUnavailable, UpstreamError) as exc:
            log.warning("sync of %s failed: %s", name, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_database_unreachable(exc):
                log.exception("sync of %s failed", name)
            else:  # PostgreSQL restarting: the sync is owed (it may heal a failed commit)
                log.warning("sync of %s deferred: %s", name, DATABASE_UNREACHABLE)
                self.spawn(self._request_later(name))
        finally:
            if not began:
                # Cancelled before it began: the request must not block later ones.
                self._scheduled.discard(name)

    async def _run_list(self) -> None:
        try:
            self._list_scheduled = False
            await self._sync_list()
            for name in self.replica.names():
                mb = self.replica.get(name)
                if mb is not None and not mb.synced and selectable(mb):
                    self.request(name)
        except (UpstreamUnavailable, UpstreamError) as exc:
            log.warning("folder list sync failed: %s", exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("folder list sync failed")

    # -- the periodic check ----------------------------------------------------------------
    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.poll_interval
        while not self.stopping.is_set():
            tick = min(self.poll_interval, ACTIVE_POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), tick)
            if self.stopping.is_set():
                return
            watch = self.watch
            if loop.time() >= next_full:
                next_full = loop.time() + self.poll_interval
                self.request_list()
                self.replica.reload_seen_modes()
                for name in self.replica.names():
                    self.request(name)
            elif watch is not None and not watch.notify_active:
                # Folders in use but not watched by IDLE: checked more often.
                watched = watch.watched_folder
                for name in watch.folders_in_use():
                    if name != watched:
                        self.request(name)
