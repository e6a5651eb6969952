"""The change watcher: learns of changes made at the hoster and asks the
scheduler for syncs.

One dedicated connection with NOTIFY for all personal folders, or without
NOTIFY an IDLE on the folder most sessions have open (the scheduler checks
the other open folders more often).  Unsolicited responses on pooled
connections (EXISTS, EXPUNGE, FETCH, STATUS, LIST) also ask for a sync; the
pool tells every listener, so the watcher registers as one of them.  When the
pool finds the hoster not answering, the watcher drops its connection and
comes back as soon as the hoster does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..replica.replica import Replica
from ..upstream.connection import UpstreamConnection, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ..upstream.pool import UpstreamPool
from .scheduler import SyncScheduler

log = logging.getLogger("imapgate.sync")

_WATCHED_EVENTS = tuple(
    cmd.NotifyEvent(e) for e in ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName")
)


def _notify_personal(tag: str) -> cmd.Command:
    """NOTIFY for every personal folder: STATUS-style events for all of them."""
    return cmd.NotifySet(tag, (cmd.NotifyGroup("PERSONAL", _WATCHED_EVENTS),))


class ChangeWatcher:
    def __init__(self, pool: UpstreamPool, replica: Replica, scheduler: SyncScheduler) -> None:
        self.pool = pool
        self.replica = replica
        self.scheduler = scheduler
        self.method = "none"
        #: True while the watcher's NOTIFY covers every personal folder: changes
        #: seen on pooled connections (often the gateway's own writes) are then
        #: reported by NOTIFY too and need no sync request of their own.
        self.notify_active = False
        self.conn: UpstreamConnection | None = None
        #: Ends the watcher's IDLE: on stop, or (IDLE fallback) when another
        #: folder became the busiest and should be watched instead.
        self.idle_wake = asyncio.Event()
        #: Set by ``halt``: this watcher ends while the gateway goes on (a node that is no
        #: longer the sync leader).
        self._halted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._catch_up = False
        pool.add_unsolicited_listener(self.on_unsolicited)
        replica.hub.add_interest_listener(self._interest_changed)

    @property
    def watched_folder(self) -> str | None:
        return self.conn.selected if self.conn is not None else None

    def start(self, *, catch_up: bool = False) -> None:
        """``catch_up``: check every folder once watching (a node taking over as sync
        leader: what changed while the old leader was dying was announced to no one)."""
        if self._hoster_down not in self.pool.on_down:
            self.pool.on_down.append(self._hoster_down)
        self._catch_up = catch_up
        self._halted.clear()
        self._task = asyncio.create_task(self._watch_loop(), name="sync-watcher")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def halt(self) -> None:
        """Stop watching, the gateway going on (``start`` watches again): ends the IDLE
        with DONE and logs the connection out, as ``stop`` does."""
        self._halted.set()
        await self.stop()
        self._task = None

    async def stop(self) -> None:
        """Caller has set ``scheduler.stopping``."""
        self.idle_wake.set()
        if self._task is None:
            return
        # Let the watcher end its IDLE with DONE and log out cleanly.
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self._task), 3)
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task

    # -- unsolicited responses -----------------------------------------------------------
    def on_unsolicited(self, conn: UpstreamConnection, resp: rsp.Response) -> None:
        if isinstance(resp, rsp.StatusResponse):
            self.scheduler.request(resp.mailbox, status=resp)
        elif isinstance(resp, rsp.ListResponse):
            self.scheduler.request_list()
        elif (
            isinstance(resp, (rsp.Exists, rsp.Expunge, rsp.Vanished, rsp.FetchResponse))
            and conn.selected is not None
        ):
            if self.notify_active and conn is not self.conn:
                # NOTIFY reports this change too (with its HIGHESTMODSEQ); on a
                # pooled connection it is mostly the gateway's own write coming back.
                return
            self.scheduler.request(conn.selected)

    # -- the watch loop ----------------------------------------------------------------------
    async def _watch_loop(self) -> None:
        stop = _Either(self.scheduler.stopping, self._halted)
        delay = 1.0
        watched_before = self._catch_up
        while not stop.is_set():
            conn: UpstreamConnection | None = None
            try:
                conn = await self.pool.dedicated("watcher")
                self.conn = conn
                if conn.has("NOTIFY"):
                    self.method = "NOTIFY"
                    await conn.check(_notify_personal)
                    self.notify_active = True
                else:
                    self.method = "IDLE"
                    await self._watch_select(conn, self.busiest_folder())
                if watched_before:
                    # Changes made while nobody watched were announced to no one.
                    for name in self.replica.names():
                        self.scheduler.request(name)
                watched_before = True
                delay = 1.0
                while not stop.is_set():
                    if conn.has("IDLE"):
                        self.idle_wake.clear()
                        if stop.is_set():
                            break
                        await conn.idle(self.idle_wake)
                        target = self.busiest_folder()
                        if not self.notify_active and not stop.is_set() and target != conn.selected:
                            await self._watch_select(conn, target)
                            # What changed there while nobody watched it.
                            self.scheduler.request(target)
                    else:
                        await asyncio.sleep(min(self.scheduler.poll_interval, 10))
                        await conn.run(lambda tag: cmd.Noop(tag))
                    if not conn.alive:
                        break
            except (UpstreamUnavailable, UpstreamError) as exc:
                if isinstance(exc, UpstreamTimeout):
                    self.pool.mark_down(str(exc))
                log.warning("change watcher: %s; retrying in %.0f s", exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("change watcher failed; retrying in %.0f s", delay)
            finally:
                self.notify_active = False
                self.conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await self.pool.release_dedicated(conn)
            if not stop.is_set():
                await self._retry_pause(delay)
                delay = min(60.0, delay * 2)

    async def _retry_pause(self, delay: float) -> None:
        """Wait ``delay`` before the watcher tries again, but no longer than until
        the pool has a working connection again when the hoster was down (changes
        made meanwhile must reach IDLE clients within a second of its return)."""
        stop = asyncio.ensure_future(self.scheduler.stopping.wait())
        halted = asyncio.ensure_future(self._halted.wait())
        waits: set[asyncio.Future[Any]] = {stop, halted}
        if self.pool.down:
            waits.add(asyncio.ensure_future(self.pool.wait_up(delay)))
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _hoster_down(self, why: str) -> None:
        """The pool found the hoster not answering: the watcher's connection is as
        dead (an IDLE on it would wait for nothing), so drop it; the watcher
        reconnects as soon as the hoster answers."""
        conn = self.conn
        if conn is not None and conn.alive:
            self.scheduler.spawn(conn.close(f"hoster not answering ({why})"))

    # -- which folder to watch without NOTIFY ------------------------------------------
    def folders_in_use(self) -> dict[str, int]:
        """Folder name -> number of gateway sessions that have it open."""
        counts = self.replica.hub.watched_mailboxes()
        return {mb.name: counts[mb.id] for mb in self.replica.by_name.values() if mb.id in counts}

    def busiest_folder(self) -> str:
        """The folder the IDLE watcher should sit on: the one most sessions have
        open (INBOX when none, or on a tie with INBOX)."""
        in_use = self.folders_in_use()
        best = "INBOX"
        for name, n in sorted(in_use.items()):
            if n > in_use.get(best, 0):
                best = name
        return best

    def _interest_changed(self, mailbox_id: int) -> None:
        conn = self.conn
        if self.method != "IDLE" or self.notify_active or conn is None:
            return
        if self.busiest_folder() != conn.selected:
            self.idle_wake.set()

    async def _watch_select(self, conn: UpstreamConnection, name: str) -> None:
        res = await conn.select(name)
        if not res.ok and name != "INBOX":
            log.warning("change watcher: cannot watch %s (%s); watching INBOX", name, res.tagged.text)
            res = await conn.select("INBOX")
        if not res.ok:
            raise UpstreamError(res)


class _Either:
    """Set when either event is (the watcher's loop ends at a shutdown or a halt)."""

    def __init__(self, a: asyncio.Event, b: asyncio.Event) -> None:
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._a.is_set() or self._b.is_set()
