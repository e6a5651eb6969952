"""A folder whose write permission a test can take away, also from root (who writes anywhere
whatever the mode bits): as root the folder is a small tmpfs of its own, remounted read-only;
otherwise the mode bits of the folder and its files are cleared.

    with writable_dir(tmp_path / "node") as where:
        ...                      # fill it
        with read_only(where):
            ...                  # nothing in it can be written now
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def writable_dir(where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield where
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@contextlib.contextmanager
def read_only(where: Path) -> Iterator[None]:
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        try:
            yield
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(where)], check=True)
        return
    files = [p for p in where.iterdir() if p.is_file()]
    for p in files:
        p.chmod(0o400)
    where.chmod(0o500)
    try:
        yield
    finally:
        where.chmod(0o700)
        for p in files:
            p.chmod(0o600)
