"""Relaying to the hoster's submission server while the client waits.

No queue of our own: a client's transaction is mirrored at the hoster step by
step — MAIL when the client sends MAIL, each RCPT when the client sends it —
and the hoster's answer is the client's answer, code and text (a refused
recipient, a message too large).  Only the end of the data differs: the
gateway has the whole message before the hoster sees any of it, and sends
``DATA``, the content and the final dot in one go *after* every check of its
own (sender, guard).  So

* a client that goes away, a check that refuses, or a gateway killed before
  that moment leaves the hoster with an unfinished transaction, which it drops
  (RFC 5321 §4.1.1.4: no dot, no message): the hoster got it at most once;
* once the dot went out, the hoster's final reply decides, and the gateway
  waits for it even if the client has gone (``service.py`` shields that step),
  so what the hoster accepted is recorded as sent.

Library: aiosmtplib (asyncio, per-command timeouts, STARTTLS and implicit
TLS, maintained), chosen over the stdlib's ``smtplib`` in worker threads: a
relay lives as long as the client's transaction, with the client's think time
between commands, so threads would be held idle by slow clients and could not
be cancelled when a client disconnects; measured on the same Postfix,
``benchmarks/submission_relay.py`` (results in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from ..config import SubmissionUpstreamConfig
from .guard import ascii_line

log = logging.getLogger("imapgate.submission.relay")

#: Seconds for connecting (TCP, TLS, greeting, EHLO, AUTH) to the hoster.
CONNECT_TIMEOUT = 30.0
#: Seconds for the hoster to answer one command (MAIL, RCPT, DATA, RSET); RFC
#: 5321 §4.5.3.2 allows 5 minutes, but the client waits behind it (clients give
#: up after about a minute).
COMMAND_TIMEOUT = 60.0
#: Seconds for the hoster's answer to the end of the data (RFC 5321 §4.5.3.2.6:
#: 10 minutes).  The wait goes on when the client has left: the answer decides
#: whether the message was sent.
DATA_END_TIMEOUT = 600.0
#: Characters of one line of a hoster reply passed on to the client.
MAX_REPLY_LINE = 400


class RelayError(Exception):
    """The hoster refused, or could not be asked.

    ``reply`` is the complete SMTP reply for the client (possibly several
    lines); ``refused`` is True when the hoster itself answered with that code,
    False when the gateway could not get an answer (then nothing was sent,
    unless ``uncertain``: the end of the data may have reached the hoster)."""

    def __init__(self, reply: str, *, refused: bool, uncertain: bool = False, reason: str = "") -> None:
        super().__init__(reply)
        self.reply = reply
        self.refused = refused
        self.uncertain = uncertain
        self.reason = reason or reply


@dataclass
class HosterInfo:
    """What the hoster's last EHLO said, shared by every connection."""

    #: Its SIZE limit in bytes (None: not known yet, 0: no limit given).
    size: int | None = None
    checked: float = 0.0


def passthrough(code: int, message: str) -> str:
    """The hoster's reply as the client's reply: same code, same text (ASCII, one
    ``code-`` line per line of text)."""
    lines = [ascii_line(line, MAX_REPLY_LINE) for line in message.splitlines()] or [""]
    parts = [f"{code}-{line}" for line in lines[:-1]] + [f"{code} {lines[-1]}"]
    return "\r\n".join(parts)


def _tls_context(config: SubmissionUpstreamConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not config.verify_certificate:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def local_hostname() -> str:
    """The name the gateway gives in EHLO: the machine's FQDN (looked up once)."""
    global _LOCAL_HOSTNAME
    if _LOCAL_HOSTNAME is None:
        name = socket.getfqdn()
        _LOCAL_HOSTNAME = name if "." in name else f"{name}.localdomain"
    return _LOCAL_HOSTNAME


_LOCAL_HOSTNAME: str | None = None


class Relay:
    """Shared by all connections: the hoster's settings and what its EHLO said."""

    def __init__(self, config: SubmissionUpstreamConfig, *, hostname: str | None = None) -> None:
        self.config = config
        self.info = HosterInfo()
        self.hostname = hostname
        self._tls = _tls_context(config) if config.tls != "none" else None

    def session(self) -> HosterSession:
        return HosterSession(self)

    async def probe(self) -> None:
        """Connect, learn the hoster's SIZE, disconnect (at start: so the first
        clients' EHLO already advertises it).  Failures are logged, not raised."""
        hoster = self.session()
        try:
            await hoster.connect()
        except RelayError as exc:
            log.warning("the hoster's submission server %s:%d: %s", self.config.host, self.config.port,
                        exc.reason)
        finally:
            await hoster.close()

    async def _client(self) -> aiosmtplib.SMTP:
        cfg = self.config
        if self.hostname is None:
            self.hostname = await asyncio.to_thread(local_hostname)
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            use_tls=cfg.tls == "implicit",
            start_tls=cfg.tls == "starttls",
            tls_context=self._tls,
            timeout=COMMAND_TIMEOUT,
            local_hostname=self.hostname,
        )
        await smtp.connect(timeout=CONNECT_TIMEOUT)
        if not smtp.esmtp_extensions:
            # After STARTTLS the extensions are forgotten (RFC 3207 §4.2): ask again.
            await smtp.ehlo(timeout=CONNECT_TIMEOUT)
        size = smtp.esmtp_extensions.get("size")
        self.info.size = int(size) if size and size.strip().isdigit() else 0
        self.info.checked = time.time()
        if cfg.user and cfg.password:
            if not smtp.supports_extension("auth"):
                smtp.close()
                raise RelayError(
                    "451 4.7.0 Not sent: the mail server offers no login to the gateway; tell your "
                    "administrator",
                    refused=False,
                    reason="the hoster's server does not offer AUTH",
                )
            await smtp.login(cfg.user, cfg.password, timeout=CONNECT_TIMEOUT)
        return smtp


class HosterSession:
    """The hoster side of one client connection: connected at the client's first
    MAIL, reused (RSET) for its next transactions, closed with it."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._smtp: aiosmtplib.SMTP | None = None
        #: A transaction (MAIL sent) is open at the hoster.
        self.in_transaction = False
        #: The relay of a message's end of data, while it runs (it outlives the client).
        self.pending: asyncio.Future[Any] | None = None

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()
        cfg = self.relay.config
        where = f"{cfg.host}:{cfg.port}"
        try:
            self._smtp = await self.relay._client()
        except aiosmtplib.SMTPAuthenticationError as exc:
            log.error("the hoster's submission server %s refused the gateway's login (%s): %d %s",
                      where, cfg.user, exc.code, ascii_line(exc.message, MAX_REPLY_LINE))
            raise RelayError(
                "451 4.7.0 Not sent: the mail server refused the gateway's login; tell your administrator",
                refused=False,
                reason=f"login refused: {exc.code} {exc.message}",
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise RelayError(
                "451 4.4.1 Not sent: the mail server did not accept the connection; try again later",
                refused=False,
                reason=f"{where} answered {exc.code} {exc.message}",
            ) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise RelayError(
                "451 4.4.1 Not sent: the mail server cannot be reached just now; try again later",
                refused=False,
                reason=f"{where}: {type(exc).__name__}: {exc}",
            ) from None

    def _smtp_or_fail(self) -> aiosmtplib.SMTP:
        if self._smtp is None or not self._smtp.is_connected:
            self.in_transaction = False
            raise RelayError(
                "451 4.4.2 Not sent: the connection to the mail server broke; try again",
                refused=False,
                reason="connection lost",
            )
        return self._smtp

    async def mail(self, sender: str, options: list[str]) -> str:
        """MAIL FROM at the hoster; returns its reply for the client, raises
        ``RelayError`` with its refusal."""
        await self.connect()
        smtp = self._smtp_or_fail()
        if self.in_transaction:
            await self.reset()
            await self.connect()
            smtp = self._smtp_or_fail()
        passed = [o for o in options if self._passes(smtp, o)]
        try:
            try:
                response = await smtp.mail(sender, options=passed)
            except aiosmtplib.SMTPServerDisconnected:
                # A connection kept from the client's previous transaction may have been
                # closed by the hoster meanwhile (its idle timeout): MAIL has no effect
                # yet, so try once on a new connection.
                await self.close()
                await self.connect()
                smtp = self._smtp_or_fail()
                response = await smtp.mail(sender, options=passed)
        except aiosmtplib.SMTPResponseException as exc:
            # RSET after a refused MAIL: Postfix keeps the refused SIZE= for the next
            # MAIL of the session otherwise (and refuses it again).
            self.in_transaction = True
            await self.reset()
            raise RelayError(passthrough(exc.code, exc.message), refused=True) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise self._broken(exc) from None
        self.in_transaction = True
        return passthrough(response.code, response.message)

    @staticmethod
    def _passes(smtp: aiosmtplib.SMTP, option: str) -> bool:
        """MAIL parameters the hoster gets: SIZE and BODY, when it offers them."""
        name = option.split("=", 1)[0].upper()
        if name == "SIZE":
            return smtp.supports_extension("size")
        if name == "BODY":
            return smtp.supports_extension("8bitmime")
        return False

    async def rcpt(self, recipient: str) -> str:
        smtp = self._smtp_or_fail()
        try:
            response = await smtp.rcpt(recipient)
        except aiosmtplib.SMTPResponseException as exc:
            raise RelayError(passthrough(exc.code, exc.message), refused=True) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise self._broken(exc) from None
        return passthrough(response.code, response.message)

    async def data(self, content: bytes) -> str:
        """DATA, the content and the end of data, at once; the hoster's final reply.
        A failure without the hoster's answer is ``uncertain``: the end of the data
        may have reached it."""
        smtp = self._smtp_or_fail()
        try:
            response = await smtp.data(content, timeout=DATA_END_TIMEOUT)
        except aiosmtplib.SMTPResponseException as exc:
            self.in_transaction = False
            raise RelayError(passthrough(exc.code, exc.message), refused=True) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise RelayError(
                "451 4.4.2 The mail server did not confirm the message: it may or may not have been "
                "sent; check before sending again",
                refused=False,
                uncertain=True,
                reason=f"no answer to the end of the data: {type(exc).__name__}: {exc}",
            ) from None
        self.in_transaction = False
        return passthrough(response.code, response.message)

    async def reset(self) -> None:
        """End the open transaction at the hoster (RSET; a broken connection is closed)."""
        if not self.in_transaction:
            return
        self.in_transaction = False
        smtp = self._smtp
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            await self.close()

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        self.in_transaction = False
        if smtp is None:
            return
        if smtp.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smtp.quit(), 5)
        smtp.close()

    def abort(self) -> None:
        """Drop the connection at once, without QUIT (the client went away in the
        middle of a transaction: the hoster must see no end of data)."""
        smtp, self._smtp = self._smtp, None
        self.in_transaction = False
        if smtp is not None:
            smtp.close()

    def _broken(self, exc: BaseException) -> RelayError:
        return RelayError(
            "451 4.4.2 Not sent: the connection to the mail server broke; try again",
            refused=False,
            reason=f"{type(exc).__name__}: {exc}",
        )
