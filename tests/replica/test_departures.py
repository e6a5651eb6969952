"""The departures record (replica/departures.py): written with the expunge, read
by key, bounded by age and count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select

from imapgate.replica import departures as dep_mod
from imapgate.replica.departures import Departure, DepartureLog
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine
from imapgate.store.schema import departures


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The store on SQLite (migrated), and the table alone on a real PostgreSQL:
    the record is portable SQLAlchemy Core."""
    if request.param == "sqlite":
        yield open_engine(f"sqlite:///{tmp_path / 'store.db'}")
        return
    db = request.getfixturevalue("postgres_db")
    engine = create_engine(db.url.replace("postgresql://", "postgresql+psycopg://", 1))
    departures.create(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    return open_engine(f"sqlite:///{tmp_path / 'store.db'}")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _count(engine: Engine) -> int:
    with engine.connect() as db:
        return int(db.execute(select(func.count()).select_from(departures)).scalar_one())


def test_written_in_the_callers_transaction_and_read_by_key(engine: Engine) -> None:
    clock = Clock()
    log = DepartureLog(engine, clock=clock)
    with engine.begin() as db:
        log.writer(7, 100, [3, 1, 2], "moved", "alice", "Archive")(db)
        log.writer(7, 101, [1], "deleted", "bob")(db)  # another UIDVALIDITY: another message
    got = log.lookup(7, 100, [1, 2, 9])
    assert got == {
        1: Departure(1, "moved", "alice", "Archive", clock.now),
        2: Departure(2, "moved", "alice", "Archive", clock.now),
    }
    assert log.lookup(7, 101, [1]) == {1: Departure(1, "deleted", "bob", None, clock.now)}
    assert log.lookup(8, 100, [1]) == {}


def test_a_rolled_back_transaction_leaves_no_departure(engine: Engine) -> None:
    log = DepartureLog(engine)
    with pytest.raises(RuntimeError), engine.begin() as db:
        log.writer(1, 1, [5], "deleted", "alice")(db)
        raise RuntimeError("the replica change failed")
    assert log.lookup(1, 1, [5]) == {}


def test_a_later_departure_replaces_an_earlier_one(engine: Engine) -> None:
    """The sync may see a gateway move at the hoster before the move commits: the
    move's own record (who, where) wins."""
    clock = Clock()
    log = DepartureLog(engine, clock=clock)
    with engine.begin() as db:
        log.writer(1, 1, [5], "hoster")(db)
    clock.now += 1
    with engine.begin() as db:
        log.writer(1, 1, [5], "moved", "alice", "Done")(db)
    assert log.lookup(1, 1, [5])[5] == Departure(5, "moved", "alice", "Done", clock.now)
    assert _count(engine) == 1


def test_pruned_by_age_and_by_count(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dep_mod, "MAX_ROWS", 10)
    clock = Clock()
    log = DepartureLog(engine, clock=clock)
    with engine.begin() as db:
        log.writer(1, 1, range(1, 6), "deleted", "alice")(db)
    clock.now += dep_mod.RETENTION_SECONDS + 1
    with engine.begin() as db:
        for i in range(12):
            clock.now += 1
            log.writer(2, 1, [100 + i], "deleted", "bob")(db)
        assert log.prune(db) == 5 + 2  # the old ones, then the oldest beyond MAX_ROWS
    assert _count(engine) == 10
    assert log.lookup(1, 1, range(1, 6)) == {}
    assert sorted(log.lookup(2, 1, range(100, 112))) == list(range(102, 112))


def test_pruning_runs_by_itself_every_few_writes(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dep_mod, "PRUNE_EVERY", 4)
    clock = Clock()
    log = DepartureLog(engine, clock=clock)
    with engine.begin() as db:
        log.writer(1, 1, [1], "hoster")(db)
    clock.now += dep_mod.RETENTION_SECONDS + 1
    for uid in (2, 3, 4):
        with engine.begin() as db:
            log.writer(1, 1, [uid], "hoster")(db)
    assert sorted(log.lookup(1, 1, [1, 2, 3, 4])) == [2, 3, 4]


def test_a_large_move_is_recorded_whole(engine: Engine) -> None:
    log = DepartureLog(engine)
    with engine.begin() as db:
        log.writer(1, 1, range(1, 2_001), "moved", "alice", "Archive")(db)
    assert len(log.lookup(1, 1, list(range(1, 2_001)))) == 2_000


def test_the_replica_records_what_the_sync_found_gone_at_the_hoster(sqlite_engine: Engine) -> None:
    replica = Replica(sqlite_engine)
    mb = replica.upsert_mailbox("INBOX", "/", ())
    replica.reset(mb, 42, "initial")
    replica.add_messages(mb, [MessageRecord(u, (), 0, 1.0, 0, 10, None) for u in (1, 2, 3)])
    replica.expunge(mb, [2, 9])  # the sync: no hook of the write path
    got = replica.departures.lookup(mb.id, 42, [1, 2, 9])
    assert list(got) == [2] and got[2].kind == "hoster" and got[2].user is None
    # The write path's hook is its own record: nothing "at the hoster" added.
    replica.expunge(mb, [3], hook=replica.departures.writer(mb.id, 42, [3], "deleted", "bob"))
    assert replica.departures.lookup(mb.id, 42, [3])[3].user == "bob"
