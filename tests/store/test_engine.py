"""Opening the store: the PostgreSQL driver and pool, and credentials kept out of every message."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from imapgate.errors import OperatorError
from imapgate.store.engine import (
    POOL_SIZE,
    driver_url,
    migration_status,
    open_engine,
    safe_text,
    safe_url,
    store_counts,
)
from tests.support.postgres import PostgresDatabase


def test_driver_is_psycopg_3() -> None:
    assert driver_url("postgresql://u:p@h/d") == "postgresql+psycopg://u:p@h/d"
    assert driver_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert driver_url("postgresql+psycopg://u@h/d") == "postgresql+psycopg://u@h/d"
    assert driver_url("sqlite:////x.db") == "sqlite:////x.db"


def test_passwords_are_redacted() -> None:
    url = "postgresql://gw:S3cr%40t@db:5432/x"
    assert safe_url(url) == "postgresql://gw:***@db:5432/x"
    said = 'connection to "host=db user=gw password=S3cr@t" failed for postgresql://gw:S3cr%40t@db/x'
    cleaned = safe_text(said, url)
    assert "S3cr" not in cleaned and "password=***" in cleaned


def test_pool_and_driver_of_a_postgresql_engine(postgres_db: PostgresDatabase) -> None:
    engine = open_engine(postgres_db.url)
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        assert engine.pool.size() == POOL_SIZE  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_setting('application_name')")).scalar() == "imapgate"
    finally:
        engine.dispose()


def test_wrong_password_is_one_line_without_it(postgres_db: PostgresDatabase) -> None:
    url = postgres_db.url.replace(":imapgate-pg-secret@", ":Wrong-Pw-77@")
    with pytest.raises(OperatorError) as info:
        open_engine(url)
    message = str(info.value)
    assert "Wrong-Pw-77" not in message and "\n" not in message.strip()
    assert "password authentication failed" in message and ":***@" in message
    with pytest.raises(OperatorError) as again:
        migration_status(url)
    assert "Wrong-Pw-77" not in str(again.value)


def test_unreachable_database_names_it(postgres_db: PostgresDatabase) -> None:
    url = f"postgresql://imapgate:Hidden-1@127.0.0.1:1/{postgres_db.name}"
    with pytest.raises(
        OperatorError, match=r"cannot open the store postgresql://imapgate:\*\*\*@127.0.0.1:1/"
    ):
        open_engine(url)


def test_status_and_counts_on_both_backends(store_url: str, store_engine: Engine) -> None:
    status = migration_status(store_url)
    assert status.exists and not status.pending and status.current == status.head
    counts = store_counts(store_url)
    assert (counts.users, counts.folders, counts.messages) == (0, 0, 0)
