"""A small file system that can be filled up and freed again: where a store
is put to see what the gateway does when its disk is full.

A tmpfs of a few MiB (we run as root on the test machines; skipped
otherwise).  ``fill()`` writes a filler file until the file system refuses
(ENOSPC); ``free()`` deletes it.  Before filling, the store's WAL is
truncated: SQLite reuses a WAL file's space after a checkpoint, so without it
a few small commits would still fit in the space it already holds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text


class SmallFs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self, *engines: Engine) -> None:
        for engine in engines:
            with engine.connect() as conn:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        chunk = b"\0" * 65536
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[: len(chunk) // 2]
        finally:
            os.close(fd)

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


@contextlib.contextmanager
def small_fs(where: Path, size: str = "8m") -> Iterator[SmallFs]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield SmallFs(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
