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
