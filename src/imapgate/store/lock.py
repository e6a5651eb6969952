"""One writer per store: an OS file lock in the data folder.

``serve`` and ``sync`` both rewrite the replica; two of them on one store
would interleave their changes (and two ``serve``s would each hold their own
connection budget at the hoster).  So each takes an exclusive ``flock`` on
``<data_dir>/imapgate.lock`` for as long as it runs and writes its PID and
command line into the file; a second one is refused with a message naming the
holder.  The kernel releases the lock when the process ends, however it ends,
so a lock is never stale.  Admin commands (``user``, ``folder``) do not take
it: they are short transactions SQLite serialises, and ``serve`` picks their
changes up.

Several gateway nodes on one PostgreSQL store: each node keeps its own data
folder and so its own file lock (one ``serve`` per node); what the nodes must
agree on is decided by PostgreSQL's advisory locks, ``AdvisoryLock`` below
(the mailbox locks of ``sync/locks.py``, sync leadership).  A session-level
advisory lock belongs to one database connection: it is held on a connection
of its own, checked out of the pool for as long as the lock is held, and
PostgreSQL releases it when that connection ends -- a node killed with -9
loses its locks as soon as the server notices the closed socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from ..errors import OperatorError

LOCK_NAME = "imapgate.lock"
#: NOTIFY channel of released advisory locks that others may wait for (payload: the key):
#: a waiter on another node tries again at once instead of at its next poll.
UNLOCK_CHANNEL = "imapgate_unlocked"


def holder(data_dir: Path) -> str | None:
    """Who holds the lock of ``data_dir`` ("pid 123: imapgate serve"), None when nobody."""
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe(path: Path) -> str:
    try:
        pid, _, command = path.read_text(encoding="utf-8", errors="replace").partition("\n")
    except OSError:
        return "another process"
    pid, command = pid.strip(), command.strip()
    if not pid.isdigit():
        return "another process"
    return f"pid {pid}: {command}" if command else f"pid {pid}"


class StoreLock:
    """``with StoreLock(data_dir, "imapgate serve"):`` — or ``OperatorError``."""

    def __init__(self, data_dir: Path, command: str) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OperatorError(
                f"cannot create the lock file {self.path}: {exc.strerror} "
                "(is [store] data_dir writable by the gateway's user?)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OperatorError(
                f"the store in {self.data_dir} is in use by {_describe(self.path)}; "
                f"stop it first (one `serve` or `sync` per store)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{self.command}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Emptied first, so a reader never names a process that is gone.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def advisory_key(namespace: str, name: str) -> int:
    """A stable signed 64-bit key for ``name`` in ``namespace`` (every node computes
    the same one; a collision only makes two names share one lock)."""
    digest = hashlib.blake2b(f"{namespace}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLock:
    """One PostgreSQL session-level advisory lock on a connection of its own.

    ``try_acquire()`` never blocks (``pg_try_advisory_lock``): the asyncio
    driver polls it, so a wait can be cancelled and never holds a thread.
    ``held()`` asks the server whether the lock's connection still lives (a
    leader must step down when it lost it).  Blocking calls: run them in a
    worker thread from the loop.

    ``announce``: the release also sends ``NOTIFY imapgate_unlocked, '<key>'`` in the
    same statement (for locks other nodes queue for: the mailbox locks)."""

    def __init__(self, engine: Engine, key: int, *, announce: bool = False) -> None:
        self.engine = engine
        self.key = key
        self.announce = announce
        self._conn: Connection | None = None

    @property
    def acquired(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = self.engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            conn.commit()  # the lock outlives the transaction; no transaction stays open
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        """True while the lock's connection is alive (then the server still holds it)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except sa_exc.DBAPIError:
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            if self.announce:
                conn.execute(
                    text("SELECT pg_advisory_unlock(:k), pg_notify(:ch, :key)"),
                    {"k": self.key, "ch": UNLOCK_CHANNEL, "key": str(self.key)},
                )
            else:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
        except sa_exc.DBAPIError:
            self._conn = conn
            self._drop()  # the connection is gone: so is the lock
            return
        conn.close()  # back to the pool, unlocked

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sa_exc.DBAPIError):
                # A connection that failed must not go back to the pool (it may hold the lock).
                conn.invalidate()
                conn.close()
