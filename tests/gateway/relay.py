"""A TCP relay on 127.0.0.1 for fault injection between the gateway and a real
upstream server: it forwards bytes both ways and can be told to cut the
connection at the worst moment (after the server has acted on a command, but
before its answer reaches the gateway)."""

from __future__ import annotations

import asyncio
import contextlib


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

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        armed = asyncio.Event()

        async def up() -> None:
            while data := await cr.read(65536):
                if self.cut_after is not None and self.cut_after in data.upper():
                    self.cut_after = None
                    armed.set()
                sw.write(data)
                await sw.drain()

        async def down() -> None:
            while data := await sr.read(65536):
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
