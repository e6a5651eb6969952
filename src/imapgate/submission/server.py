"""The SMTP submission listeners (RFC 6409): aiosmtpd's ``SMTP`` protocol with one
handler object per connection.

aiosmtpd parses SMTP, enforces the line, command and size limits, does STARTTLS
and asks the handler at each step (``handle_EHLO``/``MAIL``/``RCPT``/``DATA``,
``auth_PLAIN``/``auth_LOGIN``).  The handler authenticates with the gateway's
one login check (``Gateway.auth``: the same users, throttle and cache as IMAP),
checks the envelope sender, mirrors MAIL and RCPT at the hoster
(``relay.py``) and hands the message to ``SubmissionService.submit`` (guard,
relay of the end of data, records).

Security: nothing is relayed without AUTH (``530 5.7.0``); on the plain
listener AUTH is neither advertised nor accepted before STARTTLS unless
``allow_plaintext`` (``538 5.7.11``, RFC 4954 §4/§6); the implicit-TLS listener
is TLS from the first byte.  aiosmtpd logs every command line on its ``mail.log``
logger with AUTH arguments masked (its ``sanitize``) and never the answers to
an AUTH challenge; it is set to WARNING unless configured, the gateway logs the
outcome itself.  A handler error answers ``451`` and closes nothing but the
hoster's transaction; no input ends the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from ..config import SubmissionConfig, parse_address
from ..errors import bind_error
from ..gateway.app import Gateway
from ..gateway.auth import Outcome as AuthOutcome
from ..gateway.policy import Actor
from .guard import ClaimLookup
from .relay import HosterInfo, HosterSession, Relay, RelayError, local_hostname
from .service import SubmissionService

log = logging.getLogger("imapgate.submission")

#: Largest message accepted (bytes), unless the hoster's SIZE is smaller: the
#: whole message is held in memory until the hoster takes it (aiosmtpd collects
#: DATA; about twice its size while it does), and hosters take 20-50 MB.
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
#: Recipients per message: a reply from a shared mailbox has a handful; this
#: stops one message from being a mass mailing through the team's account.
MAX_RECIPIENTS = 100
#: Open submission connections at most; beyond, a new one gets ``421`` at once.
MAX_CONNECTIONS = 500
#: Seconds a connection may stay silent (RFC 5321 §4.5.3.2.7: 5 minutes).
IDLE_TIMEOUT = 300.0
#: Failed AUTH attempts on one connection before it is closed (each also counts
#: in the login throttle).
MAX_AUTH_FAILURES = 3
#: aiosmtpd's limits, named here: a command line (RFC 5321 §4.5.3.1.4: 512
#: octets) and a text line of the message (§4.5.3.1.6: 1000 octets with CRLF,
#: +1 for a transparency dot).
COMMAND_LINE_LIMIT = SMTP.command_size_limit
DATA_LINE_LIMIT = SMTP.line_length_limit


class _QuietSession(Session):
    """aiosmtpd 1.4 logs a deprecation warning every time it sets ``login_data``
    after a successful AUTH; the gateway does not use it."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class SubmissionProtocol(SMTP):
    """aiosmtpd's SMTP with a quiet session and a hook when the connection ends."""

    def __init__(self, handler: ConnectionHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.handler = handler

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.handler.opened(self, transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.handler.closed()
        super().connection_lost(error)


class ConnectionHandler:
    """One client connection's state: who logged in, its hoster session."""

    def __init__(self, server: SubmissionServer, *, implicit_tls: bool) -> None:
        self.server = server
        self.service = server.service
        self.actor: Actor | None = None
        self.address = "?"
        self.implicit_tls = implicit_tls
        self.hoster: HosterSession = server.relay.session()
        self.failed_logins = 0
        self.protocol: SubmissionProtocol | None = None

    # -- connection -----------------------------------------------------------------
    def opened(self, protocol: SubmissionProtocol, transport: asyncio.BaseTransport) -> None:
        self.protocol = protocol
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self.server.connections.add(self)

    def closed(self) -> None:
        self.server.connections.discard(self)
        pending = self.hoster.pending
        if pending is not None and not pending.done():
            # The end of the data is at the hoster: let its answer be recorded first.
            pending.add_done_callback(lambda _f: self._close_later())
        elif self.hoster.in_transaction:
            # Gone in the middle of a transaction: no QUIT, no end of data.
            self.hoster.abort()
        else:
            self._close_later()

    def _close_later(self) -> None:
        self.server.spawn(self.hoster.close())

    def _tls_active(self, server: SMTP) -> bool:
        return self.implicit_tls or server._tls_protocol is not None

    # -- hooks ------------------------------------------------------------------------
    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        limit = self.server.size_limit()
        server.data_size_limit = limit
        return [f"250-SIZE {limit}" if r.startswith("250-SIZE") else r for r in responses]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.actor is None:  # aiosmtpd checks too (auth_required); kept for clarity
            return "530 5.7.0 Authentication required"
        if not self.service.sender_allowed(address):
            return self.service.not_allowed_reply(address)
        try:
            reply = await self.hoster.mail(address, mail_options)
        except RelayError as exc:
            if not exc.refused:
                log.warning("submission of %s: %s", self.actor.user, exc.reason)
            return exc.reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients (at most {MAX_RECIPIENTS} per message)"
        try:
            reply = await self.hoster.rcpt(address)
        except RelayError as exc:
            if not exc.refused and self.actor is not None:
                log.warning("submission of %s: %s", self.actor.user, exc.reason)
            return exc.reply
        envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.actor is None or envelope.mail_from is None:
            return "503 5.5.1 Error: need MAIL command"
        content = envelope.original_content
        assert content is not None
        outcome = await self.service.submit(
            self.actor, envelope.mail_from, list(envelope.rcpt_tos), content, self.hoster
        )
        return outcome.reply

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self.hoster.reset()
        return "250 2.0.0 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self.hoster.close()
        return "221 2.0.0 Bye"

    async def handle_exception(self, error: Exception) -> str:
        log.error("submission session of %s from %s failed", self.actor.user if self.actor else "(no login)",
                  self.address, exc_info=error)
        with contextlib.suppress(Exception):
            await self.hoster.reset()
        return "451 4.3.0 Internal error; the message was not sent. Try again"

    # -- AUTH (RFC 4954) --------------------------------------------------------------
    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            raw = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(raw, bytes):
                return AuthResult(success=False, handled=True)  # aborted; aiosmtpd answered
        else:
            try:
                raw = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                return _answer("501 5.5.2 Cannot decode the base64 response")
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            return _answer("501 5.5.2 Malformed PLAIN response")
        authzid, name, password = parts
        if authzid and authzid != name:
            return _answer("535 5.7.8 Acting as another user is not allowed")
        return await self._check(server, name, password)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            name = await server.challenge_auth(server.AuthLoginUsernameChallenge)
            if not isinstance(name, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                name = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                return _answer("501 5.5.2 Cannot decode the base64 response")
        password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check(server, name, password)

    async def _check(self, server: SMTP, name_b: bytes, password_b: bytes) -> AuthResult:
        try:
            name = name_b.decode("utf-8")
            password = password_b.decode("utf-8")
        except UnicodeDecodeError:
            return await self._failed(server, "535 5.7.8 Authentication credentials invalid")
        result = await self.server.gw.auth.authenticate(name, password, self.address)
        if result.outcome is AuthOutcome.OK and result.user is not None:
            self.actor = Actor(result.user.id, result.user.name, f"smtp from {self.address}")
            log.info("submission: %s logged in from %s", result.user.name, self.address)
            return AuthResult(success=True, message="235 2.7.0 Authentication successful")
        if result.outcome is AuthOutcome.LOCKED:
            return _answer(
                f"454 4.7.0 Too many failed logins; try again in {int(result.retry_after) + 1} seconds"
            )
        if result.outcome is AuthOutcome.BUSY:
            return _answer("454 4.7.0 Too many logins are being checked at once; try again in a few seconds")
        if result.outcome is AuthOutcome.UNAVAILABLE:
            return _answer("454 4.7.0 The login cannot be checked just now; try again in a moment")
        return await self._failed(server, "535 5.7.8 Authentication credentials invalid")

    async def _failed(self, server: SMTP, reply: str) -> AuthResult:
        self.failed_logins += 1
        if self.failed_logins >= MAX_AUTH_FAILURES:
            await server.push(reply)
            await server.push("421 4.7.0 Too many failed logins on this connection; closing it")
            if server.transport is not None:
                server.transport.close()
            return AuthResult(success=False, handled=True)
        return _answer(reply)


def _answer(reply: str) -> AuthResult:
    return AuthResult(success=False, handled=False, message=reply)


def tls_context(gw: Gateway) -> ssl.SSLContext | None:
    cfg = gw.config.server
    if not (cfg.certificate and cfg.private_key):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cfg.certificate), str(cfg.private_key))
    return ctx


class SubmissionServer:
    """The listeners of ``[submission]``; ``start``/``stop`` from ``runner.serve``."""

    def __init__(self, gw: Gateway, config: SubmissionConfig, *, claims: ClaimLookup | None = None,
                 relay: Relay | None = None) -> None:
        self.gw = gw
        self.config = config
        self.service = SubmissionService(gw, config, claims)
        self.relay = relay or Relay(config.upstream)
        self.tls = tls_context(gw)
        self.servers: list[asyncio.AbstractServer] = []
        self.addresses: list[tuple[str, int, bool]] = []
        self.connections: set[ConnectionHandler] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.hostname = "localhost"

    @property
    def hoster(self) -> HosterInfo:
        return self.relay.info

    def size_limit(self) -> int:
        """SIZE advertised and enforced: ours, or the hoster's when smaller."""
        theirs = self.relay.info.size
        return min(MAX_MESSAGE_BYTES, theirs) if theirs else MAX_MESSAGE_BYTES

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Bind and serve (tests); ``serve`` binds first (``bind``: a busy port fails
        before the initial sync) and accepts clients once ready (``start_serving``)."""
        await self.bind()
        await self.start_serving()

    async def bind(self) -> None:
        """Open every listener (``OperatorError`` naming the address if one cannot
        be); clients are not accepted until ``start_serving``."""
        mail_log = logging.getLogger("mail.log")
        if mail_log.level == logging.NOTSET:
            mail_log.setLevel(logging.WARNING)
        # aiosmtpd would look the name up for every connection (a DNS query).
        self.hostname = await asyncio.to_thread(local_hostname)
        try:
            for addr in self.config.listen:
                await self._listen(addr, implicit_tls=False)
            for addr in self.config.tls_listen:
                await self._listen(addr, implicit_tls=True)
        except BaseException:
            for server in self.servers:
                server.close()
            self.servers.clear()
            self.addresses.clear()
            raise

    async def start_serving(self) -> None:
        await self.service.start()
        for server in self.servers:
            await server.start_serving()
        for host, port, implicit_tls in self.addresses:
            log.info("submission listening on %s:%d%s", host, port, " (TLS)" if implicit_tls else "")
        # Learn the hoster's SIZE before the first client asks (in the background:
        # a hoster that is down must not stop the gateway from starting).
        self.spawn(self.relay.probe())

    def _protocol(self, implicit_tls: bool) -> asyncio.Protocol:
        if len(self.connections) >= MAX_CONNECTIONS:
            return _Refuse()
        handler = ConnectionHandler(self, implicit_tls=implicit_tls)
        protocol = SubmissionProtocol(
            handler,
            data_size_limit=self.size_limit(),
            hostname=self.hostname,
            ident="imapgate ESMTP",
            tls_context=None if implicit_tls else self.tls,
            require_starttls=False,
            timeout=IDLE_TIMEOUT,
            auth_required=True,
            auth_require_tls=True,
            command_call_limit=None,
        )
        if implicit_tls or self.config.allow_plaintext:
            # On the implicit-TLS listener the whole connection is TLS, but aiosmtpd only
            # knows about its own STARTTLS.  Set after construction: passed to __init__,
            # aiosmtpd warns (and logs) on every connection.
            protocol._auth_require_tls = False
        return protocol

    async def _listen(self, addr: str, *, implicit_tls: bool) -> None:
        host, port = parse_address(addr)
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: self._protocol(implicit_tls),
                host,
                port,
                ssl=self.tls if implicit_tls else None,
                reuse_address=True,
                start_serving=False,
            )
        except OSError as exc:
            raise bind_error(addr, exc) from exc
        self.servers.append(server)
        for sock in server.sockets:
            name = sock.getsockname()
            self.addresses.append((str(name[0]), int(name[1]), implicit_tls))

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for handler in list(self.connections):
            proto = handler.protocol
            if proto is not None and proto.transport is not None:
                with contextlib.suppress(Exception):
                    proto.transport.close()
        await self.service.stop()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()


class _Refuse(asyncio.Protocol):
    """Over ``MAX_CONNECTIONS``: one line, then close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.3.2 Too many connections; try again later\r\n")
        transport.close()
