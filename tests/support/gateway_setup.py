"""The one way tests configure, start and stop an in-process gateway.

* :func:`gateway_config` builds the validated :class:`~imapgate.config.Config` every
  in-process test uses (upstream on 127.0.0.1 without TLS as the hoster's shared
  account, an IMAP listener on a kernel-chosen port with plaintext allowed, the store in
  ``data_dir``); keyword arguments named after a config section are merged into it.
* :func:`running_gateway` is an async context manager that builds (or takes over) a
  gateway, adds users, starts as much of it as the test needs, and always stops it —
  the ``try: ... finally: await gw.stop()`` of every test, written once.
* :func:`imap_listener` serves a gateway's IMAP listener for the block's duration.
* The ``start_gateway`` fixture does the same as :func:`running_gateway` without a
  ``with`` block: every gateway it started is stopped at the end of the test.

Configs given as TOML text (tests of the config parser, ``imapgate serve`` subprocesses)
stay TOML on purpose: they test the parsing.  The thread-based harness for blocking
clients is :class:`tests.support.gateway.GatewayHarness`; it uses both helpers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from imapgate.config import Config, from_dict
from imapgate.gateway.app import Gateway
from imapgate.server.listener import ImapServer

UPSTREAM_USER = "shared"
UPSTREAM_PASSWORD = "shared-secret"
#: A port nothing listens on: for gateways whose tests never reach upstream (the
#: replica is filled directly); a command that needs upstream fails with NO [UNAVAILABLE].
CLOSED_PORT = 1

#: How much of a gateway a test needs running:
#: ``"none"`` — built only (replica, store, pool; the test drives sync itself);
#: ``"sync"`` — plus one initial sync, but no watcher and no intent recovery;
#: ``"full"`` — ``Gateway.start``: intents settled, initial sync, watcher, index.
StartMode = Literal["none", "sync", "full"]

_MERGED = ("upstream", "server", "store")


def gateway_config(
    *,
    data_dir: Path,
    upstream_port: int = CLOSED_PORT,
    base_dir: Path | None = None,
    upstream_host: str = "127.0.0.1",
    upstream_user: str = UPSTREAM_USER,
    upstream_password: str = UPSTREAM_PASSWORD,
    **overrides: Mapping[str, Any] | None,
) -> Config:
    """The validated config of an in-process test gateway.

    ``overrides`` are config sections: ``upstream``, ``server`` and ``store`` are merged
    key by key into the defaults; any other section (``folders``, ``search``,
    ``submission``, ...) is taken as given; a section given as None is left out.
    ``base_dir`` (relative paths in the config) defaults to ``data_dir``, which is created.
    """
    data: dict[str, Any] = {
        "upstream": {
            "host": upstream_host,
            "port": upstream_port,
            "tls": "none",
            "user": upstream_user,
            "password": upstream_password,
        },
        "server": {"listen": ["127.0.0.1:0"], "allow_plaintext": True},
        "store": {"data_dir": str(data_dir)},
    }
    for section, values in overrides.items():
        if values is None:
            data.pop(section, None)
        elif section in _MERGED:
            data[section].update(values)
        else:
            data[section] = dict(values)
    data_dir.mkdir(parents=True, exist_ok=True)
    return from_dict(data, base_dir=base_dir if base_dir is not None else data_dir)


def build_gateway(config: Config, *, users: Mapping[str, str] | None = None) -> Gateway:
    """``Gateway.build`` plus the team ``users`` (name -> password; existing ones kept)."""
    gw = Gateway.build(config)
    try:
        add_users(gw, users)
    except BaseException:
        gw.auth.close()
        raise
    return gw


def add_users(gw: Gateway, users: Mapping[str, str] | None) -> None:
    for name, password in (users or {}).items():
        if gw.users.get(name) is None:
            gw.users.add(name, password)


@asynccontextmanager
async def running_gateway(
    config: Config | Gateway,
    *,
    users: Mapping[str, str] | None = None,
    start: StartMode = "full",
    initial_sync: bool = True,
) -> AsyncIterator[Gateway]:
    """A gateway for the block, stopped (``Gateway.stop``) however the block ends.

    Given a :class:`Gateway` instead of a config (one a test filled by hand), it takes
    that one over.  ``initial_sync`` is passed to ``Gateway.start`` (``start="full"``).
    """
    gw = build_gateway(config, users=users) if isinstance(config, Config) else config
    try:
        if not isinstance(config, Config):
            add_users(gw, users)
        if start == "sync":
            await gw.sync.initial_sync()
        elif start == "full":
            await gw.start(initial_sync=initial_sync)
        yield gw
    finally:
        await gw.stop()


@asynccontextmanager
async def imap_listener(gw: Gateway) -> AsyncIterator[ImapServer]:
    """The gateway's IMAP listener, serving for the block (addresses in ``.addresses``)."""
    server = ImapServer(gw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """``await start_gateway(config_or_gateway, users=..., start=...)``: like
    :func:`running_gateway`, stopped at the end of the test (last started, first stopped)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: Config | Gateway, **options: Any) -> Gateway:
            return await stack.enter_async_context(running_gateway(config, **options))

        yield start
