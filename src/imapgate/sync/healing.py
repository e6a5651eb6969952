"""The store's heal: once it takes writes again, write out what the replica
kept in memory and resync those folders from upstream.

While the store is unwritable (``store.health``), the replica goes on
following what the hoster did; the repository records which mailboxes'
rows fell behind and the writes that rode on failed commits (journal
entries).  Every ``PROBE_SECONDS`` a tiny write probes the store; when it
succeeds, those mailboxes are written as memory holds them and the writes
replayed (one transaction, on the event loop: no session can change them
meanwhile), the store counts as writable again, and each folder is synced
from upstream, which is the truth the replica follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..replica.replica import Replica
from ..store.health import is_storage_failure
from ..upstream.connection import UpstreamError, UpstreamUnavailable
from .engine import SyncEngine

log = logging.getLogger("imapgate.store")

#: Seconds between probes of an unwritable store: a freed disk is noticed
#: within this time, and a probe is one tiny transaction.
PROBE_SECONDS = 5.0


class StoreHealer:
    def __init__(self, replica: Replica, sync: SyncEngine, *, interval: float = PROBE_SECONDS) -> None:
        self.replica = replica
        self.sync = sync
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="store-healer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.replica.health.writable:
                continue
            try:
                await self.heal()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store heal failed; trying again in %.0f s", self.interval)

    async def heal(self) -> int | None:
        """One attempt: the number of folders healed, or None while the store
        still takes no writes (0: it was writable)."""
        health = self.replica.health
        if health.writable:
            return 0
        if not self.replica.repository.probe():
            return None
        dirty, pending = health.take()
        try:
            names = self.replica.heal(dirty, pending)
        except Exception as exc:
            health.restore(dirty, pending)
            if is_storage_failure(exc):
                return None
            raise
        health.mark_writable()
        for name in names:
            try:
                await self.sync.sync_mailbox(name)
            except (UpstreamError, UpstreamUnavailable) as exc:
                log.info("heal: sync of %s deferred (%s)", name, exc)
                self.sync.request(name)
        log.warning("store writable again, healed %d folders", len(names))
        return len(names)
