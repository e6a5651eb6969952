"""Codec error types: which side broke the protocol, what was wrong, and where.

Modelled on h11's LocalProtocolError/RemoteProtocolError split: a session
driver turns a ``ClientProtocolError`` into a tagged ``BAD`` (or ``BYE`` when
the stream cannot be resynchronised) and an ``UpstreamProtocolError`` into a
dropped upstream connection plus ``NO [UNAVAILABLE]`` for the affected client.
No other exception type may escape the codec for any input.
"""

from __future__ import annotations

from typing import Any


class CodecError(Exception):
    """Malformed or oversized protocol data.

    ``position`` is the byte offset in the frame (line plus literals) where
    the problem was found, ``tag`` the command tag when it could be read (so
    the server can answer with a tagged BAD), ``fatal`` says the byte stream
    cannot be resynchronised and the connection must be closed.
    """

    side = "peer"

    def __init__(
        self,
        reason: str,
        *,
        position: int | None = None,
        tag: str | None = None,
        fatal: bool = False,
        code: str | None = None,
    ) -> None:
        self.reason = reason
        self.position = position
        self.tag = tag
        self.fatal = fatal
        # An RFC 5530 response code that fits the error (e.g. TOOBIG, CLIENTBUG).
        self.code = code
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f" at byte {self.position}" if self.position is not None else ""
        return f"{self.side} protocol error{where}: {self.reason}"

    def with_tag(self, tag: str | None) -> CodecError:
        if tag is not None and self.tag is None:
            self.tag = tag
        return self


class ClientProtocolError(CodecError):
    """A mail client (the gateway's downstream peer) sent invalid input."""

    side = "client"


class UpstreamProtocolError(CodecError):
    """The upstream IMAP server sent invalid data."""

    side = "upstream"


class InvalidMailboxName(ClientProtocolError):
    """A well-formed command names a mailbox that is not valid modified UTF-7
    (or UTF-8 after UTF8=ACCEPT).  No such mailbox can exist, so the command is
    answered ``NO`` (as Dovecot does), not ``BAD``: its syntax was right.
    ``command`` is the parsed command (the mailbox decoded leniently)."""

    def __init__(self, reason: str, *, position: int | None, tag: str | None, command: Any) -> None:
        super().__init__(reason, position=position, tag=tag)
        self.command = command
