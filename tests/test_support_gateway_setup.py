"""The shared test set-up itself (tests/support/gateway_setup.py): what the config
builder merges, and that a gateway started by the fixture is stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imapgate.config import ConfigError
from imapgate.gateway.app import Gateway
from tests.support.gateway_setup import CLOSED_PORT, StartGateway, gateway_config, running_gateway


def test_config_defaults_and_merged_sections(tmp_path: Path) -> None:
    cfg = gateway_config(data_dir=tmp_path / "gw")
    assert (cfg.upstream.host, cfg.upstream.port, cfg.upstream.tls) == ("127.0.0.1", CLOSED_PORT, "none")
    assert cfg.server.allow_plaintext and cfg.store.data_dir == tmp_path / "gw"
    assert (tmp_path / "gw").is_dir()
    cfg = gateway_config(
        data_dir=tmp_path / "gw",
        upstream_port=1430,
        upstream={"poll_interval": 5},
        server={"allow_plaintext": False, "certificate": "c.pem", "private_key": "k.pem"},
        folders={"default_seen": "shared"},
    )
    assert cfg.upstream.port == 1430 and cfg.upstream.poll_interval == 5 and cfg.upstream.user == "shared"
    assert not cfg.server.allow_plaintext and cfg.server.listen  # merged, not replaced
    assert cfg.server.certificate == tmp_path / "gw" / "c.pem"  # relative to data_dir by default
    assert cfg.folders.default_seen == "shared"


def test_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        gateway_config(data_dir=tmp_path / "gw", upstream={"pol_interval": 5})


@pytest.fixture
def stopped(monkeypatch: pytest.MonkeyPatch) -> list[Gateway]:
    """Gateways whose ``stop`` ran."""
    calls: list[Gateway] = []
    original = Gateway.stop

    async def stop(self: Gateway) -> None:
        calls.append(self)
        await original(self)

    monkeypatch.setattr(Gateway, "stop", stop)
    return calls


async def test_running_gateway_stops_even_when_the_block_fails(
    tmp_path: Path, stopped: list[Gateway]
) -> None:
    cfg = gateway_config(data_dir=tmp_path / "gw")
    with pytest.raises(RuntimeError, match="boom"):
        async with running_gateway(cfg, users={"ann": "pw-123456"}, start="none") as gw:
            assert gw.users.get("ann") is not None
            raise RuntimeError("boom")
    assert stopped == [gw]


@pytest.fixture
def stopped_after_the_test(stopped: list[Gateway]) -> Iterator[list[Gateway]]:
    """Set up before ``start_gateway``, so torn down after it: checks that its gateway stopped."""
    yield stopped
    assert len(stopped) == 1, "start_gateway did not stop its gateway"


async def test_start_gateway_fixture_stops_at_teardown(
    stopped_after_the_test: list[Gateway], start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway(gateway_config(data_dir=tmp_path / "gw"), start="none")
    assert gw.replica.names() == [] and stopped_after_the_test == []
