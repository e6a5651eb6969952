"""The IMAP listeners: plain (with STARTTLS) and implicit-TLS sockets, one
``Session`` task per connection, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Protocol

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
_STREAM_LIMIT = 65536
#: Seconds the TLS handshake after a PROXY header may take (asyncio's default is 60).
PROXY_TLS_HANDSHAKE_TIMEOUT = 30.0
#: The longest PROXY header accepted (v2's fixed part and its largest payload; v1 is shorter).
_PROXY_HEADER_MAX = 16 + proxy.MAX_V2_PAYLOAD


class _Listener(Protocol):
    """What the server needs of a listener: ``asyncio.Server`` or a ``_ProxyListener``."""

    async def start_serving(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


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
        self.servers: list[_Listener] = []
        #: Connections of a PROXY-protocol listener still sending their header (or in the TLS
        #: handshake after it): no ``Session`` yet; cancelled by ``stop``.
        self._pending: set[asyncio.Task[None]] = set()
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
        server: _Listener
        try:
            if self.config.proxy_protocol:
                # The PROXY header is read off the raw socket before asyncio gets it (see
                # ``_ProxyListener``): the TLS handshake after it then starts on a clean socket.
                proxied = await _ProxyListener.bind(host, port, self._accept_proxied, implicit_tls)
                server, sockets = proxied, proxied.sockets
            else:

                async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                    await self._session(reader, writer, implicit_tls)

                plain = await asyncio.start_server(
                    handle,
                    host,
                    port,
                    ssl=self.tls if implicit_tls else None,
                    reuse_address=True,
                    limit=_STREAM_LIMIT,
                    start_serving=False,
                )
                server, sockets = plain, list(plain.sockets)
        except OSError as exc:
            raise bind_error(addr, exc) from exc
        self.servers.append(server)
        self._configured.append(addr)
        for sock in sockets:
            name = sock.getsockname()
            self.addresses.append((str(name[0]), int(name[1]), implicit_tls))

    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        is_tls: bool,
        address: str | None = None,
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
            session = Session(self.gw, reader, writer, tls_context=self.tls, is_tls=is_tls, address=address)
            self.live[session.id] = session
            await session.run()
        except Exception:
            log.exception("session crashed")
        finally:
            self.sessions.discard(task)
            self._open.pop(task, None)
            if session is not None:
                self.live.pop(session.id, None)

    def _accept_proxied(self, conn: socket.socket, implicit_tls: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._proxied(conn, implicit_tls))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _proxied(self, conn: socket.socket, is_tls: bool) -> None:
        """A connection of a PROXY-protocol listener: read its header off the socket, then give
        the socket to asyncio (with TLS on a TLS listener) and run the session with the client's
        address (None: the balancer's own LOCAL connection).  A missing or malformed header,
        or a failed handshake, closes the connection."""
        loop = asyncio.get_running_loop()
        try:
            peer = conn.getpeername()
        except OSError:
            peer = None
        try:
            header = await asyncio.wait_for(read_proxy_header(conn), PROXY_HEADER_TIMEOUT)
        except (proxy.ProxyError, asyncio.IncompleteReadError, TimeoutError, OSError) as exc:
            log.warning("connection from %s refused: no valid PROXY header (%s)", peer, exc)
            with contextlib.suppress(OSError):  # unread bytes would make close() a reset
                conn.recv(_PROXY_HEADER_MAX)
            conn.close()
            return
        except BaseException:  # cancelled by stop()
            conn.close()
            raise
        address = header.source[0] if header.source is not None else None
        reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)

        async def connected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._session(r, w, is_tls, address)

        # With a client_connected_cb the protocol is server-side, as with asyncio.start_server
        # (STARTTLS on the plain listener relies on it); it starts the session's task.
        protocol = asyncio.StreamReaderProtocol(reader, connected, loop=loop)
        tls = self.tls if is_tls else None
        try:
            await loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=tls,
                ssl_handshake_timeout=PROXY_TLS_HANDSHAKE_TIMEOUT if tls is not None else None,
            )
        except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as exc:
            log.warning("connection from %s (%s): TLS handshake failed (%s)", address, peer, exc)
            conn.close()

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
        for pending in list(self._pending):
            pending.cancel()
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


async def read_proxy_header(conn: socket.socket) -> proxy.ProxyHeader:
    """Take exactly the PROXY header's bytes off a non-blocking socket: whatever follows (the
    IMAP command or the TLS ClientHello, often in the same segment) stays in the kernel's
    receive buffer for whoever reads the socket next.  Each round peeks at what has arrived
    (``MSG_PEEK``) and consumes the header's part of it; bytes peeked while the header is
    still incomplete are all header bytes, so they are consumed too (no busy loop on a
    partial header)."""
    loop = asyncio.get_running_loop()
    taken = b""
    while True:
        await _readable(loop, conn)
        try:
            peeked = conn.recv(_PROXY_HEADER_MAX - len(taken), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        if not peeked:
            raise asyncio.IncompleteReadError(taken, None)
        data = taken + peeked
        parsed = proxy.parse(data)
        if parsed is None:
            if len(data) >= _PROXY_HEADER_MAX:
                raise proxy.ProxyError(f"PROXY header longer than {_PROXY_HEADER_MAX} bytes")
            taken += _recv_exactly(conn, len(peeked))
            continue
        header, length = parsed
        taken += _recv_exactly(conn, length - len(taken))
        return header


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    """``n`` bytes a peek has just seen: they are in the receive buffer, one recv takes them."""
    data = conn.recv(n)
    if len(data) != n:  # only if another reader took them: never with one owner
        raise OSError(errno.EIO, f"PROXY header: {len(data)} of {n} peeked bytes read")
    return data


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


class _ProxyListener:
    """A listener for ``[server] proxy_protocol``: it accepts connections itself and hands each
    raw socket to ``on_connection``, which reads the PROXY header off it before asyncio wraps
    it (``loop.connect_accepted_socket``, TLS included).

    Why not ``asyncio.start_server`` and ``StreamWriter.start_tls`` after the header: asyncio's
    transport reads whatever has arrived into the ``StreamReader``'s buffer, and a client
    (or balancer) that sends its TLS ClientHello right behind the header has it read with the
    header; ``start_tls`` never sees those bytes, and the handshake waits for a ClientHello
    that was already sent.  Reading the header with ``MSG_PEEK`` leaves them in the socket."""

    def __init__(
        self,
        socks: list[socket.socket],
        on_connection: Callable[[socket.socket, bool], None],
        implicit_tls: bool,
    ) -> None:
        self.sockets = socks
        self._on_connection = on_connection
        self._implicit_tls = implicit_tls
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def bind(
        cls,
        host: str,
        port: int,
        on_connection: Callable[[socket.socket, bool], None],
        implicit_tls: bool,
    ) -> _ProxyListener:
        """Bind every address ``host`` resolves to, as ``asyncio.start_server`` does (IPv6
        sockets v6-only, ``SO_REUSEADDR``); ``OSError`` when one cannot be bound."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        socks: list[socket.socket] = []
        try:
            for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
                sock.setblocking(False)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return cls(socks, on_connection, implicit_tls)

    async def start_serving(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            sock.listen(100)
            self._tasks.append(loop.create_task(self._accept(sock)))

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except (ConnectionAbortedError, InterruptedError):
                continue
            except OSError as exc:  # EMFILE and the like: wait, as asyncio's accept loop does
                log.error("accepting a connection failed: %s", exc)
                await asyncio.sleep(1)
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._on_connection(conn, self._implicit_tls)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sock in self.sockets:
            sock.close()

    async def wait_closed(self) -> None:
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
