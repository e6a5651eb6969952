"""The web listener: uvicorn serving the dashboard inside the gateway's own
event loop (``imapgate serve``), not a process or loop of its own.

``uvicorn.run`` would take over the process (its own loop, its own signal
handlers, ``sys.exit`` on a busy port), so this drives ``uvicorn.Server``
step by step: the sockets are bound here first (``bind``: a busy or
privileged port is a one-line ``OperatorError`` before the long initial
sync, as for the IMAP listeners), ``start`` serves on them, ``stop`` ends the
live event streams, then lets uvicorn close connections (2 s grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl

import uvicorn

from ..config import Config, parse_address
from ..errors import OperatorError
from ..gateway.app import Gateway
from .app import Web, close_streams, create_app
from .data import Dashboard

log = logging.getLogger("imapgate.web")

#: Seconds open HTTP connections get to finish at shutdown.
GRACEFUL_SHUTDOWN = 2.0
#: Requests waiting in the kernel for accept().
BACKLOG = 256
#: Open HTTP connections at most (50 dashboards with a few tabs and an event
#: stream each is far below); beyond it uvicorn answers 503.
MAX_CONNECTIONS = 1000


def bind_error(addr: str, exc: OSError) -> OperatorError:
    host, port = parse_address(addr, "[web] listen")
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if exc.errno == errno.EADDRINUSE:
        return OperatorError(f"[web] listen {where} is already in use (another imapgate or web server?)")
    if exc.errno == errno.EACCES:
        return OperatorError(
            f"[web] listen {where}: binding a port below 1024 needs root or CAP_NET_BIND_SERVICE"
            if port < 1024
            else f"[web] listen {where}: permission denied"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return OperatorError(f"[web] listen {where}: {host} is not an address of this machine")
    if isinstance(exc, socket.gaierror):
        return OperatorError(f"[web] listen {where}: unknown host name {host!r}")
    return OperatorError(f"[web] listen: cannot listen on {where}: {exc.strerror or exc}")


class WebServer:
    def __init__(self, gw: Gateway, config: Config, *, tls: ssl.SSLContext | None) -> None:
        self.gw = gw
        self.config = config.web
        self.tls = tls if config.web.tls == "auto" else None
        self.dashboard = Dashboard(gw, show_read_by=config.web.show_read_by)
        self.app = create_app(self.config, self.dashboard)
        self.web: Web = self.app.state.web
        self.sockets: list[socket.socket] = []
        #: (host, port) of each bound socket.
        self.addresses: list[tuple[str, int]] = []
        self._server: uvicorn.Server | None = None
        self._main: asyncio.Task[None] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def urls(self) -> list[str]:
        out = []
        for host, port in self.addresses:
            shown = f"[{host}]" if ":" in host else host
            out.append(f"{self.scheme}://{shown}:{port}/")
        return out

    def bind(self) -> None:
        try:
            for addr in self.config.listen:
                host, port = parse_address(addr, "[web] listen")
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((host, port))
                    sock.listen(BACKLOG)
                    sock.setblocking(False)
                except OSError as exc:
                    sock.close()
                    raise bind_error(addr, exc) from None
                self.sockets.append(sock)
                name = sock.getsockname()
                self.addresses.append((str(name[0]), int(name[1])))
        except BaseException:
            self._close_sockets()
            raise

    async def start(self) -> None:
        if not self.sockets:
            self.bind()
        cfg = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # security.client_of decides, from [web] trusted_proxies
            ws="none",
            http="h11",
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN),
            limit_concurrency=MAX_CONNECTIONS,
            backlog=BACKLOG,
        )
        cfg.load()
        cfg.ssl = self.tls
        server = uvicorn.Server(cfg)
        server.lifespan = cfg.lifespan_class(cfg)
        await server.startup(sockets=self.sockets)
        self._server = server
        self._main = asyncio.create_task(server.main_loop(), name="web-server")
        self.dashboard.live.start()
        self.gw.extra_sessions.append(self)
        for url in self.urls:
            log.info("dashboard on %s", url)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.gw.extra_sessions.remove(self)
        await close_streams(self.web)
        await self.dashboard.live.stop()
        server = self._server
        if server is not None:
            server.should_exit = True
            if self._main is not None:
                with contextlib.suppress(BaseException):
                    await self._main
            with contextlib.suppress(Exception):
                await server.shutdown(sockets=self.sockets)
            self._server = None
        self._close_sockets()
        self.web.admin.close()

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets.clear()

    # -- the control channel (gateway.control): a removed or disabled account's
    # -- dashboard logins end with its IMAP sessions -------------------------------------
    def end_user(self, name: str, keep_user_id: int | None) -> int:
        return self.web.sessions.end_user(name, keep_user_id)

    def end_accounts(self, active: set[int]) -> int:
        return self.web.sessions.end_accounts(active)
