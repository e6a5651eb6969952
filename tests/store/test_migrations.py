"""The Alembic migrations produce exactly the schema module's tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imapgate.store.engine import migration_status, open_engine
from imapgate.store.schema import include_name, metadata
from tests.support.concurrency import at_once


def test_migrations_match_schema(empty_store_url: str) -> None:
    engine = open_engine(empty_store_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": include_name})
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_twice_is_harmless(empty_store_url: str) -> None:
    open_engine(empty_store_url).dispose()
    open_engine(empty_store_url).dispose()
    assert migration_status(empty_store_url).current == migration_status(empty_store_url).head


def test_nodes_starting_at_once_migrate_once(store_backend: str, empty_store_url: str) -> None:
    """Four nodes start on one empty PostgreSQL at the same moment: the advisory lock
    lets one migrate while the others wait; all end at head, none fails on a table
    another just created."""
    if store_backend != "postgresql":
        pytest.skip("SQLite serialises its writers itself; several nodes need PostgreSQL")
    assert at_once(4, lambda: open_engine(empty_store_url).dispose()) == []
    status = migration_status(empty_store_url)
    assert status.exists and status.current == status.head


def test_status_of_an_empty_database(store_backend: str, empty_store_url: str) -> None:
    status = migration_status(empty_store_url)
    assert not status.exists and status.current is None and status.pending


def test_0002_keeps_unsubscriptions_as_decisions(tmp_path: Path) -> None:
    """Upgrading a store from before explicit subscriptions: every "unsubscribed" row
    stays an unsubscribed decision; nothing else becomes one."""
    from sqlalchemy import text

    from imapgate.store.engine import upgrade

    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    engine = open_engine(url, migrate=False)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, name, password_hash, created_at, disabled) "
                "VALUES (1, 'ann', 'x', 0, 0)"
            )
        )
        conn.execute(text("INSERT INTO unsubscriptions (user_id, mailbox) VALUES (1, 'Junk'), (1, 'Sent')"))
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT user_id, mailbox, subscribed FROM subscriptions ORDER BY mailbox")
        ).all()
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
    assert [tuple(r) for r in rows] == [(1, "Junk", 0), (1, "Sent", 0)]
    assert "unsubscriptions" not in tables


def test_0012_empties_the_shared_content_cache_on_postgresql_only(
    store_backend: str, empty_store_url: str
) -> None:
    """Content cached in the shared database by an earlier version goes (each node has its own
    cache now); a SQLite store keeps its cache."""
    from sqlalchemy import text

    from imapgate.store.engine import upgrade

    engine = open_engine(empty_store_url, migrate=False)
    upgrade(engine, "0011")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mailboxes (id, name, delimiter, attributes, uidvalidity, uidnext, "
                "upstream_modseq, modseq, synced) VALUES (1, 'INBOX', '/', '', 7, 2, 0, 1, false)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO content (mailbox_id, uidvalidity, uid, item, data, size, last_used) "
                "VALUES (1, 7, 1, 'BODY[]', :d, 5, 0)"
            ),
            {"d": b"hello"},
        )
    upgrade(engine)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM content")).scalar_one()
    engine.dispose()
    assert left == (0 if store_backend == "postgresql" else 1)
