"""A private PostgreSQL 15 server for the tests: the shared store of several gateway nodes.

:class:`PostgresServer` runs ``initdb`` and ``postgres`` from Debian's
``/usr/lib/postgresql/15/bin`` in a temp dir of its own, on a kernel-chosen port of 127.0.0.1 and
a unix socket in that dir -- never the machine's own cluster on 5432.  One server per test
session (fixture ``postgres_server``); each test gets a fresh database cloned from a template
(fixture ``postgres_db``, ~0.1 s), owned by a non-superuser role with a password, as a real
deployment would have it::

    def test_something(postgres_db: PostgresDatabase) -> None:
        with psycopg.connect(postgres_db.url) as conn: ...

For "PostgreSQL restarted under load" tests: :meth:`PostgresServer.restart` (fast or immediate
shutdown, same port and data), :meth:`PostgresServer.stop` / :meth:`PostgresServer.start`, and
:meth:`PostgresServer.connection_count` (client backends per database).

TESTING-notes (what bites):

* ``initdb`` and ``postgres`` refuse to run as root: as root they run as the ``postgres`` system
  user (made by the Debian package) with root's supplementary groups dropped; the temp dir is
  0711 so that user can traverse it (pytest's own tmp dirs are 0700 root), the data dir 0700
  owned by it.  Not root: they run as the current user.
* Unix socket paths max out at 107 bytes: the socket dir is short (``/tmp/imapgate-pg-XXXX/s``).
* Speed: ``fsync`` and ``full_page_writes`` are off (the data is disposable; only an OS crash
  could lose it).  ``synchronous_commit`` stays on: with it off, an ``immediate`` stop (like a
  crash) could lose the last commits, and "nothing lost after a PostgreSQL restart" tests would
  fail for the wrong reason.  A database is created with ``STRATEGY FILE_COPY`` from a template
  (PostgreSQL 15's default WAL_LOG strategy writes every block of the template to WAL, slower
  for small ones).
* A connection attempt during start-up (or shutdown) is refused with "the database system is
  starting up": readiness is a successful ``SELECT 1`` through psycopg, polled, not a sleep.
* ``DROP DATABASE ... WITH (FORCE)`` (PostgreSQL 13+) ends leftover connections of a test.
* The postmaster is our child in its own session: :meth:`PostgresServer.stop` (SIGINT = fast
  shutdown, then SIGQUIT = immediate, then SIGKILL of the session) leaves no process behind,
  also when a test failed.  A pytest run killed with SIGKILL leaves its server running: its pid
  is the first line of ``/tmp/imapgate-pg-*/data/postmaster.pid``.

By hand, for debugging::

    .venv/bin/python -m tests.support.postgres      # starts one, prints URLs, Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql

from imapgate.demo.dovecot import find_free_port

from .processes import kill_session, port_is_free

__all__ = [
    "APP_PASSWORD",
    "APP_ROLE",
    "PG_BIN",
    "PostgresDatabase",
    "PostgresError",
    "PostgresServer",
    "postgres_available",
]

PG_BIN = Path(os.environ.get("IMAPGATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: The non-superuser role that owns every test database (what a deployment's gateway logs in as).
APP_ROLE = "imapgate"
APP_PASSWORD = "imapgate-pg-secret"
_SUPERUSER = "postgres"
_SYSTEM_USER = "postgres"
_TEMPLATE = "imapgate_template"


class PostgresError(RuntimeError):
    """The test PostgreSQL failed to initialise, start or stop."""


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists() and (PG_BIN / "postgres").exists()


def _free_port() -> int:
    return find_free_port()  # outside the ephemeral range (find_free_port says why)


@dataclass(frozen=True)
class PostgresDatabase:
    """One database of a :class:`PostgresServer`, owned by :data:`APP_ROLE`."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        """``postgresql://imapgate:PASSWORD@127.0.0.1:PORT/NAME`` (password auth over TCP)."""
        return self.server.url(self.name)

    @property
    def admin_url(self) -> str:
        """Superuser URL of this database (trust auth), for a test's own set-up and checks."""
        return self.server.url(self.name, admin=True)

    def connect(self, *, admin: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url if admin else self.url, **kwargs)

    def connection_count(self) -> int:
        return self.server.connection_count(self.name)


class PostgresServer:
    """A private PostgreSQL server; ``start()``/``stop()`` or a context manager (``close()``)."""

    def __init__(
        self, *, port: int | None = None, max_connections: int = 200, settings: dict[str, str] | None = None
    ) -> None:
        if not postgres_available():
            raise PostgresError(
                f"PostgreSQL 15 not found in {PG_BIN} (apt-get install -y postgresql; "
                "scripts/setup-env.sh does this)"
            )
        self._own_port = port is None
        self.port = port if port is not None else _free_port()
        self.host = "127.0.0.1"
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        # Short, world-traversable (not listable) dir: the postgres user must reach it, and the
        # socket path must stay under 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="imapgate-pg-", dir="/tmp"))
        os.chmod(self.root, 0o711)
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "s"
        self.log_path = self.root / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._initialised = False
        self._names = itertools.count(1)
        self._as_root = os.geteuid() == 0
        if self._as_root:
            entry = pwd.getpwnam(_SYSTEM_USER)
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
        else:
            self._uid, self._gid = os.geteuid(), os.getegid()

    # ----------------------------------------------------------------- URLs and connections

    def url(self, database: str = "postgres", *, admin: bool = False) -> str:
        if admin:
            return f"postgresql://{_SUPERUSER}@{self.host}:{self.port}/{database}"
        return f"postgresql://{APP_ROLE}:{APP_PASSWORD}@{self.host}:{self.port}/{database}"

    def admin_connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        """A superuser connection (autocommit) over the unix socket."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=_SUPERUSER,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def connection_count(self, database: str | None = None) -> int:
        """Client connections now open (to ``database``, or to any), not counting this query's."""
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        params: tuple[str, ...] = ()
        if database is not None:
            query += " AND datname = %s"
            params = (database,)
        with self.admin_connect() as conn:
            row = conn.execute(query, params).fetchone()
        assert row is not None
        return int(row[0])

    def terminate_connections(self, database: str) -> int:
        """End every client connection to ``database`` (as a crashing backend would); how many."""
        with self.admin_connect() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        return sum(1 for (done,) in rows if done)

    # ----------------------------------------------------------------- databases

    def create_database(self, name: str | None = None, *, template: str = _TEMPLATE) -> PostgresDatabase:
        """A new empty database owned by :data:`APP_ROLE`, cloned from ``template``."""
        name = name or f"test_{os.getpid()}_{next(self._names)}"
        with self.admin_connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template), sql.Identifier(APP_ROLE)
                )
            )
        return PostgresDatabase(self, name)

    def drop_database(self, name: str) -> None:
        with self.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def make_template(self, name: str, setup: Callable[[PostgresDatabase], None]) -> str:
        """Create template database ``name`` (once) by running ``setup`` on it, e.g. migrations;
        :meth:`create_database` ``(template=name)`` then clones it in a fraction of the set-up time."""
        with self.admin_connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return name
        database = self.create_database(name)
        setup(database)
        self.terminate_connections(name)
        with self.admin_connect() as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(name)))
        return name

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _demote(self) -> dict[str, Any]:
        if not self._as_root:
            return {}
        return {"user": self._uid, "group": self._gid, "extra_groups": []}

    def _initdb(self) -> None:
        for path in (self.data_dir, self.socket_dir):
            path.mkdir(mode=0o700)
            os.chown(path, self._uid, self._gid)
        result = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                _SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            check=False,
            cwd=self.root,
            timeout=120,
            **self._demote(),
        )
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace').strip()}"
            )
        # Superuser without a password over TCP for the fixtures' own URLs; everyone else by
        # password (scram), as in a deployment.  First match wins.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            f"host all {_SUPERUSER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n",
            encoding="utf-8",
        )
        os.chown(hba, self._uid, self._gid)

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (running ``initdb`` the first time) and wait until it answers."""
        if self.running:
            return
        first = not self._initialised
        if first and self._own_port and not port_is_free(self.host, self.port):
            self.port = _free_port()
        if first:
            self._initdb()
            self._initialised = True
        options = {
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            "log_connections": "off",
            **self.settings,
        }
        args = [str(PG_BIN / "postgres"), "-D", str(self.data_dir)]
        for key, value in options.items():
            args += ["-c", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            os.chown(self.log_path, self._uid, self._gid)
            # Own session: a last-resort kill reaches every backend it forked.
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.root,
                start_new_session=True,
                **self._demote(),
            )
        try:
            self._wait_ready(timeout)
            if first:
                self._bootstrap()
        except BaseException:
            self._kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise PostgresError(f"postgres exited during start\n{self.log_tail()}")
            try:
                with psycopg.connect(
                    host=self.host, port=self.port, user=_SUPERUSER, dbname="postgres", connect_timeout=2
                ) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = str(exc).strip()
            time.sleep(0.02)
        raise PostgresError(f"postgres did not answer on {self.host}:{self.port}: {last}\n{self.log_tail()}")

    def _bootstrap(self) -> None:
        with self.admin_connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(APP_PASSWORD)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(_TEMPLATE), sql.Identifier(APP_ROLE)
                )
            )
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(_TEMPLATE)))

    def stop(self, mode: str = "fast", timeout: float = 20.0) -> None:
        """Shut down: ``fast`` (SIGINT: abort transactions, disconnect clients, clean shutdown),
        ``immediate`` (SIGQUIT: like a crash, recovery at the next start) or ``smart`` (SIGTERM:
        wait for clients to go).  Escalates to SIGKILL of the session after ``timeout``."""
        if self._proc is None:
            return
        signum = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=timeout)
        self._kill()
        self._proc = None

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop and start again on the same port with the same data (clients see their
        connections drop and must reconnect)."""
        self.stop(mode)
        self.start(timeout)

    def _kill(self) -> None:
        if self._proc is None:
            return
        # Backends exit by themselves once the postmaster is gone (they watch its pipe); SIGKILL
        # whatever of the session is still there.
        kill_session(self._proc.pid, first=signal.SIGKILL, grace=5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)

    def close(self) -> None:
        """Stop and delete the data."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log output)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "--- postgres.log:\n" + "\n".join(text)


@contextlib.contextmanager
def database(server: PostgresServer, *, template: str = _TEMPLATE) -> Iterator[PostgresDatabase]:
    """A fresh database for the duration of the block, dropped afterwards (also on failure)."""
    db = server.create_database(template=template)
    try:
        yield db
    finally:
        server.drop_database(db.name)


def _main() -> None:
    with PostgresServer() as server:
        db = server.create_database("debug")
        print(
            f"PostgreSQL {server.port} in {server.root}\n  app:   {db.url}\n  admin: {db.admin_url}\n"
            f"  psql -h {server.socket_dir} -p {server.port} -U postgres debug\nCtrl-C stops it."
        )
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    _main()
