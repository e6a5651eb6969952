"""MIME structure and content decoding exactly as Dovecot's search reads a message.

A port of Dovecot 2.3's ``message-header-parser.c`` (with
``MESSAGE_HEADER_PARSER_FLAG_CLEAN_ONELINE``), ``message-parser.c`` (parts,
boundaries, message/rfc822, its part limits), ``message-decoder.c``,
``qp-decoder.c``, the base64 decoder and ``message-header-decode.c`` (RFC 2047),
working on a whole message in memory.  No I/O; bytes in, blocks and strings out.

``parse_blocks`` yields the parser's blocks (header lines, end of headers, body
data per part) in Dovecot's order; ``decode_header_value`` and
``BodyDecoder`` turn them into the UTF-8 text the search compares (not yet
normalized).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from . import charsets
from .casemap import decode_utf8
from .rfc822 import Parser, content_type

HEADER_NAME_MAX_LEN: Final = 1000  # MESSAGE_HEADER_NAME_MAX_LEN
BOUNDARY_STRING_MAX_LEN: Final = 70 + 10
BOUNDARY_END_MAX_LEN: Final = BOUNDARY_STRING_MAX_LEN + 2 + 2
MAX_NESTED_MIME_PARTS: Final = 100  # MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS
MAX_TOTAL_MIME_PARTS: Final = 10000
_LWSP: Final = b" \t"

F_MULTIPART: Final = 1
F_MULTIPART_DIGEST: Final = 2
F_MESSAGE_RFC822: Final = 4
F_TEXT: Final = 8
F_IS_MIME: Final = 0x40
F_OVERFLOW: Final = 0x100


@dataclass(eq=False)
class Part:
    parent: Part | None
    flags: int = 0
    depth: int = 0


@dataclass
class HeaderLine:
    """One header as the consumer sees it when it is complete (folded lines joined
    into ``full_value`` the CLEAN_ONELINE way)."""

    name: bytes
    middle: bytes
    full_value: bytes
    eoh: bool = False
    #: The longest physical line of the header (Dovecot splits lines longer than its
    #: input buffer, which may change a tab into a space where it splits).
    longest_line: int = 0


@dataclass
class Block:
    part: Part
    hdr: HeaderLine | None = None
    data: bytes = b""


@dataclass
class _Boundary:
    part: Part
    boundary: bytes
    epilogue_found: bool = False


# --- header lines ----------------------------------------------------------------------------
class HeaderReader:
    """``message_parse_header_next`` over ``data[pos:]``: one *logical* header per call
    (continuation lines folded into ``full_value``), then the end-of-headers line."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.done = False

    def next(self) -> HeaderLine | None:
        if self.done:
            return None
        data = self.data
        n = len(data)
        if self.pos >= n:
            self.done = True
            return None
        line, nxt = self._physical_line(self.pos)
        if not line and nxt > self.pos and data[self.pos] in b"\r\n" and self._is_empty_line(self.pos):
            self.pos = nxt
            self.done = True
            return HeaderLine(b"", b"", b"", eoh=True)
        colon = line.find(b":")
        if colon < 0:
            name, middle, value = b"", b"", line
        else:
            value = line[colon + 1 :]
            start = 1 if value[:1] in (b" ", b"\t") and value else 0
            value = value[start:]
            name_end = colon
            while name_end > 0 and line[name_end - 1] in _LWSP:
                name_end -= 1
            if name_end > HEADER_NAME_MAX_LEN:
                name, middle, value = b"", b"", line
            else:
                name = line[:name_end]
                middle = line[name_end : colon + 1 + start]
        full = bytearray(value)
        longest = len(line)
        self.pos = nxt
        # Continuation lines: the next physical line starts with LWSP.
        while self.pos < n and data[self.pos - 1 : self.pos] == b"\n" and data[self.pos] in _LWSP:
            cont, nxt = self._physical_line(self.pos)
            longest = max(longest, len(cont))
            if cont[:1] == b"\t":
                full += b" " + cont[1:]
            else:
                full += cont
            self.pos = nxt
        return HeaderLine(name, middle, bytes(full), longest_line=longest)

    def _is_empty_line(self, pos: int) -> bool:
        d = self.data
        return d[pos : pos + 1] == b"\n" or d[pos : pos + 2] == b"\r\n"

    def _physical_line(self, pos: int) -> tuple[bytes, int]:
        """The line at ``pos`` without its [CR]LF, and where the next one starts.  A last
        line without LF keeps everything (Dovecot: "header ended unexpectedly")."""
        lf = self.data.find(b"\n", pos)
        if lf < 0:
            return self.data[pos:], len(self.data)
        end = lf - 1 if lf > pos and self.data[lf - 1] == 0x0D else lf
        return self.data[pos:end], lf + 1


# --- the message parser ----------------------------------------------------------------------
class _MessageParser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.boundaries: list[_Boundary] = []  # newest last
        self.total_parts = 1
        self.blocks: list[Block] = []

    # boundary_line_find: data[pos:] is at a line start; returns the boundary or None.
    def boundary_at(self, pos: int, part: Part) -> _Boundary | None:
        data = self.data
        if data[pos : pos + 2] != b"--":
            return None
        if self.total_parts >= MAX_TOTAL_MIME_PARTS:
            part.flags |= F_OVERFLOW
            return None
        start = pos + 2
        lf = data.find(b"\n", start)
        trailing_dashes = False
        if lf >= 0:
            find_end = lf
            if find_end > start and data[find_end - 1] == 0x0D:
                find_end -= 1
            find_size = find_end - start
            if find_size > 2 and data[find_end - 2 : find_end] == b"--":
                trailing_dashes = True
        else:
            find_size = min(len(data) - start, BOUNDARY_END_MAX_LEN)
        line = data[start : start + find_size]
        best: _Boundary | None = None
        for b in reversed(self.boundaries):
            blen = len(b.boundary)
            longer = best is None or len(best.boundary) < blen
            if blen <= find_size and longer and line.startswith(b.boundary):
                best = b
                if blen == find_size or (blen == find_size - 2 and trailing_dashes):
                    break
        if best is None:
            return None
        blen = len(best.boundary)
        best.epilogue_found = len(data) - start >= blen + 2 and data[start + blen : start + blen + 2] == b"--"
        return best

    def run(self) -> list[Block]:
        # An explicit work list instead of recursion: 10,000 parts may follow each other.
        step: tuple[bool, Part, int] | None = (True, Part(None), 0)
        while step is not None:
            is_header, part, pos = step
            step = self._headers(part, pos) if is_header else self._body(part, pos)
        return self.blocks

    def _too_many_nested(self, part: Part) -> bool:
        return part.depth + 1 >= MAX_NESTED_MIME_PARTS

    def _headers(self, part: Part, pos: int) -> tuple[bool, Part, int] | None:
        """parse_next_header for ``part`` from ``pos``; returns what comes next."""
        data = self.data
        reader = HeaderReader(data, pos)
        seen_content_type = False
        last_boundary: bytes | None = None
        multipart = False
        while True:
            at = reader.pos
            at_eoh = data[at : at + 1] == b"\n" or data[at : at + 2] == b"\r\n"
            if at_eoh and last_boundary is not None and part.flags & F_IS_MIME:
                if not self._too_many_nested(part):
                    self.boundaries.append(_Boundary(part, last_boundary))
                    multipart = True
                else:
                    part.flags |= F_OVERFLOW
                    part.flags &= ~F_MULTIPART
                last_boundary = None
            if at < len(data) and self.boundaries and not reader.done:
                b = self.boundary_at(at, part)
                if b is not None and b.part is not part:
                    break  # the boundary ends this header
            hdr = reader.next()
            if hdr is None:
                break
            if not hdr.eoh:
                lname = hdr.name.lower()
                if lname == b"mime-version":
                    part.flags |= F_IS_MIME
                elif lname == b"content-type":
                    part.flags |= F_IS_MIME
                    if not seen_content_type:
                        seen_content_type = True
                        last_boundary = self._content_type(part, hdr.full_value, last_boundary)
            self.blocks.append(Block(part, hdr))
        pos = reader.pos
        # end of headers
        if not part.flags & F_IS_MIME:
            part.flags = 0
        if not seen_content_type or not part.flags & F_IS_MIME:
            if part.parent is not None and part.parent.flags & F_MULTIPART_DIGEST:
                part.flags |= F_MESSAGE_RFC822
            else:
                part.flags |= F_TEXT
        self.blocks.append(Block(part))  # the empty block: end of headers
        if multipart or not part.flags & F_MESSAGE_RFC822:
            return False, part, pos
        if not self._too_many_nested(part) and self.total_parts < MAX_TOTAL_MIME_PARTS:
            self.total_parts += 1
            return True, Part(part, 0, part.depth + 1), pos
        part.flags |= F_OVERFLOW
        part.flags &= ~F_MESSAGE_RFC822
        return False, part, pos

    def _content_type(self, part: Part, value: bytes, last_boundary: bytes | None) -> bytes | None:
        ctype, params = content_type(value)
        low = ctype.lower()
        if low == b"message/rfc822":
            part.flags |= F_MESSAGE_RFC822
        elif low[:4] == b"text" and (len(low) == 4 or low[4:5] == b"/"):
            part.flags |= F_TEXT
        elif low[:10] == b"multipart/":
            part.flags |= F_MULTIPART
            if low[10:] == b"digest":
                part.flags |= F_MULTIPART_DIGEST
        if params is None or not part.flags & F_MULTIPART or last_boundary is not None:
            return last_boundary
        for key, val in params:
            if key.lower() == b"boundary":
                return _cstr(val)[:BOUNDARY_STRING_MAX_LEN]
        return None

    def _body(self, part: Part, pos: int) -> tuple[bool, Part, int] | None:
        """Body of ``part`` from ``pos`` (a line start) to a boundary or the end."""
        data = self.data
        if not self.boundaries:
            self._emit(part, pos, len(data))
            return None
        found: _Boundary | None = None
        line = pos
        while True:
            found = self.boundary_at(line, part) if line < len(data) else None
            if found is not None:
                break
            nl = data.find(b"\n--", line)
            if nl < 0:
                break
            line = nl + 1
        if found is None:
            self._emit(part, pos, len(data))
            return None
        end = line
        if end > pos:
            end -= 1  # the LF before the boundary belongs to it
            if end > pos and data[end - 1] == 0x0D:
                end -= 1
        self._emit(part, pos, end)
        return self._part_finish(found, line)

    def _emit(self, part: Part, start: int, end: int) -> None:
        if end > start and not part.flags & F_MULTIPART:
            self.blocks.append(Block(part, None, self.data[start:end]))

    def _part_finish(self, boundary: _Boundary, line: int) -> tuple[bool, Part, int] | None:
        i = self.boundaries.index(boundary)
        if boundary.epilogue_found:
            del self.boundaries[i:]
        else:
            del self.boundaries[i + 1 :]
        lf = self.data.find(b"\n", line)
        if lf < 0:
            return None
        owner = boundary.part
        if not self.boundaries or self.boundaries[-1].part is not owner:
            return False, owner, lf + 1  # epilogue
        self.total_parts += 1
        return True, Part(owner, F_IS_MIME, owner.depth + 1), lf + 1


def parse_blocks(data: bytes) -> list[Block]:
    """Dovecot's message_parser blocks of ``data``: header lines (one per complete
    header, the end-of-headers line included), an empty block at the end of each
    header, and body data of non-multipart parts."""
    return _MessageParser(data).run()


def top_headers(data: bytes) -> list[HeaderLine]:
    """The message's own header lines (not the end-of-headers line)."""
    out: list[HeaderLine] = []
    reader = HeaderReader(data, 0)
    while (hdr := reader.next()) is not None:
        if hdr.eoh:
            break
        out.append(hdr)
    return out


def _cstr(s: bytes) -> bytes:
    i = s.find(b"\0")
    return s if i < 0 else s[:i]


# --- RFC 2047 ----------------------------------------------------------------------------------
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
_ONLY_LWSP: Final = re.compile(rb"[ \t\r\n]*\Z")


@dataclass
class DecodedPiece:
    """One piece of a header value: ``charset`` None for unencoded text."""

    data: bytes
    charset: bytes | None


def _q_decode(src: bytes) -> bytes:
    """``quoted_printable_q_decode``."""
    out = bytearray()
    nxt = 0
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c != 0x5F and c != 0x3D:
            i += 1
            continue
        out += src[nxt:i]
        nxt = i
        if c == 0x5F:
            out.append(0x20)
            nxt += 1
            i += 1
            continue
        if i + 2 >= n:
            break
        if src[i + 1] in _HEX and src[i + 2] in _HEX:
            out.append(int(src[i + 1 : i + 3], 16))
            i += 2
            nxt = i + 1
        else:
            nxt = i
        i += 1
    out += src[nxt:]
    return bytes(out)


_B64_INVALID: Final = re.compile(rb"[^A-Za-z0-9+/]")


def base64_decode(data: bytes) -> bytes:
    """Dovecot's base64 decoder: whitespace (SP, TAB, CR, LF) skipped, decoding stops at
    the first other character outside the alphabet (padding included), a partial last
    quantum gives the bytes it holds."""
    core = data.translate(None, b" \t\r\n")
    m = _B64_INVALID.search(core)
    if m is not None:
        core = core[: m.start()]
    full = len(core) // 4 * 4
    out = binascii.a2b_base64(core[:full]) if full else b""
    rem = len(core) - full
    if rem >= 2:
        tail = core[full:]
        # The bits of the partial quantum, as Dovecot emits them (no padding check).
        vals = [_B64_VALUE[c] for c in tail]
        out += bytes([((vals[0] << 2) | (vals[1] >> 4)) & 0xFF])
        if rem == 3:
            out += bytes([((vals[1] << 4) | (vals[2] >> 2)) & 0xFF])
    return out


_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE: Final = {c: i for i, c in enumerate(_B64_ALPHABET)}


def _decode_encoded(data: bytes, pos: int) -> tuple[int, bytes, bytes] | None:
    """``message_header_decode_encoded`` at ``data[pos:]`` (just after "=?"):
    (length consumed, charset, decoded bytes), or None for an invalid block."""
    marks: list[int] = []
    i = pos
    n = len(data)
    while i < n:
        if data[i] == 0x3F:
            marks.append(i)
            if len(marks) == 3:
                break
        i += 1
    if i + 1 >= n or data[i + 1] != 0x3D:
        return None
    charset = data[pos : marks[0]]
    kind = data[marks[0] + 1]
    text = data[marks[1] + 1 : marks[2]]
    if kind in (0x71, 0x51):
        decoded = _q_decode(text)
    elif kind in (0x62, 0x42):
        decoded = base64_decode(text)
    else:
        return None
    return marks[2] + 2 - pos, _cstr(charset), decoded


def header_pieces(data: bytes) -> Iterator[DecodedPiece]:
    """``message_header_decode``: unencoded text and decoded encoded words in order;
    whitespace between two encoded words is dropped."""
    start = 0
    pos = 0
    n = len(data)
    while pos + 1 < n:
        if data[pos] != 0x3D or data[pos + 1] != 0x3F:
            pos += 1
            continue
        if pos != start and not _ONLY_LWSP.match(data, start, pos):
            yield DecodedPiece(data[start:pos], None)
        got = _decode_encoded(data, pos + 2)
        if got is None:
            start = pos
            pos += 2
            continue
        length, charset, decoded = got
        pos += 2 + length
        if decoded:
            yield DecodedPiece(decoded, charset)
        start = pos
    if start != n:
        yield DecodedPiece(data[start:], None)


@dataclass
class TextPiece:
    text: str
    #: False: Dovecot appends this text without its normalizer (an encoded word in a
    #: charset it has no converter for), so it is compared as it stands.
    normalize: bool = True


def decode_header_value(data: bytes) -> tuple[list[TextPiece], bool]:
    """``message_header_decode_utf8``: the value as UTF-8 text pieces, and whether every
    charset named could be converted the way the hoster would."""
    out: list[TextPiece] = []
    certain = True
    for piece in header_pieces(data):
        cs = piece.charset
        if cs is None or charsets.is_utf8(cs.decode("latin-1")):
            out.append(TextPiece(decode_utf8(piece.data)))
            continue
        try:
            converted = charsets.convert(cs, piece.data)
        except charsets.UnknownCharset:
            if not charsets.have_iconv():
                certain = False
            out.append(TextPiece(decode_utf8(piece.data), normalize=False))
            continue
        out.append(TextPiece(decode_utf8(converted)))
    return out, certain


# --- bodies ------------------------------------------------------------------------------------
CTE_UNKNOWN, CTE_78BIT, CTE_BINARY, CTE_QP, CTE_BASE64 = range(5)


def parse_cte(value: bytes) -> int:
    """``message_decoder_parse_cte``."""
    p = Parser(value)
    p.skip_lwsp()
    token = bytearray()
    if p.parse_mime_token(token) == 1:
        p.skip_lwsp()
        if p.cur() != 0x3B:
            return CTE_UNKNOWN
    low = bytes(token).lower()
    if low in (b"7bit", b"8bit"):
        return CTE_78BIT
    if low == b"base64":
        return CTE_BASE64
    if low == b"binary":
        return CTE_BINARY
    if low == b"quoted-printable":
        return CTE_QP
    return CTE_UNKNOWN


_QP_TOKEN: Final = re.compile(
    rb"""
    (?P<text>[^=\r\n \t]+)
  | (?P<hex>=[0-9A-Fa-f]{2})
  | (?P<soft>=[ \t]*\r?\n)
  | (?P<eqend>=(?:[0-9A-Fa-f]|[ \t]*\r?)\Z)
  | (?P<wsnl>[ \t]*\r?\n)
  | (?P<wsend>[ \t]+\r?\Z)
  | (?P<ws>[ \t]+)
  | (?P<crend>\r\Z)
  | (?P<eq>=)
  | (?P<cr>\r)
    """,
    re.X,
)
#: Dovecot keeps at most this much whitespace of a run (``QP_MAX_WHITESPACE_LEN`` + 1).
_QP_MAX_WS: Final = 77


def qp_decode(data: bytes) -> bytes:
    """``qp_decoder_more`` over a whole part, ending as the decoder's reset does (what
    is pending at the end is never searched)."""
    out = bytearray()
    for m in _QP_TOKEN.finditer(data):
        kind = m.lastgroup
        s = m.group()
        if kind == "text":
            out += s
        elif kind == "hex":
            out.append(int(s[1:], 16))
        elif kind == "wsnl":
            out += b"\r\n"
        elif kind == "ws":
            out += s[:_QP_MAX_WS]
        elif kind == "eq" or kind == "cr":
            out += s
        # soft, eqend, wsend, crend: nothing
    return bytes(out)


@dataclass
class PartState:
    """What the decoder and the search know of the current part."""

    content_type: bytes | None = None
    charset: bytes | None = None
    cte: int = CTE_78BIT
    #: message_search's "text/* or message/*" (the last Content-Type header decides).
    text: bool = True
    headers_done: bool = False
    body: list[bytes] = field(default_factory=list)


def search_content_type_is_text(value: bytes) -> bool:
    """message-search.c parse_content_type."""
    ctype, _ = content_type(value)
    low = ctype.lower()
    return low.startswith(b"text/") or low.startswith(b"message/")


def decoder_content_type(value: bytes) -> tuple[bytes, bytes | None]:
    """message-decoder.c parse_content_type: the type and its charset parameter."""
    ctype, params = content_type(value)
    if params is None:
        return ctype, None
    for key, val in params:
        if key.lower() == b"charset":
            return ctype, _cstr(val)
    return ctype, None


def decode_body(state: PartState, data: bytes) -> tuple[str | None, bool]:
    """A part's body as the search reads it: transfer-decoded, converted to UTF-8.
    None when Dovecot skips it (unknown transfer encoding); the flag is False when the
    charset has no converter here although the hoster's iconv might have one."""
    cte = state.cte
    if cte == CTE_UNKNOWN:
        return None, True
    if cte == CTE_QP:
        raw = qp_decode(data)
    elif cte == CTE_BASE64:
        raw = base64_decode(data)
    else:
        raw = data
    cs = state.charset
    if cs is None or charsets.is_utf8(cs.decode("latin-1")):
        return decode_utf8(raw), True
    try:
        converted = charsets.convert(cs, raw)
    except charsets.UnknownCharset:
        # Dovecot reads the part as UTF-8 then; only a missing iconv makes it uncertain.
        return decode_utf8(raw), charsets.have_iconv()
    return decode_utf8(converted), True
