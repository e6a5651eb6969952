"""The Alembic migrations produce exactly the schema module's tables."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imapgate.store.engine import open_engine
from imapgate.store.schema import include_name, metadata


def test_migrations_match_schema(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 's.sqlite3'}")
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": include_name})
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_upgrade_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    open_engine(url)
    open_engine(url)


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
