"""The private PostgreSQL 15 as the several-nodes store will use it: psycopg 3 (sync and async),
a fresh database per test, LISTEN/NOTIFY, advisory locks, a restart under connected clients."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from tests.support.postgres import APP_ROLE, PostgresDatabase, PostgresServer

pytestmark = pytest.mark.integration


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_connects_as_the_app_role_over_tcp(postgres_db: PostgresDatabase,
                                           postgres_server: PostgresServer) -> None:
    assert postgres_db.url.startswith(f"postgresql://{APP_ROLE}:")
    assert f"@127.0.0.1:{postgres_server.port}/" in postgres_db.url
    assert postgres_server.port != 5432
    with psycopg.connect(postgres_db.url) as conn:
        user, db, version, superuser = conn.execute(
            "SELECT current_user, current_database(), current_setting('server_version_num')::int, "
            "usesuper FROM pg_user WHERE usename = current_user").fetchone() or ()
        assert (user, db, superuser) == (APP_ROLE, postgres_db.name, False)
        assert 150000 <= version < 160000
        # It owns its database: it can create the schema.
        conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t (v) VALUES ('x')")


def test_wrong_password_is_refused(postgres_db: PostgresDatabase) -> None:
    bad = postgres_db.url.replace(":imapgate-pg-secret@", ":wrong@")
    assert bad != postgres_db.url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=5)


def test_databases_are_separate_and_cloned_from_templates(postgres_server: PostgresServer) -> None:
    def schema(db: PostgresDatabase) -> None:
        with db.connect() as conn:
            conn.execute("CREATE TABLE mailbox (name text PRIMARY KEY)")
            conn.execute("INSERT INTO mailbox VALUES ('INBOX')")

    template = postgres_server.make_template("peers_smoke_template", schema)
    assert postgres_server.make_template("peers_smoke_template", schema) == template  # made once
    first = postgres_server.create_database(template=template)
    second = postgres_server.create_database()
    try:
        with first.connect() as conn:
            assert conn.execute("SELECT name FROM mailbox").fetchall() == [("INBOX",)]
            conn.execute("INSERT INTO mailbox VALUES ('Sent')")
        with second.connect() as conn:
            assert conn.execute("SELECT to_regclass('mailbox')").fetchone() == (None,)
        with postgres_server.create_database(template=template).connect() as conn:
            # The clone did not see what the first test database added.
            assert conn.execute("SELECT count(*) FROM mailbox").fetchone() == (1,)
            name = conn.info.dbname
        postgres_server.drop_database(name)
    finally:
        postgres_server.drop_database(first.name)
        postgres_server.drop_database(second.name)


def test_listen_notify_round_trip(postgres_db: PostgresDatabase) -> None:
    with postgres_db.connect(autocommit=True) as listener, postgres_db.connect(autocommit=True) as sender:
        listener.execute("LISTEN changes")
        sender.execute("SELECT pg_notify('changes', %s)", ("INBOX 42",))
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=10, stop_after=1)]
        assert got == [("changes", "INBOX 42")]
        # A notification inside a transaction is delivered at commit only.
        with sender.transaction():
            sender.execute("NOTIFY changes, 'later'")
            assert list(listener.notifies(timeout=0.2)) == []
        assert [n.payload for n in listener.notifies(timeout=10, stop_after=1)] == ["later"]


async def test_listen_notify_async(postgres_db: PostgresDatabase) -> None:
    """The gateway is asyncio: psycopg's AsyncConnection gets notifications as a generator."""
    async with await psycopg.AsyncConnection.connect(postgres_db.url, autocommit=True) as listener, \
            await psycopg.AsyncConnection.connect(postgres_db.url, autocommit=True) as sender:
        await listener.execute("LISTEN bus")

        async def first_notify() -> str:
            async for notify in listener.notifies():
                return notify.payload
            raise AssertionError("notification stream ended")

        waiter = asyncio.ensure_future(first_notify())
        await sender.execute("NOTIFY bus, 'node-2: mailbox INBOX modseq 7'")
        assert await asyncio.wait_for(waiter, 10) == "node-2: mailbox INBOX modseq 7"


def test_advisory_lock_is_exclusive_and_released_with_the_session(postgres_db: PostgresDatabase) -> None:
    leader = postgres_db.connect(autocommit=True)
    other = postgres_db.connect(autocommit=True)
    try:
        assert leader.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,)
        assert other.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (False,)
        leader.close()  # the leader's node dies: its session locks go with it
        _wait_for(lambda: other.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,))
    finally:
        leader.close()
        other.close()


def test_connection_count(postgres_db: PostgresDatabase) -> None:
    assert postgres_db.connection_count() == 0
    conns = [postgres_db.connect() for _ in range(3)]
    try:
        assert postgres_db.connection_count() == 3
    finally:
        for conn in conns:
            conn.close()
    _wait_for(lambda: postgres_db.connection_count() == 0)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_under_a_connected_client(postgres_db: PostgresDatabase, postgres_server: PostgresServer,
                                          mode: str) -> None:
    conn = postgres_db.connect(autocommit=True)
    conn.execute("CREATE TABLE journal (id int)")
    conn.execute("INSERT INTO journal VALUES (1)")
    started = time.monotonic()
    postgres_server.restart(mode)
    restart_seconds = time.monotonic() - started
    # The old connection is gone, as for a gateway node whose database restarted.
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    assert conn.closed
    # Same port, same data: a reconnect finds every committed row (also after "immediate").
    with postgres_db.connect() as again:
        assert again.execute("SELECT id FROM journal").fetchall() == [(1,)]
    assert restart_seconds < 20

