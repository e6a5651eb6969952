"""Client side: one complete upstream response frame -> a typed response.

Frames come from ``framing.ResponseFramer`` (a line plus its literals, ending
in CRLF).  ``parse_response`` raises only ``UpstreamProtocolError``; an
untagged response it does not know becomes ``UntaggedUnknown`` (the upstream
driver may log and ignore it) rather than an error.

Tolerance: real servers differ from the ABNF in small ways, and a gateway that
drops a connection over a cosmetic deviation is worse than one that reads it.
Accepted deviations: lower-case keywords, a space before ``)``, trailing
spaces, ``NIL`` for an empty flag list, a missing text after a status, odd
flag characters, unparsable INTERNALDATE (kept raw), unknown FETCH items
(kept raw), mailbox names that are not valid modified UTF-7 (decoded as UTF-8).

Speed: the flag-sync FETCH shape is matched by one compiled regex and built
without the general cursor; the flag tuples are interned in a small cache
because a folder has few distinct flag combinations.  ENVELOPE, BODYSTRUCTURE
and other verbatim values are skipped by scanning parenthesis runs, not token
by token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from . import limits, mutf7
from .errors import CodecError, UpstreamProtocolError
from .grammar import ATOM_RE, LIST_MAILBOX_RE, LITERAL_RE, MAX_NUMBER, MAX_NUMBER64, Reader, canonical_flag
from .responses import (
    AclResponse,
    AppendUidCode,
    AtomCode,
    BadCharsetCode,
    Capability,
    CapabilityCode,
    ContinuationRequest,
    CopyUidCode,
    Enabled,
    ESearch,
    Exists,
    Expunge,
    FetchResponse,
    FetchValue,
    Flags,
    HighestModseqCode,
    IdResponse,
    ListResponse,
    ListRightsResponse,
    LsubResponse,
    ModifiedCode,
    MyRightsResponse,
    Namespace,
    NamespaceDescriptor,
    PermanentFlagsCode,
    RawItem,
    Recent,
    Response,
    ResponseCode,
    Search,
    Sort,
    StatusResponse,
    TaggedResponse,
    Thread,
    ThreadResponse,
    UidNextCode,
    UidValidityCode,
    UnseenCode,
    UntaggedStatus,
    UntaggedUnknown,
    Vanished,
    canonical_item_name,
)

_E = UpstreamProtocolError

# --- the fast path -----------------------------------------------------------------
_ATOMC = rb"[^(){ \x00-\x1f\x7f%*\"\\\]\x80-\xff]"
_FAST_FLAGS = rb"((?:\\?" + _ATOMC + rb"+(?: \\?" + _ATOMC + rb"+)*)?)"
# [UID u] [MODSEQ (m)] FLAGS (...) [UID u] [MODSEQ (m)]: covers the orders
# Dovecot, Cyrus, Gmail and Exchange use; anything else takes the general path.
_FAST_FETCH_RE: Final = re.compile(
    rb"\* ([1-9]\d{0,9}) FETCH \((?:UID ([1-9]\d{0,9}) )?(?:MODSEQ \(([1-9]\d{0,18})\) )?FLAGS \("
    + _FAST_FLAGS
    + rb"\)(?: UID ([1-9]\d{0,9}))?(?: MODSEQ \(([1-9]\d{0,18})\))?\)\r\n\Z"
)

# Flag tuples by their wire bytes.  Bounded: a hostile server sending endless
# distinct keyword sets only costs a cache reset every _FLAG_CACHE_MAX entries.
_FLAG_CACHE: dict[bytes, tuple[str, ...]] = {}
_FLAG_CACHE_MAX: Final = 4096
_LENIENT_FLAG_RE: Final = re.compile(rb"\\?[^\x00-\x20()\\\"{}\x7f-\xff]+\Z|\\\*\Z")


def _flags_from(body: bytes, r: Reader | None = None) -> tuple[str, ...]:
    flags = _FLAG_CACHE.get(body)
    if flags is not None:
        return flags
    words = body.split()
    for w in words:
        if _LENIENT_FLAG_RE.match(w) is None:
            raise _E(f"invalid flag {w!r}", position=r.pos if r is not None else None)
    if len(words) > limits.MAX_LIST_ITEMS:
        raise _E("too many flags (MAX_LIST_ITEMS)", position=r.pos if r is not None else None)
    flags = tuple(canonical_flag(w.decode("ascii")) for w in words)
    if len(_FLAG_CACHE) >= _FLAG_CACHE_MAX:
        _FLAG_CACHE.clear()
    _FLAG_CACHE[body] = flags
    return flags


def _fast_fetch(m: re.Match[bytes]) -> FetchResponse | None:
    seq_b, uid1, mod1, flags_b, uid2, mod2 = m.groups()
    if (uid1 and uid2) or (mod1 and mod2):
        return None
    seq = int(seq_b)
    if seq > MAX_NUMBER:
        return None
    items: dict[bytes, FetchValue] = {}
    if uid1:
        uid = int(uid1)
        if uid > MAX_NUMBER:
            return None
        items[b"UID"] = uid
    if mod1:
        modseq = int(mod1)
        if modseq > MAX_NUMBER64:
            return None
        items[b"MODSEQ"] = modseq
    flags = _FLAG_CACHE.get(flags_b)
    items[b"FLAGS"] = flags if flags is not None else _flags_from(flags_b)
    if uid2:
        uid = int(uid2)
        if uid > MAX_NUMBER:
            return None
        items[b"UID"] = uid
    if mod2:
        modseq = int(mod2)
        if modseq > MAX_NUMBER64:
            return None
        items[b"MODSEQ"] = modseq
    return FetchResponse(seq, items)


def parse_response(frame: bytes, *, utf8: bool = False) -> Response:
    """Parse one complete response frame (line, literals, final CRLF).

    ``utf8``: the session enabled UTF8=ACCEPT, so mailbox names are UTF-8.
    Raises ``UpstreamProtocolError`` for malformed input, nothing else.
    """
    m = _FAST_FETCH_RE.match(frame)
    if m is not None:
        resp = _fast_fetch(m)
        if resp is not None:
            return resp
    try:
        return _parse(frame, utf8)
    except CodecError as exc:
        if isinstance(exc, UpstreamProtocolError):
            raise
        raise _E(exc.reason, position=exc.position) from None
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        # Safety net so the "only UpstreamProtocolError" contract holds even for
        # a parser bug; the fuzz test asserts this branch is never reached.
        raise _E(f"internal parser error: {exc!r}") from exc


# --- general parser --------------------------------------------------------------------

def _parse(frame: bytes, utf8: bool) -> Response:
    if not frame.endswith(b"\r\n"):
        raise _E("response does not end in CRLF", position=len(frame))
    r = Reader(frame, _E, utf8=utf8)
    c = r.peek()
    if c == 0x2B:  # '+'
        r.pos = 1
        if r.at_eol():  # "+\r\n": some servers omit the space
            r.eol()
            return ContinuationRequest("")
        r.sp()
        code, text = _resp_text_body(r)
        return ContinuationRequest(text, code)
    if c == 0x2A:  # '*'
        r.pos = 1
        r.sp()
        return _untagged(r, frame)
    tag = r.tag()
    r.sp()
    word = r.keyword("OK, NO or BAD")
    if word not in ("OK", "NO", "BAD"):
        raise _E(f"tagged response with status {word!r}", position=r.pos, tag=tag)
    code, text = _resp_text(r)
    return TaggedResponse(tag, word, code, text)  # type: ignore[arg-type]


_BAD_TEXT_RE: Final = re.compile(rb"[\r\n\x00]")


def _resp_text(r: Reader) -> tuple[ResponseCode | None, str]:
    """After a status word: ``SP resp-text`` (the SP and text may be missing)."""
    if r.at_eol():
        r.eol()
        return None, ""
    r.sp()
    return _resp_text_body(r)


def _resp_text_body(r: Reader) -> tuple[ResponseCode | None, str]:
    code: ResponseCode | None = None
    buf = r.buf
    if r.peek() == 0x5B:  # '['
        eol = buf.find(b"\r\n", r.pos)
        close = buf.find(b"]", r.pos, eol)
        if close > 0:
            start = r.pos
            r.pos += 1
            try:
                code = _resp_code(r)
            except CodecError:
                # A known code with arguments we cannot read: keep it verbatim.
                # Not even "[atom SP" or "[atom]": the bracket is just text.
                m = ATOM_RE.match(buf, start + 1)
                after = m.end() if m is not None else close
                if (
                    m is not None and buf[after] in b" ]" and buf[close + 1] in b" \r"
                    and not _BAD_TEXT_RE.search(buf, after, close)
                ):
                    text = buf[after + 1 : close] if buf[after] == 0x20 else None
                    code = AtomCode(m.group().upper().decode("ascii"), text)
                    r.pos = close + 1
                else:
                    r.pos = start
            if r.peek() == 0x20:
                r.pos += 1
    start = r.pos
    text = r.rest_of_line()
    r.eol()
    bad = _BAD_TEXT_RE.search(text)
    if bad is not None:
        # TEXT-CHAR excludes CR, LF and NUL; a bare CR or LF could smuggle a
        # line break into what the gateway relays to its clients.
        r.pos = start + bad.start()
        raise r.error("CR, LF or NUL in response text")
    return code, text.decode("utf-8", "surrogateescape")


def _code_text(r: Reader) -> bytes | None:
    if r.peek() == 0x5D:
        r.pos += 1
        return None
    r.sp()
    close = r.buf.find(b"]", r.pos)
    eol = r.buf.find(b"\r\n", r.pos)
    if close < 0 or close > eol:
        raise r.error("unterminated response code")
    text = r.buf[r.pos : close]
    if _BAD_TEXT_RE.search(text):
        raise r.error("CR, LF or NUL in a response code")
    r.pos = close + 1
    return text


def _resp_code(r: Reader) -> ResponseCode:
    name = r.atom("a response code").upper().decode("ascii")
    code: ResponseCode
    if name == "UIDVALIDITY":
        r.sp()
        code = UidValidityCode(r.number())
    elif name == "UIDNEXT":
        r.sp()
        code = UidNextCode(r.number())
    elif name == "UNSEEN":
        r.sp()
        code = UnseenCode(r.number())
    elif name == "HIGHESTMODSEQ":
        r.sp()
        code = HighestModseqCode(r.number64())
    elif name == "MODIFIED":
        r.sp()
        code = ModifiedCode(r.sequence_set())
    elif name == "COPYUID":
        r.sp()
        validity = r.number()
        r.sp()
        source = r.sequence_set()
        r.sp()
        code = CopyUidCode(validity, source, r.sequence_set())
    elif name == "APPENDUID":
        r.sp()
        validity = r.number()
        r.sp()
        code = AppendUidCode(validity, r.sequence_set())
    elif name == "PERMANENTFLAGS":
        r.sp()
        code = PermanentFlagsCode(_flag_list(r))
    elif name == "CAPABILITY":
        code = CapabilityCode(_atoms(r, stop=0x5D))
    elif name == "BADCHARSET":
        charsets: list[str] = []
        if r.accept_sp():
            r.expect(b"(")
            while True:
                charsets.append(_astr(r))
                if _close(r):
                    break
                r.sp()
        code = BadCharsetCode(tuple(charsets))
    else:
        return AtomCode(name, _code_text(r))
    while r.accept_sp():  # tolerate "[UIDNEXT 5 ]"
        pass
    r.expect(b"]", "']' to end the response code")
    return code


# --- shared pieces -------------------------------------------------------------------

def _close(r: Reader) -> bool:
    """Consume ``)``, also after a stray space (``(a b )``)."""
    buf = r.buf
    pos = r.pos
    if pos < r.end:
        c = buf[pos]
        if c == 0x29:
            r.pos = pos + 1
            return True
        if c == 0x20 and buf.startswith(b")", pos + 1):
            r.pos = pos + 2
            return True
    return False


def _skip_spaces(r: Reader) -> None:
    buf = r.buf
    pos = r.pos
    end = r.end
    while pos < end and buf[pos] == 0x20:
        pos += 1
    r.pos = pos


def _atoms(r: Reader, stop: int = -1) -> tuple[str, ...]:
    """``*(SP atom)`` up to the end of line (or ``stop``), tolerating extra spaces."""
    out: list[str] = []
    while True:
        _skip_spaces(r)
        c = r.peek()
        if c == stop or r.at_eol():
            return tuple(out)
        out.append(r.atom().decode("ascii"))
        if len(out) > limits.MAX_LIST_ITEMS:
            raise r.error("too many items (MAX_LIST_ITEMS)")


_FLAG_BODY_RE: Final = re.compile(rb"[^()\r\n\x00{\"]*")


def _flag_list(r: Reader) -> tuple[str, ...]:
    if r.accept(b"NIL"):
        return ()
    r.expect(b"(", "'(' to open a flag list")
    m = _FLAG_BODY_RE.match(r.buf, r.pos)
    assert m is not None  # the pattern matches the empty string
    body = m.group()
    r.pos = m.end()
    r.expect(b")", "')' to close a flag list")
    return _flags_from(body, r)


def _astr(r: Reader) -> str:
    return r.astring().decode("utf-8", "surrogateescape")


def _str(r: Reader) -> str:
    return r.string().decode("utf-8", "surrogateescape")


def _decode_name(raw: bytes, utf8: bool) -> str:
    try:
        name = raw.decode("utf-8") if utf8 else mutf7.decode(raw)
    except (mutf7.MUTF7Error, UnicodeDecodeError):
        # Some servers send raw UTF-8 (or legacy 8-bit) names without
        # UTF8=ACCEPT; read them rather than lose the folder.  Latin-1 as the
        # last resort keeps every byte as one character, so the name is stable.
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            name = raw.decode("latin-1")
    return "INBOX" if name.upper() == "INBOX" else name


def _mailbox(r: Reader) -> str:
    c = r.peek()
    if c == 0x22 or c == 0x7B:
        raw = r.string("a mailbox name")
    else:
        # Lenient: servers put unquoted names with '%', '*' or ']' in responses.
        m = LIST_MAILBOX_RE.match(r.buf, r.pos)
        if m is None:
            raise r.error(f"expected a mailbox name, found {r.describe_here()}")
        r.pos = m.end()
        raw = m.group()
    return _decode_name(raw, r.utf8)


def _nstring_content(r: Reader) -> bytes | None:
    """Section content: quoted, literal, literal8 or NIL.  NUL is accepted in
    plain literals too: servers relay messages that contain it."""
    c = r.peek()
    if c == 0x22:
        return r.quoted()
    if c == 0x7B or c == 0x7E:
        m = LITERAL_RE.match(r.buf, r.pos)
        if m is None or m.group(3):
            raise r.error(f"expected a literal, found {r.describe_here()}")
        start = m.end()
        stop = start + int(m.group(2))
        if stop > r.end:
            raise r.error("literal is longer than the frame")
        r.pos = stop
        return r.buf[start:stop]
    if r.accept(b"NIL"):
        return None
    raise r.error(f"expected a string or NIL, found {r.describe_here()}")


# A run of anything but parentheses, literal starts, CR/LF/NUL, with quoted
# strings whole (they may contain parentheses).
# (quoted strings "unrolled": runs of plain characters, not one alternation per byte)
_QUOTED: Final = rb'"[^"\\\r\n]*+(?:\\["\\][^"\\\r\n]*+)*+"'
_RUN_RE: Final = re.compile(rb'(?:[^"(){~\r\n\x00]++|~(?!\{)|' + _QUOTED + rb")*+")


def _balanced_re(depth: int) -> re.Pattern[bytes]:
    """A parenthesised list nested at most ``depth`` levels, without literals.

    Python's ``re`` cannot count, but a fixed depth can be spelled out; with
    possessive quantifiers it never backtracks, so one C-level match replaces
    the per-parenthesis loop for every ENVELOPE and nearly every BODYSTRUCTURE.
    """
    plain = rb'[^"(){~\r\n\x00]++|~(?!\{)|' + _QUOTED
    inner = rb"(?:" + plain + rb")*+"
    for _ in range(depth - 1):
        inner = rb"(?:" + plain + rb"|\(" + inner + rb"\))*+"
    return re.compile(rb"\(" + inner + rb"\)")


_BALANCED_RE: Final = _balanced_re(10)


def _skip(r: Reader) -> bytes:
    """Skip one value and return its exact bytes; lists are scanned by runs."""
    if r.peek() != 0x28:
        return r.skip_value()
    buf = r.buf
    start = pos = r.pos
    fast = _BALANCED_RE.match(buf, pos)
    if fast is not None:
        r.pos = fast.end()
        return fast.group()
    # Literals inside or deeper nesting: walk parenthesis by parenthesis.
    end = r.end
    depth = 0
    while True:
        m = _RUN_RE.match(buf, pos)
        assert m is not None
        pos = m.end()
        c = buf[pos] if pos < end else -1
        if c == 0x28:
            depth += 1
            if depth > limits.MAX_NESTING:
                r.pos = pos
                raise r.error(f"nested deeper than {limits.MAX_NESTING} levels (MAX_NESTING)")
            pos += 1
        elif c == 0x29:
            depth -= 1
            pos += 1
            if depth == 0:
                break
        elif c == 0x7B or c == 0x7E:
            lm = LITERAL_RE.match(buf, pos)
            if lm is None or lm.group(3):
                r.pos = pos
                raise r.error(f"expected a literal, found {r.describe_here()}")
            pos = lm.end() + int(lm.group(2))
            if pos > end:
                raise r.error("literal is longer than the frame")
        else:
            r.pos = pos
            raise r.error(f"unbalanced parenthesis or bad string, found {r.describe_here()}")
    r.pos = pos
    return buf[start:pos]


# --- untagged ----------------------------------------------------------------------------

def _untagged(r: Reader, frame: bytes) -> Response:
    c = r.peek()
    if 0x30 <= c <= 0x39:
        n = r.number("a message number")
        r.sp()
        word = r.keyword("a response name")
        if word == "FETCH":
            if n == 0:
                raise r.error("FETCH for message number 0")
            return _fetch(r, n)
        if word in ("EXISTS", "RECENT", "EXPUNGE"):
            _skip_spaces(r)
            r.eol()
            if word == "EXISTS":
                return Exists(n)
            if word == "RECENT":
                return Recent(n)
            if n == 0:
                raise r.error("EXPUNGE of message number 0")
            return Expunge(n)
        return UntaggedUnknown(frame[:-2])
    m = ATOM_RE.match(frame, r.pos)
    if m is None:
        raise r.error(f"expected a response name, found {r.describe_here()}")
    handler = _UNTAGGED.get(m.group().upper())
    if handler is None:
        return UntaggedUnknown(frame[:-2])
    r.pos = m.end()
    return handler(r)


def _status(r: Reader, word: bytes) -> UntaggedStatus:
    code, text = _resp_text(r)
    return UntaggedStatus(word.decode("ascii"), code, text)  # type: ignore[arg-type]


def _capability(r: Reader) -> Capability:
    caps = _atoms(r)
    r.eol()
    return Capability(caps)


def _enabled(r: Reader) -> Enabled:
    caps = _atoms(r)
    r.eol()
    return Enabled(caps)


def _flags(r: Reader) -> Flags:
    r.sp()
    flags = _flag_list(r)
    _skip_spaces(r)
    r.eol()
    return Flags(flags)


def _numbers(r: Reader) -> tuple[tuple[int, ...], int | None]:
    ids: list[int] = []
    modseq: int | None = None
    while True:
        _skip_spaces(r)
        if r.at_eol():
            break
        if r.accept(b"("):
            r.expect(b"MODSEQ")
            r.sp()
            modseq = r.number64("a mod-sequence")
            if not _close(r):
                raise r.error("expected ')' after MODSEQ")
            _skip_spaces(r)
            break
        ids.append(r.number())
        if len(ids) > limits.MAX_LIST_ITEMS * 10:
            raise r.error("too many numbers")
    r.eol()
    return tuple(ids), modseq


def _search(r: Reader) -> Search:
    ids, modseq = _numbers(r)
    return Search(ids, modseq)


def _sort(r: Reader) -> Sort:
    ids, modseq = _numbers(r)
    return Sort(ids, modseq)


def _thread_list(r: Reader) -> Thread:
    r.enter()
    r.expect(b"(")
    items: list[int | Thread] = []
    nested = False
    while True:
        c = r.peek()
        if c == 0x29:
            r.pos += 1
            break
        if c == 0x20:
            r.pos += 1
        elif c == 0x28:
            items.append(_thread_list(r))
            nested = True
        else:
            if nested:
                raise r.error("thread member after a nested thread")
            items.append(r.nz_number("a message number"))
    r.leave()
    if not items:
        raise r.error("empty thread")
    subs = [x for x in items if not isinstance(x, int)]
    if len(subs) == 1:
        # "(3 (4 5))" is not valid RFC 5256 but means "(3 4 5)".
        members = [x for x in items if isinstance(x, int)]
        return (*members, *subs[0])
    return tuple(items)


def _thread(r: Reader) -> ThreadResponse:
    threads: list[Thread] = []
    while True:
        _skip_spaces(r)
        if r.at_eol():
            break
        threads.append(_thread_list(r))
    r.eol()
    return ThreadResponse(tuple(threads))


def _esearch(r: Reader) -> ESearch:
    tag: str | None = None
    uid = False
    values: dict[str, object] = {}
    extra: list[tuple[str, bytes]] = []
    _skip_spaces(r)
    if r.accept(b"("):
        # search-correlator: (TAG "x") — RFC 7377 adds MAILBOX/UIDVALIDITY pairs.
        while True:
            key = r.keyword("a correlator")
            r.sp()
            value = r.astring()
            if key == "TAG":
                tag = value.decode("utf-8", "surrogateescape")
            if _close(r):
                break
            r.sp()
    while True:
        _skip_spaces(r)
        if r.at_eol():
            break
        word = r.keyword("search return data")
        if word == "UID":
            uid = True
            continue
        r.sp()
        if word in ("MIN", "MAX"):
            values[word] = r.nz_number()
        elif word == "COUNT":
            values[word] = r.number()
        elif word == "MODSEQ":
            values[word] = r.number64()
        elif word == "ALL":
            values[word] = r.sequence_set()
        else:
            extra.append((word, _skip(r)))
    r.eol()
    return ESearch(
        tag, uid, values.get("MIN"), values.get("MAX"), values.get("ALL"),  # type: ignore[arg-type]
        values.get("COUNT"), values.get("MODSEQ"), tuple(extra),  # type: ignore[arg-type]
    )


def _list_common(r: Reader, cls: type[ListResponse]) -> ListResponse:
    r.sp()
    flags = _flag_list(r)
    r.sp()
    delimiter = None if r.accept(b"NIL") else _str(r)
    r.sp()
    name = _mailbox(r)
    childinfo: tuple[str, ...] | None = None
    oldname: str | None = None
    extended: list[tuple[str, bytes]] = []
    _skip_spaces(r)
    if r.accept(b"("):
        while not _close(r):
            _skip_spaces(r)
            tag = _astr(r)
            r.sp()
            key = tag.upper()
            if key == "CHILDINFO":
                r.expect(b"(")
                info: list[str] = []
                while not _close(r):
                    _skip_spaces(r)
                    info.append(_astr(r).upper())
                childinfo = tuple(info)
            elif key == "OLDNAME":
                r.expect(b"(")
                oldname = _mailbox(r)
                if not _close(r):
                    raise r.error("expected ')' after OLDNAME")
            else:
                extended.append((tag, _skip(r)))
        _skip_spaces(r)
    r.eol()
    return cls(flags, delimiter, name, childinfo, oldname, tuple(extended))


def _list(r: Reader) -> ListResponse:
    return _list_common(r, ListResponse)


def _lsub(r: Reader) -> ListResponse:
    return _list_common(r, LsubResponse)


def _status_data(r: Reader) -> StatusResponse:
    r.sp()
    name = _mailbox(r)
    _skip_spaces(r)
    r.expect(b"(")
    items: dict[str, int] = {}
    while not _close(r):
        _skip_spaces(r)
        key = r.keyword("a status item")
        r.sp()
        items[key] = r.number64("a status value")
    _skip_spaces(r)
    r.eol()
    return StatusResponse(name, items)


def _namespace_part(r: Reader) -> tuple[NamespaceDescriptor, ...] | None:
    if r.accept(b"NIL"):
        return None
    r.expect(b"(")
    descs: list[NamespaceDescriptor] = []
    while not _close(r):
        _skip_spaces(r)
        r.enter()
        r.expect(b"(")
        prefix = _decode_name(r.string("a namespace prefix"), r.utf8)
        r.sp()
        delimiter = None if r.accept(b"NIL") else _str(r)
        exts: list[tuple[str, tuple[str, ...]]] = []
        while not _close(r):
            r.sp()
            ext_name = _str(r)
            r.sp()
            r.expect(b"(")
            values: list[str] = []
            while not _close(r):
                _skip_spaces(r)
                values.append(_str(r))
            exts.append((ext_name, tuple(values)))
        r.leave()
        descs.append(NamespaceDescriptor(prefix, delimiter, tuple(exts)))
    return tuple(descs)


def _namespace(r: Reader) -> Namespace:
    r.sp()
    personal = _namespace_part(r)
    r.sp()
    other = _namespace_part(r)
    r.sp()
    shared = _namespace_part(r)
    _skip_spaces(r)
    r.eol()
    return Namespace(personal, other, shared)


def _id(r: Reader) -> IdResponse:
    r.sp()
    params: dict[str, str | None] | None
    if r.accept(b"NIL"):
        params = None
    else:
        params = {}
        r.expect(b"(")
        while not _close(r):
            _skip_spaces(r)
            key = _str(r)
            r.sp()
            value = r.nstring()
            params[key] = None if value is None else value.decode("utf-8", "surrogateescape")
    _skip_spaces(r)
    r.eol()
    return IdResponse(params)


def _vanished(r: Reader) -> Vanished:
    r.sp()
    earlier = r.accept(b"(EARLIER)")
    if earlier:
        r.sp()
    uids = r.sequence_set("a UID set")
    _skip_spaces(r)
    r.eol()
    return Vanished(uids, earlier)


def _acl(r: Reader) -> AclResponse:
    r.sp()
    name = _mailbox(r)
    entries: list[tuple[str, str]] = []
    while True:
        _skip_spaces(r)
        if r.at_eol():
            break
        ident = _astr(r)
        r.sp()
        entries.append((ident, _astr(r)))
    r.eol()
    return AclResponse(name, tuple(entries))


def _listrights(r: Reader) -> ListRightsResponse:
    r.sp()
    name = _mailbox(r)
    r.sp()
    ident = _astr(r)
    r.sp()
    required = _astr(r)
    optional: list[str] = []
    while True:
        _skip_spaces(r)
        if r.at_eol():
            break
        optional.append(_astr(r))
    r.eol()
    return ListRightsResponse(name, ident, required, tuple(optional))


def _myrights(r: Reader) -> MyRightsResponse:
    r.sp()
    name = _mailbox(r)
    r.sp()
    rights = _astr(r)
    _skip_spaces(r)
    r.eol()
    return MyRightsResponse(name, rights)


_UNTAGGED: Final[dict[bytes, Callable[[Reader], Response]]] = {
    b"OK": lambda r: _status(r, b"OK"),
    b"NO": lambda r: _status(r, b"NO"),
    b"BAD": lambda r: _status(r, b"BAD"),
    b"BYE": lambda r: _status(r, b"BYE"),
    b"PREAUTH": lambda r: _status(r, b"PREAUTH"),
    b"CAPABILITY": _capability,
    b"ENABLED": _enabled,
    b"FLAGS": _flags,
    b"SEARCH": _search,
    b"SORT": _sort,
    b"THREAD": _thread,
    b"ESEARCH": _esearch,
    b"LIST": _list,
    b"LSUB": _lsub,
    b"STATUS": _status_data,
    b"NAMESPACE": _namespace,
    b"ID": _id,
    b"VANISHED": _vanished,
    b"ACL": _acl,
    b"LISTRIGHTS": _listrights,
    b"MYRIGHTS": _myrights,
}


# --- FETCH ---------------------------------------------------------------------------------

_ITEM_NAME_RE: Final = re.compile(rb"[A-Za-z0-9][A-Za-z0-9.\-_]*(?:\[[^\]\r\n]*\](?:<\d{1,20}>)?)?")
_RAW_ITEMS: Final = frozenset({b"ENVELOPE", b"BODYSTRUCTURE", b"BODY"})
_CONTENT_ITEMS: Final = frozenset({b"RFC822", b"RFC822.HEADER", b"RFC822.TEXT"})


def _fetch(r: Reader, seq: int) -> FetchResponse:
    r.sp()
    r.expect(b"(", "'(' to open the FETCH items")
    items: dict[bytes, FetchValue] = {}
    buf = r.buf
    done = _close(r)
    while not done:
        _skip_spaces(r)
        m = _ITEM_NAME_RE.match(buf, r.pos)
        if m is None:
            raise r.error(f"expected a FETCH item, found {r.describe_here()}")
        key = m.group().upper()
        r.pos = m.end()
        r.sp()
        value: FetchValue
        if key == b"UID":
            value = r.number("a UID")
        elif key == b"FLAGS":
            value = _flag_list(r)
        elif key == b"MODSEQ":
            r.expect(b"(")
            _skip_spaces(r)
            value = r.number64("a mod-sequence")
            if not _close(r):
                raise r.error("expected ')' after MODSEQ")
        elif key == b"RFC822.SIZE":
            value = r.number64("a size")
        elif key in _RAW_ITEMS:
            value = RawItem(_skip(r))
        elif key == b"INTERNALDATE":
            try:
                value = r.date_time()
            except CodecError:
                value = RawItem(_skip(r))
        elif b"[" in key:
            key = canonical_item_name(key)
            if key.startswith(b"BINARY.SIZE["):
                value = r.number64("a size")
            elif key.startswith((b"BODY[", b"BINARY[")):
                value = _nstring_content(r)
            else:
                value = RawItem(_skip(r))
        elif key in _CONTENT_ITEMS:
            value = _nstring_content(r)
        else:
            value = RawItem(_skip(r))
        items[key] = value
        if len(items) > limits.MAX_LIST_ITEMS:
            raise r.error("too many FETCH items (MAX_LIST_ITEMS)")
        done = _close(r)
        if not done:
            r.sp()
            done = _close(r)
    _skip_spaces(r)
    r.eol()
    return FetchResponse(seq, items)
