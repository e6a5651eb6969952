"""The audit journal's retention: the running gateway purges old entries.

Every ``PURGE_INTERVAL`` (and once shortly after start) entries older than
``[audit] retention`` are deleted (``team/audit.purge``, in short batches) in a
worker thread, so the event loop never waits for a large purge.  A store that
cannot be written just skips a round: the next one catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..team.audit import purge

log = logging.getLogger("imapgate.audit")

#: Seconds between two purges: retention is counted in days, an hour late is nothing,
#: and each round costs one indexed range query when nothing is due.
PURGE_INTERVAL = 3600.0
#: Seconds after start before the first purge: the start-up sync goes first.
FIRST_PURGE_DELAY = 60.0


class AuditRetention:
    """Purges journal entries older than ``retention`` seconds, periodically."""

    def __init__(
        self,
        engine: Engine,
        retention: float,
        *,
        interval: float = PURGE_INTERVAL,
        first_delay: float = FIRST_PURGE_DELAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.retention = retention
        self.interval = interval
        self.first_delay = first_delay
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def purge_now(self) -> int:
        """One purge round (blocking); how many entries went."""
        return purge(self.engine, self.clock() - self.retention)

    async def purge_once(self) -> int:
        try:
            n = await asyncio.to_thread(self.purge_now)
        except SQLAlchemyError as exc:
            log.warning("audit journal purge skipped: %s", type(exc).__name__)
            return 0
        if n:
            log.info("audit journal: %d entries older than the retention purged", n)
        return n

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="audit-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            await self.purge_once()
            await asyncio.sleep(self.interval)
