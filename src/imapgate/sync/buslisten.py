"""The asyncio driver of the change bus between nodes (``replica/logbus.py``).

A thread of its own holds a psycopg connection in autocommit with ``LISTEN
imapgate_changes`` and, on each notification, wakes the loop; the loop then
reads the change log (``LogChangeBus.poll``) and applies the other nodes'
change sets to the replica (``replica/remote.py``) -- on the loop, where every
replica change runs.  The loop also polls every ``POLL_INTERVAL`` without a
notification, and at once after the LISTEN connection came back: a
notification lost with a connection is never a change lost, because the log,
not the notification, is what is read.

The same connection listens on the channels others ``subscribe`` to, whose
payloads go to their handler on the loop: ``imapgate_unlocked`` (``store/lock.py``:
a folder lock released on some node, so a task of this node waiting for it tries
again at once) and ``imapgate_logins`` (``gateway/nodes.py``: login outcomes for
the throttle).  Handlers only queue work, as the bus's listeners do.

While the LISTEN connection is down (``connected`` False) the node goes on
serving what it has and polls; a poll that fails is logged once per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import exc as sa_exc

from ..replica.logbus import CHANNEL, LogChangeBus

log = logging.getLogger("imapgate.bus")

#: Seconds between two reads of the change log without a notification (the safety net).
POLL_INTERVAL = 1.0
#: Seconds before a read of the change log that failed is tried again (a pooled connection
#: that died with a database restart fails once; the next one connects anew).
RETRY_FAILED_POLL = 0.25
#: Seconds the listening thread waits for a notification before it checks whether to stop.
LISTEN_SLICE = 0.5
#: Longest pause between two attempts to reconnect the LISTEN connection (seconds).
RECONNECT_MAX = 5.0


def libpq_url(url: str) -> str:
    """The store URL as libpq reads it (no SQLAlchemy driver suffix)."""
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgresql+") else url


class BusListener:
    def __init__(self, bus: LogChangeBus, url: str, *, poll_interval: float = POLL_INTERVAL) -> None:
        self.bus = bus
        self.url = libpq_url(url)
        self.poll_interval = poll_interval
        self.connected = False
        #: LISTEN connections made (the first one and each reconnect).
        self.connections = 0
        self.notifications = 0
        self._stop = threading.Event()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: Handlers of the other channels this connection listens on (``subscribe``).
        self._channels: dict[str, Callable[[str], None]] = {}

    def subscribe(self, channel: str, fn: Callable[[str], None]) -> None:
        """``fn(payload)`` on the loop for each NOTIFY on ``channel`` (before ``start``)."""
        self._channels[channel] = fn

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._listen, name="imapgate-bus-listen", daemon=True)
        self._thread.start()
        self._task = asyncio.create_task(self._run(), name="imapgate-bus-poll")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, LISTEN_SLICE * 4)

    # -- the thread -------------------------------------------------------------------
    def _wake_loop(self) -> None:
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                self._loop.call_soon_threadsafe(self._wake.set)

    def _own(self, payload: str) -> bool:
        """A NOTIFY of this node's own change: nothing to read (its rows are skipped anyway)."""
        try:
            return self.bus.is_own(int(payload))
        except ValueError:
            return False

    def _hand(self, fn: Callable[[str], None], payload: str) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                self._loop.call_soon_threadsafe(fn, payload)

    def _listen(self) -> None:
        pause = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                    for channel in (CHANNEL, *self._channels):
                        conn.execute(f"LISTEN {channel}")
                    if not self.connected:
                        log.info("change bus: listening for other nodes' changes")
                    self.connected, pause = True, 0.1
                    self.connections += 1
                    self._wake_loop()  # catch up on whatever happened while not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_SLICE):
                            handler = self._channels.get(note.channel)
                            if handler is not None:
                                self._hand(handler, note.payload)
                                continue
                            self.notifications += 1
                            if not self._own(note.payload):
                                self._wake_loop()
            except psycopg.Error as exc:
                if self.connected:
                    log.warning("change bus: lost the connection to PostgreSQL (%s); reconnecting", exc)
                self.connected = False
                self._stop.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX)
        self.connected = False

    # -- the loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            pause = min(RETRY_FAILED_POLL, self.poll_interval) if self._failing else self.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()
            self.poll()

    def poll(self) -> None:
        try:
            self.bus.flush()  # this node's committed change sets that no event announced
            self.bus.poll()
        except sa_exc.SQLAlchemyError as exc:
            if not self._failing:
                log.warning("change bus: cannot read the change log (%s); retrying", exc.__class__.__name__)
            self._failing = True
            return
        if self._failing:
            log.info("change bus: reading the change log again")
        self._failing = False
