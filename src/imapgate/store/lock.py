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

Several gateway nodes on one PostgreSQL store will replace this with the
database's advisory lock (sync leadership).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from ..errors import OperatorError

LOCK_NAME = "imapgate.lock"


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
