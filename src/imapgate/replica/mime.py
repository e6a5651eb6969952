"""FETCH items derived from a whole cached message (``BODY[]``): header and
body sections, MIME parts, ENVELOPE and BODYSTRUCTURE, in the form Dovecot
gives them, so a message whose body is cached can still be served while the
hoster is unreachable.

Pure functions on bytes: no sockets, no store.  The message is taken as the
hoster served it (CRLF line ends); byte offsets are kept for every part, so a
section is a slice of the original, never a re-serialisation (the stdlib
``email`` package re-folds and re-encodes, which no client may see).  Header
field values are the raw bytes (RFC 2047 words stay encoded, as servers send
them in ENVELOPE and BODYSTRUCTURE).

What Dovecot does that this module copies (checked by
``tests/replica/test_mime_dovecot.py`` against a real Dovecot):

- a part's header ends at the first empty line; ``HEADER`` includes it;
  ``HEADER.FIELDS`` is the matching fields in message order plus the empty line;
- multipart bodies are split at lines starting with ``--boundary`` (or a
  boundary of an enclosing multipart); the CRLF before a boundary line belongs
  to the boundary;
- ENVELOPE strings are raw header values without their line folds; Sender and
  Reply-To default to From;
- BODYSTRUCTURE always has the extension data (md5, disposition, language,
  location); a text part without a charset gets ``("charset" "us-ascii")``;
  RFC 2231 continuations are joined (``name*0*``, ``name*1*`` -> ``name*``) and
  follow the plain parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Nesting of multiparts and message/rfc822 parts followed at most; deeper
#: parts are treated as opaque bodies (Dovecot stops at 100; hostile mail nests
#: thousands deep to exhaust a parser's stack).
MAX_PART_DEPTH = 100
#: Parts of one message followed at most (bounds the work for a hostile message
#: made of nothing but boundaries).
MAX_PARTS = 10_000

_WSP = b" \t"


@dataclass
class HeaderField:
    name: bytes  # as written
    raw: bytes  # the whole field: name, colon, value, every continuation line and line end
    value: bytes  # after the colon, leading whitespace and the last line end dropped (folds kept)


@dataclass
class Part:
    """A MIME entity: a header block and a body, as offsets into the message."""

    start: int
    body_start: int
    end: int
    fields: list[HeaderField]
    ctype: bytes | None = None  # None: no (valid) Content-Type
    subtype: bytes | None = None
    params: list[tuple[bytes, bytes]] = field(default_factory=list)
    children: list[Part] = field(default_factory=list)
    message: Part | None = None  # the encapsulated message of a message/rfc822 part
    closed_at: int = 0  # end of a multipart's closing boundary line (0: none seen)
    header_end: int = 0  # end of the header fields (body_start less the empty line)

    def get(self, name: bytes) -> bytes | None:
        lname = name.lower()
        for f in self.fields:
            if f.name.lower() == lname:
                return f.value
        return None

    def get_last(self, name: bytes) -> bytes | None:
        """The last such field (ENVELOPE takes the last of repeated fields)."""
        lname = name.lower()
        for f in reversed(self.fields):
            if f.name.lower() == lname:
                return f.value
        return None

    @property
    def is_multipart(self) -> bool:
        return self.ctype is not None and self.ctype.lower() == b"multipart"


class _Budget:
    def __init__(self) -> None:
        self.parts = 0


# --- parsing ------------------------------------------------------------------------------


def parse_message(data: bytes) -> Part:
    """The part tree of a whole message."""
    return _parse_entity(data, 0, len(data), (), 0, _Budget(), default_rfc822=False)


def _header_end(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(end of the header fields, start of the body) of the entity at ``start``."""
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start, start + 2
    if data.startswith(b"\n", start) and start < end:
        return start, start + 1
    pos = start
    while pos < end:
        nl = data.find(b"\n", pos, end)
        if nl < 0:
            return end, end
        nxt = nl + 1
        if data.startswith(b"\r\n", nxt) and nxt + 2 <= end:
            return nxt, nxt + 2
        if data.startswith(b"\n", nxt) and nxt < end:
            return nxt, nxt + 1
        pos = nxt
    return end, end


def _fields(data: bytes, start: int, end: int) -> list[HeaderField]:
    out: list[HeaderField] = []
    pos = start
    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        # continuation lines
        while line_end < end and data[line_end : line_end + 1] in (b" ", b"\t"):
            nl = data.find(b"\n", line_end, end)
            line_end = end if nl < 0 else nl + 1
        raw = data[pos:line_end]
        colon = raw.find(b":")
        if colon > 0:
            name = raw[:colon].rstrip(_WSP)
            value = raw[colon + 1 :].lstrip(_WSP)
            if value.startswith(b"\r\n"):
                value = value[2:]  # "Field:" CRLF WSP value: the fold is not part of it
            elif value.startswith(b"\n"):
                value = value[1:]
            value = value.rstrip(b" \t\r\n")
            out.append(HeaderField(name, raw, value))
        else:
            out.append(HeaderField(raw.rstrip(b"\r\n"), raw, b""))
        pos = line_end
    return out


def _parse_entity(
    data: bytes,
    start: int,
    end: int,
    boundaries: tuple[bytes, ...],
    depth: int,
    budget: _Budget,
    *,
    default_rfc822: bool,
) -> Part:
    budget.parts += 1
    hdr_end, body_start = _header_end(data, start, end)
    part = Part(start, body_start, end, _fields(data, start, hdr_end), header_end=hdr_end)
    ct = part.get(b"Content-Type")
    if ct is not None:
        part.ctype, part.subtype, part.params = parse_content_type(ct)
    elif default_rfc822:
        part.ctype, part.subtype = b"message", b"rfc822"
    if depth >= MAX_PART_DEPTH or budget.parts >= MAX_PARTS or part.ctype is None:
        return part
    kind = part.ctype.lower()
    if kind == b"multipart":
        boundary = _param(part.params, b"boundary")
        if boundary:
            digest = (part.subtype or b"").lower() == b"digest"
            _split_multipart(data, part, boundary, boundaries, depth, budget, digest)
    elif kind == b"message" and (part.subtype or b"").lower() == b"rfc822":
        cte = (part.get(b"Content-Transfer-Encoding") or b"").strip().lower()
        if cte in (b"", b"7bit", b"8bit", b"binary"):
            part.message = _parse_entity(
                data, body_start, end, boundaries, depth + 1, budget, default_rfc822=False
            )
        else:
            # Encoded: shown as message/rfc822 with an empty message inside (its
            # content is not parsed), as Dovecot does.
            part.message = Part(end, end, end, [], header_end=end)
    return part


def _split_multipart(
    data: bytes,
    part: Part,
    boundary: bytes,
    outer: tuple[bytes, ...],
    depth: int,
    budget: _Budget,
    digest: bool,
) -> None:
    """Children of a multipart: between lines starting with ``--boundary``; a line
    starting with an enclosing boundary ends this multipart."""
    mine = b"--" + boundary
    others = tuple(b"--" + b for b in outer)
    every = (boundary, *outer)
    pos = part.body_start
    end = part.end
    child_start: int | None = None

    def add_child(stop: int, at_boundary: bool) -> None:
        assert child_start is not None
        cut = _before_newline(data, child_start, stop) if at_boundary else stop
        child = _parse_entity(data, child_start, cut, every, depth + 1, budget, default_rfc822=digest)
        closed_at = _closed_at(child)
        closed_at = min(closed_at, stop)
        if at_boundary and closed_at > child.end:
            # A nested multipart closed just before our boundary keeps its closing
            # line whole: the line end goes with it, not with our delimiter.
            _extend(child, closed_at)
        part.children.append(child)

    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        if data.startswith(b"--", pos):
            if data.startswith(mine, pos):
                if child_start is not None:
                    add_child(pos, True)
                    if budget.parts >= MAX_PARTS:
                        child_start = None
                        break
                if data.startswith(mine + b"--", pos):
                    nl = data.find(b"\n", pos)
                    part.closed_at = len(data) if nl < 0 else nl + 1
                    child_start = None
                    break
                child_start = line_end
            elif any(data.startswith(o, pos) for o in others):
                if child_start is not None:
                    add_child(pos, True)
                    child_start = None
                break
        pos = line_end
    if child_start is not None and child_start <= end:
        add_child(end, False)


def _closed_at(part: Part) -> int:
    inner = part.message if part.message is not None else part
    return inner.closed_at


def _extend(part: Part, end: int) -> None:
    part.end = end
    if part.message is not None:
        part.message.end = end


def _before_newline(data: bytes, start: int, boundary_pos: int) -> int:
    """End of a part ending where a boundary line begins: the line end before the
    boundary belongs to it."""
    if boundary_pos >= start + 2 and data[boundary_pos - 2 : boundary_pos] == b"\r\n":
        return boundary_pos - 2
    if boundary_pos >= start + 1 and data[boundary_pos - 1 : boundary_pos] == b"\n":
        return boundary_pos - 1
    return boundary_pos


# --- structured header values (RFC 2045 tokens, RFC 2231 parameters) ------------------------

_TSPECIALS = set(b'()<>@,;:\\"/[]?=')


class _Scanner:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def skip_cfws(self) -> None:
        d = self.data
        while self.pos < len(d):
            c = d[self.pos]
            if c in b" \t\r\n":
                self.pos += 1
            elif c == 0x28:  # "(" comment, nested
                level = 0
                while self.pos < len(d):
                    c = d[self.pos]
                    if c == 0x5C:
                        self.pos += 2
                        continue
                    if c == 0x28:
                        level += 1
                    elif c == 0x29:
                        level -= 1
                        if level == 0:
                            self.pos += 1
                            break
                    self.pos += 1
            else:
                return

    def token(self) -> bytes:
        d = self.data
        start = self.pos
        while self.pos < len(d) and d[self.pos] > 32 and d[self.pos] != 127 and d[self.pos] not in _TSPECIALS:
            self.pos += 1
        return d[start : self.pos]

    def quoted(self) -> bytes | None:
        d = self.data
        if self.pos >= len(d) or d[self.pos] != 0x22:
            return None
        self.pos += 1
        out = bytearray()
        while self.pos < len(d):
            c = d[self.pos]
            if c == 0x5C and self.pos + 1 < len(d):
                out.append(d[self.pos + 1])
                self.pos += 2
                continue
            if c == 0x22:
                self.pos += 1
                return bytes(out)
            if c not in (0x0D, 0x0A):
                out.append(c)
            self.pos += 1
        return bytes(out)

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None


def parse_content_type(value: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """(type, subtype, parameters) of a Content-Type value.  A broken value keeps
    what could be read (``text`` alone is type "text", subtype "") and no
    parameters, as Dovecot shows it."""
    s = _Scanner(value)
    s.skip_cfws()
    main = s.token()
    s.skip_cfws()
    if not main or s.peek() != 0x2F:
        return main, b"", []
    s.pos += 1
    s.skip_cfws()
    sub = s.token()
    s.skip_cfws()
    if not sub or s.peek() not in (None, 0x3B):
        return main, sub, []
    return main, sub, _parameters(s)


def parse_disposition(value: bytes) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
    s = _Scanner(value)
    s.skip_cfws()
    kind = s.token()
    if not kind:
        return None, []
    s.skip_cfws()
    return kind, _parameters(s)


def _parameters(s: _Scanner) -> list[tuple[bytes, bytes]]:
    plain: list[tuple[bytes, bytes]] = []
    split: dict[bytes, dict[int, tuple[bool, bytes]]] = {}
    while True:
        s.skip_cfws()
        if s.peek() != 0x3B:
            break
        s.pos += 1
        s.skip_cfws()
        key = s.token()
        s.skip_cfws()
        if not key or s.peek() != 0x3D:
            break
        s.pos += 1
        s.skip_cfws()
        q = s.quoted()
        if q is not None:
            value = q
        elif s.peek() == 0x3D:  # broken mail: name==?utf-8?b?...?=
            start = s.pos
            while s.pos < len(s.data) and s.data[s.pos] not in b"; \t\r\n":
                s.pos += 1
            value = s.data[start : s.pos]
        else:
            value = s.token()
        star = key.find(b"*")
        if star < 0:
            plain.append((key, value))
            continue
        rest = key[star + 1 :]
        digits = re.match(rb"\d*", rest)
        assert digits is not None
        idx = int(digits.group()) if digits.group() else 0
        tail = rest[digits.end() :]
        if tail not in (b"", b"*"):
            plain.append((key, value))
            continue
        split.setdefault(key[:star], {})[idx] = (tail == b"*" or (not rest), value)
    joined: list[tuple[bytes, bytes]] = []
    for name in sorted(split):
        segments = split[name]
        if sorted(segments) != list(range(len(segments))):
            # Missing continuation: pass the pieces on as they were named.
            for idx, (ext, val) in sorted(segments.items()):
                joined.append((name + b"*%d" % idx + (b"*" if ext else b""), val))
            continue
        extended = segments[0][0]
        value = b"".join(
            _percent_encode(val) if extended and not ext else val
            for ext, val in (segments[i] for i in range(len(segments)))
        )
        joined.append((name + (b"*" if extended else b""), value))
    return plain + joined


def _percent_encode(value: bytes) -> bytes:
    return b"".join(bytes([c]) if 0x21 <= c < 0x7F and c not in b"%*'" else b"%%%02X" % c for c in value)


def _param(params: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in params:
        if k.lower() == name:
            return v
    return None


# --- sections ---------------------------------------------------------------------------------


def find_part(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a section's part numbers name (RFC 9051 §6.4.5): in a message that
    is not multipart, part 1 is its body (the same entity here); a
    message/rfc822 part's numbers go on inside the encapsulated message."""
    container: Part | None = root
    part = root
    for n in path:
        if container is None:
            return None
        if container.is_multipart:
            if not 1 <= n <= len(container.children):
                return None
            part = container.children[n - 1]
        elif n == 1:
            part = container
        else:
            return None
        if part.message is not None:
            container = part.message
        elif part is root:
            container = None  # the body of a single-part message has no parts
        else:
            container = part  # a leaf's "1" is the leaf itself, as at Dovecot
    return part


def section(
    data: bytes, path: tuple[int, ...], text: str | None, fields: tuple[str, ...] = ()
) -> bytes | None:
    """``BODY[path.text (fields)]`` of ``data``; empty when the section does not exist.

    ``text`` is None (the part's body; the whole message for an empty path),
    ``HEADER``, ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT`` or ``MIME``."""
    root = parse_message(data)
    part = find_part(root, path)
    if part is None:
        return b""  # what Dovecot answers for a part that does not exist
    if text is None:
        return data if not path else data[part.body_start : part.end]
    kind = text.upper()
    if kind == "MIME":
        if not path:
            return b""
        return data[part.start : part.body_start]
    # HEADER / TEXT of a message: the part itself at the top, the encapsulated
    # message of a message/rfc822 part.
    msg = part if not path else part.message
    if msg is None:
        return b""
    if kind == "TEXT":
        return data[msg.body_start : msg.end]
    if kind == "HEADER":
        return data[msg.start : msg.body_start]
    want = {f.lower().encode("utf-8", "replace") for f in fields}
    keep = kind == "HEADER.FIELDS"
    chosen = [f.raw for f in msg.fields if (f.name.lower() in want) == keep]
    if not chosen and msg.body_start == msg.header_end:
        return b""  # no fields and no empty line to end them
    return b"".join(_crlf_terminated(r) for r in chosen) + b"\r\n"


def _crlf_terminated(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        return raw
    return raw + b"\r\n"


# --- IMAP strings -----------------------------------------------------------------------------


def _nstring(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    return _string(value)


def _string(value: bytes) -> bytes:
    if any(c >= 0x80 or c in (0, 0x0D, 0x0A) for c in value):
        return b"{%d}\r\n" % len(value) + value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _nstring_nolf(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    if b"\r" in value or b"\n" in value:
        value = value.replace(b"\r", b"").replace(b"\n", b"")
        return b"{%d}\r\n" % len(value) + value
    return _string(value)


# --- ENVELOPE ----------------------------------------------------------------------------------


def envelope(part: Part) -> bytes:
    """The ENVELOPE of a message (RFC 9051 §7.5.2), without the enclosing FETCH name."""

    def first(name: bytes) -> bytes | None:
        return part.get_last(name)

    def addresses(name: bytes, fallback: bytes | None = None) -> bytes:
        v = first(name)
        if v is None and fallback is not None:
            v = first(fallback)
        if v is None:
            return b"NIL"
        addrs = parse_addresses(v)
        if not addrs:
            return b"NIL"
        return b"(" + b"".join(addrs) + b")"

    return (
        b"("
        + b" ".join(
            [
                _nstring_nolf(first(b"Date")),
                _nstring_nolf(first(b"Subject")),
                addresses(b"From"),
                addresses(b"Sender", b"From"),
                addresses(b"Reply-To", b"From"),
                addresses(b"To"),
                addresses(b"Cc"),
                addresses(b"Bcc"),
                _nstring_nolf(first(b"In-Reply-To")),
                _nstring_nolf(first(b"Message-ID")),
            ]
        )
        + b")"
    )


def _address(
    name: bytes | None, mailbox: bytes | None, host: bytes | None, adl: bytes | None = None
) -> bytes:
    return b"(" + b" ".join([_nstring(name), _nstring(adl), _nstring(mailbox), _nstring(host)]) + b")"


class _AddrScanner(_Scanner):
    def phrase_word(self) -> bytes | None:
        """An atom or quoted string (for display names, local parts)."""
        self.skip_cfws()
        q = self.quoted()
        if q is not None:
            return q
        d = self.data
        start = self.pos
        while self.pos < len(d) and d[self.pos] not in b' \t\r\n()<>@,;:\\"[]':
            self.pos += 1
        word = d[start : self.pos]
        return word if word else None


#: What Dovecot puts where an address lacks its local part or domain.
MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"


def parse_addresses(value: bytes) -> list[bytes]:
    """The address structures of an address-list header (groups as RFC 9051
    start/end markers), wire-encoded."""
    s = _AddrScanner(value)
    out: list[bytes] = []
    while True:
        s.skip_cfws()
        c = s.peek()
        if c is None:
            break
        if c == 0x2C:  # an empty element: ",,"
            out.append(_address(None, MISSING_MAILBOX, MISSING_DOMAIN))
            s.pos += 1
            continue
        start = s.pos
        words: list[bytes] = []
        while True:
            s.skip_cfws()
            c = s.peek()
            if c is None or c in (0x2C, 0x3C, 0x3A, 0x40, 0x3B):  # , < : @ ;
                break
            if c == 0x2E:  # "." inside a local part
                words.append(b".")
                s.pos += 1
                continue
            w = s.phrase_word()
            if w is None:
                s.pos += 1  # stray special: skip it
                continue
            words.append(w)
        c = s.peek()
        if c == 0x3A:  # group
            s.pos += 1
            out.append(_address(None, b" ".join(words) if words else b"", None))
            continue
        if c == 0x3B:  # end of group
            s.pos += 1
            out.append(_address(None, None, None))
            if not _at_separator(s):
                break
            continue
        if c == 0x3C:  # name <addr>
            s.pos += 1
            end = value.find(b">", s.pos)
            inner = value[s.pos : end if end >= 0 else len(value)]
            s.pos = end + 1 if end >= 0 else len(value)
            adl, mailbox, host = _addr_spec(inner)
            name = _join_phrase(words) if words else None
            out.append(_address(name, mailbox or MISSING_MAILBOX, host or MISSING_DOMAIN, adl))
            if not _at_separator(s):
                break  # garbage after an address: the rest is not read (as at Dovecot)
            continue
        # bare addr-spec: local@domain
        local = _join_local(words)
        domain: bytes | None = None
        if c == 0x40:
            s.pos += 1
            s.skip_cfws()
            dstart = s.pos
            while s.pos < len(value) and value[s.pos] not in b",;>@" and value[s.pos] not in b" \t\r\n(":
                s.pos += 1
            domain = value[dstart : s.pos]
        if local is None and domain is None:
            if s.pos == start and s.peek() != 0x2C:
                s.pos += 1
            continue
        out.append(_address(None, local or MISSING_MAILBOX, domain or MISSING_DOMAIN))
        if not _at_separator(s):
            break
    return out


def _at_separator(s: _AddrScanner) -> bool:
    """After an address: the end, a ";" (group end), or a "," (consumed)."""
    s.skip_cfws()
    c = s.peek()
    if c == 0x2C:
        s.pos += 1
        return True
    return c in (None, 0x3B)


def _join_phrase(words: list[bytes]) -> bytes:
    out = b""
    for w in words:
        if w == b".":
            out += b"."
        elif out and not out.endswith(b"."):
            out += b" " + w
        else:
            out += w
    return out


def _join_local(words: list[bytes]) -> bytes | None:
    if not words:
        return None
    return b"".join(words) if b"." in words else b" ".join(words)


def _addr_spec(inner: bytes) -> tuple[bytes | None, bytes, bytes]:
    """(source route, local part, domain) of what is between ``<`` and ``>``."""
    s = _AddrScanner(inner)
    s.skip_cfws()
    adl: bytes | None = None
    if s.peek() == 0x40:  # obsolete source route: <@a,@b:local@domain>
        colon = inner.find(b":")
        if colon >= 0:
            adl = inner[s.pos : colon].strip()
            s.pos = colon + 1
    words: list[bytes] = []
    while True:
        s.skip_cfws()
        c = s.peek()
        if c is None or c == 0x40:
            break
        if c == 0x2E:
            words.append(b".")
            s.pos += 1
            continue
        w = s.phrase_word()
        if w is None:
            s.pos += 1
            continue
        words.append(w)
    local = b"".join(words)
    host = b""
    if s.peek() == 0x40:
        s.pos += 1
        host = re.sub(rb"\([^)]*\)|\s", b"", inner[s.pos :])
    return adl, local, host


# --- BODYSTRUCTURE -----------------------------------------------------------------------------


def bodystructure(part: Part, data: bytes) -> bytes:
    """BODYSTRUCTURE (with extension data) of ``part`` of ``data``."""
    if part.is_multipart:
        # A multipart without parts (no boundary, or none found) is shown with one
        # empty text part, as Dovecot does: a client's parser expects at least one.
        kids = b"".join(bodystructure(c, data) for c in part.children) or _EMPTY_PART
        return (
            b"("
            + kids
            + b" "
            + _string(part.subtype or b"x-unknown")
            + b" "
            + _params(part.params, default_charset=False)
            + _common_ext(part)
            + b")"
        )
    body = data[part.body_start : part.end]
    is_message = part.message is not None
    if is_message:
        head = b'"message" "rfc822"'
        text = False
    elif part.ctype is None:
        head = b'"text" "plain"'
        text = True
    else:
        text = part.ctype.lower() == b"text"
        head = _string(part.ctype) + b" " + _string(part.subtype or b"")
    cte = part.get(b"Content-Transfer-Encoding")
    cte_token = _Scanner(cte).token() if cte is not None else b""
    items = [
        head,
        _params(part.params, default_charset=text),
        _nstring_nolf(part.get(b"Content-ID")),
        _nstring_nolf(part.get(b"Content-Description")),
        _string(cte_token) if cte_token else b'"7bit"',
        b"%d" % len(body),
    ]
    if text:
        items.append(b"%d" % body.count(b"\n"))
    elif part.message is not None:
        items.append(envelope(part.message))
        items.append(bodystructure(part.message, data))
        items.append(b"%d" % body.count(b"\n"))
    items.append(_nstring_nolf(part.get(b"Content-MD5")))
    return b"(" + b" ".join(items) + _common_ext(part) + b")"


_EMPTY_PART = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


def _params(params: list[tuple[bytes, bytes]], *, default_charset: bool) -> bytes:
    if not params and not default_charset:
        return b"NIL"
    items = [_string(k) + b" " + _string(v) for k, v in params]
    if default_charset and not any(k.lower() == b"charset" for k, _ in params):
        items.append(b'"charset" "us-ascii"')
    return b"(" + b" ".join(items) + b")"


def _common_ext(part: Part) -> bytes:
    disp = part.get(b"Content-Disposition")
    kind, dparams = parse_disposition(disp) if disp is not None else (None, [])
    disposition = (
        b"NIL"
        if kind is None
        else b"(" + _string(kind) + b" " + _params(dparams, default_charset=False) + b")"
    )
    lang = part.get(b"Content-Language")
    langs = [t for t in (x.strip(b" \t") for x in re.split(rb"[,\s]+", lang or b"")) if t] if lang else []
    language = b"NIL" if not langs else b"(" + b" ".join(_string(t) for t in langs) + b")"
    return b" " + disposition + b" " + language + b" " + _nstring_nolf(part.get(b"Content-Location"))


# --- one entry point for the content path --------------------------------------------------------


def derive(data: bytes, name: bytes) -> bytes | None:
    """The FETCH item cached as ``name`` (``ENVELOPE``, ``BODYSTRUCTURE``,
    ``BODY[...]`` as ``cache_key`` names them) computed from the whole message
    ``data``; None when ``name`` is not derivable here (BINARY, partial names)."""
    if name == b"ENVELOPE":
        return envelope(parse_message(data))
    if name == b"BODYSTRUCTURE":
        return bodystructure(parse_message(data), data)
    m = re.fullmatch(
        rb"BODY\[([0-9.]*?)\.?((?:HEADER\.FIELDS(?:\.NOT)?|HEADER|TEXT|MIME))?(?: \(([^)]*)\))?\]", name
    )
    if m is None:
        return None
    nums = m.group(1)
    try:
        path = tuple(int(n) for n in nums.split(b".")) if nums else ()
    except ValueError:
        return None
    if any(n < 1 for n in path):
        return None
    text = m.group(2).decode() if m.group(2) else None
    fields = tuple(f.decode("ascii", "replace") for f in (m.group(3) or b"").split())
    if text is not None and text.startswith("HEADER.FIELDS") and not fields:
        return None
    return section(data, path, text, fields)
