"""Fixtures of the integration tests: the gateway in front of a real Dovecot (or pymap).

* ``team`` — the team's logins: alice, bob, carol with their passwords;
* ``upstream`` — a fresh, started Dovecot holding the sample mailbox (one per test: the tests
  change mail);
* ``ro_gateway`` (module) — a gateway on the session-wide ``dovecot`` for read-only tests;
* ``ro_target`` / ``rw_target`` — the same scenario through the gateway or directly at Dovecot;
* ``gateway`` — a :class:`GatewayHarness` in front of ``upstream`` with the team's users, after
  its initial sync, with the change watcher and a 5 s periodic check running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from tests.integration.targets import Target, dovecot_target, gateway_target
from tests.support.gateway import GatewayHarness

TEAM: dict[str, str] = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}

DovecotFactory = Callable[..., DovecotServer]


@pytest.fixture
def team() -> dict[str, str]:
    return dict(TEAM)


@pytest.fixture
def upstream(fresh_dovecot: DovecotFactory) -> DovecotServer:
    return fresh_dovecot()


@pytest.fixture
def gateway(upstream: DovecotServer, tmp_path: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(upstream_port=upstream.port, data_dir=tmp_path / "gw", users=TEAM) as harness:
        yield harness


@pytest.fixture(scope="module")
def ro_gateway(dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    """A gateway in front of the session-wide Dovecot, for tests that change nothing upstream
    (reads, SEARCH, STATUS; \\Seen set by reading stays private in the gateway)."""
    with GatewayHarness(
        upstream_port=dovecot.port, data_dir=tmp_path_factory.mktemp("ro-gw"), users=TEAM
    ) as harness:
        yield harness


@pytest.fixture(params=["gateway", "dovecot"])
def ro_target(request: pytest.FixtureRequest, dovecot: DovecotServer) -> Target:
    """The read-only scenario's target: through ``ro_gateway`` as alice, or Dovecot directly."""
    if request.param == "gateway":
        return gateway_target(request.getfixturevalue("ro_gateway"))
    return dovecot_target(dovecot.host, dovecot.port)


@pytest.fixture(params=["gateway", "dovecot"])
def rw_target(request: pytest.FixtureRequest, upstream: DovecotServer) -> Target:
    """A target on a fresh Dovecot (the scenario may change mail): through ``gateway`` as
    alice, or that Dovecot directly."""
    if request.param == "gateway":
        return gateway_target(request.getfixturevalue("gateway"))
    return dovecot_target(upstream.host, upstream.port)
