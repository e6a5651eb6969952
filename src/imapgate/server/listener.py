"""The IMAP listeners: plain (with STARTTLS) and implicit-TLS sockets, one
``Session`` task per connection, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable
from typing import Literal

from ..config import parse_address
from ..errors import bind_error
from ..gateway.app import Gateway
from ..gateway.control import SessionInfo
from ..protocol import proxy
from ..protocol import responses as rsp
from ..protocol.response_writer import write_response
from . import commands_acl, commands_mailbox, commands_message, commands_session  # noqa: F401  (register handlers)
from .session import Session
from .tls import tls_context

log = logging.getLogger("imapgate.server")

#: Open client connections at most.  A team of 50 with 5 devices each needs 250;
#: the rest is headroom for reconnect storms.  Beyond it, new connections get
#: ``* BYE`` at once instead of starving the others.
MAX_CONNECTIONS = 2000

#: Written straight to the socket: no ``Session`` exists for these connections.
_TOO_MANY = write_response(
    rsp.UntaggedStatus("BYE", rsp.UNAVAILABLE, "Too many connections; try again later")
)
_SHUTTING_DOWN = write_response(rsp.UntaggedStatus("BYE", None, "Server shutting down"))

#: Seconds a connection may take to send its PROXY header (``[server] proxy_protocol``): the
#: balancer sends it at once; a client that reached the node directly sends none.
PROXY_HEADER_TIMEOUT = 5.0


class ImapServer:
    """The listeners.  ``start()`` binds and serves; ``serve`` binds first
    (``bind()``, so a busy port fails before a long initial sync) and accepts
    clients once ready (``start_serving()``)."""

    def __init__(self, gw: Gateway, *, tls: ssl.SSLContext | None = None) -> None:
        self.gw = gw
        self.config = gw.config.server
        self.tls = tls if tls is not None else tls_context(self.config)
        self.sessions: set[asyncio.Task[None]] = set()
        self._open: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        #: Live sessions by id (the admin's ``imapgate sessions`` / ``kick``).
        self.live: dict[int, Session] = {}
        self.servers: list[asyncio.Server] = []
        self._configured: list[str] = []  # the configured address of each server
        self.addresses: list[tuple[str, int, bool]] = []

    async def start(self) -> None:
        await self.bind()
        await self.start_serving()

    async def bind(self) -> None:
        """Open every listener (``OperatorError`` naming the address if one
        cannot be); clients are not accepted until ``start_serving``."""
        try:
            for addr in self.config.listen:
                await self._listen(addr, implicit_tls=False)
            for addr in self.config.tls_listen:
                await self._listen(addr, implicit_tls=True)
        except BaseException:
            for server in self.servers:
                server.close()
            self.servers.clear()
            self._configured.clear()
            self.addresses.clear()
            raise

    async def start_serving(self) -> None:
        for server, addr in zip(self.servers, self._configured, strict=True):
            try:
                await server.start_serving()
            except OSError as exc:  # another process bound the port meanwhile and listens
                raise bind_error(addr, exc) from exc
        for host, port, implicit_tls in self.addresses:
            log.info("listening on %s:%d%s", host, port, " (TLS)" if implicit_tls else "")
        await self.gw.start_control(self)

    async def _listen(self, addr: str, *, implicit_tls: bool) -> None:
        host, port = parse_address(addr)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._session(reader, writer, implicit_tls)

        try:
            server = await asyncio.start_server(
                handle,
                host,
                port,
                # Behind a PROXY-protocol balancer the header comes before the TLS handshake:
                # TLS is started by hand after it (``_proxied``).
                ssl=self.tls if implicit_tls and not self.config.proxy_protocol else None,
                reuse_address=True,
                limit=65536,
                start_serving=False,
            )
        except OSError as exc:
            raise bind_error(addr, exc) from exc
        self.servers.append(server)
        self._configured.append(addr)
        for sock in server.sockets:
            name = sock.getsockname()
            self.addresses.append((str(name[0]), int(name[1]), implicit_tls))

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, is_tls: bool
    ) -> None:
        task = asyncio.current_task()
        if len(self.sessions) >= MAX_CONNECTIONS:
            with contextlib.suppress(Exception):
                writer.write(_TOO_MANY)
                await writer.drain()
                writer.close()
            return
        assert task is not None
        self.sessions.add(task)
        self._open[task] = writer
        session: Session | None = None
        try:
            address = None
            if self.config.proxy_protocol:
                address = await self._proxied(reader, writer, is_tls)
                if address is False:
                    return
            session = Session(
                self.gw, reader, writer, tls_context=self.tls, is_tls=is_tls, address=address or None
            )
            self.live[session.id] = session
            await session.run()
        except Exception:
            log.exception("session crashed")
        finally:
            self.sessions.discard(task)
            self._open.pop(task, None)
            if session is not None:
                self.live.pop(session.id, None)

    async def _proxied(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, is_tls: bool
    ) -> str | Literal[False] | None:
        """Read the PROXY header (and start TLS after it on a TLS listener): the client's
        address (None: the balancer's own LOCAL connection), or False when the connection
        was closed for a missing or malformed header."""
        peer = writer.get_extra_info("peername")
        try:
            header = await asyncio.wait_for(_read_proxy_header(reader), PROXY_HEADER_TIMEOUT)
            if is_tls and self.tls is not None:
                await writer.start_tls(self.tls)
        except (
            proxy.ProxyError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ssl.SSLError,
            OSError,
        ) as exc:
            log.warning("connection from %s refused: no valid PROXY header (%s)", peer, exc)
            writer.close()
            return False
        return header.source[0] if header.source is not None else None

    # -- the control channel's view of the sessions (gateway.control.SessionProvider) ---------
    def session_list(self) -> list[SessionInfo]:
        return [s.info() for s in self.live.values()]

    def end_sessions(self, ids: Iterable[int], reason: str) -> int:
        ended = 0
        for sid in ids:
            session = self.live.get(sid)
            if session is not None and session.end(reason):
                ended += 1
        return ended

    async def stop(self) -> None:
        await self.gw.stop_control()
        for server in self.servers:
            server.close()
        # Closing the sockets ends each session at its next read; cancel what
        # is still busy after a grace period.
        for writer in list(self._open.values()):
            with contextlib.suppress(Exception):
                writer.write(_SHUTTING_DOWN)
                writer.close()
        if self.sessions:
            await asyncio.wait(list(self.sessions), timeout=2)
        for task in list(self.sessions):
            task.cancel()
        for task in list(self.sessions):
            with contextlib.suppress(BaseException):
                await task
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


async def _read_proxy_header(reader: asyncio.StreamReader) -> proxy.ProxyHeader:
    """Exactly the header's bytes (the IMAP or TLS bytes after it stay in ``reader``)."""
    data = await reader.readexactly(proxy.MIN_HEADER)
    if data.startswith(proxy.V1_PREFIX):
        data += await reader.readuntil(proxy.V1_END)
    elif proxy.V2_SIGNATURE.startswith(data):
        data += await reader.readexactly(len(proxy.V2_SIGNATURE) + 4 - proxy.MIN_HEADER)
        data += await reader.readexactly(proxy.v2_remaining(data))
    parsed = proxy.parse(data)
    if parsed is None or parsed[1] != len(data):
        raise proxy.ProxyError("incomplete PROXY header")
    return parsed[0]
