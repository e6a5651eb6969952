"""The SQLite FTS5 index store: writes, exact substring lookups per field, replacement,
deletes, generations and their purge, coverage as read back after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from imapgate.index.query import Needle
from imapgate.index.store import Doc, SqliteIndexStore
from imapgate.index.worker import build_docs
from imapgate.store.engine import open_engine

MESSAGES = {
    1: b"From: Anna <anna@example.com>\r\nTo: team@example.com\r\nSubject: Rechnung 4711\r\n"
       b"X-Ticket: T-9\r\n\r\nDie Rechnung \"final\" liegt bei.\r\n",
    2: b"From: bob@example.org\r\nCc: anna@example.com\r\nSubject: Re: Angebot\r\n\r\n"
       + "Grüße aus München\r\n".encode(),
    3: b"From: carol@example.net\r\nSubject: misc\r\nX-Ticket: none\r\n\r\nnothing to see\r\n",
}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_engine(f"sqlite:///{tmp_path / 's.sqlite3'}")


@pytest.fixture
def store(engine: Engine) -> SqliteIndexStore:
    return SqliteIndexStore(engine)


def _needle(field: str, value: str, header: str = "") -> Needle:
    from imapgate.index.casemap import normalize

    return Needle(field, normalize(value), header.lower())  # type: ignore[arg-type]


def _index_all(store: SqliteIndexStore, gen: int) -> None:
    store.write(gen, build_docs(2, list(MESSAGES.items())), 100, 1.0)


def test_lookups_per_field(store: SqliteIndexStore) -> None:
    gen = store.current(1, 42).gen
    _index_all(store, gen)
    assert store.search(gen, _needle("subject", "rechnung")) == {1}
    assert store.search(gen, _needle("from", "anna@")) == {1}
    assert store.search(gen, _needle("cc", "ANNA")) == {2}
    assert store.search(gen, _needle("to", "team@")) == {1}
    assert store.search(gen, _needle("bcc", "anna")) == set()
    assert store.search(gen, _needle("body", "grüße")) == {2}
    assert store.search(gen, _needle("body", "rechnung")) == {1}
    assert store.search(gen, _needle("text", "subject: misc")) == {3}
    assert store.search(gen, _needle("body", '"final"')) == {1}  # quotes inside the phrase
    # HEADER: candidates from every header line, verified against the named field only.
    assert store.search(gen, _needle("header", "t-9", "X-Ticket")) == {1}
    assert store.search(gen, _needle("header", "none", "X-Ticket")) == {3}
    assert store.search(gen, _needle("header", "none", "Subject")) == set()


def test_generations_are_separate_and_purged(store: SqliteIndexStore) -> None:
    a = store.current(1, 42).gen
    b = store.current(2, 7).gen
    _index_all(store, a)
    store.write(b, build_docs(2, [(1, MESSAGES[3])]), 10, 1.0)
    assert store.search(a, _needle("body", "nothing")) == {3}
    assert store.search(b, _needle("body", "nothing")) == {1}
    # A new UIDVALIDITY makes a new generation and retires the old one.
    c = store.current(1, 43).gen
    assert c not in (a, b)
    assert {f.gen: f.state for f in store.folders()} == {a: "retired", b: "current", c: "current"}
    assert store.search(c, _needle("body", "nothing")) == set()
    while store.purge(a, 2):
        pass
    assert a not in {f.gen for f in store.folders()}
    assert store.sizes()["docs"] == 1
    assert store.search(b, _needle("body", "nothing")) == {1}


def test_replace_and_delete(store: SqliteIndexStore, engine: Engine) -> None:
    gen = store.current(1, 1).gen
    store.write(gen, build_docs(1, [(1, MESSAGES[1])]), 10, 1.0)  # header fields first
    assert store.search(gen, _needle("subject", "rechnung")) == {1}
    assert store.search(gen, _needle("body", "liegt")) == set()
    _index_all(store, gen)  # then whole messages: the doc is replaced
    assert store.search(gen, _needle("subject", "rechnung")) == {1}
    assert store.search(gen, _needle("body", "liegt")) == {1}
    assert store.delete(gen, [1, 99]) == 1
    assert store.search(gen, _needle("subject", "rechnung")) == set()
    assert store.search(gen, _needle("body", "liegt")) == set()
    # The FTS rows went too (a contentless table keeps them unless deleted with their values).
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM search_fts_body WHERE search_fts_body MATCH 'liegt'")
        ).scalar()
    assert n == 0


def test_coverage_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    store = SqliteIndexStore(open_engine(url))
    gen = store.current(5, 9).gen
    docs = build_docs(2, [(1, MESSAGES[1]), (2, None)])  # 2: not fetched (too big): uncertain
    docs += build_docs(1, [(3, MESSAGES[3])])
    store.write(gen, docs, 0, 0.0)
    store.engine.dispose()
    again = SqliteIndexStore(open_engine(url))
    assert again.current(5, 9).gen == gen
    cov = again.coverage(gen)
    assert cov.full == {1} and cov.full_done == {1, 2}
    assert cov.headers == {1, 3} and cov.headers_done == {1, 2, 3}


def test_retire_for_rebuild(store: SqliteIndexStore) -> None:
    a = store.current(1, 1).gen
    store.current(2, 1)
    assert store.retire(1) == 1
    assert store.current(1, 1).gen != a
    assert store.retire() == 2


def test_uncertain_docs_are_not_searched(store: SqliteIndexStore) -> None:
    gen = store.current(1, 1).gen
    doc = Doc(7, 2, False)
    store.write(gen, [doc], 0, 0.0)
    assert store.search(gen, _needle("text", "anything")) == set()
    assert store.coverage(gen).full_done == {7}
