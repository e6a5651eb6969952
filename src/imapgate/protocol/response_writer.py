"""Server side: typed ``responses`` -> wire bytes for mail clients (RFC 9051 §7).

``write_response`` covers every response type; the ``fetch_*`` functions are
the hot path for bulk FETCH (flag syncs of whole folders) and for serving
cached ENVELOPE/BODYSTRUCTURE/body bytes verbatim.  Every byte the IMAP server
sends a client comes from this module: the server builds no response bytes of
its own (``tests/server/test_no_hand_written_wire.py`` checks that).

Hot-path forms, each byte-identical to ``write_response`` of the typed value
(the tests compare them): ``flags_body`` (a flag list's inside, cached per
interned flag combination), the FETCH item pieces (``uid_item``,
``flags_item``, ``modseq_item`` ...) joined by ``fetch_raw_line``, the
column-wise ``fetch_flags_lines`` (one precompiled ``%`` template per item
combination, one buffer per round), and ``exists_line``/``expunge_line``/
``search_line`` for what a view or a SEARCH sends thousands of at once.

Quoting (byte-exact and stable, so parse -> write reproduces canonical input):
a string is quoted unless it holds CR, LF, NUL or 8-bit data or is longer than
``grammar.MAX_QUOTED_WRITE`` bytes, then it is a literal ``{n}``; BINARY
content holding NUL is a literal8 ``~{n}``.  Mailbox names are modified UTF-7
unless the session enabled UTF8=ACCEPT; astrings are bare atoms when safe.

Status text never reaches the wire with CR, LF or NUL in it: those become
spaces, because a CRLF inside relayed upstream text would let it inject a
response line into the client's stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from . import grammar, mutf7
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
)
from .sequence import SequenceSet

_CRLF: Final = b"\r\n"
_UNSAFE_TEXT_RE: Final = re.compile(rb"[\r\n\x00]")
_UNSAFE_CODE_TEXT_RE: Final = re.compile(rb"[\r\n\x00\]]")
_UTF8_QUOTABLE_RE: Final = re.compile(rb"[^\r\n\x00]*\Z")


# --- small pieces -----------------------------------------------------------------

def _text(text: str) -> bytes:
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A lone surrogate that is no escaped byte (not from any wire): the text
        # still goes out, rather than the error report itself failing.
        raw = text.encode("utf-8", "replace")
    return _UNSAFE_TEXT_RE.sub(b" ", raw) if b"\r" in raw or b"\n" in raw or b"\x00" in raw else raw


def write_code(code: ResponseCode) -> bytes:
    """One response code without its brackets."""
    if isinstance(code, AtomCode):
        name = code.name.encode("ascii")
        if code.text is None:
            return name
        return name + b" " + _UNSAFE_CODE_TEXT_RE.sub(b" ", code.text)
    if isinstance(code, UidValidityCode):
        return b"UIDVALIDITY %d" % code.value
    if isinstance(code, UidNextCode):
        return b"UIDNEXT %d" % code.value
    if isinstance(code, UnseenCode):
        return b"UNSEEN %d" % code.value
    if isinstance(code, HighestModseqCode):
        return b"HIGHESTMODSEQ %d" % code.value
    if isinstance(code, ModifiedCode):
        return b"MODIFIED " + bytes(code.uids)
    if isinstance(code, CopyUidCode):
        return b"COPYUID %d %s %s" % (code.uidvalidity, bytes(code.source), bytes(code.dest))
    if isinstance(code, AppendUidCode):
        return b"APPENDUID %d %s" % (code.uidvalidity, bytes(code.uids))
    if isinstance(code, PermanentFlagsCode):
        return b"PERMANENTFLAGS " + grammar.flag_list(code.flags)
    if isinstance(code, CapabilityCode):
        return b" ".join([b"CAPABILITY", *(c.encode("ascii") for c in code.capabilities)])
    if isinstance(code, BadCharsetCode):
        if not code.charsets:
            return b"BADCHARSET"
        return b"BADCHARSET (" + b" ".join(grammar.astring(c.encode("utf-8")) for c in code.charsets) + b")"
    raise TypeError(f"not a response code: {code!r}")


def resp_text(code: ResponseCode | None, text: str) -> bytes:
    """``["[" resp-text-code "]" SP] text`` (RFC 9051 resp-text)."""
    if code is None:
        return _text(text)
    return b"[" + write_code(code) + b"] " + _text(text)


def write_mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name as astring; with UTF8=ACCEPT 8-bit names may be quoted
    (RFC 6855 allows UTF-8 in quoted strings), otherwise modified UTF-7."""
    if utf8 and not name.isascii():
        raw = name.encode("utf-8", "surrogateescape")
        if len(raw) <= grammar.MAX_QUOTED_WRITE and _UTF8_QUOTABLE_RE.match(raw):
            return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        return b"{%d}\r\n" % len(raw) + raw
    return grammar.mailbox(name, utf8=utf8)


def _string(value: str, *, utf8: bool = False) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    if utf8 and len(raw) <= grammar.MAX_QUOTED_WRITE and _UTF8_QUOTABLE_RE.match(raw):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return grammar.quote(raw)


def encode_flags(flags: Iterable[str]) -> bytes:
    """Flags joined for ``fetch_flags_line`` (``b"\\\\Seen $Label1"``): callers
    cache this per distinct flag combination, which is what makes bulk FETCH cheap."""
    return " ".join(flags).encode("ascii")


#: ``flags_body`` results per flag tuple.  A folder has a few dozen distinct
#: combinations; the bound only matters for a hostile upstream inventing
#: keywords without end (the cache is then rebuilt, not grown).
_FLAGS_BODY: dict[tuple[str, ...], bytes] = {}
_FLAGS_BODY_MAX: Final = 65536


def flags_body(flags: tuple[str, ...]) -> bytes:
    """The inside of a flag list (``\\Seen $Label1``) for a flag tuple, cached:
    a flag listing of 100,000 messages formats each distinct combination once.

    UTF-8 rather than ASCII so that a keyword that is no atom (an upstream's
    oddity) is relayed instead of failing the whole FETCH."""
    got = _FLAGS_BODY.get(flags)
    if got is None:
        if len(_FLAGS_BODY) >= _FLAGS_BODY_MAX:
            _FLAGS_BODY.clear()
        got = _FLAGS_BODY[flags] = " ".join(flags).encode("utf-8")
    return got


# --- FETCH -------------------------------------------------------------------------

def fetch_value(key: bytes, value: FetchValue) -> bytes:
    """The wire form of one FETCH item's value (without its name)."""
    # type() identity checks first: cheaper than isinstance on this hot path.
    if type(value) is int:
        return b"(%d)" % value if key == b"MODSEQ" else b"%d" % value
    if type(value) is RawItem:
        return value.raw
    if type(value) is bytes:
        if b"\x00" in value and key.startswith(b"BINARY["):
            return b"~{%d}\r\n" % len(value) + value
        # NUL in a BODY[] literal is not valid IMAP, but the message holds it:
        # relay it as a plain literal (what Dovecot and Cyrus do) rather than fail.
        return grammar.quote(value)
    if value is None:
        return b"NIL"
    if isinstance(value, tuple):
        return grammar.flag_list(value)
    if isinstance(value, datetime):
        return grammar.format_date_time(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    raise TypeError(f"cannot write FETCH value {value!r} for {key!r}")


def fetch_item(key: bytes, value: FetchValue) -> bytes:
    """``name SP value`` for one FETCH item, e.g. for caching a formatted item."""
    return key + b" " + fetch_value(key, value)


# Item pieces for ``fetch_raw_line``: the same bytes as ``fetch_item`` of the
# typed value, without building the value or dispatching on its type.

def uid_item(uid: int) -> bytes:
    """``UID n``."""
    return b"UID %d" % uid


def flags_item(body: bytes) -> bytes:
    """``FLAGS (...)`` from ``flags_body`` output."""
    return b"FLAGS (" + body + b")"


def modseq_item(modseq: int) -> bytes:
    """RFC 7162 ``MODSEQ (n)``."""
    return b"MODSEQ (%d)" % modseq


def internaldate_item(when: datetime) -> bytes:
    """``INTERNALDATE "dd-Mon-yyyy hh:mm:ss +zzzz"``."""
    return b"INTERNALDATE " + grammar.format_date_time(when)


def size_item(size: int) -> bytes:
    """``RFC822.SIZE n``."""
    return b"RFC822.SIZE %d" % size


def verbatim_item(name: bytes, raw: bytes | None) -> bytes:
    """An item whose value is served as the exact bytes cached from upstream
    (ENVELOPE, BODYSTRUCTURE, BODY); NIL when there are none."""
    return name + b" " + (raw if raw is not None else b"NIL")


def binary_size_item(name: bytes, raw: bytes | None) -> bytes:
    """RFC 3516 ``BINARY.SIZE[part] n`` from the cached number's bytes; 0 when
    there are none (the item has no NIL form)."""
    return name + b" " + (raw if raw is not None else b"0")


def section_item(key: bytes, content: bytes | None) -> bytes:
    """A body section item (``BODY[]``, ``BODY[HEADER]``, ``BINARY[1]``...) from
    cached content; literal header plus the content without copying it twice.
    BINARY content holding NUL goes as a literal8 (RFC 3516)."""
    return key + b" " + fetch_value(key, content)


def fetch_raw_line(seq: int, items: Iterable[bytes]) -> bytes:
    """``* seq FETCH (item item ...)`` from already formatted items (``fetch_item``,
    ``section_item``, the ``*_item`` pieces, or cached ``b"ENVELOPE " + raw`` bytes)."""
    return b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"


def fetch_flags_line(seq: int, uid: int, flags: bytes, modseq: int | None = None) -> bytes:
    """``* seq FETCH (UID u FLAGS (f) [MODSEQ (m)])`` — the flag-sync hot path.

    ``flags`` is ``flags_body``/``encode_flags`` output, already joined by spaces.
    """
    if modseq is None:
        return b"* %d FETCH (UID %d FLAGS (%s))\r\n" % (seq, uid, flags)
    return b"* %d FETCH (UID %d FLAGS (%s) MODSEQ (%d))\r\n" % (seq, uid, flags, modseq)


def fetch_modseq_line(seq: int, uid: int, modseq: int) -> bytes:
    """``* seq FETCH (UID u MODSEQ (m))``: what STORE .SILENT still reports under
    CONDSTORE (RFC 7162 §3.1.3)."""
    return b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (seq, uid, modseq)


def _flags_template(uid: bool, flags: bool, modseq: bool) -> bytes:
    parts = [b"UID %d"] if uid else []
    if flags:
        parts.append(b"FLAGS (%s)")
    if modseq:
        parts.append(b"MODSEQ (%d)")
    return b"* %d FETCH (" + b" ".join(parts) + b")\r\n"


#: One ``%`` template per combination of UID, FLAGS, MODSEQ (in that order).
_FLAGS_TEMPLATES: Final = {
    (u, f, m): _flags_template(u, f, m) for u in (False, True) for f in (False, True) for m in (False, True)
}


def fetch_flags_lines(
    seqs: Sequence[int],
    uids: Sequence[int] | None,
    flags: Sequence[bytes] | None,
    modseqs: Sequence[int] | None = None,
) -> bytes:
    """Many FETCH lines of UID, FLAGS and MODSEQ (each column present or None,
    written in that order) at once, as one buffer for one socket write: one
    precompiled ``%`` per line, nothing per item.  ``flags`` are ``flags_body``
    outputs; all columns given have the length of ``seqs``."""
    fmt = _FLAGS_TEMPLATES[uids is not None, flags is not None, modseqs is not None]
    if uids is not None and flags is not None:
        # The usual flag sync: the columns zipped without building a list of them.
        if modseqs is None:
            return b"".join([fmt % row for row in zip(seqs, uids, flags, strict=True)])
        return b"".join([fmt % row for row in zip(seqs, uids, flags, modseqs, strict=True)])
    columns = [c for c in (uids, flags, modseqs) if c is not None]
    if not columns:  # none of the three items: the template holds the number only
        return b"".join([fmt % seq for seq in seqs])
    return b"".join([fmt % row for row in zip(seqs, *columns, strict=True)])


def _fetch(resp: FetchResponse, utf8: bool) -> bytes:
    return fetch_raw_line(resp.seq, [k + b" " + fetch_value(k, v) for k, v in resp.items.items()])


# --- other responses ---------------------------------------------------------------

def _tagged(resp: TaggedResponse, utf8: bool) -> bytes:
    return resp.tag.encode("ascii") + b" " + resp.status.encode("ascii") + b" " + \
        resp_text(resp.code, resp.text) + _CRLF


def _untagged_status(resp: UntaggedStatus, utf8: bool) -> bytes:
    return b"* " + resp.status.encode("ascii") + b" " + resp_text(resp.code, resp.text) + _CRLF


def _continuation(resp: ContinuationRequest, utf8: bool) -> bytes:
    return b"+ " + resp_text(resp.code, resp.text) + _CRLF


def _words(head: bytes, words: Iterable[str]) -> bytes:
    return b" ".join([head, *(w.encode("ascii") for w in words)]) + _CRLF


def _capability(resp: Capability, utf8: bool) -> bytes:
    return _words(b"* CAPABILITY", resp.capabilities)


def _enabled(resp: Enabled, utf8: bool) -> bytes:
    return _words(b"* ENABLED", resp.capabilities)


def exists_line(count: int) -> bytes:
    """``* n EXISTS``."""
    return b"* %d EXISTS\r\n" % count


def recent_line(count: int) -> bytes:
    """``* n RECENT`` (IMAP4rev1)."""
    return b"* %d RECENT\r\n" % count


def expunge_line(seq: int) -> bytes:
    """``* n EXPUNGE``: a view announcing many expunges sends one per message."""
    return b"* %d EXPUNGE\r\n" % seq


def number_list(ids: Iterable[int]) -> bytes:
    """``1 2 3``: numbers joined in one C-level pass (100,000 of them for
    ``SEARCH ALL``), as SEARCH and SORT list them."""
    return " ".join(map(str, ids)).encode("ascii")


def search_line(ids: Sequence[int], modseq: int | None = None) -> bytes:
    """``* SEARCH n... [(MODSEQ m)]`` (RFC 7162 adds the MODSEQ)."""
    return _numbers(b"* SEARCH", ids, modseq)


def search_line_joined(numbers: bytes) -> bytes:
    """``* SEARCH`` from ``number_list`` output kept by the caller (a folder's
    cached answer to ``UID SEARCH ALL``); empty ``numbers`` for no match."""
    return b"* SEARCH " + numbers + _CRLF if numbers else b"* SEARCH\r\n"


def _exists(resp: Exists, utf8: bool) -> bytes:
    return exists_line(resp.count)


def _recent(resp: Recent, utf8: bool) -> bytes:
    return recent_line(resp.count)


def _expunge(resp: Expunge, utf8: bool) -> bytes:
    return expunge_line(resp.seq)


def _flags(resp: Flags, utf8: bool) -> bytes:
    return b"* FLAGS " + grammar.flag_list(resp.flags) + _CRLF


def _numbers(head: bytes, ids: Sequence[int], modseq: int | None) -> bytes:
    out = head + b" " + number_list(ids) if ids else head
    if modseq is not None:
        out += b" (MODSEQ %d)" % modseq
    return out + _CRLF


def _search(resp: Search, utf8: bool) -> bytes:
    return _numbers(b"* SEARCH", resp.ids, resp.modseq)


def _sort(resp: Sort, utf8: bool) -> bytes:
    return _numbers(b"* SORT", resp.ids, resp.modseq)


def write_thread(thread: Thread) -> bytes:
    """One RFC 5256 thread-list: members separated by spaces, sub-threads adjacent."""
    members = [b"%d" % x for x in thread if isinstance(x, int)]
    nested = b"".join(write_thread(x) for x in thread if not isinstance(x, int))
    inner = b" ".join(members)
    if members and nested:
        inner += b" "
    return b"(" + inner + nested + b")"


def _thread(resp: ThreadResponse, utf8: bool) -> bytes:
    if not resp.threads:
        return b"* THREAD\r\n"
    return b"* THREAD " + b"".join(write_thread(t) for t in resp.threads) + _CRLF


def _esearch(resp: ESearch, utf8: bool) -> bytes:
    parts = [b"* ESEARCH"]
    if resp.tag is not None:
        parts.append(b"(TAG " + grammar.quote(resp.tag.encode("utf-8", "surrogateescape")) + b")")
    if resp.uid:
        parts.append(b"UID")
    if resp.min is not None:
        parts.append(b"MIN %d" % resp.min)
    if resp.max is not None:
        parts.append(b"MAX %d" % resp.max)
    if resp.all is not None:
        parts.append(b"ALL " + bytes(resp.all))
    if resp.count is not None:
        parts.append(b"COUNT %d" % resp.count)
    if resp.modseq is not None:
        parts.append(b"MODSEQ %d" % resp.modseq)
    for name, raw in resp.extra:
        parts.append(name.encode("ascii") + b" " + raw)
    return b" ".join(parts) + _CRLF


def _delimiter(delimiter: str | None) -> bytes:
    return b"NIL" if delimiter is None else grammar.quote(delimiter.encode("utf-8", "surrogateescape"))


def _list(resp: ListResponse, utf8: bool) -> bytes:
    head = b"* LSUB " if type(resp) is LsubResponse else b"* LIST "
    out = head + grammar.flag_list(resp.flags) + b" " + _delimiter(resp.delimiter) + b" " + \
        write_mailbox(resp.name, utf8=utf8)
    ext: list[bytes] = []
    if resp.childinfo is not None:
        ext.append(b'"CHILDINFO" (' + b" ".join(_string(c) for c in resp.childinfo)
                   + b")")
    if resp.oldname is not None:
        ext.append(b'"OLDNAME" (' + write_mailbox(resp.oldname, utf8=utf8) + b")")
    for tag, raw in resp.extended:
        ext.append(_string(tag) + b" " + raw)
    if ext:
        out += b" (" + b" ".join(ext) + b")"
    return out + _CRLF


def _status(resp: StatusResponse, utf8: bool) -> bytes:
    items = b" ".join(b"%s %d" % (k.encode("ascii"), v) for k, v in resp.items.items())
    return b"* STATUS " + write_mailbox(resp.mailbox, utf8=utf8) + b" (" + items + b")\r\n"


def _namespace_part(descs: tuple[NamespaceDescriptor, ...] | None, utf8: bool) -> bytes:
    if descs is None:
        return b"NIL"
    out = []
    for d in descs:
        prefix = d.prefix.encode("utf-8") if utf8 else mutf7.encode(d.prefix)
        item = b"(" + (_string(d.prefix, utf8=True) if utf8 else grammar.quote(prefix)) + b" " + \
            _delimiter(d.delimiter)
        for name, values in d.extensions:
            item += b" " + _string(name) + b" (" + b" ".join(_string(v) for v in values) + b")"
        out.append(item + b")")
    return b"(" + b"".join(out) + b")"


def _namespace(resp: Namespace, utf8: bool) -> bytes:
    return b"* NAMESPACE " + b" ".join(
        _namespace_part(p, utf8) for p in (resp.personal, resp.other, resp.shared)
    ) + _CRLF


def _id(resp: IdResponse, utf8: bool) -> bytes:
    if resp.params is None:
        return b"* ID NIL\r\n"
    parts = []
    for key, value in resp.params.items():
        parts.append(_string(key))
        parts.append(b"NIL" if value is None else _string(value))
    return b"* ID (" + b" ".join(parts) + b")\r\n"


def vanished_line(uids: SequenceSet, *, earlier: bool = False) -> bytes:
    """RFC 7162 ``* VANISHED [(EARLIER)] uid-set``."""
    return (b"* VANISHED (EARLIER) " if earlier else b"* VANISHED ") + bytes(uids) + _CRLF


def _vanished(resp: Vanished, utf8: bool) -> bytes:
    return vanished_line(resp.uids, earlier=resp.earlier)


def _astr(value: str) -> bytes:
    return grammar.astring(value.encode("utf-8", "surrogateescape"))


def _acl(resp: AclResponse, utf8: bool) -> bytes:
    parts = [b"* ACL", write_mailbox(resp.mailbox, utf8=utf8)]
    for ident, rights in resp.entries:
        parts.append(_astr(ident))
        parts.append(_astr(rights))
    return b" ".join(parts) + _CRLF


def _listrights(resp: ListRightsResponse, utf8: bool) -> bytes:
    parts = [b"* LISTRIGHTS", write_mailbox(resp.mailbox, utf8=utf8), _astr(resp.identifier),
             _astr(resp.required), *(_astr(r) for r in resp.optional)]
    return b" ".join(parts) + _CRLF


def _myrights(resp: MyRightsResponse, utf8: bool) -> bytes:
    return b"* MYRIGHTS " + write_mailbox(resp.mailbox, utf8=utf8) + b" " + _astr(resp.rights) + _CRLF


def _unknown(resp: UntaggedUnknown, utf8: bool) -> bytes:
    return resp.raw + _CRLF


_WRITERS: Final[dict[type, Callable[[Any, bool], bytes]]] = {
    FetchResponse: _fetch,
    TaggedResponse: _tagged,
    UntaggedStatus: _untagged_status,
    ContinuationRequest: _continuation,
    Capability: _capability,
    Enabled: _enabled,
    Exists: _exists,
    Recent: _recent,
    Expunge: _expunge,
    Flags: _flags,
    Search: _search,
    Sort: _sort,
    ThreadResponse: _thread,
    ESearch: _esearch,
    ListResponse: _list,
    LsubResponse: _list,
    StatusResponse: _status,
    Namespace: _namespace,
    IdResponse: _id,
    Vanished: _vanished,
    AclResponse: _acl,
    ListRightsResponse: _listrights,
    MyRightsResponse: _myrights,
    UntaggedUnknown: _unknown,
}


def write_response(resp: Response, *, utf8: bool = False) -> bytes:
    """The exact wire bytes of one response, ending in CRLF.

    ``utf8`` is True after the client enabled UTF8=ACCEPT (RFC 6855): mailbox
    names then go as UTF-8 instead of modified UTF-7.
    """
    writer = _WRITERS.get(type(resp))
    if writer is None:
        raise TypeError(f"not a response: {resp!r}")
    return writer(resp, utf8)
