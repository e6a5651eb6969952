"""A bounded pool of upstream connections shared by every client session.

Hosters cap connections per account (often 10-20, Dovecot's default is 10 per
user and address), so the pool never holds more than ``max_connections``,
whatever the number of team members: callers wait for a free connection.
One of them may be taken for good by the change watcher (NOTIFY/IDLE).

A connection that breaks is dropped; the next caller opens a new one.  When
connecting fails, the pool backs off (1 s doubling to 60 s) and fails fast in
the meantime, so a dead hoster answers every client with ``NO [UNAVAILABLE]``
at once instead of hanging them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from ..config import UpstreamConfig
from ..protocol import commands as cmd
from .connection import (
    COMMAND_TIMEOUT,
    Unsolicited,
    UpstreamConnection,
    UpstreamError,
    UpstreamUnavailable,
)

log = logging.getLogger("imapgate.upstream.pool")

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
#: A pooled connection unused for this long may have died unnoticed (a NAT or
#: firewall dropping it silently): it gets a NOOP before it is lent again.
CHECK_AFTER_IDLE = 10.0
#: How long that NOOP may take before the connection counts as dead.
CHECK_TIMEOUT = 30.0


class UpstreamPool:
    def __init__(
        self,
        config: UpstreamConfig,
        *,
        on_unsolicited: Unsolicited | None = None,
        connection_factory: Callable[..., UpstreamConnection] = UpstreamConnection,
    ) -> None:
        self.config = config
        self.max_connections = config.max_connections
        self.on_unsolicited = on_unsolicited
        self._factory = connection_factory
        self._idle: list[UpstreamConnection] = []
        self._open = 0  # connections open or being opened (idle, lent, dedicated)
        self._cond = asyncio.Condition()
        self._backoff = 0.0
        self._down_until = 0.0
        self.last_error: str | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.enabled: frozenset[str] = frozenset()
        self._serial = 0
        self._closed = False
        self.stats_opened = 0
        self.peak_open = 0

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    async def _new_connection(self, name: str) -> UpstreamConnection:
        now = time.monotonic()
        if now < self._down_until:
            raise UpstreamUnavailable(
                f"upstream unavailable ({self.last_error}); next attempt in {self._down_until - now:.0f} s"
            )
        self._serial += 1
        conn = self._factory(self.config, name=f"{name}-{self._serial}", on_unsolicited=self.on_unsolicited)
        try:
            await conn.connect()
        except UpstreamUnavailable as exc:
            self.last_error = str(exc)
            self._backoff = min(BACKOFF_MAX, self._backoff * 2 if self._backoff else BACKOFF_START)
            self._down_until = time.monotonic() + self._backoff
            log.warning("upstream connect failed: %s (backing off %.0f s)", exc, self._backoff)
            raise
        self._backoff = 0.0
        self.last_error = None
        self.capabilities = conn.capabilities
        self.enabled = conn.enabled
        self.stats_opened += 1
        return conn

    async def _acquire(self, mailbox: str | None) -> tuple[UpstreamConnection, bool]:
        """A connection, and whether it was lent before (False: opened just now)."""
        async with self._cond:
            while True:
                if self._closed:
                    raise UpstreamUnavailable("gateway is shutting down")
                self._idle = [c for c in self._idle if c.alive or self._forget(c)]
                if self._idle:
                    # Prefer a connection that already has the mailbox selected.
                    for i, c in enumerate(self._idle):
                        if mailbox is not None and c.selected == mailbox:
                            return self._idle.pop(i), True
                    return self._idle.pop(), True
                if self._open < self.max_connections:
                    self._open += 1
                    self.peak_open = max(self.peak_open, self._open)
                    break
                await self._cond.wait()
        try:
            return await self._new_connection("pool"), False
        except BaseException:
            async with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _forget(self, conn: UpstreamConnection) -> bool:
        self._open -= 1
        return False

    async def _release(self, conn: UpstreamConnection) -> None:
        async with self._cond:
            if conn.alive and not self._closed:
                self._idle.append(conn)
            else:
                self._open -= 1
            self._cond.notify()
        if not conn.alive:
            await conn.close()

    @contextlib.asynccontextmanager
    async def connection(
        self, mailbox: str | None = None, *, need_uid: int | None = None, prefer: str | None = None
    ) -> AsyncIterator[UpstreamConnection]:
        """A connection for one operation, with ``mailbox`` selected when given.

        ``need_uid``: the highest UID the operation names in ``mailbox`` (None: it
        needs to see every message there, e.g. a search for new mail).  ``prefer``
        (without ``mailbox``): lend a connection that has this mailbox selected
        if one is free, without selecting anything (the sync engine's choice)."""
        conn = await self._ready(mailbox, need_uid, prefer)
        try:
            yield conn
        except asyncio.CancelledError:
            # A command may be half-sent: this connection's state is unknown.
            await conn.close("operation cancelled")
            raise
        finally:
            await self._release(conn)

    async def _ready(
        self, mailbox: str | None, need_uid: int | None, prefer: str | None
    ) -> UpstreamConnection:
        """Acquire a connection and prepare it.  A reused connection that turns out
        dead is dropped and the next one tried (SELECT and NOOP are safe to repeat);
        a failure on a connection opened just now is the hoster's answer."""
        while True:
            conn, reused = await self._acquire(mailbox or prefer)
            try:
                await self._prepare(conn, mailbox, need_uid, reused)
            except UpstreamUnavailable:
                await conn.close(conn.closed_reason or "check failed")
                await self._release(conn)
                if not reused:
                    raise
                log.info("%s: dropped a dead pooled connection (%s)", conn.name, conn.closed_reason)
                continue
            except asyncio.CancelledError:
                await conn.close("operation cancelled")
                await self._release(conn)
                raise
            except BaseException:
                await self._release(conn)
                raise
            return conn

    async def _prepare(
        self, conn: UpstreamConnection, mailbox: str | None, need_uid: int | None, reused: bool
    ) -> None:
        stale = reused and time.monotonic() - conn.last_used > CHECK_AFTER_IDLE
        if mailbox is not None and conn.selected != mailbox:
            res = await conn.select(mailbox)
            if not res.ok:
                raise UpstreamError(res)
        elif mailbox is not None and (stale or need_uid is None or need_uid > conn.known_uid):
            # A session learns of messages added by other sessions only when it
            # runs a command (RFC 9051 §7): until then Dovecot's UID FETCH, UID
            # STORE and UID SEARCH silently skip UIDs it has not announced, so a
            # body fetched here would come back empty and a flag change would be
            # lost.  NOOP brings this connection's view up to date first, but only
            # when the operation names a UID this session has not been told about.
            await conn.check(lambda tag: cmd.Noop(tag), timeout=CHECK_TIMEOUT if stale else COMMAND_TIMEOUT)
            if need_uid is not None:
                # Every UID the replica knows existed upstream before this NOOP.
                conn.known_uid = max(conn.known_uid, need_uid)
        elif stale:
            # Unused for a while: make sure it still answers before lending it.
            await conn.check(lambda tag: cmd.Noop(tag), timeout=CHECK_TIMEOUT)

    async def drop_selected(self, mailbox: str) -> None:
        """Log out idle connections that have ``mailbox`` (or a folder below it) selected:
        after it was deleted or renamed on another connection, Dovecot fails later commands
        on such a session (e.g. an APPEND after the name was created again: "Internal error
        ... duplicate transaction log sequence")."""
        prefix = mailbox + "/"
        async with self._cond:
            stale = [
                c
                for c in self._idle
                if c.selected is not None and (c.selected == mailbox or c.selected.startswith(prefix))
            ]
            if not stale:
                return
            self._idle = [c for c in self._idle if c not in stale]
            self._open -= len(stale)
            self._cond.notify_all()
        await asyncio.gather(*(c.logout() for c in stale), return_exceptions=True)

    async def dedicated(self, name: str) -> UpstreamConnection:
        """A connection taken out of the pool for good (the change watcher);
        give it back with ``release_dedicated``."""
        async with self._cond:
            while self._open >= self.max_connections:
                if self._idle:
                    victim = self._idle.pop(0)
                    self._open -= 1
                    await victim.logout()
                    break
                await self._cond.wait()
            self._open += 1
            self.peak_open = max(self.peak_open, self._open)
        try:
            return await self._new_connection(name)
        except BaseException:
            async with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    async def release_dedicated(self, conn: UpstreamConnection) -> None:
        await conn.logout()
        async with self._cond:
            self._open -= 1
            self._cond.notify()

    async def close(self) -> None:
        async with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        await asyncio.gather(*(c.logout() for c in idle), return_exceptions=True)
