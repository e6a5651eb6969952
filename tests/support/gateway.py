"""Run a whole imapgate gateway (sync engine + IMAP listener) in a background thread.

Blocking clients (``imaplib``, ``imapclient``, an ``mbsync`` subprocess) cannot share the
test's event loop, so :class:`GatewayHarness` gives the gateway an asyncio loop of its own in a
daemon thread::

    with GatewayHarness(upstream_port=dc.port, data_dir=tmp_path / "gw") as gw:
        gw.add_user("alice", "alice-pw")
        client = gw.imaplib_login("alice", "alice-pw")
        ...
        gw.call(gw.gw.sync.sync_mailbox("INBOX"))   # run a coroutine on the gateway's loop

Everything binds to 127.0.0.1 with a kernel-chosen port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import imaplib
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from imapgate.gateway.app import Gateway
from imapgate.server.listener import ImapServer
from imapgate.submission.server import SubmissionServer

from .gateway_setup import UPSTREAM_PASSWORD, UPSTREAM_USER, gateway_config, running_gateway

T = TypeVar("T")

__all__ = ["UPSTREAM_PASSWORD", "UPSTREAM_USER", "GatewayHarness"]


class GatewayHarness:
    """A started gateway on its own event loop thread.

    ``upstream`` overrides/extends the ``[upstream]`` config table, ``server`` the ``[server]``
    one, ``folders`` the ``[folders]`` one, ``search`` the ``[search]`` one, ``recovery`` the
    ``[recovery]`` one, ``claims`` the ``[claims]`` one, ``store`` the ``[store]`` one (a
    PostgreSQL ``url``: several harnesses are several nodes).  ``users`` are added
    before the listener starts.
    """

    def __init__(
        self,
        *,
        upstream_port: int,
        data_dir: Path,
        upstream_host: str = "127.0.0.1",
        upstream_user: str = UPSTREAM_USER,
        upstream_password: str = UPSTREAM_PASSWORD,
        upstream: dict[str, Any] | None = None,
        server: dict[str, Any] | None = None,
        folders: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        users: dict[str, str] | None = None,
        initial_sync: bool = True,
        submission: dict[str, Any] | None = None,
        store: dict[str, Any] | None = None,
        recovery: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
    ) -> None:
        sub: dict[str, Any] | None = None
        if submission is not None:
            sub = {"listen": ["127.0.0.1:0"], "allow_plaintext": True, **submission}
        self.config = gateway_config(
            data_dir=data_dir,
            upstream_port=upstream_port,
            upstream_host=upstream_host,
            upstream_user=upstream_user,
            upstream_password=upstream_password,
            upstream={"poll_interval": 5, **(upstream or {})},
            server=server or {},
            folders=folders or None,
            submission=sub,
            search=search or None,
            store=store or {},
            recovery=recovery or None,
            claims=claims or None,
        )
        self.initial_sync = initial_sync
        self._initial_users = dict(users or {})
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="gateway-loop", daemon=True)
        self.gw: Gateway
        self.server: ImapServer
        self.port = 0
        self.host = "127.0.0.1"
        self.submission: SubmissionServer | None = None
        #: (host, port, implicit TLS) of each submission listener.
        self.smtp_addresses: list[tuple[str, int, bool]] = []
        self._started = False
        self._running: contextlib.AbstractAsyncContextManager[Gateway] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> Self:
        self._thread.start()
        try:
            # The gateway's own lifecycle is the one every in-process test uses,
            # entered and left on the gateway's loop.
            running = running_gateway(self.config, users=self._initial_users, initial_sync=self.initial_sync)
            # A failed start has stopped the gateway already (the context manager's own finally).
            self.gw = self.call(running.__aenter__(), timeout=240)
            self._running = running
            self.server = ImapServer(self.gw)
            self.call(self.server.start())
            self.port = self.server.addresses[0][1] if self.server.addresses else 0
            if self.config.submission is not None:
                self.submission = SubmissionServer(self.gw, self.config.submission)
                self.call(self.submission.start())
                self.smtp_addresses = list(self.submission.addresses)
            self._started = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            if self.submission is not None:
                self.call(self.submission.stop(), timeout=30)
            if self._started:
                with contextlib.suppress(Exception):
                    self.call(self.server.stop(), timeout=30)
            if self._running is not None:
                with contextlib.suppress(Exception):
                    self.call(self._running.__aexit__(None, None, None), timeout=30)
                self._running = None
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            with contextlib.suppress(Exception):
                self.loop.close()
        self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------
    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` on the gateway's loop and wait for its result."""
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call_soon(self, fn: Callable[[], T], timeout: float = 30) -> T:
        """Run a plain function on the gateway's loop (to read state without races)."""

        async def wrapper() -> T:
            return fn()

        return self.call(wrapper(), timeout)

    def add_user(self, name: str, password: str) -> None:
        self.gw.users.add(name, password)

    def imaplib(self, *, timeout: float = 30) -> imaplib.IMAP4:
        """A not yet logged-in ``imaplib`` client of the gateway (TCP_NODELAY on)."""
        client = imaplib.IMAP4(self.host, self.port, timeout=timeout)
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client

    def imaplib_login(self, user: str, password: str) -> imaplib.IMAP4:
        client = self.imaplib()
        typ, data = client.login(user, password)
        assert typ == "OK", data
        return client

    def smtp_port(self, *, implicit_tls: bool = False) -> int:
        """The port of the first submission listener of that kind."""
        for _host, port, tls in self.smtp_addresses:
            if tls == implicit_tls:
                return port
        raise AssertionError(f"no submission listener with implicit_tls={implicit_tls}")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
        """Poll ``predicate`` (evaluated on the gateway loop) until it holds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.call_soon(predicate):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)
