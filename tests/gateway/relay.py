"""A TCP relay on 127.0.0.1 for fault injection between the gateway and a real
upstream server: it forwards bytes both ways and can be told to cut the
connection at the worst moment (after the server has acted on a command, but
before its answer reaches the gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Self


class FaultRelay:
    def __init__(self, target_port: int, *, hide_capabilities: tuple[bytes, ...] = ()) -> None:
        self.target_port = target_port
        #: Capabilities removed from what the server announces (to make a real
        #: server look like one without, e.g., MOVE).
        self.hide_capabilities = hide_capabilities
        self.port = 0
        self._server: asyncio.Server | None = None
        #: When set, the next command containing this word is forwarded, and the
        #: connection is cut as soon as the server starts answering it.
        self.cut_after: bytes | None = None
        self.cuts = 0
        #: When set, nothing more is forwarded in either direction (a hoster that
        #: stops answering without closing the connection) until it is cleared.
        self.stalled = False
        #: Bytes per second forwarded in each direction (None: as fast as possible).
        self.rate: int | None = None
        #: Small socket buffers from the gateway's side (set before it connects).
        self.small_buffers = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        if self.rate is not None or self.small_buffers:
            # A slow link holds little in flight: without this, the kernel takes
            # megabytes from the sender at once and only the relay is slow.
            sock = cw.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        armed = asyncio.Event()

        async def pace(n: int) -> None:
            while self.stalled:
                await asyncio.sleep(0.05)
            if self.rate:
                await asyncio.sleep(n / self.rate)

        async def up() -> None:
            while data := await cr.read(16384 if self.rate else 65536):
                await pace(len(data))
                if self.cut_after is not None and self.cut_after in data.upper():
                    self.cut_after = None
                    armed.set()
                sw.write(data)
                await sw.drain()

        async def down() -> None:
            while data := await sr.read(16384 if self.rate else 65536):
                await pace(len(data))
                if armed.is_set():
                    # Let the server finish acting, then drop its answer.
                    await asyncio.sleep(0.05)
                    self.cuts += 1
                    break
                for cap in self.hide_capabilities:
                    data = data.replace(b" " + cap + b" ", b" ").replace(b" " + cap + b"]", b"]")
                    data = data.replace(b" " + cap + b"\r\n", b"\r\n")
                cw.write(data)
                await cw.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (cw, sw):
            with contextlib.suppress(Exception):
                w.close()
