"""pytest fixtures for the real peers beyond Dovecot (a plugin: ``pytest_plugins`` in
tests/conftest.py).  All lazy: nothing starts unless a test asks for it.

* ``postgres_server`` (session) -- a private PostgreSQL 15 (:mod:`tests.support.postgres`);
  ``postgres_db`` (per test) -- a fresh database on it, ``.url`` for the driver, dropped after;
* ``mail_dovecot`` (session) -- a Dovecot with the :data:`DOVECOT_USERS`, LMTP and an auth socket
  for Postfix; ``postfix`` (session) -- the hoster's submission server in front of it
  (:mod:`tests.support.postfix`); ``postfix_factory`` (per test) -- ``make(**options)`` for an
  instance with its own options (``message_size_limit=``, ``rejected_recipients=``, ...);
* ``team_dovecot`` (per test) -- a factory like ``fresh_dovecot`` whose team logins (alice, bob,
  carol) open the ``shared`` account's mailbox, with the ACL plugin on:
  ``team_dovecot(acls={"Secret": {"user=bob": "lr"}})`` -- compare Dovecot's answers with the
  gateway's for the same ACLs (see ``DovecotServer(mail_of=...)``);
* ``tls_certificate`` (session) -- a self-signed test certificate (:mod:`tests.support.tls`);
* ``haproxy_factory`` (per test) -- ``make(backends, proxy="v2"|"v1"|None, ...)`` -> a started
  :class:`HAProxyServer`;
* ``chromium`` (per module, see there) -- headless Debian Chromium via Playwright; ``page`` (per
  test) -- a page in a fresh context (remote requests blocked; :func:`page_errors`).

A missing peer program is a test *failure* (CI installs them all; scripts/setup-env.sh), except
outside CI for a user who is not root, where such tests are skipped.  With ``CI=true`` nothing is
ever skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from imapgate.demo import DovecotServer

from .haproxy import HAProxyServer, haproxy_available
from .postfix import PostfixServer, postfix_available
from .tls import TestCertificate, make_certificate

if TYPE_CHECKING:
    # Imported where used: playwright and psycopg take ~0.3 s to import, paid by every pytest
    # run (this plugin is always loaded), most of which need neither.
    from playwright.sync_api import Page

    from .browser import ChromiumBrowser
    from .postgres import PostgresDatabase, PostgresServer

__all__ = ["DOVECOT_USERS", "TEAM_LOGINS", "TEAM_MAIL_OF", "require_peer"]

#: Logins of the peer Dovecots: the hoster's shared account, the team, and a customer who
#: receives the team's replies (via Postfix and LMTP).  Passwords as in tests/integration.
DOVECOT_USERS: dict[str, str] = {
    "shared": "shared-secret",
    "alice": "alice-pw",
    "bob": "bob-pw",
    "carol": "carol-pw",
    "customer": "customer-pw",
}
TEAM_LOGINS = ("alice", "bob", "carol")
#: ``DovecotServer(mail_of=...)``: the team's logins open the shared account's mailbox.
TEAM_MAIL_OF: dict[str, str] = {login: "shared" for login in TEAM_LOGINS}


def require_peer(what: str, present: bool, install: str) -> None:
    """Fail when ``what`` is missing -- except off CI for a non-root user: skip there."""
    if present:
        return
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    message = f"{what} is not installed: apt-get install -y {install} (scripts/setup-env.sh does this)"
    if not in_ci and os.geteuid() != 0:
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


# --------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    from .postgres import PostgresServer, postgres_available

    require_peer("PostgreSQL 15", postgres_available(), "postgresql")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, empty database owned by the ``imapgate`` role (``.url``), dropped after the test.
    A test that stopped the server must start it again (the session's other tests need it)."""
    database = postgres_server.create_database()
    try:
        yield database
    finally:
        if not postgres_server.running:
            postgres_server.start()
        postgres_server.drop_database(database.name)


# --------------------------------------------------------------------- Postfix + Dovecot


@pytest.fixture(scope="session")
def mail_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """Dovecot with the :data:`DOVECOT_USERS`, LMTP (for Postfix's deliveries) and an auth socket
    (for Postfix's SASL); empty mailboxes.  Session-wide: tests tell their mail apart by
    Message-ID; no per-IP auth penalty, so a test's wrong password does not slow down later
    tests (each failure still takes 2 s)."""
    from tests.conftest import require_dovecot

    require_dovecot()
    require_peer("Dovecot LMTP", os.path.exists("/usr/lib/dovecot/lmtp"), "dovecot-lmtpd")
    server = DovecotServer(tmp_path_factory.mktemp("mail-dovecot"), users=DOVECOT_USERS,
                           enable_lmtp=True, auth_listener=True, max_userip_connections=100,
                           auth_penalty=False)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> TestCertificate:
    """A self-signed certificate for localhost, 127.0.0.1 and mail.example.test (the peers' and
    the gateway's TLS); ``.client_context()`` trusts it."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def postfix(mail_dovecot: DovecotServer, tls_certificate: TestCertificate) -> Iterator[PostfixServer]:
    require_peer("Postfix", postfix_available(), "postfix")
    with PostfixServer(mail_dovecot, certificate=tls_certificate) as server:
        yield server


PostfixFactory = Callable[..., PostfixServer]


@pytest.fixture
def postfix_factory(mail_dovecot: DovecotServer,
                    tls_certificate: TestCertificate) -> Iterator[PostfixFactory]:
    """``make(dovecot=None, **PostfixServer options)`` -> a started instance of its own (~0.3 s),
    in front of ``mail_dovecot`` unless another Dovecot (with LMTP and auth socket) is given."""
    require_peer("Postfix", postfix_available(), "postfix")
    servers: list[PostfixServer] = []

    def make(dovecot: DovecotServer | None = None, **options: Any) -> PostfixServer:
        options.setdefault("certificate", tls_certificate)
        server = PostfixServer(dovecot or mail_dovecot, **options)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.close()


# --------------------------------------------------------------------- Dovecot with ACLs

DovecotFactory = Callable[..., DovecotServer]


@pytest.fixture
def team_dovecot(fresh_dovecot: DovecotFactory) -> DovecotFactory:
    """``make(acls={folder: {identifier: rights}}, folders=..., **DovecotServer options)``: a
    started Dovecot where alice, bob and carol log in to the ``shared`` mailbox with exactly the
    given RFC 4314 rights (``shared`` itself keeps all).  ``folders`` defaults to the sample
    mailbox (``{}``: empty); folders named in ``acls`` are created when missing."""

    def make(acls: Mapping[str, Mapping[str, str]] | None = None, **options: Any) -> DovecotServer:
        options.setdefault("users", DOVECOT_USERS)
        options.setdefault("mail_of", TEAM_MAIL_OF)
        options.setdefault("enable_acl", True)
        start = options.pop("start", True)
        server = fresh_dovecot(start=False, **options)
        for folder, entries in (acls or {}).items():
            server.set_acl("shared", folder, entries)
        if start:
            server.start()
        return server

    return make


# --------------------------------------------------------------------- HAProxy

HAProxyFactory = Callable[..., HAProxyServer]


@pytest.fixture
def haproxy_factory() -> Iterator[HAProxyFactory]:
    """``make(backends=[(host, port), ...], proxy="v2", **options)`` -> a started HAProxy."""
    require_peer("HAProxy", haproxy_available(), "haproxy")
    servers: list[HAProxyServer] = []

    def make(backends: Sequence[tuple[str, int]], **options: Any) -> HAProxyServer:
        server = HAProxyServer(backends, **options)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.close()


# --------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def chromium() -> Iterator[ChromiumBrowser]:
    """Module-scoped on purpose: while Playwright's sync API is started, asyncio sees its event
    loop as running in this thread, and every later ``async def`` test would fail with "Runner.run()
    cannot be called from a running event loop".  So it stops at the end of each module (0.6 s
    to launch again), and a module using it must not have async tests."""
    from .browser import ChromiumBrowser, chromium_available

    require_peer("Chromium", chromium_available(), "chromium")
    with ChromiumBrowser() as browser:
        yield browser


@pytest.fixture
def page(chromium: ChromiumBrowser) -> Iterator[Page]:
    """A Playwright ``Page`` in a fresh browser context, closed after the test."""
    new = chromium.new_page()
    try:
        yield new
    finally:
        new.context.close()
