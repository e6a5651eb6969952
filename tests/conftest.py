"""Shared pytest fixtures: real upstream IMAP servers populated with the sample mailbox.

Fixtures (all lazy: nothing starts unless a test asks for it):

* ``sample_mailbox`` (session) — ``generate_mailbox(seed=1)``: folder -> list[SampleMessage];
* ``dovecot`` (session) — a :class:`DovecotServer` on 127.0.0.1 with the hoster's shared account
  ``shared`` / ``shared-secret``, populated with ``sample_mailbox``.  Shared by every test of the
  run: tests that change mail (STORE, EXPUNGE, MOVE, APPEND) or need exact counts should use
  ``fresh_dovecot`` instead;
* ``fresh_dovecot`` (function) — a factory ``fresh_dovecot(**options) -> DovecotServer`` making
  isolated, started instances (stopped at test end); options are those of
  :class:`DovecotServer` plus ``folders`` (populate ``users``' first user; default: the sample
  mailbox, ``{}`` for an empty account) and ``start`` (default True);
* ``pymap_upstream`` (session) — a :class:`PymapServer` (no CONDSTORE/QRESYNC/NOTIFY) with the
  single login ``shared`` / ``shared-secret`` and the sample mailbox loaded by APPEND.

More peers (PostgreSQL, Postfix, HAProxy, Chromium, Dovecot with ACLs/quota): the fixtures of
:mod:`tests.support.peers`, loaded as a plugin below; docs/testing.md describes them all.

Dovecot needs root here (it runs as root with a ``vmail`` mail user).  A missing Dovecot is a
test *failure* — CI installs it — except outside CI on a machine that is neither root nor has
Dovecot, where the Dovecot tests are skipped.  With ``CI=true`` nothing is ever skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo import DovecotServer, PymapServer, SampleMessage, generate_mailbox

# Fixtures of the other real peers: PostgreSQL, Postfix, HAProxy, Chromium, Dovecot with ACLs;
# ``start_gateway`` (an in-process gateway stopped at the end of the test).
pytest_plugins = ["tests.support.peers", "tests.support.gateway_setup"]

SHARED_USER = "shared"
SHARED_PASSWORD = "shared-secret"

MailboxData = dict[str, list[SampleMessage]]
DovecotFactory = Callable[..., DovecotServer]


def _dovecot_binary() -> str | None:
    return shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)


def require_dovecot() -> None:
    """Skip only off-CI when neither root nor Dovecot is there; otherwise let problems fail loudly."""
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    binary = _dovecot_binary()
    if in_ci:
        if binary is None:
            pytest.fail("Dovecot is not installed, but CI must test against it (apt-get install -y "
                        "dovecot-imapd; scripts/setup-env.sh does this)", pytrace=False)
        return
    if os.geteuid() != 0 and binary is None:
        pytest.skip("Dovecot tests need dovecot-imapd and root (neither is available here)")
    if binary is None:
        pytest.fail("dovecot binary not found: apt-get install -y dovecot-imapd (or scripts/setup-env.sh)",
                    pytrace=False)


@pytest.fixture(scope="session")
def sample_mailbox() -> MailboxData:
    return generate_mailbox(seed=1)


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory, sample_mailbox: MailboxData) -> Iterator[DovecotServer]:
    require_dovecot()
    server = DovecotServer(tmp_path_factory.mktemp("dovecot"), users={SHARED_USER: SHARED_PASSWORD})
    server.populate(SHARED_USER, sample_mailbox)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh_dovecot(
    tmp_path_factory: pytest.TempPathFactory, sample_mailbox: MailboxData
) -> Iterator[DovecotFactory]:
    require_dovecot()
    servers: list[DovecotServer] = []

    def make(*, folders: MailboxData | None = None, start: bool = True, **options: Any) -> DovecotServer:
        options.setdefault("users", {SHARED_USER: SHARED_PASSWORD})
        server = DovecotServer(tmp_path_factory.mktemp("fresh-dovecot"), **options)
        servers.append(server)
        first_user = next(iter(server.users))
        server.populate(first_user, sample_mailbox if folders is None else folders)
        if start:
            server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.close()


@pytest.fixture(scope="session")
def pymap_upstream(sample_mailbox: MailboxData) -> Iterator[PymapServer]:
    server = PymapServer(user=SHARED_USER, password=SHARED_PASSWORD, demo_data=False)
    server.start()
    try:
        server.populate(sample_mailbox)
        yield server
    finally:
        server.close()
