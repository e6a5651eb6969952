"""A bounded pool of upstream connections shared by every client session.

Hosters cap connections per account (often 10-20, Dovecot's default is 10 per
user and address), so the pool never holds more than ``max_connections``,
whatever the number of team members: callers wait for a free connection.
One of them may be taken for good by the change watcher (NOTIFY/IDLE).

Connections keep their selected folder between operations, and SELECT is the
most expensive thing a hoster does for us (a big folder: tens of ms).  So an
operation on a folder gets an idle connection that has it selected; when there
is none but one is busy, it waits a little (``MATCH_WAIT``) for that one before
it re-selects another, and a re-selected connection is preferably one whose
folder has another connection too.  A released connection goes straight to
the first waiter that needs no SELECT for it (or whose folder has no
connection at all, or who waited ``STARVE_AFTER``), else to the first it suits.

A reused connection gets a NOOP only when the operation names a UID it has not
been told about (Dovecot silently skips such UIDs) or when it sat unused for
``CHECK_AFTER_IDLE`` (it may have died unnoticed: if the NOOP fails, the next
connection is tried).

A connection that breaks is dropped; the next caller opens a new one.  When
connecting fails, the pool backs off (1 s doubling to 60 s) and fails fast in
the meantime, so a dead hoster answers every client with ``NO [UNAVAILABLE]``
at once instead of hanging them.

A hoster can also stop answering without closing anything (a frozen process,
a dead network path): a command then times out after ``command_timeout``
without progress, and idle connections are probed with NOOP every
``probe_interval`` (answer within ``PROBE_TIMEOUT``).  Either marks the hoster
down (the same fail-fast back-off, and ``on_down`` listeners such as the change
watcher drop their connections).  While it is down, ``maintain`` tries one new
connection every ``RECOVERY_PROBE_SECONDS`` whatever the back-off, so work
resumes within about a second of the hoster answering again (``wait_up``).

Several nodes on one PostgreSQL share one budget (``leases``, store/leases.py): a new
connection first takes a lease (waiting for one, bounded: then ``NO [UNAVAILABLE]``, the
hoster does not count as down for it), the lease goes back when the connection closes, and
connections idle for the leases' ``idle_after`` are closed so other nodes get the budget.
A caller waiting for a lease also queues for this pool's connections (out on loan, or
being opened by other callers) and takes whichever comes first (a node at its fair share
gets no lease while another node waits, so its callers are served by its own
connections).  While another node waits, only the connections above this node's share
(``leases.surplus``) are closed, after their operation or when idle; the others stay open
with their folder selected.
Alone (SQLite) there are no leases and nothing of this happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import UpstreamConfig
from ..protocol import commands as cmd
from ..protocol import responses as rsp
from .connection import (
    Unsolicited,
    UpstreamBusy,
    UpstreamConnection,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

log = logging.getLogger("imapgate.upstream.pool")

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
#: A pooled connection unused for this long may have died unnoticed (a NAT or
#: firewall dropping it silently): it gets a NOOP before it is lent again.
CHECK_AFTER_IDLE = 10.0
#: How long a probing NOOP may take before the hoster counts as not answering:
#: a NOOP is answered in milliseconds.
PROBE_TIMEOUT = 5.0
#: While the hoster counts as down, one connection attempt this often.
RECOVERY_PROBE_SECONDS = 1.0
#: Seconds an operation waits for a busy connection that has its folder selected
#: before it re-selects another one (a SELECT costs more than most operations).
MATCH_WAIT = 0.03
#: Seconds after which a waiting caller is served first, whatever it must select.
STARVE_AFTER = 0.5
#: How often background work (the search indexer) looks whether the pool is free for it.
QUIET_POLL = 0.02


class Leases(Protocol):
    """The connection budget shared with other nodes (``store.leases.UpstreamLeases``)."""

    #: Seconds after which an idle connection is closed to give its lease back.
    idle_after: float

    @property
    def surplus(self) -> int:
        """Leases above this node's share while another node waits: give that many back."""
        ...

    async def acquire(self, dedicated: bool = False) -> int:
        """A lease (its slot), waiting a bounded time; an exception when none came.
        ``dedicated``: for a connection taken out of the pool for good."""
        ...

    def release_soon(self, slot: int) -> None: ...

    async def watch(self, then: Callable[[], Awaitable[None]] | None = None) -> None:
        """Keep the share and whether another node waits up to date until cancelled,
        calling ``then`` after each look."""
        ...


@dataclass(eq=False)
class _Waiter:
    """A caller waiting for a connection (or for a free slot to open one: None)."""

    want: str | None
    #: Until then only a connection with ``want`` selected suits it.
    patient_until: float
    #: When the caller first queued (kept when it queues again after its patience).
    since: float
    future: asyncio.Future[UpstreamConnection | None]
    #: May be handed a free slot to open a connection (False: a connection only).
    slot_ok: bool = True

    def suits(self, conn: UpstreamConnection, now: float) -> bool:
        return self.want is None or conn.selected == self.want or now >= self.patient_until

    def first_choice(self, conn: UpstreamConnection, now: float, holders: Counter[str | None]) -> bool:
        """Served before the others: needs no SELECT for ``conn``; or no connection
        has its folder and ``conn``'s folder keeps another one (re-selecting it
        costs no one a SELECT later); or it waited too long already (no one
        starves behind a stream of callers with better matches)."""
        return (
            self.want is None
            or conn.selected == self.want
            or (holders[self.want] == 0 and (conn.selected is None or holders[conn.selected] > 0))
            or now - self.since >= STARVE_AFTER
        )


def _nothing() -> None:
    """No lease to give back (one node alone)."""


class UpstreamPool:
    def __init__(
        self,
        config: UpstreamConfig,
        *,
        on_unsolicited: Unsolicited | None = None,
        connection_factory: Callable[..., UpstreamConnection] = UpstreamConnection,
        leases: Leases | None = None,
    ) -> None:
        self.config = config
        self.leases = leases
        self.max_connections = config.max_connections
        #: Called for every unsolicited response on any pooled or dedicated
        #: connection (the change watcher, later others): several parts may
        #: listen, so nobody overwrites another's callback.
        self._unsolicited_listeners: list[Unsolicited] = []
        if on_unsolicited is not None:
            self._unsolicited_listeners.append(on_unsolicited)
        self._factory = connection_factory
        self._idle: list[UpstreamConnection] = []
        self._lent: set[UpstreamConnection] = set()
        #: Lent connections whose selected folder went away meanwhile (see drop_selected).
        self._stale: set[UpstreamConnection] = set()
        self._waiters: list[_Waiter] = []
        self._open = 0  # connections open or being opened (idle, lent, dedicated)
        self._backoff = 0.0
        self._down_until = 0.0
        self.last_error: str | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.enabled: frozenset[str] = frozenset()
        #: The hoster's greeting text, from the last connection opened.
        self.greeting = ""
        self._serial = 0
        self._closed = False
        self.stats_opened = 0
        self.peak_open = 0
        #: The hoster counts as down: a connect failed or it stopped answering.
        self.down = False
        self._up = asyncio.Event()
        #: Called with the reason when the hoster is found not answering.
        self.on_down: list[Callable[[str], None]] = []
        self._maintainer: asyncio.Task[None] | None = None
        self._lease_watch: asyncio.Task[None] | None = None
        #: Connections being logged out to give their lease to another node (their lease
        #: still counts as held until they are closed).
        self._yielding = 0

    def add_unsolicited_listener(self, fn: Unsolicited) -> None:
        """Call ``fn(conn, response)`` for every unsolicited response from now on."""
        if fn not in self._unsolicited_listeners:
            self._unsolicited_listeners.append(fn)

    def remove_unsolicited_listener(self, fn: Unsolicited) -> None:
        with contextlib.suppress(ValueError):
            self._unsolicited_listeners.remove(fn)

    def _on_unsolicited(self, conn: UpstreamConnection, resp: rsp.Response) -> None:
        # A copy: a listener may remove itself while being called.
        for fn in list(self._unsolicited_listeners):
            fn(conn, resp)

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def in_use(self) -> int:
        """Connections lent to an operation right now (metrics, health)."""
        return len(self._lent)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    def _check_up(self, force: bool = False) -> None:
        """Fail fast while backing off from a failed connect."""
        now = time.monotonic()
        if now < self._down_until and not force:
            raise UpstreamUnavailable(
                f"upstream unavailable ({self.last_error}); next attempt in {self._down_until - now:.0f} s"
            )

    async def _new_connection(
        self,
        name: str,
        *,
        force: bool = False,
        dedicated: bool = False,
        lease: Callable[[], None] | None = None,
    ) -> UpstreamConnection:
        """Open a connection, with a lease taken now (or ``lease``, already taken)."""
        try:
            self._check_up(force)
        except UpstreamUnavailable:
            if lease is not None:
                lease()
            raise
        release = lease if lease is not None else await self._lease(dedicated)
        self._serial += 1
        conn = self._factory(self.config, name=f"{name}-{self._serial}", on_unsolicited=self._on_unsolicited)
        conn.on_closed = release
        try:
            await conn.connect()
        except UpstreamUnavailable as exc:
            release()
            self._set_down(str(exc))
            log.warning("upstream connect failed: %s (backing off %.0f s)", exc, self._backoff)
            raise
        except BaseException:
            release()
            raise
        if self.down:
            log.info("upstream answers again")
        self._backoff = 0.0
        self._down_until = 0.0
        self.down = False
        self._up.set()
        self.last_error = None
        self.capabilities = conn.capabilities
        self.enabled = conn.enabled
        self.greeting = getattr(conn, "greeting", "")
        self.stats_opened += 1
        return conn

    async def _lease(self, dedicated: bool = False) -> Callable[[], None]:
        """Take a lease for one new connection; the returned function gives it back
        (once, however often it is called: the slot may be someone else's by then)."""
        leases = self.leases
        if leases is None:
            return _nothing
        try:
            slot = await leases.acquire(dedicated)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # all taken (or the database failed): not the hoster's fault
            raise UpstreamBusy(f"no upstream connection free: {exc}") from None
        given = False

        def release() -> None:
            nonlocal given
            if not given:
                given = True
                leases.release_soon(slot)

        return release

    async def _lease_or_handover(self, want: str | None) -> UpstreamConnection | Callable[[], None]:
        """Wait for a lease and, at the same time, for one of this pool's connections out on
        loan: a connection handed over (already lent to the caller) or the lease's release
        function, whichever came first (the other is given back)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(want, 0.0, time.monotonic(), loop.create_future(), slot_ok=False)
        self._waiters.append(waiter)
        lease = asyncio.ensure_future(self._lease())
        try:
            either: list[asyncio.Future[Any]] = [lease, waiter.future]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._drop_lease(lease)
            self._abandon(waiter)
            raise
        fut = waiter.future
        if fut.done() and not fut.cancelled():
            self._drop_lease(lease)
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            got = fut.result()  # UpstreamUnavailable when the pool closed
            assert got is not None  # never handed a slot (slot_ok False)
            return got
        self._abandon(waiter)
        return lease.result()  # UpstreamBusy when no lease came within the wait

    @staticmethod
    def _drop_lease(lease: asyncio.Future[Callable[[], None]]) -> None:
        """Give back the lease ``lease`` got or will get (it is not needed any more)."""

        def drop(job: asyncio.Future[Callable[[], None]]) -> None:
            if not job.cancelled() and job.exception() is None:
                job.result()()

        if lease.done():
            drop(lease)
        else:
            lease.cancel()
            lease.add_done_callback(drop)

    async def _close_idle(self, older_than: float) -> None:
        """Log out idle connections unused for ``older_than`` seconds (their leases go back),
        and the least recently used ones above this node's share while another node waits."""
        limit = time.monotonic() - older_than
        idle = sorted(self._idle, key=lambda c: c.last_used)
        over = self._surplus()
        await self._logout_idle([c for i, c in enumerate(idle) if c.last_used < limit or i < over])

    async def _give_surplus(self) -> None:
        """Another node waits and this one is above its share: idle connections go now
        (lent ones after their operation, in ``_release``)."""
        if self._surplus() > 0 and self._idle and not self._closed:
            idle = sorted(self._idle, key=lambda c: c.last_used)
            await self._logout_idle(idle[: self._surplus()])

    def _surplus(self) -> int:
        """Connections to give back now: leases above this node's share while another node
        waits, less those on their way out already."""
        if self.leases is None:
            return 0
        return max(0, self.leases.surplus - self._yielding)

    async def _logout_idle(self, conns: list[UpstreamConnection]) -> None:
        """Take ``conns`` (idle ones) out of the pool and log them out; their slots are free."""
        if not conns:
            return
        self._idle = [c for c in self._idle if c not in conns]
        self._open -= len(conns)
        self._wake_slot()
        self._yielding += len(conns)  # their leases go back once they are closed
        try:
            await asyncio.gather(*(c.logout() for c in conns), return_exceptions=True)
        finally:
            self._yielding -= len(conns)

    def _set_down(self, why: str) -> None:
        self.last_error = why
        self._backoff = min(BACKOFF_MAX, self._backoff * 2 if self._backoff else BACKOFF_START)
        self._down_until = time.monotonic() + self._backoff
        self.down = True
        self._up.clear()

    def mark_down(self, why: str) -> None:
        """The hoster stopped answering (a command or a probe timed out): fail fast
        from now on, and tell the listeners (their connections are as dead)."""
        was_down = self.down
        self._set_down(why)
        if not was_down:
            log.warning("upstream not answering: %s", why)
            for listener in list(self.on_down):
                try:
                    listener(why)
                except Exception:
                    log.exception("on_down listener failed")

    async def wait_up(self, timeout: float) -> bool:
        """Wait until the hoster counts as up (at most ``timeout`` s)."""
        if not self.down:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        """Start probing idle connections (and a down hoster)."""
        if self._maintainer is None and not self._closed:
            self._maintainer = asyncio.create_task(self._maintain(), name="pool-maintainer")
        if self.leases is not None and self._lease_watch is None and not self._closed:
            self._lease_watch = asyncio.create_task(self.leases.watch(self._give_surplus), name="lease-watch")

    async def _maintain(self) -> None:
        while not self._closed:
            await asyncio.sleep(RECOVERY_PROBE_SECONDS)
            try:
                if self.down:
                    await self._recover()
                    continue
                if self.leases is not None:
                    await self._close_idle(self.leases.idle_after)
                if self.config.probe_interval > 0:
                    await self._probe_idle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pool maintenance failed")

    async def _recover(self) -> None:
        """One connection attempt, whatever the back-off; kept in the pool on success."""
        if self._open >= self.max_connections:
            return
        self._open += 1
        self.peak_open = max(self.peak_open, self._open)
        try:
            conn = await self._new_connection("pool", force=True)
        except UpstreamUnavailable:
            self._open -= 1
            self._wake_slot()
            return
        except BaseException:
            self._open -= 1
            self._wake_slot()
            raise
        self._give(conn)

    async def _probe_idle(self) -> None:
        """NOOP the idle connections unused for ``probe_interval``; one that does not
        answer within ``PROBE_TIMEOUT`` means the hoster does not answer."""
        limit = time.monotonic() - self.config.probe_interval
        for conn in [c for c in self._idle if c.last_used < limit]:
            if conn not in self._idle or self._closed:
                continue
            self._idle.remove(conn)
            self._lent.add(conn)
            try:
                await conn.check(lambda tag: cmd.Noop(tag), timeout=PROBE_TIMEOUT)
            except UpstreamTimeout as exc:
                self.mark_down(f"no answer to NOOP within {PROBE_TIMEOUT:.0f} s ({exc})")
            except (UpstreamUnavailable, UpstreamError) as exc:
                log.info("%s: dropped a dead pooled connection (%s)", conn.name, exc)
                await conn.close(str(exc))
            finally:
                await self._release(conn)
            if self.down:
                return

    async def _acquire(self, want: str | None) -> tuple[UpstreamConnection, bool]:
        """A connection, preferably with ``want`` selected, and whether it was lent
        before (False: opened just now)."""
        deadline = time.monotonic() + MATCH_WAIT if want is not None else 0.0
        since = 0.0
        while True:
            if self._closed:
                raise UpstreamUnavailable("gateway is shutting down")
            self._prune()
            # Waiting for a match is worth it only while one is out on loan.
            strict = time.monotonic() < deadline and any(c.selected == want for c in self._lent)
            conn = self._take_idle(want, strict)
            if conn is not None:
                self._lent.add(conn)
                return conn, True
            if self._open < self.max_connections:
                self._open += 1
                self.peak_open = max(self.peak_open, self._open)
                break
            since = since or time.monotonic()
            timed_out, got = await self._wait(want, deadline if strict else 0.0, since)
            if timed_out:
                deadline = 0.0
                continue
            if got is not None:
                return got, True
            break  # a slot was freed for us (counted in _open already)
        lease: Callable[[], None] | None = None
        if self.leases is not None:
            # Maybe no lease comes (this node is at its share, or the budget is spent): one
            # of our own connections will -- lent ones, or ones other callers open now.
            try:
                self._check_up()
                got_or_lease = await self._lease_or_handover(want)
            except BaseException:
                self._open -= 1
                self._wake_slot()
                raise
            if isinstance(got_or_lease, UpstreamConnection):
                self._open -= 1
                self._wake_slot()
                return got_or_lease, True
            lease = got_or_lease
        try:
            conn = await self._new_connection("pool", lease=lease)
        except BaseException:
            self._open -= 1
            self._wake_slot()
            raise
        self._lent.add(conn)
        return conn, False

    def _prune(self) -> None:
        dead = [c for c in self._idle if not c.alive]
        if dead:
            self._idle = [c for c in self._idle if c.alive]
            for _ in dead:
                self._open -= 1
                self._wake_slot()

    def _take_idle(self, want: str | None, strict: bool) -> UpstreamConnection | None:
        """An idle connection with ``want`` selected.  Failing that (and unless
        ``strict``), the one whose folder is missed least: selected on another
        connection too, or none at all; the most recently used among equals."""
        if want is not None:
            for i, c in enumerate(self._idle):
                if c.selected == want:
                    return self._idle.pop(i)
        if strict or not self._idle:
            return None
        counts = Counter(c.selected for c in (*self._idle, *self._lent))
        best = max(
            range(len(self._idle)),
            key=lambda i: (self._idle[i].selected is None or counts[self._idle[i].selected] > 1, i),
        )
        return self._idle.pop(best)

    async def _wait(
        self, want: str | None, patient_until: float, since: float = 0.0
    ) -> tuple[bool, UpstreamConnection | None]:
        """Queue for a connection: (False, it), (False, None) for a slot to open one,
        or (True, None) when ``patient_until`` passed without a match."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(want, patient_until, since or time.monotonic(), loop.create_future())
        self._waiters.append(waiter)
        timeout = max(0.0, patient_until - time.monotonic()) if patient_until else None
        try:
            await asyncio.wait({waiter.future}, timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        if waiter.future.done():
            return False, waiter.future.result()  # UpstreamUnavailable when the pool closed
        self._abandon(waiter)
        return True, None

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter gives up: whatever it was handed meanwhile goes to the next."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        fut = waiter.future
        if not fut.done():
            fut.cancel()
            return
        if fut.cancelled() or fut.exception() is not None:
            return
        got = fut.result()
        if got is None:
            self._open -= 1
            self._wake_slot()
        else:
            self._lent.discard(got)
            self._give(got)

    def _give(self, conn: UpstreamConnection) -> None:
        """Hand a free, alive connection to the first waiter it suits (those that
        need no SELECT for it first), or keep it idle."""
        now = time.monotonic()
        pending = [w for w in self._waiters if not w.future.done()]
        # First come, first served among those that need no SELECT for it (or
        # waited long enough), then among those it suits.
        holders = Counter(c.selected for c in (*self._idle, *self._lent))
        chosen = next((w for w in pending if w.first_choice(conn, now, holders)), None)
        if chosen is None:
            chosen = next((w for w in pending if w.suits(conn, now)), None)
        if chosen is None:
            self._idle.append(conn)
            return
        self._waiters.remove(chosen)
        self._lent.add(conn)
        chosen.future.set_result(conn)

    def _wake_slot(self) -> None:
        """A slot is free (a connection went away): the first waiter may open one."""
        while self._open < self.max_connections:
            waiter = next((w for w in self._waiters if not w.future.done() and w.slot_ok), None)
            if waiter is None:
                return
            self._waiters.remove(waiter)
            self._open += 1
            self.peak_open = max(self.peak_open, self._open)
            waiter.future.set_result(None)

    async def _release(self, conn: UpstreamConnection) -> None:
        self._lent.discard(conn)
        if conn in self._stale:
            # Its folder was deleted or renamed while it was lent: never reuse it.
            self._stale.discard(conn)
            self._open -= 1
            self._wake_slot()
            await (conn.logout() if conn.alive else conn.close())
            return
        surplus = conn.alive and not self._closed and self._surplus() > 0
        if conn.alive and not self._closed and not surplus:
            self._give(conn)
            return
        # Closed, dead, or above this node's share while another node waits: it goes back.
        self._open -= 1
        self._wake_slot()
        if not conn.alive:
            await conn.close()
            return
        if surplus:
            log.debug("%s: closed to give its lease to another node (above this node's share)", conn.name)
            self._yielding += 1
        try:
            await conn.logout()
        finally:
            if surplus:
                self._yielding -= 1

    @contextlib.asynccontextmanager
    async def connection(
        self, mailbox: str | None = None, *, need_uid: int | None = None, prefer: str | None = None
    ) -> AsyncIterator[UpstreamConnection]:
        """A connection for one operation, with ``mailbox`` selected when given.

        ``need_uid``: the highest UID the operation names in ``mailbox`` (None: it
        needs to see every message there, e.g. a search for new mail).  ``prefer``
        (without ``mailbox``): lend a connection that has this mailbox selected
        if one is free, without selecting anything (the sync engine's choice)."""
        conn = await self._ready(mailbox, need_uid, prefer)
        try:
            yield conn
        except UpstreamTimeout as exc:
            self.mark_down(str(exc))
            raise
        except asyncio.CancelledError:
            # A command may be half-sent: this connection's state is unknown.
            await conn.close("operation cancelled")
            raise
        finally:
            await self._release(conn)

    def quiet(self) -> bool:
        """No caller waits, and an idle connection is free (or none is open at all and a
        slot is: background work does not make the pool grow while clients use it)."""
        if any(not w.future.done() for w in self._waiters):
            return False
        return bool(self._idle) or (not self._lent and self._open < self.max_connections)

    @contextlib.asynccontextmanager
    async def background_connection(
        self, mailbox: str, *, need_uid: int | None = None
    ) -> AsyncIterator[UpstreamConnection]:
        """A connection for work that must never delay a client (the search indexer):
        taken only while the pool is quiet, for one short operation; the caller holds
        no more than one at a time."""
        while not self.quiet():
            if self._closed:
                raise UpstreamUnavailable("gateway is shutting down")
            await asyncio.sleep(QUIET_POLL)
        async with self.connection(mailbox, need_uid=need_uid) as conn:
            yield conn

    async def _ready(
        self, mailbox: str | None, need_uid: int | None, prefer: str | None
    ) -> UpstreamConnection:
        """Acquire a connection and prepare it.  A reused connection that turns out
        dead is dropped and the next one tried (SELECT and NOOP are safe to repeat);
        a failure on a connection opened just now is the hoster's answer."""
        while True:
            conn, reused = await self._acquire(mailbox or prefer)
            try:
                await self._prepare(conn, mailbox, need_uid, reused)
            except UpstreamUnavailable:
                await conn.close(conn.closed_reason or "check failed")
                await self._release(conn)
                if not reused:
                    raise
                log.info("%s: dropped a dead pooled connection (%s)", conn.name, conn.closed_reason)
                continue
            except asyncio.CancelledError:
                await conn.close("operation cancelled")
                await self._release(conn)
                raise
            except BaseException:
                await self._release(conn)
                raise
            return conn

    async def _prepare(
        self, conn: UpstreamConnection, mailbox: str | None, need_uid: int | None, reused: bool
    ) -> None:
        stale = reused and time.monotonic() - conn.last_used > CHECK_AFTER_IDLE
        if mailbox is not None and conn.selected != mailbox:
            res = await conn.select(mailbox)
            if not res.ok:
                raise UpstreamError(res)
        elif mailbox is not None and (stale or need_uid is None or need_uid > conn.known_uid):
            # A session learns of messages added by other sessions only when it
            # runs a command (RFC 9051 §7): until then Dovecot's UID FETCH, UID
            # STORE and UID SEARCH silently skip UIDs it has not announced, so a
            # body fetched here would come back empty and a flag change would be
            # lost.  NOOP brings this connection's view up to date first, but only
            # when the operation names a UID this session has not been told about.
            await conn.check(lambda tag: cmd.Noop(tag), timeout=PROBE_TIMEOUT if stale else None)
            if need_uid is not None:
                # Every UID the replica knows existed upstream before this NOOP.
                conn.known_uid = max(conn.known_uid, need_uid)
        elif stale:
            # Unused for a while: make sure it still answers before lending it.
            await conn.check(lambda tag: cmd.Noop(tag), timeout=PROBE_TIMEOUT)

    async def drop_selected(self, mailbox: str) -> None:
        """Log out connections that have ``mailbox`` (or a folder below it) selected, idle
        ones now, lent ones when given back: after it was deleted or renamed on another
        connection, Dovecot fails later commands on such a session (e.g. an APPEND after the
        name was created again: "Internal error ... duplicate transaction log sequence")."""
        prefix = mailbox + "/"

        def affected(c: UpstreamConnection) -> bool:
            return c.selected is not None and (c.selected == mailbox or c.selected.startswith(prefix))

        # Lent ones (a long operation, the search indexer) are logged out when given back.
        self._stale.update(c for c in self._lent if affected(c))
        await self._logout_idle([c for c in self._idle if affected(c)])

    async def dedicated(self, name: str) -> UpstreamConnection:
        """A connection taken out of the pool for good (the change watcher);
        give it back with ``release_dedicated``."""
        if self._closed:
            raise UpstreamUnavailable("gateway is shutting down")
        if self._open < self.max_connections:
            self._open += 1
            self.peak_open = max(self.peak_open, self._open)
        elif self._idle:
            # Its slot becomes ours.
            await self._idle.pop(0).logout()
        else:
            _, got = await self._wait(None, 0.0)
            if got is not None:
                self._lent.discard(got)
                await got.logout()
        try:
            return await self._new_connection(name, dedicated=True)
        except BaseException:
            self._open -= 1
            self._wake_slot()
            raise

    async def release_dedicated(self, conn: UpstreamConnection) -> None:
        await conn.logout()
        self._open -= 1
        self._wake_slot()

    async def close(self) -> None:
        self._closed = True
        for task in (self._maintainer, self._lease_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._maintainer = self._lease_watch = None
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.future.done():
                w.future.set_exception(UpstreamUnavailable("gateway is shutting down"))
        await asyncio.gather(*(c.logout() for c in idle), return_exceptions=True)
