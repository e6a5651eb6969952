"""Open the store: create the engine (SQLite with WAL and foreign keys, or
PostgreSQL through psycopg 3 with a bounded pool) and bring the schema to the
newest Alembic revision.

On PostgreSQL several nodes may start at once: the migration runs inside one
transaction holding a transaction-level advisory lock (``MIGRATION_LOCK``), so
one node migrates and the others wait for it and then find the schema current
(PostgreSQL's DDL is transactional: a node killed mid-migration leaves nothing
half done).

Beside a PostgreSQL store each node keeps a SQLite file of its own in its
``[store] data_dir`` (``open_local_engine``): the content cache and the search
index, which are derived from message content and belong to one node.  It gets
the same migrations as the main store (one schema history, the same table
definitions the cache and the index query), opened with foreign keys OFF: the
local ``content`` rows reference mailbox ids of the shared database, and the
local file's own ``mailboxes`` table stays empty.

A store that cannot be opened (a data folder the gateway may not write, an
unknown database driver, a corrupt file, a database that refuses the login) is
an ``OperatorError`` naming it -- with the password replaced by ``***``
(``safe_url``): credentials never reach a log or a terminal."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, make_url, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from ..errors import OperatorError
from .schema import mailboxes, messages, users

MIGRATIONS = Path(__file__).parent / "migrations"

#: Advisory-lock key of the migration (any constant both nodes agree on: "imapgate" as digits).
MIGRATION_LOCK = 0x696D61706761

#: Pool of one node: the loop's commits, the login check's reads (its own thread pool),
#: the change bus's LISTEN connection and a few admin reads at once.  Beyond
#: POOL_SIZE + POOL_OVERFLOW a caller waits POOL_TIMEOUT seconds: a storm of logins must
#: not exhaust the server's max_connections (default 100) shared with the other nodes.
POOL_SIZE = 5
POOL_OVERFLOW = 10
POOL_TIMEOUT = 30.0
#: Connections are renewed after this many seconds: a load balancer or PgBouncer in
#: front of PostgreSQL may drop idle ones silently.
POOL_RECYCLE = 1800
#: Seconds to wait for PostgreSQL to accept a connection before the start fails.
CONNECT_TIMEOUT = 10
#: A pooled PostgreSQL connection unused for longer than this (seconds) is pinged when it is
#: checked out (a dead one is replaced before anyone uses it); one used more recently is not.
#: Why not SQLAlchemy's ``pool_pre_ping``: it pings at *every* checkout, one round trip per
#: transaction that the event loop waits for -- measured, it more than doubled the cost of a
#: replica commit (benchmarks/commit_cost.py --store postgresql).  A connection that was fine
#: a moment ago and fails now (the server restarted under load) raises a disconnect error
#: once, and SQLAlchemy then invalidates the whole pool, so every later checkout connects anew.
PING_AFTER_IDLE = 2.0


#: The node's own SQLite file in ``[store] data_dir`` beside a PostgreSQL store
#: (content cache and search index; the SQLite store itself is ``imapgate.sqlite3``).
LOCAL_FILE = "node-cache.sqlite3"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, *, foreign_keys: bool = True) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer; synchronous=NORMAL is durable across
    # process crashes (the gateway's failure model) and much faster than FULL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _local_pragmas(dbapi_conn: Any, record: Any) -> None:
    # No foreign keys: content.mailbox_id names a mailbox of the shared database.
    _sqlite_pragmas(dbapi_conn, record, foreign_keys=False)


def safe_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)


def safe_text(text: str, url: str) -> str:
    """``text`` (a driver's error) with the password of ``url`` replaced: psycopg may
    repeat the connection string in its messages."""
    password = make_url(driver_url(url)).password if not is_sqlite(url) else None
    text = re.sub(r"(//[^/:@\s]*:)[^/@\s]*@", r"\1***@", text)
    text = re.sub(r"password=\S+", "password=***", text)
    if password:
        text = text.replace(str(password), "***")
    return text


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql", "postgres:"))


def driver_url(url: str) -> str:
    """``url`` with the driver SQLAlchemy should use: psycopg 3 for PostgreSQL
    (``postgresql://`` alone would mean psycopg2, which is not installed)."""
    if url.startswith("postgres://"):  # the form Heroku and others hand out
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (no migration): SQLite with its pragmas, PostgreSQL with the pool."""
    path = sqlite_path(url)
    if path is not None:
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if is_postgresql(url):
        engine = create_engine(
            driver_url(url),
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            pool_timeout=POOL_TIMEOUT,
            pool_recycle=POOL_RECYCLE,
            connect_args={"connect_timeout": CONNECT_TIMEOUT, "application_name": "imapgate"},
        )
        _ping_when_idle(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it sat unused for ``PING_AFTER_IDLE``."""

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["imapgate_idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("imapgate_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # new (just connected) or in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise sa_exc.DisconnectionError(f"stale database connection: {exc.__class__.__name__}") from exc
        if not alive:
            raise sa_exc.DisconnectionError("stale database connection")

    event.listen(engine.pool, "checkin", checkin)
    event.listen(engine.pool, "checkout", checkout)


def _reason(exc: sa_exc.SQLAlchemyError, url: str) -> str:
    orig = getattr(exc, "orig", None)
    # libpq's messages run over several lines ("Is the server running ..."): one line.
    return safe_text(" ".join(str(orig if orig is not None else exc).split()), url)


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    """An engine for ``url`` with the schema at the newest revision."""
    try:
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
    except OSError as exc:
        raise OperatorError(
            f"cannot open the store {safe_url(url)}: {exc.strerror or exc} "
            "(is [store] data_dir writable by the gateway's user?)"
        ) from None
    except (sa_exc.OperationalError, sa_exc.DatabaseError) as exc:
        raise OperatorError(f"cannot open the store {safe_url(url)}: {_reason(exc, url)}") from None
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise OperatorError(f"[store] url {safe_url(url)}: {safe_text(str(exc), url)}") from None
    return engine


def local_path(data_dir: Path) -> Path:
    """The node-local file (content cache, search index) of ``data_dir``."""
    return data_dir / LOCAL_FILE


def open_local_engine(data_dir: Path, *, migrate: bool = True) -> Engine:
    """The node's own SQLite file in ``data_dir`` (made when missing, with ``migrate``),
    at the newest schema, foreign keys off (see the module text).  A folder or file
    the gateway's user cannot write is a one-line ``OperatorError``."""
    path = local_path(data_dir)
    where = f"the node's local cache {path}"
    hint = "(is [store] data_dir writable by the gateway's user?)"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperatorError(f"cannot create {path.parent}: {exc.strerror or exc} {hint}") from None
    # SQLite opens a file it may not write read-only without a word, and fails at the
    # first write (an item cached in the middle of a client's FETCH): find it now.
    for target in (path, path.parent):
        if target.exists() and not os.access(target, os.W_OK):
            raise OperatorError(f"cannot open {where}: {target} is not writable {hint}") from None
    try:
        engine = create_engine(f"sqlite:///{path}")
        event.listen(engine, "connect", _local_pragmas)
        if migrate:
            upgrade(engine)
    except OSError as exc:
        raise OperatorError(f"cannot open {where}: {exc.strerror or exc} {hint}") from None
    except (sa_exc.OperationalError, sa_exc.DatabaseError) as exc:
        raise OperatorError(f"cannot open {where}: {' '.join(str(exc.orig or exc).split())}") from None
    return engine


def read_only_local_engine(data_dir: Path) -> Engine | None:
    """The node-local file of ``data_dir`` opened read-only (``index status``, ``check``);
    None when there is none yet (no gateway ran on this node)."""
    path = local_path(data_dir)
    if not path.exists():
        return None
    return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")


@dataclass(frozen=True)
class MigrationStatus:
    exists: bool
    current: str | None
    head: str | None
    #: ``current`` is a revision this version knows (False: a newer imapgate wrote it).
    known: bool = True

    @property
    def pending(self) -> bool:
        return self.current != self.head


def migration_status(url: str) -> MigrationStatus:
    """Where the store's schema is, without creating or changing anything."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return MigrationStatus(False, None, head)
    try:
        engine = read_only_engine(url)
        try:
            with engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        finally:
            engine.dispose()
    except (sa_exc.OperationalError, sa_exc.DatabaseError) as exc:
        raise OperatorError(f"cannot read the store {safe_url(url)}: {_reason(exc, url)}") from None
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise OperatorError(f"[store] url {safe_url(url)}: {safe_text(str(exc), url)}") from None
    if path is None and current is None:
        # A PostgreSQL database exists once it is reachable; no revision means empty.
        return MigrationStatus(False, None, head)
    known = True
    if current is not None:
        try:
            script.get_revision(current)
        except Exception:  # alembic raises several kinds for an unknown revision
            known = False
    return MigrationStatus(True, current, head, known)


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def read_only_engine(url: str) -> Engine:
    """An engine that cannot create the SQLite file (check and counts read only)."""
    path = sqlite_path(url)
    if path is not None:
        return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    return create_engine(
        driver_url(url), poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT}
    )


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Released at the commit; a second node blocks here until the first is done.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@dataclass(frozen=True)
class StoreCounts:
    users: int
    disabled_users: int
    folders: int
    messages: int


def store_counts(url: str) -> StoreCounts:
    """How much the store holds (``imapgate check``), read-only."""
    engine = read_only_engine(url)
    try:
        with engine.connect() as conn:
            n_users = conn.execute(select(func.count()).select_from(users)).scalar_one()
            n_disabled = conn.execute(
                select(func.count()).select_from(users).where(users.c.disabled.is_(True))
            ).scalar_one()
            n_folders = conn.execute(select(func.count()).select_from(mailboxes)).scalar_one()
            n_messages = conn.execute(select(func.count()).select_from(messages)).scalar_one()
    except (sa_exc.OperationalError, sa_exc.DatabaseError) as exc:
        raise OperatorError(f"cannot read the store {safe_url(url)}: {_reason(exc, url)}") from None
    finally:
        engine.dispose()
    return StoreCounts(n_users, n_disabled, n_folders, n_messages)
