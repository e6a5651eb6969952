"""Server side: one complete command frame (from ``framing.CommandFramer``) in,
one typed ``commands.Command`` out.

Only ``ClientProtocolError`` ever leaves this module, carrying a reason a
human can act on, the byte ``position`` and the ``tag`` whenever it could be
read, so the session answers ``tag BAD reason``.  Strict where the RFC is
clear and deviating would hide client bugs (a trailing space is an error);
liberal where real clients deviate harmlessly (lower-case command names,
``inbox`` in any case, 8-bit text in quoted SEARCH strings).

Parsing is regex-driven through ``grammar.Reader``; nothing loops per byte, so
``UID FETCH`` with a 50,000-range UID set costs a few milliseconds.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Final

from . import acl, limits
from . import commands as c
from .errors import ClientProtocolError, CodecError, InvalidMailboxName
from .fetch_items import MACROS, FetchAttribute, read_fetch_attribute
from .grammar import Reader
from .search import SearchKey, read_search_criteria
from .sequence import SequenceSet

__all__ = ["parse_authenticate_response", "parse_command", "parse_idle_done"]

Handler = Callable[[Reader, str, bool], c.Command]

#: What each command expects, for "missing arguments" errors.
USAGE: Final[dict[str, str]] = {
    "LOGIN": "LOGIN userid password",
    "AUTHENTICATE": "AUTHENTICATE mechanism [initial-response]",
    "ENABLE": "ENABLE capability...",
    "ID": "ID (field value ...) or ID NIL",
    "SELECT": "SELECT mailbox [(CONDSTORE | QRESYNC (...))]",
    "EXAMINE": "EXAMINE mailbox [(CONDSTORE | QRESYNC (...))]",
    "CREATE": "CREATE mailbox [(USE (attributes))]",
    "DELETE": "DELETE mailbox",
    "RENAME": "RENAME mailbox new-name",
    "SUBSCRIBE": "SUBSCRIBE mailbox",
    "UNSUBSCRIBE": "UNSUBSCRIBE mailbox",
    "LIST": "LIST [(options)] reference pattern [RETURN (options)]",
    "LSUB": "LSUB reference pattern",
    "STATUS": "STATUS mailbox (items)",
    "APPEND": "APPEND mailbox [(flags)] [date-time] literal",
    "SEARCH": "SEARCH [RETURN (options)] [CHARSET charset] criteria",
    "FETCH": "FETCH sequence-set items [(modifiers)]",
    "STORE": "STORE sequence-set [+|-]FLAGS[.SILENT] (flags)",
    "COPY": "COPY sequence-set mailbox",
    "MOVE": "MOVE sequence-set mailbox",
    "UID EXPUNGE": "UID EXPUNGE uid-set",
    "SORT": "SORT (sort-criteria) charset criteria",
    "THREAD": "THREAD algorithm charset criteria",
    "SETACL": "SETACL mailbox identifier rights",
    "DELETEACL": "DELETEACL mailbox identifier",
    "GETACL": "GETACL mailbox",
    "LISTRIGHTS": "LISTRIGHTS mailbox identifier",
    "MYRIGHTS": "MYRIGHTS mailbox",
    "NOTIFY": "NOTIFY NONE or NOTIFY SET [STATUS] (filter events)...",
}

#: RFC 9051 STATUS items plus STATUS=SIZE (8438), CONDSTORE, APPENDLIMIT
#: (7889) and OBJECTID (8474).
STATUS_ITEMS: Final = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
     "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID"}
)
#: ESEARCH return options (RFC 4731, RFC 5182 SAVE).
SEARCH_RETURN_OPTIONS: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
#: RFC 6154 / 8457 special-use attributes in their registered spelling.
SPECIAL_USE: Final[dict[str, str]] = {
    a.lower(): a
    for a in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")
}
NOTIFY_FILTERS: Final = frozenset(
    {"SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"}
)
NOTIFY_EVENTS: Final[dict[str, str]] = {
    e.upper(): e
    for e in ("MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
              "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange")
}
_UID_COMMANDS: Final = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "SORT", "THREAD", "EXPUNGE"})
_BASE64_RE: Final = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")
_STORE_RE: Final = re.compile(rb"([+-]?)FLAGS(\.SILENT)?(?= )", re.IGNORECASE)
_CAPABILITY_RE: Final = re.compile(rb"[^(){ \x00-\x1f\x7f%*\"\\\]\x80-\xff]+")


# --- public entry points ----------------------------------------------------------
def parse_command(frame: bytes, *, utf8: bool = False) -> c.Command:
    """Parse one complete command frame (line plus literals, ending in CRLF).

    ``utf8``: the client enabled UTF8=ACCEPT (RFC 6855), so mailbox names are
    UTF-8 rather than modified UTF-7.
    """
    r = Reader(frame, ClientProtocolError, utf8=utf8)
    tag: str | None = None
    name = ""
    try:
        tag = r.tag()
        if not r.accept_sp():
            raise r.error("expected a space and a command name after the tag")
        if r.at_eol():
            raise r.error("missing command name after the tag")
        name = r.keyword("a command name")
        uid = False
        if name == "UID":
            r.sp()
            start = r.pos
            sub = r.keyword("a command after UID")
            if sub not in _UID_COMMANDS:
                r.pos = start
                raise r.error(f"UID must be followed by one of {', '.join(sorted(_UID_COMMANDS))}")
            name = sub
            uid = True
        handler = _HANDLERS.get(name)
        if handler is None:
            # Report the word as sent (upper-cased), not a guess at what was meant.
            raise ClientProtocolError(f"unknown command {name[:40]}", position=r.pos - len(name))
        if uid:
            name = "UID " + name
        cmd = handler(r, tag, uid)
        _finish(r, name)
    except CodecError as exc:
        raise _rephrase(exc, r, tag, name) from None
    if r.invalid_name is not None:
        position, reason = r.invalid_name
        raise InvalidMailboxName(reason, position=position, tag=tag, command=cmd)
    return cmd


def parse_idle_done(line: bytes) -> bool:
    """True when a raw line received during IDLE is ``DONE`` (any case)."""
    return line.rstrip(b"\r\n").upper() == b"DONE"


def parse_authenticate_response(line: bytes) -> bytes | None:
    """A client's answer to an AUTHENTICATE challenge: the decoded bytes, or
    None when the client cancelled with ``*`` (answer ``BAD``)."""
    text = line[:-2] if line.endswith(b"\r\n") else line
    if text == b"*":
        return None
    if not text:
        return b""
    if _BASE64_RE.fullmatch(text) is None:
        raise ClientProtocolError("AUTHENTICATE response is not base64", position=0)
    return _b64decode(text, 0)


# --- structure ----------------------------------------------------------------------
def _usage(name: str) -> str | None:
    return USAGE.get(name) or USAGE.get(name.removeprefix("UID "))


def _finish(r: Reader, name: str) -> None:
    if r.at_eol() and r.pos + 2 == r.end:
        r.pos += 2
        return
    if r.at_eol():
        raise r.error("data after the end of the command")
    if r.buf.startswith(b" \r\n", r.pos):
        raise r.error(f"trailing space after {name} (not allowed by RFC 9051)")
    usage = _usage(name)
    if usage is not None:
        raise r.error(f"unexpected extra arguments {r.describe_here()}; expected {usage}")
    raise r.error(f"{name} takes no arguments, found {r.describe_here()}")


def _rephrase(exc: CodecError, r: Reader, tag: str | None, name: str) -> ClientProtocolError:
    reason = exc.reason
    pos = exc.position
    at_end = pos is not None and r.buf.startswith(b"\r\n", pos)
    if at_end and pos is not None and pos > 0 and r.buf[pos - 1] == 0x20:
        reason = f"trailing space after {name or 'the tag'} (not allowed by RFC 9051)"
    elif at_end and _usage(name) is not None and reason.startswith("expected a space"):
        reason = f"missing arguments: expected {_usage(name)}"
    elif name and name not in reason and not reason.startswith(("unknown command", "trailing space")):
        reason = f"{name}: {reason}"
    return ClientProtocolError(reason, position=pos, tag=tag, fatal=exc.fatal, code=exc.code)


def _b64decode(data: bytes, position: int) -> bytes:
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error as exc:
        raise ClientProtocolError(f"invalid base64: {exc}", position=position) from None


def _utf8(r: Reader, raw: bytes, start: int, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        r.pos = start
        raise r.error(f"{what} is not valid UTF-8") from None


def _astring_str(r: Reader, what: str) -> str:
    start = r.pos
    return _utf8(r, r.astring(what), start, what)


def _paren_list(
    r: Reader, item: Callable[[], str], what: str, *, allow_empty: bool = True
) -> tuple[str, ...]:
    """``(`` item *(SP item) ``)``."""
    r.expect(b"(", f"'(' to open {what}")
    out: list[str] = []
    if r.accept(b")"):
        if not allow_empty:
            r.pos -= 1
            raise r.error(f"empty {what}")
        return ()
    while True:
        out.append(item())
        if len(out) > limits.MAX_LIST_ITEMS:
            raise r.error(f"more than {limits.MAX_LIST_ITEMS} items in {what} (MAX_LIST_ITEMS)")
        if r.accept(b")"):
            return tuple(out)
        r.sp()


def _known(r: Reader, allowed: frozenset[str], what: str) -> str:
    start = r.pos
    word = r.keyword(what)
    if word not in allowed:
        r.pos = start
        raise r.error(f"unknown {what} {word[:40]}")
    return word


# --- handlers -----------------------------------------------------------------------
def _login(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    user = _astring_str(r, "user name")
    r.sp()
    return c.Login(tag, user, r.astring("a password"))


def _authenticate(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mechanism = r.keyword("a SASL mechanism")
    if r.at_eol():
        return c.Authenticate(tag, mechanism)
    r.sp()
    start = r.pos
    m = _BASE64_RE.match(r.buf, r.pos)
    if m is None:
        raise r.error(f"expected a base64 initial response, found {r.describe_here()}")
    r.pos = m.end()
    data = m.group()
    return c.Authenticate(tag, mechanism, b"" if data == b"=" else _b64decode(data, start))


def _enable(r: Reader, tag: str, uid: bool) -> c.Command:
    caps: list[str] = []
    r.sp()
    while True:
        m = _CAPABILITY_RE.match(r.buf, r.pos)
        if m is None:
            raise r.error(f"expected a capability name, found {r.describe_here()}")
        r.pos = m.end()
        caps.append(m.group().upper().decode("ascii"))
        if len(caps) > limits.MAX_LIST_ITEMS:
            raise r.error("too many capabilities (MAX_LIST_ITEMS)")
        if r.at_eol():
            return c.Enable(tag, tuple(caps))
        r.sp()


def _id(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    if r.accept(b"NIL"):
        return c.Id(tag, None)
    r.expect(b"(", "'(' or NIL")
    pairs: list[tuple[str, str | None]] = []
    if not r.accept(b")"):
        while True:
            start = r.pos
            key = _utf8(r, r.string("an ID field name"), start, "ID field name")
            r.sp()
            start = r.pos
            raw = r.nstring("an ID value or NIL")
            pairs.append((key, None if raw is None else _utf8(r, raw, start, "ID value")))
            if len(pairs) > limits.MAX_LIST_ITEMS:
                raise r.error("too many ID fields (MAX_LIST_ITEMS)")
            if r.accept(b")"):
                break
            r.sp()
    return c.Id(tag, tuple(pairs))


def _select(r: Reader, tag: str, uid: bool, cls: type[c.SelectBase]) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    condstore = False
    qresync: c.QresyncParameters | None = None
    if r.accept_sp():
        r.expect(b"(", "'(' to open SELECT parameters")
        while True:
            start = r.pos
            word = r.keyword("a SELECT parameter")
            if word == "CONDSTORE" and not condstore:
                condstore = True
            elif word == "QRESYNC" and qresync is None:
                r.sp()
                qresync = _qresync(r)
            else:
                r.pos = start
                seen = " twice" if word in ("CONDSTORE", "QRESYNC") else ""
                raise r.error(f"unsupported SELECT parameter {word[:40]}{seen}")
            if r.accept(b")"):
                break
            r.sp()
    return cls(tag, mailbox, condstore, qresync)


def _qresync(r: Reader) -> c.QresyncParameters:
    r.expect(b"(", "'(' to open QRESYNC parameters")
    r.enter()
    uidvalidity = r.nz_number("a UIDVALIDITY")
    r.sp()
    modseq = r.number64("a mod-sequence")
    known: SequenceSet | None = None
    match: tuple[SequenceSet, SequenceSet] | None = None
    if r.accept_sp():
        if r.peek() != 0x28:
            known = r.sequence_set("known UIDs")
            if r.accept_sp():
                match = _seq_match(r)
        else:
            match = _seq_match(r)
    r.expect(b")", "')' to close QRESYNC parameters")
    r.leave()
    return c.QresyncParameters(uidvalidity, modseq, known, match)


def _seq_match(r: Reader) -> tuple[SequenceSet, SequenceSet]:
    r.expect(b"(", "'(' to open sequence match data")
    seqs = r.sequence_set("known sequence numbers")
    r.sp()
    uids = r.sequence_set("known UIDs")
    r.expect(b")", "')' to close sequence match data")
    return seqs, uids


def _create(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    uses: tuple[str, ...] = ()
    if r.accept_sp():
        r.expect(b"(", "'(' to open CREATE parameters")
        r.expect(b"USE", "USE (the only CREATE parameter supported)")
        r.sp()
        uses = _paren_list(r, lambda: _special_use(r), "special-use attributes")
        r.expect(b")", "')' to close CREATE parameters")
    return c.Create(tag, mailbox, uses)


def _special_use(r: Reader) -> str:
    flag = r.flag()
    return SPECIAL_USE.get(flag.lower(), flag)


def _mailbox_only(cls: type[c.Delete | c.Subscribe | c.Unsubscribe]) -> Handler:
    def handler(r: Reader, tag: str, uid: bool) -> c.Command:
        r.sp()
        return cls(tag, r.mailbox())

    return handler


def _rename(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    old = r.mailbox()
    r.sp()
    return c.Rename(tag, old, r.mailbox())


def _list(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    selection: tuple[str, ...] | None = None
    if r.peek() == 0x28:
        selection = _paren_list(r, lambda: r.keyword("a LIST selection option"), "LIST selection options")
        r.sp()
    reference = r.mailbox()
    r.sp()
    if r.peek() == 0x28:
        patterns = _paren_list(r, r.list_mailbox, "mailbox patterns", allow_empty=False)
    else:
        patterns = (r.list_mailbox(),)
    return_options: tuple[str, ...] | None = None
    status_items: tuple[str, ...] = ()
    if r.accept_sp():
        r.expect(b"RETURN", "RETURN")
        r.sp()

        def option() -> str:
            nonlocal status_items
            word = r.keyword("a LIST return option")
            if word == "STATUS":
                r.sp()
                status_items = _status_items(r)
            return word

        return_options = _paren_list(r, option, "LIST return options")
    return c.List(tag, reference, patterns, selection, return_options, status_items)


def _lsub(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    reference = r.mailbox()
    r.sp()
    return c.Lsub(tag, reference, r.list_mailbox())


def _status_items(r: Reader) -> tuple[str, ...]:
    return _paren_list(r, lambda: _known(r, STATUS_ITEMS, "STATUS item"), "STATUS items", allow_empty=False)


def _status(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.Status(tag, mailbox, _status_items(r))


def _append(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    mailbox = r.mailbox()
    messages: list[c.AppendMessage] = []
    while True:
        r.sp()
        flags: tuple[str, ...] = ()
        when = None
        if r.peek() == 0x28:
            flags = r.flag_list()
            r.sp()
        if r.peek() == 0x22:
            when = r.date_time()
            r.sp()
        binary = r.peek() == 0x7E  # '~'
        if not binary and r.peek() != 0x7B:
            raise r.error(f"expected the message as a literal {{n}}, found {r.describe_here()}")
        data = r.literal(allow_binary=True)
        messages.append(c.AppendMessage(data, flags, when, binary))
        if len(messages) > limits.MAX_APPEND_MESSAGES:
            raise r.error(f"more than {limits.MAX_APPEND_MESSAGES} messages (MAX_APPEND_MESSAGES)")
        if r.at_eol():
            return c.Append(tag, mailbox, tuple(messages))


def _no_args(cls: type[c.Command]) -> Handler:
    def handler(r: Reader, tag: str, uid: bool) -> c.Command:
        return cls(tag)

    return handler


def _expunge(r: Reader, tag: str, uid: bool) -> c.Command:
    if not uid:
        return c.Expunge(tag)
    r.sp()
    return c.Expunge(tag, True, r.sequence_set("a UID set"))


def _charset(r: Reader) -> str:
    start = r.pos
    raw = r.astring("a charset")
    try:
        return raw.decode("ascii").upper()
    except UnicodeDecodeError:
        r.pos = start
        raise r.error("charset name is not ASCII") from None


def _search(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    return_options: tuple[str, ...] | None = None
    charset: str | None = None
    if r.accept(b"RETURN "):
        return_options = _paren_list(
            r, lambda: _known(r, SEARCH_RETURN_OPTIONS, "SEARCH RETURN option"), "SEARCH RETURN options"
        )
        r.sp()
    if r.accept(b"CHARSET "):
        charset = _charset(r)
        r.sp()
    criteria = read_search_criteria(r)
    return c.Search(tag, criteria, uid, charset, return_options)


def _fetch(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    seqset = r.sequence_set()
    r.sp()
    macro: str | None = None
    attributes: tuple[FetchAttribute, ...]
    if r.peek() == 0x28:
        r.pos += 1
        items: list[FetchAttribute] = []
        while True:
            items.append(read_fetch_attribute(r))
            if len(items) > limits.MAX_LIST_ITEMS:
                raise r.error("too many fetch attributes (MAX_LIST_ITEMS)")
            if r.accept(b")"):
                break
            r.sp()
        attributes = tuple(items)
    else:
        for word, expansion in MACROS.items():
            if r.at(word.encode()) and r.buf[r.pos + len(word) : r.pos + len(word) + 1] in (b" ", b"\r"):
                r.pos += len(word)
                macro = word
                attributes = expansion
                break
        else:
            attributes = (read_fetch_attribute(r),)
    changedsince: int | None = None
    vanished = False
    if r.accept_sp():
        r.expect(b"(", "'(' to open FETCH modifiers")
        while True:
            start = r.pos
            word = r.keyword("a FETCH modifier")
            if word == "CHANGEDSINCE" and changedsince is None:
                r.sp()
                changedsince = r.number64("a mod-sequence")
            elif word == "VANISHED" and not vanished:
                vanished = True
            else:
                r.pos = start
                raise r.error(f"unsupported FETCH modifier {word[:40]}")
            if r.accept(b")"):
                break
            r.sp()
        if vanished and (not uid or changedsince is None):
            raise r.error("VANISHED requires UID FETCH with CHANGEDSINCE (RFC 7162 §3.2.6)")
    return c.Fetch(tag, seqset, attributes, uid, macro, changedsince, vanished)


_OPERATIONS: Final[dict[bytes, c.StoreOperation]] = {b"": "set", b"+": "add", b"-": "remove"}


def _store(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    seqset = r.sequence_set()
    r.sp()
    unchangedsince: int | None = None
    if r.peek() == 0x28:
        r.pos += 1
        r.expect(b"UNCHANGEDSINCE", "UNCHANGEDSINCE (the only STORE modifier supported)")
        r.sp()
        unchangedsince = r.number64("a mod-sequence")
        r.expect(b")", "')' to close STORE modifiers")
        r.sp()
    m = _STORE_RE.match(r.buf, r.pos)
    if m is None:
        raise r.error(f"expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT), found {r.describe_here()}")
    r.pos = m.end()
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        # RFC 9051 also allows the flags without parentheses.
        found = [r.flag()]
        while r.accept_sp():
            found.append(r.flag())
            if len(found) > limits.MAX_LIST_ITEMS:
                raise r.error("too many flags (MAX_LIST_ITEMS)")
        flags = tuple(found)
    return c.Store(tag, seqset, _OPERATIONS[m.group(1)], flags, bool(m.group(2)), uid, unchangedsince)


def _copy_move(cls: type[c.Copy | c.Move]) -> Handler:
    def handler(r: Reader, tag: str, uid: bool) -> c.Command:
        r.sp()
        seqset = r.sequence_set()
        r.sp()
        return cls(tag, seqset, r.mailbox(), uid)

    return handler


def _sort(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    r.expect(b"(", "'(' to open the sort criteria")
    keys: list[c.SortCriterion] = []
    while True:
        reverse = r.accept(b"REVERSE ")
        keys.append(c.SortCriterion(_known(r, SORT_KEYS, "sort key"), reverse))
        if len(keys) > limits.MAX_LIST_ITEMS:
            raise r.error("too many sort keys (MAX_LIST_ITEMS)")
        if r.accept(b")"):
            break
        r.sp()
    r.sp()
    charset = _charset(r)
    r.sp()
    return c.Sort(tag, tuple(keys), charset, _criteria(r), uid)


def _criteria(r: Reader) -> tuple[SearchKey, ...]:
    return read_search_criteria(r)


def _thread(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    algorithm = r.keyword("a threading algorithm")
    r.sp()
    charset = _charset(r)
    r.sp()
    return c.Thread(tag, algorithm, charset, _criteria(r), uid)


def _notify(r: Reader, tag: str, uid: bool) -> c.Command:
    r.sp()
    start = r.pos
    word = r.keyword("NONE or SET")
    if word == "NONE":
        return c.NotifyNone(tag)
    if word != "SET":
        r.pos = start
        raise r.error(f"expected NONE or SET, found {word[:40]}")
    r.sp()
    status = r.accept(b"STATUS ")
    groups = [_notify_group(r)]
    while r.accept_sp():
        groups.append(_notify_group(r))
        if len(groups) > limits.MAX_LIST_ITEMS:
            raise r.error("too many NOTIFY event groups (MAX_LIST_ITEMS)")
    return c.NotifySet(tag, tuple(groups), status)


def _notify_group(r: Reader) -> c.NotifyGroup:
    r.expect(b"(", "'(' to open a NOTIFY event group")
    r.enter()
    start = r.pos
    filt = r.keyword("a NOTIFY mailbox filter")
    if filt not in NOTIFY_FILTERS:
        r.pos = start
        raise r.error(f"unknown NOTIFY mailbox filter {filt[:40]}")
    mailboxes: tuple[str, ...] = ()
    if filt in ("SUBTREE", "MAILBOXES"):
        r.sp()
        if r.peek() == 0x28:
            mailboxes = _paren_list(r, r.mailbox, "mailbox list", allow_empty=False)
        else:
            mailboxes = (r.mailbox(),)
    r.sp()
    events: list[c.NotifyEvent] = []
    if r.accept(b"NONE"):
        pass
    elif r.peek() == 0x28:
        r.pos += 1
        events.append(_notify_event(r))
        while not r.accept(b")"):
            r.sp()
            events.append(_notify_event(r))
    else:
        # RFC 5465's own examples write the events without parentheses.
        events.append(_notify_event(r))
        while r.peek() != 0x29:
            r.sp()
            events.append(_notify_event(r))
    r.expect(b")", "')' to close the NOTIFY event group")
    r.leave()
    return c.NotifyGroup(filt, tuple(events), mailboxes)


def _notify_event(r: Reader) -> c.NotifyEvent:
    raw = r.atom("a NOTIFY event").decode("ascii")
    name = NOTIFY_EVENTS.get(raw.upper(), raw)
    attrs: list[FetchAttribute] = []
    if name == "MessageNew" and r.buf.startswith(b" (", r.pos):
        r.pos += 2
        while True:
            attrs.append(read_fetch_attribute(r))
            if len(attrs) > limits.MAX_LIST_ITEMS:
                raise r.error("too many fetch attributes (MAX_LIST_ITEMS)")
            if r.accept(b")"):
                break
            r.sp()
    return c.NotifyEvent(name, tuple(attrs))


_HANDLERS: Final[dict[str, Handler]] = {
    "CAPABILITY": _no_args(c.Capability),
    "NOOP": _no_args(c.Noop),
    "LOGOUT": _no_args(c.Logout),
    "STARTTLS": _no_args(c.StartTLS),
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "ID": _id,
    "SELECT": lambda r, tag, uid: _select(r, tag, uid, c.Select),
    "EXAMINE": lambda r, tag, uid: _select(r, tag, uid, c.Examine),
    "CREATE": _create,
    "DELETE": _mailbox_only(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_only(c.Subscribe),
    "UNSUBSCRIBE": _mailbox_only(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_args(c.Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _no_args(c.Idle),
    "CHECK": _no_args(c.Check),
    "CLOSE": _no_args(c.Close),
    "UNSELECT": _no_args(c.Unselect),
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move(c.Copy),
    "MOVE": _copy_move(c.Move),
    "SORT": _sort,
    "THREAD": _thread,
    # RFC 4314 (protocol/acl.py)
    "SETACL": acl.parse_setacl,
    "DELETEACL": acl.parse_deleteacl,
    "GETACL": acl.parse_getacl,
    "LISTRIGHTS": acl.parse_listrights,
    "MYRIGHTS": acl.parse_myrights,
    "NOTIFY": _notify,
}
