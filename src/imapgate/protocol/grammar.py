"""Shared IMAP grammar (RFC 9051 §9): a reader over one complete frame and
the writer's quoting rules.

A *frame* is one command or response exactly as on the wire: its line, and
for every literal the ``{n}`` header, CRLF and the n octets, ending in the
final CRLF.  ``framing`` guarantees that a frame handed to ``Reader`` is
complete, so the reader never waits for bytes; it only raises ``CodecError``
(of the side given at construction) when the frame is malformed.

Parsing uses compiled regular expressions anchored at the cursor rather than a
byte-at-a-time loop: in CPython one ``re.match`` costs about the same as two
byte comparisons, which is what makes the FETCH hot path fast.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final

from . import limits, mutf7
from .errors import ClientProtocolError, CodecError
from .sequence import STAR, SequenceSet

# --- character classes ------------------------------------------------------
# atom-specials: ( ) { SP CTL % * " \ ]   (8-bit is not allowed in atoms either)
_ATOM_CLASS = rb"[^(){ \x00-\x1f\x7f%*\"\\\]\x80-\xff]"
ATOM_RE: Final = re.compile(_ATOM_CLASS + rb"+")
# ASTRING-CHAR = ATOM-CHAR / "]"
ASTRING_ATOM_RE: Final = re.compile(rb"[^(){ \x00-\x1f\x7f%*\"\\\x80-\xff]+")
# tag = 1*<any ASTRING-CHAR except "+">
TAG_RE: Final = re.compile(rb"[^(){ \x00-\x1f\x7f%*\"\\+\x80-\xff]+")
# list-mailbox = 1*list-char: ATOM-CHAR / list-wildcards / resp-specials
LIST_MAILBOX_RE: Final = re.compile(rb"[^(){ \x00-\x1f\x7f\"\\\x80-\xff]+")
# quoted: lenient on input (8-bit allowed, as sent by UTF-8 clients); no CR/LF/NUL.
QUOTED_RE: Final = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
LITERAL_RE: Final = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\r\n")
NUMBER_RE: Final = re.compile(rb"\d+")
FLAG_RE: Final = re.compile(rb"\\?" + _ATOM_CLASS + rb"+|\\\*")
SEQSET_RE: Final = re.compile(rb"(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*|\$")
_UNESCAPE_RE: Final = re.compile(rb"\\([\"\\])")

MAX_NUMBER: Final = 0xFFFFFFFF  # number (RFC 9051): unsigned 32-bit
MAX_NUMBER64: Final = 0x7FFFFFFFFFFFFFFF  # number64 (RFC 9051, mod-sequence-value)

MONTHS: Final = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
                 b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_MONTH_INDEX: Final = {m.lower(): i + 1 for i, m in enumerate(MONTHS)}
DATE_TIME_RE: Final = re.compile(
    rb'"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"'
)
DATE_RE: Final = re.compile(rb'(")?(\d{1,2})-([A-Za-z]{3})-(\d{4})(?(1)")')


class Reader:
    """A cursor over one complete frame.  Every method either consumes what it
    names and returns it, or raises ``self.error_cls`` without consuming."""

    __slots__ = ("buf", "depth", "end", "error_cls", "invalid_name", "pos", "utf8")

    def __init__(
        self,
        buf: bytes,
        error_cls: type[CodecError] = ClientProtocolError,
        pos: int = 0,
        *,
        utf8: bool = False,
    ) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)
        self.error_cls = error_cls
        self.depth = 0
        # RFC 6855 UTF8=ACCEPT: mailbox names are UTF-8, not modified UTF-7.
        self.utf8 = utf8
        #: (position, reason) of the first mailbox name that did not decode: the
        #: parse goes on (syntax errors still win), the command then fails
        #: with ``InvalidMailboxName``.
        self.invalid_name: tuple[int, str] | None = None

    # -- basics ---------------------------------------------------------------
    def error(self, reason: str) -> CodecError:
        return self.error_cls(reason, position=self.pos)

    def describe_here(self) -> str:
        snippet = self.buf[self.pos : self.pos + 20]
        if not snippet:
            return "end of line"
        return repr(snippet.decode("latin-1"))

    def peek(self) -> int:
        """The next byte, or -1 at the end of the frame."""
        return self.buf[self.pos] if self.pos < self.end else -1

    def at(self, token: bytes) -> bool:
        """True when the frame continues with ``token`` (ASCII case-insensitive)."""
        n = len(token)
        return self.buf[self.pos : self.pos + n].upper() == token

    def at_eol(self) -> bool:
        return self.buf.startswith(b"\r\n", self.pos)

    def accept(self, token: bytes) -> bool:
        """Consume ``token`` (upper-case, case-insensitive) when it is next."""
        n = len(token)
        if self.buf[self.pos : self.pos + n].upper() == token:
            self.pos += n
            return True
        return False

    def expect(self, token: bytes, what: str | None = None) -> None:
        if not self.accept(token):
            raise self.error(f"expected {what or token.decode()!s}, found {self.describe_here()}")

    def sp(self) -> None:
        if self.pos < self.end and self.buf[self.pos] == 0x20:
            self.pos += 1
        else:
            raise self.error(f"expected a space, found {self.describe_here()}")

    def accept_sp(self) -> bool:
        if self.pos < self.end and self.buf[self.pos] == 0x20:
            self.pos += 1
            return True
        return False

    def eol(self) -> None:
        """The frame's final CRLF; nothing may follow it."""
        if self.buf.startswith(b"\r\n", self.pos) and self.pos + 2 == self.end:
            self.pos += 2
            return
        raise self.error(f"expected end of line, found {self.describe_here()}")

    def enter(self) -> None:
        """Count one level of nesting (lists, search keys) against MAX_NESTING."""
        self.depth += 1
        if self.depth > limits.MAX_NESTING:
            raise self.error(f"nested deeper than {limits.MAX_NESTING} levels (MAX_NESTING)")

    def leave(self) -> None:
        self.depth -= 1

    def rest_of_line(self) -> bytes:
        """Everything up to the CRLF that ends the current line (text, resp-text)."""
        end = self.buf.find(b"\r\n", self.pos)
        if end < 0:
            end = self.end
        text = self.buf[self.pos : end]
        self.pos = end
        return text

    # -- tokens ---------------------------------------------------------------
    def atom(self, what: str = "an atom") -> bytes:
        m = ATOM_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected {what}, found {self.describe_here()}")
        self.pos = m.end()
        return m.group()

    def keyword(self, what: str = "a keyword") -> str:
        """An atom returned upper-cased, for case-insensitive command words."""
        return self.atom(what).upper().decode("ascii")

    def tag(self) -> str:
        m = TAG_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected a tag, found {self.describe_here()}")
        if m.end() - m.start() > limits.MAX_TAG_LENGTH:
            raise self.error(f"tag longer than {limits.MAX_TAG_LENGTH} bytes (MAX_TAG_LENGTH)")
        self.pos = m.end()
        return m.group().decode("ascii")

    def number(self, what: str = "a number") -> int:
        m = NUMBER_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected {what}, found {self.describe_here()}")
        digits = m.group()
        if len(digits) > 10 or int(digits) > MAX_NUMBER:
            raise self.error(f"{what} exceeds 2^32-1")
        self.pos = m.end()
        return int(digits)

    def nz_number(self, what: str = "a non-zero number") -> int:
        start = self.pos
        n = self.number(what)
        if n == 0:
            self.pos = start
            raise self.error(f"expected {what}, found 0")
        return n

    def number64(self, what: str = "a 63-bit number") -> int:
        m = NUMBER_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected {what}, found {self.describe_here()}")
        digits = m.group()
        if len(digits) > 19 or int(digits) > MAX_NUMBER64:
            raise self.error(f"{what} exceeds 2^63-1")
        self.pos = m.end()
        return int(digits)

    def quoted(self) -> bytes:
        m = QUOTED_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected a quoted string, found {self.describe_here()}")
        self.pos = m.end()
        body = m.group(1)
        return _UNESCAPE_RE.sub(rb"\1", body) if b"\\" in body else body

    def literal(self, *, allow_binary: bool = False) -> bytes:
        """``{n}CRLF`` + n octets (also ``{n+}`` and, when allowed, ``~{n}``).

        Sizes were checked by ``framing``; here only the structure is checked.
        """
        m = LITERAL_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected a literal, found {self.describe_here()}")
        if m.group(1) and not allow_binary:
            raise self.error("literal8 (~{n}) is only allowed in APPEND and BINARY data")
        size = int(m.group(2))
        start = m.end()
        if start + size > self.end:
            raise self.error("literal is longer than the frame")
        data = self.buf[start : start + size]
        if not m.group(1) and b"\x00" in data:
            raise self.error("NUL in a literal (only literal8 ~{n} may carry NUL)")
        self.pos = start + size
        return data

    def string(self, what: str = "a string") -> bytes:
        c = self.peek()
        if c == 0x22:  # '"'
            return self.quoted()
        if c == 0x7B:  # '{'
            return self.literal()
        raise self.error(f"expected {what}, found {self.describe_here()}")

    def astring(self, what: str = "a string") -> bytes:
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            return self.string(what)
        m = ASTRING_ATOM_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected {what}, found {self.describe_here()}")
        self.pos = m.end()
        return m.group()

    def nstring(self, what: str = "a string or NIL") -> bytes | None:
        if self.accept(b"NIL"):
            return None
        return self.string(what)

    def flag(self) -> str:
        m = FLAG_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected a flag, found {self.describe_here()}")
        self.pos = m.end()
        return canonical_flag(m.group().decode("ascii"))

    def flag_list(self) -> tuple[str, ...]:
        """``(`` [flag *(SP flag)] ``)``."""
        self.expect(b"(", "'(' to open a flag list")
        flags: list[str] = []
        if not self.accept(b")"):
            while True:
                flags.append(self.flag())
                if len(flags) > limits.MAX_LIST_ITEMS:
                    raise self.error("too many flags (MAX_LIST_ITEMS)")
                if self.accept(b")"):
                    break
                self.sp()
        return tuple(flags)

    def sequence_set(self, what: str = "a sequence set") -> SequenceSet:
        m = SEQSET_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected {what}, found {self.describe_here()}")
        text = m.group()
        if text == b"$":
            self.pos = m.end()
            return SequenceSet.saved()
        ranges: list[tuple[int, int]] = []
        for part in text.split(b","):
            a, sep, b = part.partition(b":")
            start = _seq_number(a, self, what)
            end = _seq_number(b, self, what) if sep else start
            ranges.append((start, end))
        if len(ranges) > limits.MAX_LIST_ITEMS:
            raise self.error(f"{what} has more than {limits.MAX_LIST_ITEMS} ranges (MAX_LIST_ITEMS)")
        self.pos = m.end()
        return SequenceSet(tuple(ranges))

    def mailbox(self) -> str:
        """A mailbox name: astring, modified UTF-7 (UTF-8 after ENABLE UTF8=ACCEPT);
        ``INBOX`` in any case is ``INBOX``."""
        start = self.pos
        raw = self.astring("a mailbox name")
        return self._decode_mailbox(raw, start)

    def list_mailbox(self) -> str:
        """A LIST pattern: like a mailbox name, but ``%`` and ``*`` allowed unquoted."""
        start = self.pos
        c = self.peek()
        if c == 0x22 or c == 0x7B:
            raw = self.string("a mailbox pattern")
        else:
            m = LIST_MAILBOX_RE.match(self.buf, self.pos)
            if m is None:
                raise self.error(f"expected a mailbox pattern, found {self.describe_here()}")
            self.pos = m.end()
            raw = m.group()
        return self._decode_mailbox(raw, start, pattern=True)

    def _decode_mailbox(self, raw: bytes, start: int, *, pattern: bool = False) -> str:
        try:
            name = raw.decode("utf-8") if self.utf8 else mutf7.decode(raw)
        except (mutf7.MUTF7Error, UnicodeDecodeError) as exc:
            # Valid syntax, but a name no mailbox can have: noted, not raised.
            if self.invalid_name is None:
                encoding = "UTF-8" if self.utf8 else "modified UTF-7"
                self.invalid_name = (start, f"mailbox name is not valid {encoding} ({exc})")
            return raw.decode("latin-1")
        if not pattern and name.upper() == "INBOX":
            return "INBOX"
        return name

    def date_time(self) -> datetime:
        """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` as an aware datetime."""
        m = DATE_TIME_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected a date-time, found {self.describe_here()}")
        day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
        month = _MONTH_INDEX.get(mon.lower())
        if month is None:
            raise self.error(f"unknown month {mon.decode()!r}")
        offset = timedelta(hours=int(zh), minutes=int(zm))
        try:
            value = datetime(
                int(year), month, int(day), int(hh), int(mm), int(ss),
                tzinfo=timezone(-offset if sign == b"-" else offset),
            )
        except ValueError as exc:
            raise self.error(f"invalid date-time: {exc}") from None
        self.pos = m.end()
        return value

    def date(self) -> date:
        """``d-Mon-yyyy``, optionally quoted (search criteria)."""
        m = DATE_RE.match(self.buf, self.pos)
        if m is None:
            raise self.error(f"expected a date (d-Mon-yyyy), found {self.describe_here()}")
        month = _MONTH_INDEX.get(m.group(3).lower())
        if month is None:
            raise self.error(f"unknown month {m.group(3).decode()!r}")
        try:
            value = date(int(m.group(4)), month, int(m.group(2)))
        except ValueError as exc:
            raise self.error(f"invalid date: {exc}") from None
        self.pos = m.end()
        return value

    def skip_value(self) -> bytes:
        """Skip one generic value (atom, string, number, NIL or nested list) and
        return its exact bytes: used to keep unknown or verbatim-served items."""
        start = self.pos
        self._skip_value()
        return self.buf[start : self.pos]

    def _skip_value(self) -> None:
        c = self.peek()
        if c == 0x28:  # '('
            self.enter()
            self.pos += 1
            if not self.accept(b")"):
                while True:
                    self._skip_value()
                    if self.accept(b")"):
                        break
                    if not self.accept_sp():
                        raise self.error(f"expected ' ' or ')' in a list, found {self.describe_here()}")
                    # be lenient with servers that put a space before ')'
                    if self.accept(b")"):
                        break
            self.leave()
        elif c == 0x22:
            self.quoted()
        elif c == 0x7B or c == 0x7E:
            self.literal(allow_binary=True)
        else:
            m = LIST_MAILBOX_RE.match(self.buf, self.pos)
            if m is None:
                raise self.error(f"expected a value, found {self.describe_here()}")
            # stop an atom at ']' only when a section ends (BODY[...]): keep ']' inside
            self.pos = m.end()


def _seq_number(text: bytes, reader: Reader, what: str) -> int:
    if text == b"*":
        return STAR
    if len(text) > 10 or int(text) > MAX_NUMBER:
        raise reader.error(f"{what}: number exceeds 2^32-1")
    n = int(text)
    if n == 0:
        raise reader.error(f"{what}: 0 is not a valid message number")
    return n


# --- canonical flag spelling ---------------------------------------------------
_SYSTEM_FLAGS: Final = {
    f.lower(): f
    for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent", "\\*")
}


def canonical_flag(flag: str) -> str:
    """System flags are case-insensitive: spell them as the RFC does."""
    if flag.startswith("\\"):
        return _SYSTEM_FLAGS.get(flag.lower(), flag)
    return flag


# --- writing ---------------------------------------------------------------------
_SAFE_ATOM_RE: Final = re.compile(_ATOM_CLASS + rb"+\Z")
_SAFE_ASTRING_RE: Final = re.compile(rb"[^(){ \x00-\x1f\x7f%*\"\\\x80-\xff]+\Z")
_SAFE_QUOTED_RE: Final = re.compile(rb"[^\r\n\x00\x80-\xff]*\Z")
#: Strings longer than this are sent as literals even when they could be quoted:
#: keeps lines short and avoids escaping cost for large values.
MAX_QUOTED_WRITE: Final = 1024


def quote(value: bytes) -> bytes:
    """A string as quoted when possible, else as a (synchronizing-form) literal."""
    if len(value) <= MAX_QUOTED_WRITE and _SAFE_QUOTED_RE.match(value):
        if b"\\" in value or b'"' in value:
            value = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + value + b'"'
    return b"{%d}\r\n" % len(value) + value


def astring(value: bytes) -> bytes:
    """An astring: bare when it is a safe atom, else quoted or literal."""
    if value and _SAFE_ASTRING_RE.match(value) and value.upper() != b"NIL":
        return value
    return quote(value)


def nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else quote(value)


def needs_literal(value: bytes) -> bool:
    return not (len(value) <= MAX_QUOTED_WRITE and _SAFE_QUOTED_RE.match(value))


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name for the wire (modified UTF-7 unless UTF8=ACCEPT is on)."""
    if name.upper() == "INBOX":
        return b"INBOX"
    raw = name.encode("utf-8") if utf8 else mutf7.encode(name)
    return astring(raw)


def flag_list(flags: tuple[str, ...] | list[str]) -> bytes:
    return b"(" + " ".join(flags).encode("ascii") + b")"


def format_date_time(value: datetime) -> bytes:
    """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    off = value.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds()) // 60
    sign = b"-" if minutes < 0 else b"+"
    minutes = abs(minutes)
    return b'"%2d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        value.day, MONTHS[value.month - 1], value.year,
        value.hour, value.minute, value.second, sign, minutes // 60, minutes % 60,
    )


def format_date(value: date) -> bytes:
    return b"%d-%s-%04d" % (value.day, MONTHS[value.month - 1], value.year)


_SAFE_LIST_MAILBOX_RE: Final = re.compile(rb"[^(){ \x00-\x1f\x7f\"\\\x80-\xff]+\Z")


def list_mailbox(pattern: str, *, utf8: bool = False) -> bytes:
    """A LIST/LSUB pattern for the wire: bare when only list-chars (``%`` and
    ``*`` included), else quoted or literal.  Unlike ``mailbox`` the case of
    ``inbox`` is kept: a pattern is matched, not named."""
    raw = pattern.encode("utf-8") if utf8 else mutf7.encode(pattern)
    if raw and _SAFE_LIST_MAILBOX_RE.match(raw):
        return raw
    return quote(raw)


def bounded_astring(value: bytes) -> bytes:
    """Like ``astring``, but values over ``MAX_QUOTED_WRITE`` octets always go
    as a literal, even when they would be a valid atom: keeps command lines
    short for servers with small line limits."""
    if len(value) > MAX_QUOTED_WRITE:
        return b"{%d}\r\n" % len(value) + value
    return astring(value)
