"""FETCH data items (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ).

A ``FetchAttribute`` is what a client asks for (``BODY.PEEK[1.HEADER]<0.100>``);
``response_name()`` is the key under which the server answers it
(``BODY[1.HEADER]<0>``).  The response parser keys items by exactly those
bytes, so both sides agree on one canonical spelling: upper-case item names,
the section spelled as RFC 9051 does, header field names upper-cased.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from . import grammar, limits
from .grammar import Reader

SectionText: TypeAlias = Literal["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]

#: Items that are just a name.  ``BODY`` without a section is the
#: non-extensible BODYSTRUCTURE.
SIMPLE_ITEMS: Final = frozenset(
    {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
     "MODSEQ", "RFC822", "RFC822.HEADER", "RFC822.TEXT"}
)
#: Items that take a section (and may be ``.PEEK``ed).
SECTION_ITEMS: Final = frozenset({"BODY", "BINARY", "BINARY.SIZE"})


@dataclass(frozen=True, slots=True)
class Section:
    """``[part.text (fields)]``: ``part`` are MIME part numbers (empty = whole
    message), ``fields`` only for HEADER.FIELDS[.NOT].  BINARY sections carry
    only ``part``."""

    part: tuple[int, ...] = ()
    text: SectionText = ""
    fields: tuple[str, ...] = ()

    def spec(self, *, upper_fields: bool = False) -> bytes:
        """The section without its brackets."""
        out = b".".join(b"%d" % p for p in self.part)
        if self.text:
            if out:
                out += b"."
            out += self.text.encode("ascii")
        if self.text.startswith("HEADER.FIELDS"):
            names = (f.upper() if upper_fields else f for f in self.fields)
            out += b" (" + b" ".join(grammar.bounded_astring(n.encode("utf-8")) for n in names) + b")"
        return out

    def __bytes__(self) -> bytes:
        return b"[" + self.spec() + b"]"


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """One fetch-att.  ``name`` is one of ``SIMPLE_ITEMS`` (``section`` None) or
    ``BODY``/``BINARY``/``BINARY.SIZE`` with a ``section``; ``partial`` is
    ``(offset, length)``; ``peek`` marks ``BODY.PEEK``/``BINARY.PEEK``."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    def __bytes__(self) -> bytes:
        out = self.name.encode("ascii")
        if self.peek:
            out += b".PEEK"
        if self.section is not None:
            out += bytes(self.section)
        if self.partial is not None:
            out += b"<%d.%d>" % self.partial
        return out

    def response_name(self) -> bytes:
        """The item's name in the server's FETCH response."""
        out = self.name.encode("ascii")
        if self.section is not None:
            out += b"[" + self.section.spec(upper_fields=True) + b"]"
        if self.partial is not None:
            out += b"<%d>" % self.partial[0]
        return out

    @property
    def sets_seen(self) -> bool:
        """Fetching this sets ``\\Seen`` (RFC 9051 §6.4.5)."""
        if self.name in ("BODY", "BINARY"):
            return self.section is not None and not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")


def _simple(*names: str) -> tuple[FetchAttribute, ...]:
    return tuple(FetchAttribute(n) for n in names)


#: The FETCH macros (RFC 9051 §6.4.5); they must be used alone.
MACROS: Final[dict[str, tuple[FetchAttribute, ...]]] = {
    "ALL": _simple("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": _simple("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": _simple("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


# --- reading ---------------------------------------------------------------------
_NAME_RE: Final = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_RE: Final = re.compile(
    rb"\[(\d+(?:\.\d+)*)?(?:(?(1)\.)(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?", re.IGNORECASE
)
_BINARY_SECTION_RE: Final = re.compile(rb"\[(\d+(?:\.\d+)*)?\]")
_PARTIAL_RE: Final = re.compile(rb"<(\d{1,19})\.(\d{1,19})>")
_TEXTS: Final[dict[bytes, SectionText]] = {
    b"HEADER": "HEADER", b"HEADER.FIELDS": "HEADER.FIELDS", b"HEADER.FIELDS.NOT": "HEADER.FIELDS.NOT",
    b"TEXT": "TEXT", b"MIME": "MIME",
}


def read_fetch_attribute(r: Reader) -> FetchAttribute:
    """One fetch-att at the cursor (not a macro)."""
    start = r.pos
    m = _NAME_RE.match(r.buf, r.pos)
    if m is None:
        raise r.error(f"expected a fetch attribute, found {r.describe_here()}")
    name = m.group().upper().decode("ascii")
    r.pos = m.end()
    peek = False
    if name in ("BODY.PEEK", "BINARY.PEEK"):
        name = name[:-5]
        peek = True
    has_section = r.peek() == 0x5B  # '['
    if name in SECTION_ITEMS and (has_section or name != "BODY" or peek):
        if not has_section:
            raise r.error(f"expected '[' (a section) after {m.group().decode()}")
        section = _read_binary_section(r) if name != "BODY" else _read_section(r)
        partial = None
        if name != "BINARY.SIZE" and r.peek() == 0x3C:  # '<'
            partial = _read_partial(r)
        return FetchAttribute(name, section, partial, peek)
    if name in SIMPLE_ITEMS and not has_section:
        return FetchAttribute(name)
    r.pos = start
    raise r.error(f"unknown fetch attribute {m.group().decode()[:40]}")


def _part_numbers(r: Reader, text: bytes | None) -> tuple[int, ...]:
    if not text:
        return ()
    parts: list[int] = []
    for piece in text.split(b"."):
        n = int(piece) if len(piece) <= 10 else 0
        if n == 0 or n > grammar.MAX_NUMBER:
            raise r.error(f"invalid section part number {piece.decode()[:12]}")
        parts.append(n)
    return tuple(parts)


def _read_section(r: Reader) -> Section:
    m = _SECTION_RE.match(r.buf, r.pos)
    if m is None:  # the regex can always match '[', kept for the type checker
        raise r.error("expected a section")
    part = _part_numbers(r, m.group(1))
    text: SectionText = _TEXTS[m.group(2).upper()] if m.group(2) else ""
    if text == "MIME" and not part:
        raise r.error("MIME section requires a part number")
    r.pos = m.end()
    fields: tuple[str, ...] = ()
    if text.startswith("HEADER.FIELDS"):
        r.sp()
        fields = _read_header_list(r)
    r.expect(b"]", "']' to close the section")
    return Section(part, text, fields)


def _read_header_list(r: Reader) -> tuple[str, ...]:
    r.expect(b"(", "'(' to open the header field list")
    names: list[str] = []
    while True:
        start = r.pos
        raw = r.astring("a header field name")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            r.pos = start
            raise r.error("header field name is not UTF-8") from None
        if len(names) > limits.MAX_LIST_ITEMS:
            raise r.error(f"more than {limits.MAX_LIST_ITEMS} header fields (MAX_LIST_ITEMS)")
        if r.accept(b")"):
            return tuple(names)
        r.sp()


def _read_binary_section(r: Reader) -> Section:
    m = _BINARY_SECTION_RE.match(r.buf, r.pos)
    if m is None:
        raise r.error(f"expected a binary section [part], found {r.describe_here()}")
    part = _part_numbers(r, m.group(1))
    r.pos = m.end()
    return Section(part)


def _read_partial(r: Reader) -> tuple[int, int]:
    m = _PARTIAL_RE.match(r.buf, r.pos)
    if m is None:
        raise r.error(f"expected a partial <offset.length>, found {r.describe_here()}")
    offset, length = int(m.group(1)), int(m.group(2))
    if offset > grammar.MAX_NUMBER64 or not 0 < length <= grammar.MAX_NUMBER64:
        raise r.error("partial offset/length out of range")
    r.pos = m.end()
    return offset, length
