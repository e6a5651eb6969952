"""ENVELOPE (RFC 9051 §7.5.2) from the raw bytes a FETCH response kept.

The gateway serves ENVELOPE to clients verbatim (``RawItem``) and parses it
only for what it needs itself, chiefly Message-ID (to re-attach per-user state
after a UIDVALIDITY change).  So this parser is deliberately tolerant: real
servers send fewer fields, atoms where strings belong, ``()`` for NIL address
lists or garbage addresses; any field it cannot read becomes None/empty
instead of failing the whole envelope.  Only input that is not a
parenthesised list at all raises ``UpstreamProtocolError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CodecError, UpstreamProtocolError
from .grammar import Reader
from .responses import RawItem


@dataclass(frozen=True, slots=True)
class Address:
    """``(name adl mailbox host)``; strings as sent (RFC 2047 words undecoded).

    Group syntax (RFC 5322 groups): a start-of-group marker has ``host`` None
    and the group name in ``mailbox``; the end marker has both None.
    """

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None

    @property
    def email(self) -> str | None:
        if self.mailbox is None or self.host is None:
            return None
        return f"{self.mailbox}@{self.host}"


@dataclass(frozen=True, slots=True)
class Envelope:
    date: str | None = None
    subject: str | None = None
    from_: tuple[Address, ...] = ()
    sender: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    in_reply_to: str | None = None
    message_id: str | None = None


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "surrogateescape")


def _value(r: Reader) -> str | None:
    """nstring, tolerating an atom or number where a string belongs; a list
    (which no envelope field is) is skipped and read as None."""
    c = r.peek()
    if c == 0x22 or c == 0x7B:
        return _text(r.string())
    if r.at(b"NIL") and not _more_atom(r, 3):
        r.pos += 3
        return None
    raw = r.skip_value()
    return None if raw.startswith(b"(") else _text(raw)


def _more_atom(r: Reader, n: int) -> bool:
    nxt = r.buf[r.pos + n : r.pos + n + 1]
    return nxt not in (b"", b" ", b")", b"(")


def _addresses(r: Reader) -> tuple[Address, ...]:
    if r.peek() != 0x28:
        r.skip_value()  # NIL or a server's junk
        return ()
    start = r.pos
    try:
        r.pos += 1
        out: list[Address] = []
        while True:
            while r.accept_sp():
                pass
            if r.accept(b")"):
                return tuple(out)
            r.expect(b"(")
            fields: list[str | None] = []
            while True:
                while r.accept_sp():
                    pass
                if r.accept(b")"):
                    break
                fields.append(_value(r))
            fields += [None] * (4 - len(fields))
            out.append(Address(*fields[:4]))
    except CodecError:
        r.pos = start
        r.skip_value()
        return ()


def parse_envelope(raw: bytes | RawItem) -> Envelope:
    """Read an ENVELOPE value (``(date subject from ... message-id)``)."""
    data = raw.raw if isinstance(raw, RawItem) else raw
    r = Reader(data, UpstreamProtocolError)
    try:
        r.expect(b"(", "'(' to open an envelope")
        values: list[object] = []
        index = 0
        while True:
            while r.accept_sp():
                pass
            if r.accept(b")") or r.pos >= r.end:
                break
            if 2 <= index <= 7:
                values.append(_addresses(r))
            else:
                values.append(_value(r))
            index += 1
    except CodecError as exc:
        raise UpstreamProtocolError(f"unreadable ENVELOPE: {exc.reason}", position=exc.position) from None

    def s(i: int) -> str | None:
        v = values[i] if i < len(values) else None
        return v if isinstance(v, str) else None

    def a(i: int) -> tuple[Address, ...]:
        v = values[i] if i < len(values) else ()
        return v if isinstance(v, tuple) else ()

    return Envelope(s(0), s(1), a(2), a(3), a(4), a(5), a(6), a(7), s(8), s(9))
