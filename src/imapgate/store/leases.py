"""Upstream connection leases: one connection budget for all nodes on one PostgreSQL.

A hoster caps connections per account (``[upstream] max_connections``); with several
gateway nodes each node's own pool limit is not enough, since two nodes would each open
that many.  So on PostgreSQL a node holds a *lease* for every upstream connection it has
open: one of the session-level advisory locks ``upstream-lease:<account>#1`` ..
``#max_connections``.  A lease is taken (``pg_try_advisory_lock``, never blocking) before
the connection is opened and given back (``pg_advisory_unlock``) when it closes; the pool
closes connections idle for ``LEASE_IDLE`` so an idle node does not sit on the budget.
The budget is never exceeded because the leases ARE the locks: whatever the shares below
say, a connection is opened only after its lock was granted.

Advisory locks rather than a lease table: a lock ends with its database session, so the
leases of a node killed with -9 free themselves as soon as PostgreSQL notices the closed
socket -- a table would need expiry times and a sweeper, and a wrong clock would
over-commit the hoster.

All of a node's leases live on ONE database connection of their own (locks stack per
session; ``_held`` keeps this node from taking a slot twice).  If that connection is lost,
so are the leases at the server: ``_held`` is emptied and the loss logged; connections
still open stay open until they close (the budget can be exceeded for that while -- the
price of not cutting every client's connection at a database hiccup).

Fair shares.  A node that wants upstream connections (it holds a lease or waits for one)
holds ``upstream-lease-node:<account>`` in shared mode on its lease session, and also
``upstream-lease-dedicated:<account>`` while one of its leases is for a connection taken
out of the pool for good (the sync leader's watcher).  Every ``CONTENTION_POLL`` each node
reads the holders of these locks from ``pg_locks`` (``survey``) -- the live nodes, ordered
by their lease session's backend pid, the same list on every node -- and computes every
node's share with ``plan``: a dedicated lease counts in its node's share; each node gets
at least one pooled connection, the rest goes to the nodes with the fewest in total
(ties: pid order), so 4 over two nodes is 2 + 2 whether or not one of them runs the
watcher.  When there are fewer pooled leases than nodes (budget 2 with the watcher on
one of two nodes, budget 1 with two), the pooled leases go round: node ``i`` has one in
the turns ``floor(database clock / TURN)`` that fall on it (the database's clock, one
clock for all nodes).

A node below its share that cannot get a lease waits *entitled*: it holds
``upstream-lease-wanted:<account>`` in shared mode.  A node that sees another node's
wanted lock (``contended``) gives back only the leases above its share, after the
operation on that connection (``surplus``), and while contended takes no free lease
unless it is below its own share, so the freed one goes to the waiter.  The shares add
up to the budget, so a node below its share that finds every lease taken always finds
another node above its share.  Connections within a node's share stay open with their
folder selected.  A node at or above its share that wants more waits for its own
connections or takes a lease nobody else wants (borrowing); it does not say it waits.

Blocking calls run in a worker thread (``asyncio.to_thread``), one at a time (a
connection is not shared between threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from .lock import advisory_key

log = logging.getLogger("imapgate.leases")

#: Seconds a node waits for a free lease before the client's command fails with
#: NO [UNAVAILABLE]: longer than a busy moment of the other nodes (their idle connections
#: close after LEASE_IDLE), shorter than a client's own command timeout (often 30-60 s).
LEASE_WAIT = 15.0
#: Seconds between tries while waiting: a lease freed on another node is noticed this late
#: at most; each try is one cheap statement per slot.
LEASE_POLL = 0.05
#: A pooled connection unused for this long is closed and its lease given back, so the
#: other nodes can use the budget (a SELECT on a new connection costs more than keeping
#: it, hence not at once).
LEASE_IDLE = 5.0
#: Seconds between surveys of the nodes (who wants connections, who waits): a waiting
#: node is served about this late, a node's share follows a node coming or going.
CONTENTION_POLL = 0.2
#: Seconds one turn of the pooled leases lasts when there are fewer of them than nodes:
#: a node without a pooled lease waits about this long (times nodes per lease) while the
#: others are busy; each turn moves one connection (one login and SELECT at the hoster).
TURN = 1.0

_SURVEY = text(
    """
    WITH mine AS (
        SELECT pid, classid::bigint AS hi, objid::bigint AS lo FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    )
    SELECT extract(epoch FROM clock_timestamp())::float8,
           pg_backend_pid(),
           coalesce((SELECT array_agg(DISTINCT pid) FROM mine WHERE hi = :nh AND lo = :nl), '{}'),
           coalesce((SELECT array_agg(DISTINCT pid) FROM mine WHERE hi = :dh AND lo = :dl), '{}'),
           EXISTS (SELECT 1 FROM mine WHERE hi = :wh AND lo = :wl AND pid <> pg_backend_pid())
    """
)


async def _settled(fn: Callable[[bool], None], arg: bool) -> None:
    """``fn(arg)`` in a thread, finished even when the caller is cancelled meanwhile: a
    wait's start must be done before its end runs (else a lock would stay held)."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, arg))
    try:
        await asyncio.shield(job)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await job
        raise


class LeaseTimeout(TimeoutError):
    """No lease became free within the wait."""


def plan(slots: int, dedicated: Sequence[bool], turn: int = 0) -> list[int]:
    """Each node's share of ``slots`` leases; ``dedicated[i]``: node ``i`` (in pid order)
    holds a lease for a connection out of the pool (it counts in that node's share).

    Every node gets its dedicated lease and at least one pooled lease; the rest goes to the
    nodes with the fewest in total (ties: pid order, so it stays put).  With fewer pooled
    leases than nodes they go round: in ``turn`` the nodes ``turn % n`` onwards have one."""
    n = len(dedicated)
    if n == 0:
        return []
    fixed = [1 if d else 0 for d in dedicated]
    pooled = max(0, slots - sum(fixed))
    if pooled < n:
        return [fixed[i] + (1 if (i - turn) % n < pooled else 0) for i in range(n)]
    share = [f + 1 for f in fixed]
    for _ in range(pooled - n):
        share[min(range(n), key=lambda j: (share[j], j))] += 1
    return share


def _halves(key: int) -> tuple[int, int]:
    """A bigint advisory key as ``pg_locks`` shows it (classid, objid: unsigned halves)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


class UpstreamLeases:
    """The budget of ``slots`` leases for ``account`` shared by every node on ``engine``."""

    def __init__(self, engine: Engine, account: str, slots: int) -> None:
        self.engine = engine
        self.account = account
        self.slots = slots
        self._keys = [advisory_key("upstream-lease", f"{account}#{i}") for i in range(1, slots + 1)]
        self._held: set[int] = set()
        self._dedicated: set[int] = set()  # held slots of connections out of the pool
        #: Slots handed to release_soon and not given back yet (touched on the loop's
        #: thread only; the worker only removes a slot from ``_held``).
        self._releasing: set[int] = set()
        self._conn: Connection | None = None
        self._mutex = threading.Lock()
        self._want_key = advisory_key("upstream-lease-wanted", account)
        self._node_key = advisory_key("upstream-lease-node", account)
        self._dedicated_key = advisory_key("upstream-lease-dedicated", account)
        self._wanting = 0  # this node's entitled waits (the wanted lock is held while > 0)
        self._acquiring = 0  # this node's waits of any kind
        self._present = False  # the node lock is held
        self._marked = False  # the dedicated lock is held
        self.idle_after = LEASE_IDLE
        self.wait = LEASE_WAIT
        #: Another node below its share waits for a lease (refreshed by ``watch``).
        self.contended = False
        #: This node's fair share (refreshed by ``watch``; alone: the whole budget).
        self.share = slots
        #: Nodes wanting upstream connections at the last survey (this one included).
        self.nodes = 1

    @property
    def held(self) -> int:
        """Leases this node holds now (those on their way back not counted)."""
        # A difference, not len() minus a count: the worker may drop the slot from _held
        # before the loop forgets it here, and it must not count as given back twice.
        return len(self._held.difference(self._releasing))

    @property
    def surplus(self) -> int:
        """Leases to give back after their operation: those above this node's share while
        another node waits for one (0 otherwise)."""
        return max(0, self.held - self.share) if self.contended else 0

    # -- blocking core (worker thread) ---------------------------------------------------
    def try_take(self, dedicated: bool = False) -> int | None:
        """A free slot now, taken for this node (None: all slots are held somewhere)."""
        with self._mutex:
            try:
                conn = self._connection()
                for slot, key in enumerate(self._keys, start=1):
                    if slot in self._held:
                        continue
                    got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                    conn.commit()
                    if got:
                        self._held.add(slot)
                        if dedicated:
                            self._dedicated.add(slot)
                        self._mark(conn)
                        return slot
                return None
            except sa_exc.DBAPIError as exc:
                self._lost(exc)
                raise

    def give(self, slot: int) -> None:
        """Give ``slot`` back (a slot not held: nothing)."""
        with self._mutex:
            if slot not in self._held:
                return
            self._held.discard(slot)
            self._dedicated.discard(slot)
            if self._conn is None:
                return
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._keys[slot - 1]})
                self._mark(self._conn)
            except sa_exc.DBAPIError as exc:
                self._lost(exc)

    def want(self, wanting: bool) -> None:
        """Start (True) or end (False) one entitled wait of this node for a lease."""
        with self._mutex:
            before = self._wanting
            self._wanting = max(0, before + (1 if wanting else -1))
            if (before == 0) == (self._wanting == 0):
                return  # the shared lock is held as long as any wait goes on
            try:
                sql = "pg_advisory_lock_shared" if wanting else "pg_advisory_unlock_shared"
                conn = self._connection()
                conn.execute(text(f"SELECT {sql}(:k)"), {"k": self._want_key})
                conn.commit()
            except sa_exc.DBAPIError as exc:
                self._lost(exc)

    def waiting(self, begin: bool) -> None:
        """Start (True) or end (False) one wait of any kind: a node that waits counts
        among the nodes wanting connections even while it holds no lease."""
        with self._mutex:
            self._acquiring = max(0, self._acquiring + (1 if begin else -1))
            try:
                self._mark(self._connection())
            except sa_exc.DBAPIError as exc:
                self._lost(exc)

    def survey(self) -> bool:
        """Read who wants connections from ``pg_locks``: set ``share``, ``nodes`` and
        ``contended``; returns ``contended``."""
        nh, nl = _halves(self._node_key)
        dh, dl = _halves(self._dedicated_key)
        wh, wl = _halves(self._want_key)
        with self._mutex:
            try:
                conn = self._connection()
                row = conn.execute(
                    _SURVEY, {"nh": nh, "nl": nl, "dh": dh, "dl": dl, "wh": wh, "wl": wl}
                ).one()
                conn.commit()
            except sa_exc.DBAPIError as exc:
                self._lost(exc)
                self.contended = False
                return False
            now, me, present, dedicated, wanted = row
            nodes = sorted(set(present) | {me})
            marked = set(dedicated)
            if self._dedicated:
                marked.add(me)  # not yet marked: count it already
            shares = plan(self.slots, [pid in marked for pid in nodes], int(now // TURN))
            share = shares[nodes.index(me)]
            if len(nodes) != self.nodes:
                log.info(
                    "upstream budget of %s: %d node(s) want connections, shares %s of %d (this node: %d)",
                    self.account,
                    len(nodes),
                    "/".join(map(str, shares)),
                    self.slots,
                    share,
                )
            self.nodes, self.share, self.contended = len(nodes), share, bool(wanted)
            return self.contended

    def others_want(self) -> bool:
        """Whether another node below its share waits for a lease now."""
        return self.survey()

    def close(self) -> None:
        """Give every lease back (closing the session ends its locks)."""
        with self._mutex:
            self._held.clear()
            self._dedicated.clear()
            self._present = self._marked = False
            self._wanting = 0
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock_all()"))
                    conn.commit()
                    conn.close()
                except sa_exc.DBAPIError:
                    conn.invalidate()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
        return self._conn

    def _mark(self, conn: Connection) -> None:
        """Hold the node lock while this node holds a lease or waits, the dedicated lock
        while it holds a dedicated lease (then commit)."""
        present = bool(self._held) or self._acquiring > 0
        marked = bool(self._dedicated)
        for key, want, have in (
            (self._node_key, present, self._present),
            (self._dedicated_key, marked, self._marked),
        ):
            if want != have:
                sql = "pg_advisory_lock_shared" if want else "pg_advisory_unlock_shared"
                conn.execute(text(f"SELECT {sql}(:k)"), {"k": key})
        self._present, self._marked = present, marked
        conn.commit()

    def _lost(self, exc: BaseException) -> None:
        """The lease connection failed: its locks are gone at the server."""
        if self._held:
            log.error(
                "upstream leases lost with the database connection (%s): %d open upstream "
                "connection(s) now count against no lease until they close",
                exc.__class__.__name__,
                len(self._held),
            )
        self._held.clear()
        self._dedicated.clear()
        self._wanting = 0
        self._present = self._marked = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except sa_exc.DBAPIError:
                pass

    # -- asyncio side ----------------------------------------------------------------------
    async def acquire(self, dedicated: bool = False) -> int:
        """A lease, waiting up to ``self.wait`` seconds (``LeaseTimeout`` after that);
        ``dedicated``: for a connection out of the pool for good (it counts in the share)."""
        loop = asyncio.get_running_loop()
        wait = self.wait
        deadline = loop.time() + wait
        wanting = False
        begun = False
        try:
            while True:
                # The watcher's connection is no extra: the sync depends on it.
                entitled = dedicated or self.held < self.share
                # While a node below its share waits, a free lease is for it, not for us.
                if entitled or not self.contended:
                    slot = await self._try_take(dedicated)
                    if slot is not None:
                        return slot
                if loop.time() >= deadline:
                    raise LeaseTimeout(
                        f"all {self.slots} upstream connections of {self.account} are in use by the "
                        f"gateway nodes (waited {wait:.0f} s); try again in a moment"
                    )
                if not begun:
                    begun = True
                    await _settled(self.waiting, True)
                entitled = dedicated or self.held < self.share
                if entitled != wanting:
                    wanting = entitled
                    await _settled(self.want, entitled)
                await asyncio.sleep(LEASE_POLL)
        finally:
            if wanting:
                await _settled(self.want, False)
            if begun:
                await _settled(self.waiting, False)

    async def _try_take(self, dedicated: bool) -> int | None:
        """``try_take`` in a thread; cancelled meanwhile, a slot it took goes back."""
        job = asyncio.ensure_future(asyncio.to_thread(self.try_take, dedicated))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(self._give_late)
            raise

    def _give_late(self, job: asyncio.Future[int | None]) -> None:
        if not job.cancelled() and job.exception() is None and (slot := job.result()) is not None:
            self.release_soon(slot)

    async def watch(self, then: Callable[[], Awaitable[None]] | None = None) -> None:
        """Keep ``share`` and ``contended`` up to date (runs with the pool, until cancelled);
        ``then`` after each survey (the pool gives idle surplus connections back at once)."""
        while True:
            await asyncio.to_thread(self.survey)
            if then is not None:
                try:
                    await then()
                except Exception:
                    log.exception("after the lease survey")
            await asyncio.sleep(CONTENTION_POLL)

    def release_soon(self, slot: int) -> None:
        """Give ``slot`` back from the loop without blocking it (at once without a loop);
        ``held`` counts it as given back from now on."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.give(slot)
            return
        self._releasing.add(slot)
        job = loop.run_in_executor(None, self.give, slot)
        job.add_done_callback(lambda _job: self._releasing.discard(slot))
