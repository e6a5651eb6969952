"""Whether the store can be written, and what it owes the replica.

A commit can fail for reasons of the disk, not of the data: full, an I/O
error, a read-only file system (``is_storage_failure``).  The change was
already carried out at the hoster, so it must not be reported as failed: the
repository marks the store unwritable (logged once at ERROR), the replica
keeps what upstream did in memory, and the mailboxes whose rows are now
behind are remembered here (``dirty``) with the writes that ride on a commit
(journal entries) for replay.  The healer (``sync/healing.py``) probes the
store and, once it takes writes again, rewrites those mailboxes from memory,
replays the writes, resyncs the mailboxes from upstream and marks the store
writable.

The service layer asks ``writable`` (or ``require_writable()``) before it
touches upstream: while the store is known unwritable a change is refused
before anything happened, never half done.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("imapgate.store")

Hook = Callable[[Connection], None]

#: Writes kept for replay while the store is unwritable.  Beyond it the oldest
#: are dropped (logged): a store full for days must not fill memory as well.
MAX_PENDING_WRITES = 10_000

#: Texts of SQLite's errors of the disk rather than of the data.
_STORAGE_FAILURES = (
    "database or disk is full",
    "disk i/o error",
    "readonly database",
    "read-only file system",
    "no space left on device",
)


def is_storage_failure(exc: BaseException) -> bool:
    """True for a write refused by the disk (full, I/O error, read-only)."""
    if isinstance(exc, OperationalError):
        exc = exc.orig if isinstance(exc.orig, BaseException) else exc
    if not isinstance(exc, (sqlite3.OperationalError, OperationalError, OSError)):
        return False
    text = str(exc).lower()
    return any(t in text for t in _STORAGE_FAILURES)


#: What a client is told while the database cannot be reached (PostgreSQL restarting,
#: failing over, the network to it down): a retry later works.
DATABASE_UNREACHABLE = "the gateway's database cannot be reached just now; try again in a moment"


def is_database_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is the database server gone or not answering:
    a connection refused, closed by the server (a restart, a failover), the pool waiting in
    vain for a connection.  Not SQLite's errors (its file is always there: see
    ``is_storage_failure``) and not errors of the data (constraints, SQL)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, PoolTimeout):
            return True
        if isinstance(cur, DBAPIError) and cur.connection_invalidated:
            return True
        if isinstance(cur, (psycopg.OperationalError, psycopg.InterfaceError)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class StoreUnwritable(Exception):
    """The store takes no writes now (disk full, I/O error, read-only): a
    change is refused before it touches upstream."""


class StoreHealth:
    def __init__(self) -> None:
        self._writable = True
        self.reason: str | None = None
        #: Mailbox ids whose store rows are behind the replica in memory.
        self.dirty: set[int] = set()
        #: Writes that rode on failed commits (journal entries), oldest first.
        self.pending: list[Hook] = []
        self.dropped_writes = 0

    @property
    def writable(self) -> bool:
        return self._writable

    def require_writable(self, what: str = "change") -> None:
        """Raise ``StoreUnwritable`` while the store takes no writes."""
        if not self._writable:
            raise StoreUnwritable(
                f"cannot {what} now: the gateway's store cannot be written ({self.reason}); "
                "nothing was changed"
            )

    def failed(self, exc: BaseException, mailbox_ids: Iterable[int], hook: Hook | None) -> None:
        """A commit failed for a reason of the disk: remember what it owed."""
        if self._writable:
            self._writable = False
            self.reason = str(getattr(exc, "orig", None) or exc)
            log.error(
                "store is not writable (%s): serving from memory, changes carried out at the "
                "hoster are kept and written once the store takes writes again",
                self.reason,
            )
        self.defer(mailbox_ids, hook)

    def defer(self, mailbox_ids: Iterable[int], hook: Hook | None) -> None:
        """While unwritable: ``mailbox_ids`` are behind, ``hook`` waits for replay."""
        self.dirty.update(mailbox_ids)
        if hook is not None:
            self.pending.append(hook)
            if len(self.pending) > MAX_PENDING_WRITES:
                del self.pending[0]
                self.dropped_writes += 1
                if self.dropped_writes == 1:
                    log.error(
                        "store still not writable: more than %d journal writes waiting, dropping the oldest",
                        MAX_PENDING_WRITES,
                    )

    def take(self) -> tuple[set[int], list[Hook]]:
        """What a heal must write (and forgets it; ``failed`` again if it cannot)."""
        dirty, pending = self.dirty, self.pending
        self.dirty, self.pending = set(), []
        return dirty, pending

    def restore(self, dirty: set[int], pending: list[Hook]) -> None:
        """A heal failed: what it took is owed again (before anything newer)."""
        self.dirty |= dirty
        self.pending[:0] = pending

    def mark_writable(self) -> None:
        self._writable = True
        self.reason = None
        self.dropped_writes = 0
