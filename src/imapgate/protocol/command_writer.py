"""Client side: typed ``commands`` to wire bytes, for the gateway's upstream
connections.

``write_command`` returns the command split at its synchronizing literals:
the caller sends a chunk, waits for the server's ``+`` continuation request,
then sends the next one.  With LITERAL+ (RFC 7888) every literal is written
``{n+}`` and the command is one chunk; with LITERAL- only literals of at most
4096 octets are.

Each command is first written whole with synchronizing literals, then split
by scanning its own output for literal headers.  That keeps every element's
``__bytes__`` (search keys, fetch attributes) usable on its own, and the scan
is safe because a ``{`` in our output starts a literal header unless it is
inside a quoted string or literal data, both of which the scan skips.
"""

from __future__ import annotations

import base64
import re
from typing import Final

from . import commands as c
from . import grammar, limits
from .fetch_items import FetchAttribute
from .search import criteria_bytes

__all__ = ["command_bytes", "write_authenticate_response", "write_command", "write_idle_done"]

_SCAN_RE: Final = re.compile(rb'"(?:[^"\\\r\n]|\\.)*"|~?\{(\d+)\}\r\n')
_STORE_OPS: Final[dict[c.StoreOperation, bytes]] = {"set": b"FLAGS", "add": b"+FLAGS", "remove": b"-FLAGS"}


def write_command(
    cmd: c.Command, *, literal_plus: bool = False, literal_minus: bool = False, utf8: bool = False
) -> list[bytes]:
    """The command's bytes in chunks; wait for ``+`` after each chunk but the last.

    ``literal_plus``: the server advertises LITERAL+ (all literals non-synchronizing);
    ``literal_minus``: it advertises LITERAL- (only those of <= 4096 octets);
    ``utf8``: UTF8=ACCEPT is enabled, mailbox names go as UTF-8.
    """
    return _split(command_bytes(cmd, utf8=utf8), literal_plus, literal_minus)


def write_idle_done() -> bytes:
    """The line that ends IDLE (RFC 2177)."""
    return b"DONE\r\n"


def write_authenticate_response(data: bytes | None) -> bytes:
    """A client's answer to an AUTHENTICATE challenge; None cancels (``*``)."""
    if data is None:
        return b"*\r\n"
    return base64.b64encode(data) + b"\r\n"


def command_bytes(cmd: c.Command, *, utf8: bool = False) -> bytes:
    """The whole command, with synchronizing literals, ending in CRLF."""
    return cmd.tag.encode("ascii") + b" " + _body(cmd, utf8) + b"\r\n"


# --- splitting ------------------------------------------------------------------
def _split(data: bytes, literal_plus: bool, literal_minus: bool) -> list[bytes]:
    if b"{" not in data:
        return [data]
    chunks: list[bytes] = []
    pieces: list[bytes] = []
    start = pos = 0
    while (m := _SCAN_RE.search(data, pos)) is not None:
        if m.group(1) is None:  # a quoted string: skip it whole
            pos = m.end()
            continue
        size = int(m.group(1))
        if literal_plus or (literal_minus and size <= limits.MAX_LITERAL_MINUS):
            pieces.append(data[start : m.end() - 3])  # up to the '}'
            pieces.append(b"+}\r\n")
        else:
            pieces.append(data[start : m.end()])
            chunks.append(b"".join(pieces))
            pieces = []
        start = m.end()
        pos = m.end() + size
    pieces.append(data[start:])
    chunks.append(b"".join(pieces))
    return chunks


# --- per command ---------------------------------------------------------------
def _astr(value: str) -> bytes:
    return grammar.bounded_astring(value.encode("utf-8"))


def _literal(data: bytes, binary: bool) -> bytes:
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(data) + data


def _uid(cmd: c.Fetch | c.Store | c.Copy | c.Move | c.Search | c.Sort | c.Thread) -> bytes:
    return b"UID " if cmd.uid else b""


def _atoms(words: tuple[str, ...]) -> bytes:
    return b"(" + " ".join(words).encode("ascii") + b")"


def _attributes(attrs: tuple[FetchAttribute, ...]) -> bytes:
    return b"(" + b" ".join(bytes(a) for a in attrs) + b")"


def _body(cmd: c.Command, utf8: bool) -> bytes:
    def mbx(name: str) -> bytes:
        return grammar.mailbox(name, utf8=utf8)

    match cmd:
        case c.Login():
            return b"LOGIN " + _astr(cmd.user) + b" " + grammar.bounded_astring(cmd.password)
        case c.Authenticate():
            out = b"AUTHENTICATE " + cmd.mechanism.encode("ascii")
            if cmd.initial_response is not None:
                out += b" " + (base64.b64encode(cmd.initial_response) or b"=")
            return out
        case c.Enable():
            return b"ENABLE " + " ".join(cmd.capabilities).encode("ascii")
        case c.Id():
            if cmd.parameters is None:
                return b"ID NIL"
            pairs = (
                grammar.quote(k.encode("utf-8")) + b" "
                + grammar.nstring(None if v is None else v.encode("utf-8"))
                for k, v in cmd.parameters
            )
            return b"ID (" + b" ".join(pairs) + b")"
        case c.SelectBase():
            out = cmd.name.encode("ascii") + b" " + mbx(cmd.mailbox)
            params: list[bytes] = []
            if cmd.condstore:
                params.append(b"CONDSTORE")
            if cmd.qresync is not None:
                params.append(_qresync(cmd.qresync))
            if params:
                out += b" (" + b" ".join(params) + b")"
            return out
        case c.Create():
            out = b"CREATE " + mbx(cmd.mailbox)
            if cmd.special_use:
                out += b" (USE " + _atoms(cmd.special_use) + b")"
            return out
        case c.Delete() | c.Subscribe() | c.Unsubscribe() | c.GetAcl() | c.MyRights():
            return cmd.name.encode("ascii") + b" " + mbx(cmd.mailbox)
        case c.Rename():
            return b"RENAME " + mbx(cmd.mailbox) + b" " + mbx(cmd.new_name)
        case c.List():
            return _list(cmd, utf8)
        case c.Lsub():
            return b"LSUB " + mbx(cmd.reference) + b" " + grammar.list_mailbox(cmd.pattern, utf8=utf8)
        case c.Status():
            return b"STATUS " + mbx(cmd.mailbox) + b" " + _atoms(cmd.items)
        case c.Append():
            out = b"APPEND " + mbx(cmd.mailbox)
            for msg in cmd.messages:
                if msg.flags:
                    out += b" " + grammar.flag_list(msg.flags)
                if msg.internal_date is not None:
                    out += b" " + grammar.format_date_time(msg.internal_date)
                out += b" " + _literal(msg.data, msg.binary or b"\x00" in msg.data)
            return out
        case c.Expunge():
            if cmd.uid and cmd.uid_set is not None:
                return b"UID EXPUNGE " + bytes(cmd.uid_set)
            return b"EXPUNGE"
        case c.Search():
            out = _uid(cmd) + b"SEARCH "
            if cmd.return_options is not None:
                out += b"RETURN " + _atoms(cmd.return_options) + b" "
            if cmd.charset is not None:
                out += b"CHARSET " + _astr(cmd.charset) + b" "
            return out + criteria_bytes(cmd.criteria)
        case c.Fetch():
            return _fetch(cmd)
        case c.Store():
            out = _uid(cmd) + b"STORE " + bytes(cmd.sequence_set) + b" "
            if cmd.unchangedsince is not None:
                out += b"(UNCHANGEDSINCE %d) " % cmd.unchangedsince
            out += _STORE_OPS[cmd.operation] + (b".SILENT " if cmd.silent else b" ")
            return out + grammar.flag_list(cmd.flags)
        case c.Copy() | c.Move():
            verb = _uid(cmd) + cmd.name.encode("ascii")
            return verb + b" " + bytes(cmd.sequence_set) + b" " + mbx(cmd.mailbox)
        case c.Sort():
            keys = b" ".join(
                (b"REVERSE " if k.reverse else b"") + k.key.encode("ascii") for k in cmd.sort_criteria
            )
            return (
                _uid(cmd) + b"SORT (" + keys + b") " + _astr(cmd.charset) + b" "
                + criteria_bytes(cmd.criteria)
            )
        case c.Thread():
            return (
                _uid(cmd) + b"THREAD " + cmd.algorithm.encode("ascii") + b" " + _astr(cmd.charset) + b" "
                + criteria_bytes(cmd.criteria)
            )
        case c.SetAcl():
            return b"SETACL " + mbx(cmd.mailbox) + b" " + _astr(cmd.identifier) + b" " + _astr(cmd.rights)
        case c.DeleteAcl() | c.ListRights():
            return cmd.name.encode("ascii") + b" " + mbx(cmd.mailbox) + b" " + _astr(cmd.identifier)
        case c.NotifyNone():
            return b"NOTIFY NONE"
        case c.NotifySet():
            groups = b" ".join(_notify_group(g, utf8) for g in cmd.groups)
            return b"NOTIFY SET " + (b"STATUS " if cmd.status else b"") + groups
    # Commands without arguments: CAPABILITY, NOOP, LOGOUT, STARTTLS, NAMESPACE,
    # IDLE, CHECK, CLOSE, UNSELECT.
    if not cmd.name:
        raise TypeError(f"not a writable command: {type(cmd).__name__}")
    return cmd.name.encode("ascii")


def _qresync(q: c.QresyncParameters) -> bytes:
    out = b"QRESYNC (%d %d" % (q.uidvalidity, q.modseq)
    if q.known_uids is not None:
        out += b" " + bytes(q.known_uids)
    if q.seq_match is not None:
        out += b" (" + bytes(q.seq_match[0]) + b" " + bytes(q.seq_match[1]) + b")"
    return out + b")"


def _list(cmd: c.List, utf8: bool) -> bytes:
    out = b"LIST "
    if cmd.selection_options is not None:
        out += _atoms(cmd.selection_options) + b" "
    out += grammar.mailbox(cmd.reference, utf8=utf8) + b" "
    pats = [grammar.list_mailbox(p, utf8=utf8) for p in cmd.patterns]
    out += pats[0] if len(pats) == 1 else b"(" + b" ".join(pats) + b")"
    if cmd.return_options is not None:
        opts = [
            b"STATUS " + _atoms(cmd.status_items) if o == "STATUS" else o.encode("ascii")
            for o in cmd.return_options
        ]
        out += b" RETURN (" + b" ".join(opts) + b")"
    return out


def _fetch(cmd: c.Fetch) -> bytes:
    out = _uid(cmd) + b"FETCH " + bytes(cmd.sequence_set) + b" "
    modifiers: list[bytes] = []
    if cmd.changedsince is not None:
        modifiers.append(b"CHANGEDSINCE %d" % cmd.changedsince)
    if cmd.vanished:
        modifiers.append(b"VANISHED")
    if cmd.macro is not None:
        out += cmd.macro.encode("ascii")
    elif len(cmd.attributes) == 1 and not modifiers:
        # RFC examples write a lone item bare; with modifiers they parenthesise.
        out += bytes(cmd.attributes[0])
    else:
        out += _attributes(cmd.attributes)
    if modifiers:
        out += b" (" + b" ".join(modifiers) + b")"
    return out


def _notify_group(g: c.NotifyGroup, utf8: bool) -> bytes:
    out = b"(" + g.filter.encode("ascii")
    if g.mailboxes:
        names = [grammar.mailbox(m, utf8=utf8) for m in g.mailboxes]
        out += b" " + (names[0] if len(names) == 1 else b"(" + b" ".join(names) + b")")
    if not g.events:
        return out + b" NONE)"
    events = []
    for e in g.events:
        ev = e.event.encode("ascii")
        if e.fetch_attributes:
            ev += b" " + _attributes(e.fetch_attributes)
        events.append(ev)
    return out + b" (" + b" ".join(events) + b"))"
