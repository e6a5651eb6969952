"""RFC 822/5322 lexical parsing and addresses, as Dovecot's search sees them.

A port of Dovecot 2.3's ``rfc822-parser.c``, ``rfc2231-parser.c`` and
``message-address.c`` (parse with ``FILL_MISSING``, non-strict dots, and
``message_address_write``): ``FROM``/``TO``/``CC``/``BCC`` search the address
list *as Dovecot re-writes it* (``"Doe, John" <john@doe.com>``, groups as
``team: <a@b.c>, <d@e.f>;``, comments dropped, missing parts filled in as
``MISSING_DOMAIN``), so the index must write it the same way.  Bytes in, bytes
out; the function names follow Dovecot's so the port can be checked line by
line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

NUL_REPLACEMENT: Final = "\ufffd".encode()

# atext chars are 1, alpha/digits/8-bit 2, atext that is a MIME tspecial 4 (Dovecot's table).
_ATEXT = bytearray(256)
for _c in b"!#$%&'*+-^_`{|}~":
    _ATEXT[_c] = 1
for _c in b"/=?":
    _ATEXT[_c] = 4
for _c in range(256):
    if _c >= 128 or chr(_c).isalnum():
        _ATEXT[_c] = 2
ATEXT: Final = bytes(_ATEXT)
_ESCAPED: Final = frozenset(b"\"\\'")
_LWSP: Final = frozenset(b" \t\r\n")


def is_atext(c: int) -> bool:
    return ATEXT[c] != 0


class Parser:
    """``struct rfc822_parser_context``: a cursor over ``data[pos:end]``.  Reading at
    the end gives 0 (Dovecot's buffers are NUL-terminated there)."""

    __slots__ = ("data", "end", "last_comment", "nul_replacement", "pos")

    def __init__(self, data: bytes, *, last_comment: bytearray | None = None) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.last_comment = last_comment
        self.nul_replacement: bytes | None = None

    def cur(self) -> int:
        return self.data[self.pos] if self.pos < self.end else 0

    def skip_comment(self) -> int:
        level = 1
        lc = self.last_comment
        if lc is not None:
            del lc[:]
        self.pos += 1
        start = self.pos
        data = self.data
        while self.pos < self.end:
            c = data[self.pos]
            if c == 0:
                if lc is not None and self.nul_replacement is not None:
                    lc += data[start : self.pos] + self.nul_replacement
                    start = self.pos + 1
            elif c == 0x28:
                level += 1
            elif c == 0x29:
                level -= 1
                if level == 0:
                    if lc is not None:
                        lc += data[start : self.pos]
                    self.pos += 1
                    return 1 if self.pos < self.end else 0
            elif c == 0x0A:
                if lc is not None:
                    n = self.pos - start
                    if n > 0 and data[start + n - 1] == 0x0D:
                        n -= 1
                    lc += data[start : start + n]
                    start = self.pos + 1
            elif c == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    return -1
                if data[self.pos] in (0x0D, 0x0A, 0):
                    self.pos -= 1
                else:
                    if lc is not None:
                        lc += data[start : self.pos - 1]
                    start = self.pos
            self.pos += 1
        return -1

    def skip_lwsp(self) -> int:
        data = self.data
        while self.pos < self.end:
            c = data[self.pos]
            if c in _LWSP:
                self.pos += 1
                continue
            if c != 0x28:
                break
            if self.skip_comment() < 0:
                return -1
        return 1 if self.pos < self.end else 0

    def parse_atom(self, out: bytearray) -> int:
        if self.pos >= self.end or not ATEXT[self.data[self.pos]]:
            return -1
        start = self.pos
        self.pos += 1
        while self.pos < self.end:
            if ATEXT[self.data[self.pos]]:
                self.pos += 1
                continue
            out += self.data[start : self.pos]
            return self.skip_lwsp()
        out += self.data[start : self.pos]
        return 0

    def parse_dot_atom(self, out: bytearray) -> int:
        if self.pos >= self.end or not ATEXT[self.data[self.pos]]:
            return -1
        start = self.pos
        self.pos += 1
        while self.pos < self.end:
            if ATEXT[self.data[self.pos]]:
                self.pos += 1
                continue
            if start == self.pos:
                return -1
            out += self.data[start : self.pos]
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if self.data[self.pos] != 0x2E:
                return 1
            self.pos += 1
            out.append(0x2E)
            if self.skip_lwsp() <= 0:
                return -1
            start = self.pos
        out += self.data[start : self.pos]
        return 0

    def parse_mime_token(self, out: bytearray) -> int:
        start = self.pos
        while self.pos < self.end:
            c = self.data[self.pos]
            if ATEXT[c] & 3 or c == 0x2E:
                self.pos += 1
                continue
            out += self.data[start : self.pos]
            return self.skip_lwsp()
        out += self.data[start : self.pos]
        return 0

    def parse_quoted_string(self, out: bytearray) -> int:
        data = self.data
        self.pos += 1
        start = self.pos
        while self.pos < self.end:
            c = data[self.pos]
            if c == 0:
                if self.nul_replacement is not None:
                    out += data[start : self.pos] + self.nul_replacement
                    start = self.pos + 1
            elif c == 0x22:
                out += data[start : self.pos]
                self.pos += 1
                return self.skip_lwsp()
            elif c == 0x0A:
                n = self.pos - start
                if n > 0 and data[start + n - 1] == 0x0D:
                    n -= 1
                out += data[start : start + n]
                start = self.pos + 1
            elif c == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    return -1
                if data[self.pos] in (0x0D, 0x0A, 0):
                    self.pos -= 1
                else:
                    out += data[start : self.pos - 1]
                    start = self.pos
            self.pos += 1
        return -1

    def _parse_atom_or_dot(self, out: bytearray) -> int:
        start = self.pos
        while self.pos < self.end:
            c = self.data[self.pos]
            if ATEXT[c] or c == 0x2E:
                self.pos += 1
                continue
            out += self.data[start : self.pos]
            return self.skip_lwsp()
        out += self.data[start : self.pos]
        return 0

    def parse_phrase(self, out: bytearray) -> int:
        if self.pos >= self.end:
            return 0
        if self.data[self.pos] == 0x2E:
            return -1
        while True:
            ret = self.parse_quoted_string(out) if self.cur() == 0x22 else self._parse_atom_or_dot(out)
            if ret <= 0:
                return ret
            c = self.cur()
            if not ATEXT[c] and c != 0x22 and c != 0x2E:
                break
            out.append(0x20)
        return self.skip_lwsp()

    def _parse_domain_literal(self, out: bytearray) -> int:
        data = self.data
        start = self.pos
        self.pos += 1
        while self.pos < self.end:
            c = data[self.pos]
            if c == 0:
                if self.nul_replacement is not None:
                    out += data[start : self.pos] + self.nul_replacement
                    start = self.pos + 1
            elif c == 0x5B:
                return -1
            elif c == 0x5D:
                out += data[start : self.pos + 1]
                self.pos += 1
                return self.skip_lwsp()
            elif c == 0x0A:
                n = self.pos - start
                if n > 0 and data[start + n - 1] == 0x0D:
                    n -= 1
                out += data[start : start + n]
                start = self.pos + 1
            elif c == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    return -1
                if data[self.pos] in (0x0D, 0x0A, 0):
                    out += data[start : self.pos]
                    start = self.pos
                    self.pos -= 1
            self.pos += 1
        return -1

    def parse_domain(self, out: bytearray) -> int:
        self.pos += 1  # '@'
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] == 0x5B:
            return self._parse_domain_literal(out)
        return self.parse_dot_atom(out)

    def parse_content_type(self, out: bytearray) -> int:
        start_len = len(out)
        if self.skip_lwsp() <= 0:
            return -1
        if self.parse_mime_token(out) <= 0 or len(out) == start_len:
            return -1
        if self.cur() != 0x2F:
            del out[start_len:]
            return -1
        self.pos += 1
        if self.skip_lwsp() <= 0:
            del out[start_len:]
            return -1
        out.append(0x2F)
        sub = len(out)
        ret = self.parse_mime_token(out)
        if ret < 0 or len(out) == sub or (self.pos != self.end and self.data[self.pos] != 0x3B):
            del out[start_len:]
            return -1
        return ret

    def parse_content_param(self) -> tuple[int, bytes | None, bytes]:
        """(ret, key, value): ret 0 at the end, -1 broken, 1 a parameter."""
        value = bytearray()
        if self.pos >= self.end:
            return 0, None, b""
        if self.data[self.pos] != 0x3B:
            return -1, None, b""
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1, None, b""
        key = bytearray()
        if self.parse_mime_token(key) <= 0:
            return -1, None, b""
        if self.cur() != 0x3D:
            return -1, None, b""
        self.pos += 1
        ret = self.skip_lwsp()
        if ret <= 0:
            pass
        elif self.data[self.pos] == 0x22:
            ret = self.parse_quoted_string(value)
        elif self.pos < self.end and self.data[self.pos] == 0x3D:
            # broken input: name==?utf-8?b?...?=
            while self.pos < self.end and self.data[self.pos] not in (0x3B, 0x20, 0x09, 0x0D, 0x0A):
                value.append(self.data[self.pos])
                self.pos += 1
        else:
            ret = self.parse_mime_token(value)
        return (-1 if ret < 0 else 1), bytes(key), bytes(value)


def rfc2231_parse(p: Parser) -> list[tuple[bytes, bytes]]:
    """Content-Type parameters (``rfc2231_parse``): continuations ``key*0``, ``key*1``
    merged in index order; on a gap they are returned as they came."""
    prev = p.nul_replacement
    p.nul_replacement = NUL_REPLACEMENT
    result: list[tuple[bytes, bytes]] = []
    params: list[tuple[bytes, int, bool, bytes]] = []  # key, idx, extended, value
    idx = 0  # as in Dovecot, kept from the previous parameter when "key*" has no digits
    while True:
        ret, key, value = p.parse_content_param()
        if ret == 0:
            break
        if ret < 0 or key is None:
            if p.pos >= p.end:
                break
            p.pos += 1
            continue
        star = key.find(b"*")
        if star >= 0:
            i = star
            if i + 1 < len(key):
                i += 1
                idx = 0
                while i < len(key) and 0x30 <= key[i] <= 0x39:
                    idx = idx * 10 + key[i] - 0x30
                    i += 1
            extended = i < len(key) and key[i] == 0x2A
            if extended:
                i += 1
            if i >= len(key):
                params.append((key[:star], idx, extended, value))
                continue
        result.append((key, value))
    p.nul_replacement = prev
    if not params:
        return result
    params.sort(key=lambda t: (t[0], t[1]))
    i = 0
    while i < len(params):
        j = i
        ok = True
        have_extended = False
        next_idx = 0
        while j < len(params) and params[j][0].lower() == params[i][0].lower():
            if params[j][1] != next_idx:
                ok = False
            if params[j][2]:
                have_extended = True
            next_idx += 1
            j += 1
        if not ok:
            for k in range(i, j):
                name, idx, ext, value = params[k]
                result.append((name + b"*%d" % idx + (b"*" if ext else b""), value))
        else:
            merged = bytearray()
            if not params[i][2] and have_extended:
                merged += b"''"
            for k in range(i, j):
                value = params[k][3]
                merged += value.replace(b"%", b"%25") if not params[k][2] and have_extended else value
            result.append((params[i][0] + (b"*" if have_extended else b""), bytes(merged)))
        i = j
    return result


def content_type(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]] | None]:
    """``rfc822_parse_content_type`` of a header value, and its parameters (None when
    the type did not parse: Dovecot then reads no parameters)."""
    p = Parser(value)
    p.skip_lwsp()
    out = bytearray()
    if p.parse_content_type(out) < 0:
        return bytes(out), None
    return bytes(out), rfc2231_parse(p)


# --- addresses ---------------------------------------------------------------------------
@dataclass
class Address:
    name: bytes | None = None
    route: bytes | None = None
    mailbox: bytes | None = None
    domain: bytes | None = None
    invalid_syntax: bool = False


@dataclass
class _AddrCtx:
    p: Parser
    addrs: list[Address] = field(default_factory=list)
    addr: Address = field(default_factory=Address)
    buf: bytearray = field(default_factory=bytearray)

    def add(self) -> None:
        self.addrs.append(self.addr)
        self.addr = Address()


def _nonstrict_dot_atom(p: Parser, out: bytearray) -> int:
    ret = -1
    while True:
        while p.cur() == 0x2E and p.pos < p.end:
            out.append(0x2E)
            p.pos += 1
            if p.pos == p.end:
                return 0
            ret = 1
        if p.cur() == 0x40:
            break
        ret = p.parse_atom(out)
        if not (ret > 0 and p.cur() == 0x2E):
            break
    return ret


def _local_part(c: _AddrCtx) -> int:
    del c.buf[:]
    ret = c.p.parse_quoted_string(c.buf) if c.p.cur() == 0x22 else _nonstrict_dot_atom(c.p, c.buf)
    if ret < 0:
        return -1
    c.addr.mailbox = bytes(c.buf)
    return ret


def _domain(c: _AddrCtx) -> int:
    del c.buf[:]
    ret = c.p.parse_domain(c.buf)
    if ret < 0:
        return -1
    c.addr.domain = bytes(c.buf)
    return ret


def _domain_list(c: _AddrCtx) -> int:
    del c.buf[:]
    p = c.p
    while True:
        if p.pos >= p.end:
            return 0
        if p.data[p.pos] != 0x40:
            break
        if c.buf:
            c.buf.append(0x2C)
        c.buf.append(0x40)
        ret = p.parse_domain(c.buf)
        if ret <= 0:
            return ret
        while p.skip_lwsp() > 0 and p.data[p.pos] == 0x2C:
            p.pos += 1
    c.addr.route = bytes(c.buf)
    return 1


def _angle_addr(c: _AddrCtx) -> int:
    p = c.p
    p.pos += 1  # '<'
    if p.skip_lwsp() <= 0:
        return -1
    if p.data[p.pos] == 0x40:
        if _domain_list(c) > 0 and p.cur() == 0x3A:
            p.pos += 1
        else:
            c.addr.route = b"INVALID_ROUTE"
            if p.pos >= p.end:
                return -1
        if p.skip_lwsp() <= 0:
            return -1
    if p.data[p.pos] != 0x3E:
        if _local_part(c) <= 0:
            return -1
        if p.cur() == 0x40 and _domain(c) <= 0:
            return -1
    if p.cur() != 0x3E:
        return -1
    p.pos += 1
    return p.skip_lwsp()


def _name_addr(c: _AddrCtx) -> int:
    del c.buf[:]
    if c.p.parse_phrase(c.buf) <= 0 or c.p.cur() != 0x3C:
        return -1
    c.addr.name = bytes(c.buf) or None
    if _angle_addr(c) < 0:
        c.addr.domain = b"SYNTAX_ERROR"
        c.addr.invalid_syntax = True
    return 1 if c.p.pos < c.p.end else 0


def _addr_spec(c: _AddrCtx) -> int:
    p = c.p
    assert p.last_comment is not None
    del p.last_comment[:]
    quoted = p.cur() == 0x22
    ret2 = -2
    ret = _local_part(c)
    if ret <= 0:
        c.addr.invalid_syntax = True
    if ret != 0 and p.pos < p.end and p.data[p.pos] == 0x40:
        ret2 = _domain(c)
        if ret2 <= 0:
            ret = ret2
    if p.last_comment:
        c.addr.name = bytes(p.last_comment)
    elif ret2 == -2:
        c.buf.append(0x20)
        before = len(c.buf)
        p.parse_phrase(c.buf)
        if len(c.buf) != before:
            c.addr.mailbox = None
            c.addr.name = bytes(c.buf)
        elif not quoted:
            c.addr.domain = b""
        c.addr.invalid_syntax = True
        ret = -1
    return ret


def _add_fixed(c: _AddrCtx) -> None:
    if c.addr.mailbox is None:
        c.addr.mailbox = b"MISSING_MAILBOX"
        c.addr.invalid_syntax = True
    if not c.addr.domain:
        c.addr.domain = b"MISSING_DOMAIN"
        c.addr.invalid_syntax = True
    c.add()


def _mailbox(c: _AddrCtx) -> int:
    start = c.p.pos
    ret = _name_addr(c)
    if ret < 0:
        c.p.pos = start
        ret = _addr_spec(c)
        a = c.addr
        if a.invalid_syntax and a.name is None and a.mailbox is not None and a.domain is None:
            a.name, a.mailbox = a.mailbox, None
    if ret < 0:
        c.addr.invalid_syntax = True
    _add_fixed(c)
    return ret


def _group(c: _AddrCtx) -> int:
    p = c.p
    del c.buf[:]
    if p.parse_phrase(c.buf) <= 0 or p.cur() != 0x3A:
        return -1
    p.pos += 1
    ret = p.skip_lwsp()
    if ret <= 0:
        c.addr.invalid_syntax = True
    c.addr.mailbox = bytes(c.buf)
    c.add()
    if ret > 0 and p.data[p.pos] != 0x3B:
        while True:
            _mailbox(c)
            if p.pos >= p.end or p.data[p.pos] != 0x2C:
                break
            p.pos += 1
            if p.skip_lwsp() <= 0:
                ret = -1
                break
    if ret >= 0:
        if p.pos >= p.end or p.data[p.pos] != 0x3B:
            ret = -1
        else:
            p.pos += 1
            ret = p.skip_lwsp()
    if ret < 0:
        c.addr.invalid_syntax = True
    c.add()
    return 0 if ret == 0 else 1


def _address(c: _AddrCtx) -> int:
    start = c.p.pos
    ret = _group(c)
    if ret < 0:
        c.p.pos = start
        ret = _mailbox(c)
    return ret


def parse_addresses(value: bytes) -> list[Address]:
    """``message_address_parse(.., UINT_MAX, FILL_MISSING)``."""
    p = Parser(value, last_comment=bytearray())
    p.nul_replacement = NUL_REPLACEMENT
    c = _AddrCtx(p)
    if p.skip_lwsp() <= 0:
        return []
    while True:
        ret = _address(c)
        if ret == 0:
            break
        if p.pos >= p.end or p.data[p.pos] != 0x2C:
            break
        p.pos += 1
        ret = p.skip_lwsp()
        if ret <= 0:
            if ret < 0:
                _add_fixed(c)
            break
    return c.addrs


def _maybe_escape(out: bytearray, s: bytes, escape_dot: bool) -> None:
    if all(ATEXT[ch] or (not escape_dot and ch == 0x2E) for ch in s):
        out += s
        return
    if not any(ch in _ESCAPED for ch in s):
        out += b'"' + s + b'"'
        return
    out.append(0x22)
    for ch in s:
        if ch in _ESCAPED:
            out.append(0x5C)
        out.append(ch)
    out.append(0x22)


def _cstr(s: bytes) -> bytes:
    """Dovecot's strings end at a NUL."""
    i = s.find(b"\0")
    return s if i < 0 else s[:i]


def write_addresses(addrs: list[Address]) -> bytes:
    """``message_address_write``."""
    out = bytearray()
    if not addrs:
        return b""
    if addrs[0].mailbox is None and addrs[0].domain is None:
        return b"<>"
    first = True
    in_group = False
    for a in addrs:
        if first:
            first = False
        else:
            out += b", "
        if a.domain is None:
            if not in_group:
                mailbox = _cstr(a.mailbox or b"")
                if mailbox:
                    if b"=?" in mailbox:
                        out += mailbox
                    else:
                        _maybe_escape(out, mailbox, True)
                else:
                    out += b'""'
                out += b": "
                first = True
            else:
                if out[-2:] == b", ":
                    del out[-2:]
                elif out[-2:] == b": ":
                    del out[-1:]
                out.append(0x3B)
            in_group = not in_group
        else:
            mailbox = _cstr(a.mailbox or b"")
            domain = _cstr(a.domain)
            if a.name is not None:
                name = _cstr(a.name)
                if b"=?" in name:
                    out += name
                else:
                    _maybe_escape(out, name, True)
            if a.route is not None or mailbox or domain:
                if a.name is not None and _cstr(a.name):
                    out.append(0x20)
                out.append(0x3C)
                if a.route is not None:
                    out += _cstr(a.route) + b":"
                if not mailbox:
                    out += b'""'
                else:
                    _maybe_escape(out, mailbox, False)
                if domain:
                    out += b"@" + domain
                out.append(0x3E)
    return bytes(out)
