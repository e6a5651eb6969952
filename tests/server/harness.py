"""Byte-transcript harness for the IMAP server.

The gateway runs in the test's event loop with a replica filled directly (no
upstream connection is made: the upstream address is a closed port, so any
command that would need upstream fails with NO [UNAVAILABLE]).  Everything a
transcript exercises — sessions, views, per-user flags, modseqs — is the real
server code; only private flag changes and reads are possible without an
upstream, which is exactly what per-user state needs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from imapgate.gateway.app import Gateway
from imapgate.replica.mailbox import MessageRecord
from imapgate.server.listener import ImapServer
from tests.support.gateway_setup import build_gateway, gateway_config, imap_listener

UIDVALIDITY = 1700000000
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}


def make_gateway(tmp_path: Path, messages: int = 5, *, private_flags: tuple[str, ...] = ()) -> Gateway:
    """``private_flags``: keywords kept per user besides \\Seen (``[folders]
    private_flags``), which a client can STORE without an upstream."""
    folders = {"private_flags": ["\\Seen", *private_flags]} if private_flags else None
    cfg = gateway_config(data_dir=tmp_path / "gw", base_dir=tmp_path, folders=folders)
    gw = build_gateway(cfg, users=PASSWORDS)
    mb = gw.replica.upsert_mailbox("INBOX", "/", ())
    gw.replica.reset(mb, UIDVALIDITY, "test")
    recs = [
        MessageRecord(
            uid, ("\\Seen",) if uid == 1 else (), 0, 1_700_000_000.0 + uid, 60, 100 * uid, f"<m{uid}@x>"
        )
        for uid in range(1, messages + 1)
    ]
    gw.replica.add_messages(mb, recs)
    gw.replica.set_sync_state(mb, uidnext=messages + 1, synced=True)
    gw.replica.upsert_mailbox("Archive", "/", ("\\Archive",))
    return gw


class Client:
    """One scripted client connection: send lines, expect exact response lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, line: bytes) -> None:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()

    async def line(self, timeout: float = 5.0) -> bytes:
        data = await asyncio.wait_for(self.reader.readline(), timeout)
        if not data:
            raise EOFError("server closed the connection")
        return data.rstrip(b"\r\n")

    async def until_tagged(self, tag: bytes, timeout: float = 5.0) -> list[bytes]:
        out: list[bytes] = []
        while True:
            line = await self.line(timeout)
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    async def exchange(self, line: bytes, *expected: bytes | re.Pattern[bytes]) -> list[bytes]:
        """Send a tagged command and compare every response line up to its completion."""
        tag = line.split(b" ", 1)[0]
        await self.send(line)
        got = await self.until_tagged(tag)
        assert len(got) == len(expected), f"expected {len(expected)} lines, got:\n" + "\n".join(
            g.decode("utf-8", "replace") for g in got
        )
        for g, e in zip(got, expected, strict=True):
            if isinstance(e, re.Pattern):
                assert e.fullmatch(g), f"{g!r} does not match {e.pattern!r}"
            else:
                assert g == e, f"\n got: {g!r}\nwant: {e!r}"
        return got

    async def nothing_pending(self, wait: float = 0.2) -> None:
        try:
            extra = await asyncio.wait_for(self.reader.readline(), wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected data: {extra!r}")

    async def login(self, user: str) -> None:
        await self.send(b"L LOGIN " + user.encode() + b" " + PASSWORDS[user].encode())
        got = await self.until_tagged(b"L")
        assert got[-1].startswith(b"L OK"), got

    async def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def running(gw: Gateway) -> AsyncIterator[ImapServer]:
    """Serve ``gw`` (built by :func:`make_gateway`, never started: no upstream) for the
    block.  Only the listener stops and the pool closes, not the whole gateway: tests
    serve the same gateway again in a second block, as after a listener restart."""
    try:
        async with imap_listener(gw) as server:
            yield server
    finally:
        await gw.pool.close()


@asynccontextmanager
async def connect(server: ImapServer, *, greeting: bool = True) -> AsyncIterator[Client]:
    host, port, _ = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    client = Client(reader, writer)
    if greeting:
        g = await client.line()
        assert g.startswith(b"* OK [CAPABILITY IMAP4rev1 "), g
    try:
        yield client
    finally:
        await client.close()
