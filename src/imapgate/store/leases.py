"""Upstream connection leases: one connection budget for all nodes on one PostgreSQL.

A hoster caps connections per account (``[upstream] max_connections``); with several
gateway nodes each node's own pool limit is not enough, since two nodes would each open
that many.  So on PostgreSQL a node holds a *lease* for every upstream connection it has
open: one of the session-level advisory locks ``upstream-lease:<account>#1`` ..
``#max_connections``.  A lease is taken (``pg_try_advisory_lock``, never blocking) before
the connection is opened and given back (``pg_advisory_unlock``) when it closes; the pool
closes connections idle for ``LEASE_IDLE`` so an idle node does not sit on the budget.

Advisory locks rather than a lease table: a lock ends with its database session, so the
leases of a node killed with -9 free themselves as soon as PostgreSQL notices the closed
socket -- a table would need expiry times and a sweeper, and a wrong clock would
over-commit the hoster.

All of a node's leases live on ONE database connection of their own (locks stack per
session; ``_held`` keeps this node from taking a slot twice).  If that connection is lost,
so are the leases at the server: ``_held`` is emptied and the loss logged; connections
still open stay open until they close (the budget can be exceeded for that while -- the
price of not cutting every client's connection at a database hiccup).

Fairness: a node under steady load never has an idle connection, so it would keep the
budget for good.  A node that waits for a lease says so: it holds the advisory lock
``upstream-lease-wanted:<account>`` in shared mode while it waits.  Every node checks
every ``CONTENTION_POLL`` whether another node wants a lease (its own try of that lock in
exclusive mode fails; a session's own shared lock never blocks it), and while one does
(``contended``) its pool closes each connection when the operation on it is done, and this
node keeps off the freed lease for ``YIELD`` so the waiting node, polling every
``LEASE_POLL``, gets it.

Blocking calls run in a worker thread (``asyncio.to_thread``), one at a time (a
connection is not shared between threads).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

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
#: Seconds between checks whether another node waits for a lease (then this node gives
#: leases back after each operation): a waiting node is served about this late.
CONTENTION_POLL = 0.2
#: Seconds a node keeps off a lease it just gave back while another node waits for one:
#: a few of the waiter's polls.
YIELD = 3 * LEASE_POLL


class LeaseTimeout(TimeoutError):
    """No lease became free within the wait."""


class UpstreamLeases:
    """The budget of ``slots`` leases for ``account`` shared by every node on ``engine``."""

    def __init__(self, engine: Engine, account: str, slots: int) -> None:
        self.engine = engine
        self.account = account
        self.slots = slots
        self._keys = [advisory_key("upstream-lease", f"{account}#{i}") for i in range(1, slots + 1)]
        self._held: set[int] = set()
        self._conn: Connection | None = None
        self._mutex = threading.Lock()
        self._want_key = advisory_key("upstream-lease-wanted", account)
        self._wanting = 0  # this node's waits in progress (the shared lock is held while > 0)
        self._yield_until = 0.0
        self.idle_after = LEASE_IDLE
        self.wait = LEASE_WAIT
        #: Another node waits for a lease (refreshed by ``watch``).
        self.contended = False

    @property
    def held(self) -> int:
        """Leases this node holds now."""
        return len(self._held)

    # -- blocking core (worker thread) ---------------------------------------------------
    def try_take(self) -> int | None:
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
            if self.contended:
                self._yield_until = time.monotonic() + YIELD
            if self._conn is None:
                return
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._keys[slot - 1]})
                self._conn.commit()
            except sa_exc.DBAPIError as exc:
                self._lost(exc)

    def want(self, wanting: bool) -> None:
        """Start (True) or end (False) one wait of this node for a lease."""
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

    def others_want(self) -> bool:
        """Whether another node waits for a lease now."""
        with self._mutex:
            try:
                conn = self._connection()
                free = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._want_key}).scalar()
                if free:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._want_key})
                conn.commit()
                return not free
            except sa_exc.DBAPIError as exc:
                self._lost(exc)
                return False

    def close(self) -> None:
        """Give every lease back (closing the session ends its locks)."""
        with self._mutex:
            self._held.clear()
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
        self._wanting = 0
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except sa_exc.DBAPIError:
                pass

    # -- asyncio side ----------------------------------------------------------------------
    async def acquire(self) -> int:
        """A lease, waiting up to ``self.wait`` seconds (``LeaseTimeout`` after that)."""
        wait = self.wait
        deadline = time.monotonic() + wait
        wanting = False
        try:
            while True:
                if time.monotonic() >= self._yield_until:
                    slot = await asyncio.to_thread(self.try_take)
                    if slot is not None:
                        return slot
                if time.monotonic() >= deadline:
                    raise LeaseTimeout(
                        f"all {self.slots} upstream connections of {self.account} are in use by the "
                        f"gateway nodes (waited {wait:.0f} s); try again in a moment"
                    )
                if not wanting:
                    wanting = True
                    await asyncio.to_thread(self.want, True)
                await asyncio.sleep(LEASE_POLL)
        finally:
            if wanting:
                await asyncio.to_thread(self.want, False)

    async def watch(self) -> None:
        """Keep ``contended`` up to date (runs with the pool, until cancelled)."""
        while True:
            self.contended = await asyncio.to_thread(self.others_want)
            await asyncio.sleep(CONTENTION_POLL)

    def release_soon(self, slot: int) -> None:
        """Give ``slot`` back from the loop without blocking it (at once without a loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.give(slot)
            return
        loop.run_in_executor(None, self.give, slot)
