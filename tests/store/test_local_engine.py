"""The node-local SQLite file beside a PostgreSQL store (store/engine.py ``open_local_engine``):
it opens at the newest schema, holds content and index rows for mailbox ids it has no
``mailboxes`` row for (foreign keys off), and a data_dir the gateway cannot write is a
one-line ``OperatorError``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from imapgate.errors import OperatorError
from imapgate.index.casemap import normalize
from imapgate.index.query import Needle
from imapgate.index.store import SqliteIndexStore
from imapgate.index.worker import build_docs
from imapgate.replica.content import ContentCache
from imapgate.store.engine import (
    LOCAL_FILE,
    local_path,
    migration_status,
    open_engine,
    open_local_engine,
    read_only_local_engine,
)
from imapgate.store.schema import content, mailboxes
from tests.support.readonly import read_only, writable_dir


def test_opens_at_head_without_foreign_keys(tmp_path: Path) -> None:
    engine = open_local_engine(tmp_path / "node")
    try:
        assert local_path(tmp_path / "node") == tmp_path / "node" / LOCAL_FILE
        assert (tmp_path / "node" / LOCAL_FILE).exists()
        status = migration_status(f"sqlite:///{tmp_path / 'node' / LOCAL_FILE}")
        assert status.exists and not status.pending
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 0
            assert conn.execute(select(func.count()).select_from(mailboxes)).scalar() == 0
    finally:
        engine.dispose()


def test_content_and_index_without_mailbox_rows(tmp_path: Path) -> None:
    engine = open_local_engine(tmp_path)
    try:
        cache = ContentCache(engine, 1 << 20)
        cache.put_many(7001, 42, {(1, b"BODY[]"): b"hello", (2, b"ENVELOPE"): None})
        fresh = ContentCache(engine, 1 << 20)  # nothing in memory: read from the file
        assert fresh.get_many(7001, 42, [(1, b"BODY[]"), (2, b"ENVELOPE"), (3, b"BODY[]")]) == {
            (1, b"BODY[]"): b"hello",
            (2, b"ENVELOPE"): None,
        }
        index = SqliteIndexStore(engine)
        gen = index.current(7001, 42).gen
        raw = b"From: a@example.com\r\nSubject: Rechnung 4711\r\n\r\nDie Lieferung kommt.\r\n"
        index.write(gen, build_docs(2, [(1, raw)]), len(raw), 0.0)
        assert index.search(gen, Needle("body", normalize("lieferung"), "")) == {1}
        assert index.search(gen, Needle("subject", normalize("rechnung"), "")) == {1}
    finally:
        engine.dispose()


def test_the_sqlite_store_keeps_its_foreign_keys(tmp_path: Path) -> None:
    """The main store is unchanged: a content row needs its folder."""
    engine = open_engine(f"sqlite:///{tmp_path / 'imapgate.sqlite3'}")
    try:
        with pytest.raises(Exception, match="FOREIGN KEY"):
            ContentCache(engine, 1 << 20).put_many(7001, 42, {(1, b"BODY[]"): b"x"})
    finally:
        engine.dispose()


@pytest.fixture
def node_dir(tmp_path: Path) -> Iterator[Path]:
    with writable_dir(tmp_path / "node") as where:
        yield where


def test_unwritable_data_dir_is_one_line(node_dir: Path) -> None:
    with read_only(node_dir):
        with pytest.raises(OperatorError) as err:
            open_local_engine(node_dir)
        message = str(err.value)
        assert "\n" not in message and "is not writable" in message and "[store] data_dir" in message
        with pytest.raises(OperatorError, match="cannot create"):
            open_local_engine(node_dir / "sub")


def test_unwritable_local_file_is_refused(node_dir: Path) -> None:
    open_local_engine(node_dir).dispose()
    with read_only(node_dir), pytest.raises(OperatorError, match=r"node-cache\.sqlite3 is not writable"):
        open_local_engine(node_dir)


def test_read_only_open_never_creates(tmp_path: Path) -> None:
    assert read_only_local_engine(tmp_path) is None
    assert not (tmp_path / LOCAL_FILE).exists()
    open_local_engine(tmp_path).dispose()
    engine = read_only_local_engine(tmp_path)
    assert engine is not None
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(content)).scalar() == 0
    finally:
        engine.dispose()
