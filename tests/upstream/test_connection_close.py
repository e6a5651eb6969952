"""An upstream connection's socket is closed in the kernel before ``on_closed`` runs (the pool
gives the connection's lease back there): at that moment the hoster -- a real Dovecot --
no longer has the connection ESTABLISHED, whichever way the connection ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from imapgate.config import UpstreamConfig
from imapgate.demo.dovecot import DovecotServer, find_free_port
from imapgate.upstream.connection import UpstreamConnection
from tests.support.tcp import established_at

pytestmark = pytest.mark.integration


def config(dc: DovecotServer) -> UpstreamConfig:
    return UpstreamConfig(host="127.0.0.1", port=dc.port, tls="none", user="shared", password="shared-secret")


@pytest.mark.parametrize("how", ["close", "logout", "close during IDLE"])
async def test_the_socket_is_gone_when_on_closed_runs(
    fresh_dovecot: Callable[..., DovecotServer], how: str
) -> None:
    dc = fresh_dovecot()
    conn = UpstreamConnection(config(dc))
    await conn.connect()
    assert established_at(dc.port) == 1
    at_close: list[int] = []
    conn.on_closed = lambda: at_close.append(established_at(dc.port))
    if how == "close":
        await conn.close()
    elif how == "logout":
        await conn.logout()
    else:
        await conn.select("INBOX")
        wake = asyncio.Event()
        idle = asyncio.create_task(conn.idle(wake))
        await asyncio.sleep(0.2)
        await conn.close("shutting down")
        with pytest.raises(Exception):  # noqa: B017 -- the IDLE ends with the connection
            await idle
    for _ in range(100):  # logout: the server's BYE ends the read loop, which closes
        if at_close:
            break
        await asyncio.sleep(0.02)
    assert at_close == [0], at_close


async def test_a_connect_cancelled_midway_leaves_no_socket_open() -> None:
    """A server that accepts and never greets: the connect is cancelled while it waits (the
    caller went away); the socket is closed before ``on_closed`` (the lease) and stays closed
    -- before, it stayed open with its reader task, with its lease already given back."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", find_free_port()))  # not an ephemeral port: counted by number
    server.listen()
    port = server.getsockname()[1]
    try:
        cfg = UpstreamConfig(host="127.0.0.1", port=port, tls="none", user="u", password="p")
        conn = UpstreamConnection(cfg)
        at_close: list[int] = []
        conn.on_closed = lambda: at_close.append(established_at(port))
        task = asyncio.create_task(conn.connect())
        for _ in range(200):
            if established_at(port) == 1:
                break
            await asyncio.sleep(0.01)
        assert established_at(port) == 1  # connected, waiting for the greeting
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert at_close == [0] and established_at(port) == 0
    finally:
        server.close()
