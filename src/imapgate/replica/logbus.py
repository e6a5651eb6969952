"""The change bus between nodes: the store's ``change_log`` plus PostgreSQL's
LISTEN/NOTIFY as the wake-up call.

``LogChangeBus`` is a ``ChangeBus``.  A replica commit runs its ``recorder``
hook last in the commit's own transaction: the change set (rows and events)
becomes a ``change_log`` row and, on PostgreSQL, ``NOTIFY imapgate_changes,
'<id>'`` is sent in that transaction (PostgreSQL delivers a notification only
when its transaction commits, so a node never hears of a row it cannot read
yet).  Committed and logged are one step: a node killed right after a commit
has told the others already.  ``publish`` then calls this node's listeners
(synchronously, as ``InProcessChangeBus`` does); a change set published without
such a commit (the store was unwritable, its rows wait for the heal) is
appended on its own.  The payload stays a few bytes
whatever the change: the change set itself -- a 100,000-message flag change
included -- is read from the log by the receiver (NOTIFY payloads are limited
to 8,000 bytes).

Receivers call ``poll()`` (the asyncio driver in ``sync/buslisten.py`` does, on
each notification and every second besides): every row above the last id it
applied, in id order, from other nodes, to the ``subscribe_remote``
listeners.  Ids are in commit order: a publish holds a transaction-level
advisory lock (``PUBLISH_LOCK``) from its INSERT to its commit, so a row with
a lower id can never become visible after a higher one was read.  A node that
lost its connection simply reads on from its last id when it is back: nothing
is skipped.  If the log was trimmed beyond what a node has read (it was away
longer than ``KEEP_SECONDS``), the node is *stale*: ``poll`` calls
``on_stale`` (reload the replica from the store) instead of pretending.

No asyncio here: blocking calls, run by the driver.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy import Connection, Engine, delete, func, insert, select, text

from ..store.counters import advance, value
from ..store.health import is_database_unreachable
from ..store.lock import advisory_key
from ..store.schema import change_log
from .bus import ChangeListener, RecordHook, Unsubscribe
from .changes import ChangeSet
from .wire import WireError, decode, encode

log = logging.getLogger("imapgate.bus")

CHANNEL = "imapgate_changes"
PUBLISH_LOCK = advisory_key("bus", "publish")
#: Change-log rows are kept this long (seconds): a node away for longer reloads its
#: replica from the store instead of replaying (an hour of changes replays in seconds).
KEEP_SECONDS = 3600.0
#: Rows read per query of ``poll``: a node catching up reads in slices.
POLL_BATCH = 500
#: Own log-row ids remembered for ``is_own`` (far more than commits between two NOTIFYs).
OWN_REMEMBERED = 4096
#: The publish on PostgreSQL: the transaction-level lock that orders ids by commit, the row,
#: and its NOTIFY (delivered at commit), as one statement.
_PUBLISH = text(
    "WITH lock AS (SELECT pg_advisory_xact_lock(:k)), "
    "row AS (INSERT INTO change_log (node, created_at, payload) "
    "SELECT :node, :ts, :payload FROM lock RETURNING id) "
    "SELECT id, pg_notify(:ch, id::text) FROM row"
)
_TRIMMED = "change_log_trimmed"


class LogChangeBus:
    def __init__(self, engine: Engine, node: str) -> None:
        self.engine = engine
        self.node = node
        self._local: list[ChangeListener] = []
        self._remote: list[ChangeListener] = []
        #: Change sets whose log row could not be written (the database was unreachable),
        #: oldest first: written, in order, before anything newer (``append``, ``flush``).
        self._unsent: list[ChangeSet] = []
        #: Ids of the log rows this node wrote lately (``is_own``), oldest first.
        self._own: deque[int] = deque()
        self._own_ids: set[int] = set()
        #: Called (with no argument) when this node missed changes the log no longer holds.
        self.on_stale: Callable[[], None] | None = None
        self.published = 0
        self.received = 0
        self._warned = False
        with engine.connect() as conn:
            # Whatever is in the log now is in the store the replica was loaded from.
            newest = int(conn.execute(select(func.max(change_log.c.id))).scalar() or 0)
            self.last_id = max(newest, value(conn, _TRIMMED) or 0)

    # -- the ChangeBus interface ----------------------------------------------------
    def publish(self, changes: ChangeSet) -> None:
        for fn in list(self._local):
            fn(changes)
        if not changes.logged:
            self.append(changes)

    def recorder(self, changes: ChangeSet) -> RecordHook:
        """The hook that writes ``changes`` to the log inside the replica's commit (run
        last there: the publish lock is held from the INSERT to the commit only)."""

        def record(conn: Connection) -> None:
            self._insert(conn, changes)

        return record

    def flush(self) -> None:
        """Write the change sets that wait for the database (the driver's every round)."""
        self._resend()

    def subscribe(self, fn: ChangeListener) -> Unsubscribe:
        return _subscribe(self._local, fn)

    # -- between nodes ----------------------------------------------------------------
    def subscribe_remote(self, fn: ChangeListener) -> Unsubscribe:
        """``fn`` gets the change sets other nodes published (from ``poll``)."""
        return _subscribe(self._remote, fn)

    def append(self, changes: ChangeSet) -> int:
        """Write ``changes`` to the log (and notify); its id.  While the database cannot be
        reached the change set waits (0 is returned) and is written, in order, by the next
        ``append`` or ``flush`` that reaches it: the store commit before it succeeded, so
        the other nodes must still hear of it (a lost row would leave their replicas
        behind the store for good).  Any other error raises."""
        self._unsent.append(changes)
        sent = self._resend()
        return sent.get(id(changes), 0)

    def _resend(self) -> dict[int, int]:
        """Write the waiting change sets, oldest first, until one fails; their ids."""
        sent: dict[int, int] = {}
        while self._unsent:
            changes = self._unsent[0]
            try:
                sent[id(changes)] = self._write(changes)
            except Exception as exc:
                if not is_database_unreachable(exc):
                    self._unsent.pop(0)
                    raise
                if len(self._unsent) == 1 or not self._warned:
                    log.warning(
                        "change bus: %d change set(s) wait for the database (%s)", len(self._unsent), exc
                    )
                self._warned = True
                return sent
            self._unsent.pop(0)
        if self._warned:
            log.warning("change bus: the waiting change sets are written")
            self._warned = False
        return sent

    def _write(self, changes: ChangeSet) -> int:
        with self.engine.begin() as conn:
            return self._insert(conn, changes)

    def _insert(self, conn: Connection, changes: ChangeSet) -> int:
        """The log row of ``changes`` (and its NOTIFY) in the caller's transaction."""
        payload = encode(changes)
        if conn.dialect.name == "postgresql":
            # Lock, INSERT and NOTIFY in one statement: on the event loop's thread every
            # statement is a round trip (three cost about twice one in a whole commit).
            row_id = int(conn.execute(_PUBLISH, {"k": PUBLISH_LOCK, "node": self.node,
                "ts": time.time(), "payload": payload, "ch": CHANNEL}).scalar_one())  # fmt: skip
        else:
            row_id = int(
                conn.execute(
                    insert(change_log)
                    .values(node=self.node, created_at=time.time(), payload=payload)
                    .returning(change_log.c.id)
                ).scalar_one()
            )
        self._own.append(row_id)
        self._own_ids.add(row_id)
        while len(self._own) > OWN_REMEMBERED:
            self._own_ids.discard(self._own.popleft())
        self.published += 1
        return row_id

    def is_own(self, row_id: int) -> bool:
        """Did this node write log row ``row_id`` (lately)?  Its NOTIFY then wakes no poll:
        the listener's thread asks, so a node's own commits cost it no read of the log."""
        return row_id in self._own_ids

    def poll(self) -> int:
        """Deliver what other nodes published since the last poll; how many change sets."""
        delivered = 0
        while True:
            with self.engine.connect() as conn:
                trimmed = value(conn, _TRIMMED) or 0
                rows = conn.execute(
                    select(change_log.c.id, change_log.c.node, change_log.c.payload)
                    .where(change_log.c.id > self.last_id)
                    .order_by(change_log.c.id)
                    .limit(POLL_BATCH)
                ).all()
            if self.last_id < trimmed:
                self._stale(trimmed)
                return delivered
            for row in rows:
                self.last_id = int(row.id)
                if row.node == self.node:
                    continue
                try:
                    changes = decode(row.payload)
                except WireError as exc:
                    # Written by a newer version: this node cannot apply it, so its replica
                    # would be behind -- reload rather than serve it.
                    log.error("change-log row %d from node %s: %s; reloading", row.id, row.node, exc)
                    self._stale(row.id)
                    return delivered
                for fn in list(self._remote):
                    fn(changes)
                delivered += 1
            if len(rows) < POLL_BATCH:
                self.received += delivered
                return delivered

    def _stale(self, upto: int) -> None:
        log.warning("missed changes of other nodes (change log read up to %d): reloading", self.last_id)
        with self.engine.connect() as conn:
            self.last_id = max(upto, int(conn.execute(select(func.max(change_log.c.id))).scalar() or 0))
        if self.on_stale is not None:
            self.on_stale()

    def trim(self, keep_seconds: float = KEEP_SECONDS) -> int:
        """Drop rows older than ``keep_seconds`` (the sync leader does, now and then)."""
        cutoff = time.time() - keep_seconds
        with self.engine.begin() as conn:
            highest = conn.execute(
                select(func.max(change_log.c.id)).where(change_log.c.created_at < cutoff)
            ).scalar()
            if highest is None:
                return 0
            gone = conn.execute(delete(change_log).where(change_log.c.id <= highest)).rowcount
            _raise_to(conn, _TRIMMED, int(highest))
        return int(gone or 0)


def _raise_to(conn: Connection, name: str, target: int) -> None:
    advance(conn, name, by=0, floor=target)


def _subscribe(listeners: list[ChangeListener], fn: ChangeListener) -> Unsubscribe:
    listeners.append(fn)

    def unsubscribe() -> None:
        if fn in listeners:
            listeners.remove(fn)

    return unsubscribe
