"""``imapgate store copy`` (store/copy.py, gateway/admin_store.py): a SQLite store moves to
PostgreSQL whole -- users still log in, read state and ACLs are there, new rows get new ids --
and a target that holds anything is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from imapgate.errors import OperatorError
from imapgate.gateway.admin_store import copy_to, with_password
from imapgate.index.store import LEVEL1_COLUMNS, Doc, SqliteIndexStore
from imapgate.replica.content import ContentCache
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.copy import copied_tables
from imapgate.store.engine import open_engine
from imapgate.store.schema import content, search_docs, search_folders
from imapgate.team.acl import rights
from imapgate.team.acl_store import AclStore
from imapgate.team.journal import Journal, JournalEntry
from imapgate.team.users import UserDirectory
from tests.support.postgres import PostgresDatabase


def filled_sqlite(tmp_path: Path, messages: int = 12_000) -> Replica:
    engine = open_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    users = UserDirectory(engine)
    alice, _bob = users.add("alice", "alice-pw"), users.add("bob", "bob-pw")
    acl = AclStore(engine)
    acl.add_group("team")
    acl.add_members("team", ["alice", "bob"])
    acl.set_entry("INBOX", "$team", "lrs", default=rights("lrswipkxte"))
    replica = Replica(engine)
    mb = replica.upsert_mailbox("INBOX", "/", ())
    replica.reset(mb, 42, "initial")
    replica.add_messages(
        mb,
        [
            MessageRecord(u, ("\\Flagged",) if u % 7 == 0 else (), 0, 1.7e9 + u, 60, 100 + u)
            for u in range(1, messages + 1)
        ],
    )
    replica.set_private_flags(mb, alice.id, {"\\Seen": [1, 2, 3]}, {})
    Journal(engine).record(JournalEntry(user="alice", client="test", command="STORE", mailbox="INBOX"))
    return replica


def test_sqlite_to_postgresql_whole(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    source = filled_sqlite(tmp_path)
    # Node-local data (content cache, search index) stays behind: each node fills its own.
    mb = source.get("INBOX")
    assert mb is not None
    ContentCache(source.engine, 1 << 20).put_many(mb.id, 42, {(1, b"BODY[]"): b"hello"})
    index = SqliteIndexStore(source.engine)
    index.write(index.current(mb.id, 42).gen, [Doc(1, 1, True, 5, {c: "x" for c in LEVEL1_COLUMNS})], 5, 0.0)
    seen: list[tuple[str, int, int]] = []
    summary = copy_to(source.engine, postgres_db.url, lambda t, d, n: seen.append((t, d, n)))
    assert summary.counts["messages"] == 12_000 and summary.counts["users"] == 2
    assert ("messages", 12_000, 12_000) in seen and ("messages", 5000, 12_000) in seen  # progress in slices
    target = open_engine(postgres_db.url)
    try:
        with source.engine.connect() as a, target.connect() as b:
            for table in copied_tables():
                n = select(func.count()).select_from(table)
                assert a.execute(n).scalar() == b.execute(n).scalar(), table.name
        with target.connect() as b:
            for table in (content, search_folders, search_docs):
                assert b.execute(select(func.count()).select_from(table)).scalar() == 0, table.name
        users = UserDirectory(target)
        assert users.verify("alice", "alice-pw") is not None  # the argon2 hash came along
        carol = users.add("carol", "carol-pw")  # the id sequence was moved past the copied ids
        assert carol.id == 3
        moved = Replica(target)
        moved.load()
        mb = moved.get("INBOX")
        assert mb is not None and mb.exists == 12_000 and mb.uidvalidity == 42
        assert "\\Flagged" in mb.records[7].flags
        alice = users.get("alice")
        assert alice is not None and list(moved.private_state(mb, alice.id).flags["\\Seen"]) == [1, 2, 3]
        table = AclStore(target).load(rights("lrswipkxte"))
        assert ("$team", "lrs") in [(str(e.identifier), str(e.rights)) for e in table.shown_entries("INBOX")]
    finally:
        target.dispose()
    # Running it again is refused: the target is not empty any more.
    with pytest.raises(OperatorError, match=r"refused: the target already holds rows: .*users \(3\)"):
        copy_to(source.engine, postgres_db.url)


def test_copy_into_itself_is_refused(tmp_path: Path) -> None:
    source = filled_sqlite(tmp_path, messages=1)
    with pytest.raises(OperatorError, match="this store itself"):
        copy_to(source.engine, f"sqlite:///{tmp_path / 'old.sqlite3'}")


def test_password_from_the_environment_goes_into_the_url() -> None:
    assert with_password("postgresql://gw@db/x", "p@ss") == "postgresql://gw:p%40ss@db/x"
    assert with_password("postgresql://gw:inline@db/x", "other") == "postgresql://gw:inline@db/x"
    assert with_password("postgresql://gw@db/x", "") == "postgresql://gw@db/x"


def test_cli_copy_with_progress_and_refusal(
    tmp_path: Path, postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.cli import assert_one_line_error, closed_port, run, write_config

    cfg = write_config(tmp_path, upstream_port=closed_port())
    filled = filled_sqlite(tmp_path, messages=60_000)
    filled.engine.dispose()
    (tmp_path / "imapgate-data").mkdir()
    (tmp_path / "old.sqlite3").rename(tmp_path / "imapgate-data" / "imapgate.sqlite3")
    target = postgres_db.url.replace(":imapgate-pg-secret@", "@")  # password from the environment
    monkeypatch.setenv("IMAPGATE_STORE_PASSWORD", "imapgate-pg-secret")
    done = run("store", "copy", "--to", target, cfg=cfg)
    again = run("store", "copy", "--to", target, cfg=cfg)
    assert done.returncode == 0, done.stderr
    assert "messages: 50000 of 60000 rows" in done.stdout and "messages: 60000 of 60000 rows" in done.stdout
    assert "copied" in done.stdout.splitlines()[-1]
    assert "not copied: the content cache and the search index (node-local" in done.stdout
    line = assert_one_line_error(again, "refused: the target already holds rows")
    assert "imapgate-pg-secret" not in line and "imapgate-pg-secret" not in again.stdout
