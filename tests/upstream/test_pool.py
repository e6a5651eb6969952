"""The pool in front of a real Dovecot: NOOP only when an operation needs it,
and a pooled connection that died unnoticed is replaced, not lent."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
from collections.abc import Callable
from typing import Any

import pytest

from imapgate.config import UpstreamConfig
from imapgate.demo.dovecot import DovecotServer
from imapgate.protocol import commands as cmd
from imapgate.protocol import responses as rsp
from imapgate.protocol.fetch_items import FetchAttribute
from imapgate.protocol.sequence import SequenceSet
from imapgate.upstream import pool as pool_module
from imapgate.upstream.connection import CommandResult, UpstreamConnection
from imapgate.upstream.pool import UpstreamPool

pytestmark = pytest.mark.integration


def config(port: int) -> UpstreamConfig:
    return UpstreamConfig(host="127.0.0.1", port=port, tls="none", user="shared", password="shared-secret")


class Recording(UpstreamConnection):
    """Counts the commands it sends, by name."""

    sent: list[str]

    async def run(self, build: Callable[[str], cmd.Command], **kw: Any) -> CommandResult:
        if not hasattr(self, "sent"):
            self.sent = []
        self.sent.append(build("X").name)
        return await super().run(build, **kw)


def append_directly(dc: DovecotServer, folder: str) -> int:
    m = imaplib.IMAP4("127.0.0.1", dc.port)
    try:
        m.login("shared", "shared-secret")
        typ, data = m.append(folder, "", None, b"Subject: new\r\n\r\nhello\r\n")
        assert typ == "OK"
        return int(str(data[0]).split("APPENDUID ")[1].split()[1].rstrip("]'"))
    finally:
        m.logout()


def fetch_uid(uid: int) -> Callable[[str], cmd.Command]:
    return lambda tag: cmd.Fetch(tag, SequenceSet(((uid, uid),)), (FetchAttribute("FLAGS"),), uid=True)


async def test_noop_only_for_a_uid_the_connection_was_not_told_about(
    fresh_dovecot: Callable[..., DovecotServer], sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    pool = UpstreamPool(config(dc.port), connection_factory=Recording)
    pool.max_connections = 1
    try:
        async with pool.connection("INBOX", need_uid=3) as conn:
            assert isinstance(conn, Recording)
            assert conn.known_uid == 5  # SELECT said UIDNEXT 6
        async with pool.connection("INBOX", need_uid=5) as again:
            assert again is conn
        assert conn.sent.count("NOOP") == 0 and conn.sent.count("SELECT") == 1
        # Another session adds a message: this one has not been told yet, and
        # Dovecot would silently skip the UID without the NOOP.
        new_uid = await asyncio.to_thread(append_directly, dc, "INBOX")
        async with pool.connection("INBOX", need_uid=new_uid) as again:
            res = await again.check(fetch_uid(new_uid))
        assert conn.sent.count("NOOP") == 1
        assert [f.uid for f in res.of_type(rsp.FetchResponse)] == [new_uid]
        # No need_uid: the caller needs every message (a search): always NOOP.
        async with pool.connection("INBOX"):
            pass
        assert conn.sent.count("NOOP") == 2
    finally:
        await pool.close()


class BlackHoleRelay:
    """Forwards to Dovecot until ``swallow`` is set: from then on what the client
    sends on existing connections vanishes (a NAT that dropped the flow)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.swallow = False
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in self._tasks:
            t.cancel()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        born_swallowing = self.swallow
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, up: bool) -> None:
            while data := await r.read(65536):
                if up and self.swallow and not born_swallowing:
                    continue
                w.write(data)
                await w.drain()

        tasks = [asyncio.create_task(pump(cr, sw, True)), asyncio.create_task(pump(sr, cw, False))]
        self._tasks.update(tasks)
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)


async def test_a_connection_dead_after_idling_is_replaced(
    fresh_dovecot: Callable[..., DovecotServer], sample_mailbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    relay = BlackHoleRelay(dc.port)
    await relay.start()
    monkeypatch.setattr(pool_module, "PROBE_TIMEOUT", 0.5)
    pool = UpstreamPool(config(relay.port))
    try:
        async with pool.connection("INBOX", need_uid=1) as first:
            pass
        relay.swallow = True  # the flow dies silently
        first.last_used -= pool_module.CHECK_AFTER_IDLE + 1
        async with pool.connection("INBOX", need_uid=1) as second:
            assert second is not first and second.alive
            res = await second.check(fetch_uid(1))
        assert [f.uid for f in res.of_type(rsp.FetchResponse)] == [1]
        assert not first.alive and relay.connections == 2
        assert pool.open_connections == 1
    finally:
        await pool.close()
        await relay.stop()
