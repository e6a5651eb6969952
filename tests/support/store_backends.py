"""The store tests on both backends: SQLite (a file in the test's tmp dir) and PostgreSQL (a
fresh database on the session's private server, :mod:`tests.support.postgres`).

Fixtures (loaded as a plugin by ``tests/conftest.py``):

* ``store_url`` -- parametrized ``sqlite`` / ``postgresql``: the URL of an empty store.  The
  PostgreSQL one is cloned from a template that already holds the schema at head (migrating
  each test's database would cost ~1 s; cloning costs ~0.1 s), so ``open_engine`` finds it
  current; a test that needs an *unmigrated* database asks for ``empty_store_url``;
* ``empty_store_url`` -- the same, without any schema (migration tests);
* ``store_engine`` -- ``open_engine(store_url)``, disposed after the test.

``store_backend`` (the parameter: ``"sqlite"`` or ``"postgresql"``) lets a test say what differs;
``@POSTGRESQL_ONLY`` runs a test on PostgreSQL alone.
Select one backend with ``-k sqlite`` / ``-k postgresql``.  The PostgreSQL server starts only
when a ``postgresql`` test runs (``request.getfixturevalue``), so ``-k sqlite`` never starts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine

from imapgate.store.engine import open_engine

if TYPE_CHECKING:
    from .postgres import PostgresDatabase, PostgresServer

BACKENDS = ("sqlite", "postgresql")
#: For a test of what only PostgreSQL has (LISTEN/NOTIFY, concurrent writers): the store
#: fixtures on PostgreSQL alone, instead of a SQLite run that skips.
POSTGRESQL_ONLY = pytest.mark.parametrize("store_backend", ["postgresql"], indirect=True)
#: Template database with the schema at head (made once per server).
MIGRATED_TEMPLATE = "imapgate_migrated"


def _migrate(db: PostgresDatabase) -> None:
    open_engine(db.url).dispose()


def _database(request: pytest.FixtureRequest, *, migrated: bool) -> Iterator[str]:
    from .postgres import database

    server: PostgresServer = request.getfixturevalue("postgres_server")
    template = server.make_template(MIGRATED_TEMPLATE, _migrate) if migrated else "imapgate_template"
    with database(server, template=template) as db:
        yield db.url
        if not server.running:  # a test stopped it: the session's other tests need it
            server.start()


def _url(backend: str, request: pytest.FixtureRequest, tmp_path: Path, *, migrated: bool) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
    else:
        yield from _database(request, migrated=migrated)


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def store_url(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[str]:
    yield from _url(store_backend, request, tmp_path, migrated=True)


@pytest.fixture
def empty_store_url(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[str]:
    yield from _url(store_backend, request, tmp_path, migrated=False)


@pytest.fixture
def store_engine(store_url: str) -> Iterator[Engine]:
    engine = open_engine(store_url)
    try:
        yield engine
    finally:
        engine.dispose()
