"""The store and hoster checks of ``imapgate check``: what the installation
check asks of the layers below the service layer, so the command's own module
(``imapgate.checks``) reaches them only through here.

Nothing is changed: the store is opened read-only (never created, never
migrated); upstream connections log out again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import Config
from ..errors import OperatorError
from ..store import lock
from ..store.engine import (
    local_path,
    migration_status,
    read_only_engine,
    read_only_local_engine,
    safe_url,
    sqlite_path,
    store_counts,
)
from ..upstream.connection import UpstreamConnection, UpstreamLoginRefused, UpstreamUnavailable

Status = Literal["OK", "WARN", "FAIL"]

#: Upstream capabilities the gateway uses, and what their absence costs.
CAPABILITY_NOTES = {
    "IDLE": "changes at the hoster are seen by polling (NOOP every few seconds)",
    "NOTIFY": "one IDLE on the busiest folder; other folders are checked periodically",
    "CONDSTORE": "every flag sync fetches the flags of the whole folder",
    "QRESYNC": "expunges are found by UID SEARCH (one more round trip per folder sync)",
    "MOVE": "moves are COPY + delete, recorded as an intent first",
    "UIDPLUS": "EXPUNGE also removes mail others marked \\Deleted at the hoster",
    "LITERAL+": "each literal waits for a continuation (one round trip more)",
    "SPECIAL-USE": "clients are not told which folder is Sent, Trash, ...",
}


@dataclass(frozen=True)
class Result:
    status: Status
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.name:<10} {self.detail}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _open(cfg: Config, name: str) -> UpstreamConnection:
    conn = UpstreamConnection(cfg.upstream, name=name)
    await conn.connect()
    return conn


async def check_upstream(cfg: Config, holder: str | None) -> list[Result]:
    up = cfg.upstream
    out: list[Result] = []
    where = f"{up.host}:{up.port}"
    if up.tls == "none":
        mode = "no TLS"
        if not is_loopback(up.host):
            why = f'tls = "none" to {up.host}: the shared password crosses the network in clear text'
            out.append(Result("WARN", "upstream", why))
    else:
        mode = ("implicit TLS" if up.tls == "implicit" else "STARTTLS") + (
            "" if up.verify_certificate else ", certificate NOT verified"
        )
        if not up.verify_certificate:
            why = "verify_certificate = false: anyone on the path can pose as the hoster"
            out.append(Result("WARN", "upstream", why))
    conns: list[UpstreamConnection] = []
    try:
        try:
            conns.append(await _open(cfg, "check-1"))
        except UpstreamLoginRefused as exc:
            out.append(Result("FAIL", "upstream", f"{exc}: check [upstream] user and the password"))
            return out
        except UpstreamUnavailable as exc:
            out.append(Result("FAIL", "upstream", f"{exc}: check [upstream] host, port and tls"))
            return out
        first = conns[0]
        out.append(Result("OK", "upstream", f"{where} ({mode}): logged in as {up.user}"))
        caps = first.capabilities
        have = [c for c in CAPABILITY_NOTES if c in caps]
        out.append(Result("OK", "upstream", f"capabilities used: {' '.join(have) or '(none)'}"))
        for cap, note in CAPABILITY_NOTES.items():
            if cap not in caps:
                out.append(Result("OK", "upstream", f"without {cap}: {note}"))
        if holder is not None:
            out.append(
                Result(
                    "OK",
                    "upstream",
                    f"connection limit not tested: the store is in use by {holder} (it holds its own)",
                )
            )
            return out
        failure = ""
        for i in range(2, up.max_connections + 1):
            try:
                conns.append(await _open(cfg, f"check-{i}"))
            except UpstreamUnavailable as exc:
                failure = str(exc)
                break
        n = len(conns)
        if n < up.max_connections:
            out.append(
                Result(
                    "FAIL",
                    "upstream",
                    f"the hoster accepted {n} of max_connections = {up.max_connections} connections "
                    f"({failure}): set [upstream] max_connections to {max(2, n - 1)} or ask the hoster",
                )
            )
        else:
            out.append(Result("OK", "upstream", f"opened {n} of {n} connections (max_connections = {n})"))
        return out
    finally:
        await asyncio.gather(*(c.logout() for c in conns), return_exceptions=True)


def check_store(cfg: Config, holder: str | None) -> Iterator[Result]:
    url = cfg.store.url
    data_dir = cfg.store.data_dir
    db = sqlite_path(url)
    # The SQLite store's folder; beside PostgreSQL the node's data_dir (its lock, its
    # control socket, its local content cache and search index).
    folder = db.parent if db is not None else data_dir
    existing = _existing_parent(folder)
    if not os.access(existing, os.W_OK | os.X_OK):
        yield Result("FAIL", "store", f"{existing} is not writable by this user (uid {os.getuid()})")
    local = local_path(data_dir)
    if db is None and local.exists() and not os.access(local, os.W_OK):
        yield Result("FAIL", "store", f"{local} is not writable by this user (uid {os.getuid()})")
    if holder is None:
        yield Result("OK", "store", f"not in use ({data_dir / lock.LOCK_NAME})")
    else:
        yield Result("OK", "store", f"in use by {holder}")
    try:
        status = migration_status(url)
    except OperatorError as exc:
        yield Result("FAIL", "store", str(exc))
        return
    if not status.exists:
        yield Result("WARN", "store", f"no database yet at {safe_url(url)}: run `imapgate sync` (or serve)")
        return
    if not status.known:
        yield Result(
            "FAIL",
            "store",
            f"schema revision {status.current} is newer than this imapgate knows (downgraded?): "
            "install the newer version or restore the backup taken before the upgrade",
        )
        return
    if status.pending:
        yield Result(
            "OK",
            "store",
            f"schema at revision {status.current}, {status.head} pending: applied at the next start "
            "(back up the database first)",
        )
        return
    yield Result("OK", "store", f"{safe_url(url)}: schema at revision {status.current} (current)")
    try:
        counts = store_counts(url)
    except OperatorError as exc:
        yield Result("FAIL", "store", str(exc))
        return
    if counts.users == 0:
        yield Result("WARN", "users", "no team members yet: nobody can log in (imapgate user add NAME)")
    else:
        disabled = f", {counts.disabled_users} disabled" if counts.disabled_users else ""
        yield Result("OK", "users", f"{counts.users} team members{disabled}")
    if counts.folders == 0:
        yield Result("WARN", "replica", "not synced yet: run `imapgate sync` (or start serve)")
    else:
        yield Result("OK", "replica", f"{counts.folders} folders, {counts.messages} messages")
    if cfg.search.index != "off":
        yield from _check_index(url, data_dir)


def _check_index(url: str, data_dir: Path) -> Iterator[Result]:
    """The search index's size on disk and coverage (``imapgate index status`` per folder):
    in the SQLite store, or beside PostgreSQL in this node's local file."""
    from sqlalchemy import Engine, create_engine

    from ..index.report import NO_INDEX, index_report

    engine = create_engine(url) if sqlite_path(url) is not None else read_only_engine(url)
    local: Engine | None = None
    try:
        if sqlite_path(url) is not None:
            lines = index_report(engine)
        else:
            local = read_only_local_engine(data_dir)
            lines = index_report(engine, local if local is not None else NO_INDEX)
            lines.append(f"search index: this node's, in {local_path(data_dir)}")
        for line in lines:
            yield Result("OK", "index", line.removeprefix("search index: "))
    except Exception as exc:  # a store from before the index, or unreadable: say so, do not fail check
        yield Result("WARN", "index", f"cannot read the search index: {exc}")
    finally:
        engine.dispose()
        if local is not None:
            local.dispose()


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def store_holder(data_dir: Path) -> str | None:
    """Who holds the store's lock ("pid 123: imapgate serve"), None when nobody."""
    return lock.holder(data_dir)
