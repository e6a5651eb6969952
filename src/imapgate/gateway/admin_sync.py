"""``imapgate sync``: the initial sync in the foreground, under the store lock.

The offline counterpart of a starting gateway: one writer per store (the
lock), one login first so a wrong password or an unreachable hoster is
reported before a store is created, and a first sync that fails leaves no
database behind (it would look like a store that was synced and holds
nothing); a later one keeps what it got (the next run continues).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import OperatorError
from ..store.engine import sqlite_path
from ..store.lock import StoreLock
from ..sync.algorithms import SyncProgress
from ..upstream.connection import UpstreamConnection, UpstreamError, UpstreamLoginRefused, UpstreamUnavailable
from .app import Gateway

__all__ = ["ProgressCallback", "SyncProgress", "SyncSummary", "sync_once"]

ProgressCallback = Callable[[SyncProgress], None]


@dataclass(frozen=True)
class SyncSummary:
    folders: int
    messages: int


def _sync_error(exc: Exception) -> OperatorError:
    if isinstance(exc, UpstreamLoginRefused):
        return OperatorError(f"sync failed: {exc}; check [upstream] user and the password (password_file)")
    return OperatorError(f"sync failed: {exc}")


def _store_is_empty(gw: Gateway) -> bool:
    return not gw.replica.names() and not gw.users.list()


async def sync_once(config: Config, progress: ProgressCallback) -> SyncSummary:
    """Sync every folder from the hoster into the store; what the replica holds then."""
    with StoreLock(config.store.data_dir, "imapgate sync"):
        try:
            probe = UpstreamConnection(config.upstream, name="sync-probe")
            await probe.connect()
            await probe.logout()
        except UpstreamUnavailable as exc:
            raise _sync_error(exc) from exc
        db = sqlite_path(config.store.url)
        fresh = db is not None and not db.exists()
        gw = Gateway.build(config, progress=progress)
        try:
            await gw.sync.initial_sync()
        except (UpstreamUnavailable, UpstreamError) as exc:
            raise _sync_error(exc) from exc
        finally:
            await gw.pool.close()
            if fresh and db is not None and _store_is_empty(gw):
                gw.replica.engine.dispose()
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        Path(f"{db}{suffix}").unlink()
        replica = gw.replica
        summary = SyncSummary(len(replica.names()), sum(mb.exists for mb in replica.by_id.values()))
        replica.engine.dispose()
        return summary

