"""A message's searchable text, field by field, as Dovecot's search sees it.

Pure: bytes in, ``Extracted`` out, no I/O.  What Dovecot 2.3 without a
full-text plugin compares (``index-search.c``, ``message-search.c``):

* ``SUBJECT``: each top-level Subject header, white space runs made one space,
  RFC 2047 words decoded;
* ``FROM``/``TO``/``CC``/``BCC``: the address list as Dovecot writes it after
  parsing (``"Doe, John" <john@doe.com>``, groups, no comments), then decoded;
* ``HEADER name s``: the named top-level headers' decoded values;
* ``BODY``: the decoded text of every text/* and message/* part (HTML as it
  stands, tags included; attachments' content is not searched), in its charset;
* ``TEXT``: ``BODY`` plus every header line of every part (``Name: value``,
  names and values decoded), so attachment file names are found by ``TEXT``.

Everything is normalized (``casemap.normalize``).  A match never spans a line
break, a part or a header (search strings with CR/LF are never answered from
the index), so each field is kept as lines joined by ``\\n``.

``certain`` is False when the hoster might read the message differently (a
character whose case mapping depends on the Unicode version, a charset without
a converter here, a header line long enough for Dovecot to split it): the
index then asks the hoster about that message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from . import mime
from .casemap import decode_utf8, is_stable, normalize
from .rfc822 import parse_addresses, write_addresses

#: Address headers with their own search key.
ADDRESS_FIELDS: Final = ("from", "to", "cc", "bcc")
#: A physical header line longer than this may be split by Dovecot's input buffer,
#: which turns a tab at the split into a space: such a line with a tab is uncertain.
SPLIT_LINE_BYTES: Final = 8000
_SEPARATORS: Final = re.compile("[\r\n\0]+")


@dataclass
class Extracted:
    subject: list[str] = field(default_factory=list)
    #: "from", "to", "cc", "bcc" -> written addresses, one entry per header.
    addresses: dict[str, list[str]] = field(default_factory=dict)
    #: The message's own headers: (raw name as Latin-1 text, searchable value).
    top_headers: list[tuple[str, str]] = field(default_factory=list)
    #: TEXT's header lines of every part: "NAME: value".
    header_lines: list[str] = field(default_factory=list)
    #: BODY: the text of each text part.
    bodies: list[str] = field(default_factory=list)
    certain: bool = True
    reason: str = ""

    def columns(self) -> dict[str, str]:
        """The index's columns: each field's lines joined by a line break (which no
        search string the index answers contains, so no match spans two lines)."""
        return {
            "subject": "\n".join(self.subject),
            **{f: "\n".join(self.addresses.get(f, ())) for f in ADDRESS_FIELDS},
            "headers": "\n".join(self.header_lines),
            "body": "\n".join(self.bodies),
        }

    def doubt(self, reason: str) -> None:
        if self.certain:
            self.certain = False
            self.reason = reason


def _flat(text: str) -> str:
    """Line breaks and NULs become one separator: no search string the index answers
    contains them, so no match can span one."""
    return _SEPARATORS.sub("\n", text) if ("\r" in text or "\n" in text or "\0" in text) else text


def _search_text(pieces: list[mime.TextPiece], out: Extracted) -> str:
    parts = []
    for piece in pieces:
        if not is_stable(piece.text):
            out.doubt("a character whose case mapping depends on the Unicode version")
        parts.append(normalize(piece.text) if piece.normalize else piece.text)
    return _flat("".join(parts))


def decoded(value: bytes, out: Extracted) -> str:
    """A header value RFC 2047-decoded and normalized."""
    pieces, certain = mime.decode_header_value(value)
    if not certain:
        out.doubt("an encoded word in a charset without converter")
    return _search_text(pieces, out)


def _name(name: bytes, out: Extracted) -> str:
    text = decode_utf8(name)
    if not is_stable(text):
        out.doubt("a character whose case mapping depends on the Unicode version")
    return _flat(normalize(text))


def compress_lwsp(value: bytes) -> bytes:
    """index-search.c compress_lwsp: leading white space dropped, each run of SP/TAB
    becomes one space."""
    return re.sub(rb"[ \t]+", b" ", value.lstrip(b" \t"))


def header_fields(headers: list[mime.HeaderLine], out: Extracted) -> None:
    """SUBJECT, FROM/TO/CC/BCC and HEADER values of the top-level ``headers``."""
    for hdr in headers:
        _check_long_line(hdr, out)
        lname = hdr.name.lower()
        if lname == b"subject":
            out.subject.append(decoded(compress_lwsp(hdr.full_value), out))
        elif lname.decode("latin-1") in ADDRESS_FIELDS:
            written = write_addresses(parse_addresses(hdr.full_value))
            out.addresses.setdefault(lname.decode("latin-1"), []).append(decoded(written, out))
        out.top_headers.append((hdr.name.decode("latin-1"), decoded(hdr.full_value, out)))


def _check_long_line(hdr: mime.HeaderLine, out: Extracted) -> None:
    if hdr.longest_line > SPLIT_LINE_BYTES and b"\t" in hdr.full_value:
        out.doubt("a header line long enough to be split")


def extract_headers(header: bytes) -> Extracted:
    """The header fields alone (from a ``BODY.PEEK[HEADER.FIELDS (...)]`` answer or a
    whole header block)."""
    out = Extracted()
    header_fields(mime.top_headers(header), out)
    return out


def extract(message: bytes) -> Extracted:
    """Everything the search compares, from the whole message."""
    out = Extracted()
    header_fields(mime.top_headers(message), out)
    state = mime.PartState()
    prev: mime.Part | None = None
    for block in mime.parse_blocks(message):
        if block.part is not prev:
            prev = block.part
            state = mime.PartState()
            if block.hdr is None:
                state.text = False  # returning to a multipart: nothing to search
        hdr = block.hdr
        if hdr is not None:
            if hdr.eoh:
                continue
            _check_long_line(hdr, out)
            lname = hdr.name.lower()
            if lname == b"content-type":
                state.text = mime.search_content_type_is_text(hdr.full_value)
                if state.content_type is None:
                    state.content_type, state.charset = mime.decoder_content_type(hdr.full_value)
            elif lname == b"content-transfer-encoding":
                state.cte = mime.parse_cte(hdr.full_value)
            middle = hdr.middle.decode("latin-1")
            out.header_lines.append(_name(hdr.name, out) + middle + decoded(hdr.full_value, out))
            continue
        if not state.text or not block.data:
            continue
        text, certain = mime.decode_body(state, block.data)
        if not certain:
            out.doubt("a text part in a charset without converter")
        if text is None:
            continue
        if not is_stable(text):
            out.doubt("a character whose case mapping depends on the Unicode version")
        out.bodies.append(_flat(normalize(text)))
    return out
