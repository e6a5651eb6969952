"""Open the store: create the engine (SQLite with WAL and foreign keys, or
PostgreSQL) and bring the schema to the newest Alembic revision.

A store that cannot be opened (a data folder the gateway may not write, an
unknown database driver, a corrupt file) is an ``OperatorError`` naming it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy import exc as sa_exc

from ..errors import OperatorError
from .schema import mailboxes, messages, users

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer; synchronous=NORMAL is durable across
    # process crashes (the gateway's failure model) and much faster than FULL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def safe_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    """An engine for ``url`` with the schema at the newest revision."""
    try:
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        if migrate:
            upgrade(engine)
    except OSError as exc:
        raise OperatorError(
            f"cannot open the store {safe_url(url)}: {exc.strerror or exc} "
            "(is [store] data_dir writable by the gateway's user?)"
        ) from None
    except (sa_exc.OperationalError, sa_exc.DatabaseError) as exc:
        reason = str(exc.orig) if getattr(exc, "orig", None) is not None else str(exc)
        raise OperatorError(f"cannot open the store {safe_url(url)}: {reason}") from None
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise OperatorError(f"[store] url {safe_url(url)}: {exc}") from None
    return engine


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
        engine = create_engine(url if path is None else f"sqlite:///file:{path}?mode=ro&uri=true")
        try:
            with engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        finally:
            engine.dispose()
    except (sa_exc.OperationalError, sa_exc.DatabaseError) as exc:
        reason = str(exc.orig) if getattr(exc, "orig", None) is not None else str(exc)
        raise OperatorError(f"cannot read the store {safe_url(url)}: {reason}") from None
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise OperatorError(f"[store] url {safe_url(url)}: {exc}") from None
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


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
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
    path = sqlite_path(url)
    engine = create_engine(url if path is None else f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            n_users = conn.execute(select(func.count()).select_from(users)).scalar_one()
            n_disabled = conn.execute(
                select(func.count()).select_from(users).where(users.c.disabled.is_(True))
            ).scalar_one()
            n_folders = conn.execute(select(func.count()).select_from(mailboxes)).scalar_one()
            n_messages = conn.execute(select(func.count()).select_from(messages)).scalar_one()
    except (sa_exc.OperationalError, sa_exc.DatabaseError) as exc:
        reason = str(exc.orig) if getattr(exc, "orig", None) is not None else str(exc)
        raise OperatorError(f"cannot read the store {safe_url(url)}: {reason}") from None
    finally:
        engine.dispose()
    return StoreCounts(n_users, n_disabled, n_folders, n_messages)
