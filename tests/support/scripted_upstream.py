"""A scripted upstream: a real asyncio IMAP server on 127.0.0.1 for fast write-path tests.

The real gateway connects to it like to a hoster, over TCP, with its own codec on both
ends: commands are framed and parsed by ``imapgate.protocol`` (``CommandFramer``,
``parse_command``) and every response is written by ``response_writer`` — so what the
gateway sends is checked by the same grammar it uses for clients, and what it reads is
valid IMAP.  No Dovecot is needed: a test runs in milliseconds.

A test drives it through a :class:`Script`:

* ``capabilities`` — what the server announces (``with_capabilities("UIDPLUS", "MOVE",
  "CONDSTORE", "QRESYNC")``); ``MOVE``, ``UID EXPUNGE`` (UIDPLUS), ``UNCHANGEDSINCE``
  and ``ENABLE`` work only when announced, as on a real server;
* ``folders`` — a small in-memory model: per folder UIDVALIDITY, UIDNEXT, messages with
  UIDs, flags, modseqs and content (:meth:`Script.add_message`, :meth:`Script.flags`);
* rules — :meth:`Script.refuse` (answer ``NO`` with a text), :meth:`Script.drop` (cut the
  connection at a command, before or after acting on it), :meth:`Script.delay`;
* ``log`` — every command received, as its wire line without the tag (LOGIN's
  password hidden), for asserting the exact upstream sequence (:meth:`Script.commands`).

Out of scope (a fake cannot teach us the real behaviour): NOTIFY, IDLE push of other
clients' changes, search keys beyond ALL/UID/HEADER/flags, BODYSTRUCTURE/ENVELOPE.  A
command it does not know is answered ``BAD`` naming it, so a test fails loudly instead
of passing on a silent gap.  Semantics follow Dovecot where the RFCs leave room
(STORE .SILENT under CONDSTORE still answers ``FETCH (UID MODSEQ)``, RFC 7162 §3.1.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal, Self

from imapgate.protocol import commands as c
from imapgate.protocol import responses as r
from imapgate.protocol import search as s
from imapgate.protocol.command_parser import parse_command, parse_idle_done
from imapgate.protocol.errors import CodecError
from imapgate.protocol.fetch_items import FetchAttribute
from imapgate.protocol.framing import CommandFramer, Frame, NeedContinuation
from imapgate.protocol.response_writer import write_response
from imapgate.protocol.sequence import SequenceSet

USER = "shared"
PASSWORD = "shared-secret"
DELIMITER = "/"
#: Commands whose UID form is a different command for rules and the log.
_UID_FORMS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE"})
_HEADER_FIELD_RE = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)


@dataclass
class Message:
    uid: int
    data: bytes
    flags: set[str]
    modseq: int
    internal_date: datetime

    def header(self) -> bytes:
        end = self.data.find(b"\r\n\r\n")
        return self.data if end < 0 else self.data[: end + 4]

    def text(self) -> bytes:
        end = self.data.find(b"\r\n\r\n")
        return b"" if end < 0 else self.data[end + 4 :]

    def header_fields(self, names: Iterable[str], *, exclude: bool = False) -> bytes:
        wanted = {n.lower() for n in names}
        out: list[bytes] = []
        keep = False
        for line in self.header().split(b"\r\n"):
            if not line:
                continue
            if line[:1] in (b" ", b"\t"):
                if keep:
                    out.append(line)
                continue
            m = _HEADER_FIELD_RE.match(line)
            keep = bool(m) and ((m.group(1).decode().lower() in wanted) != exclude) if m else False
            if keep:
                out.append(line)
        return b"".join(x + b"\r\n" for x in out) + b"\r\n"


@dataclass
class Folder:
    name: str
    uidvalidity: int
    uidnext: int = 1
    attributes: tuple[str, ...] = ()
    messages: dict[int, Message] = field(default_factory=dict)
    #: UID -> modseq of its expunge (for QRESYNC's VANISHED (EARLIER)).
    expunged: dict[int, int] = field(default_factory=dict)

    def uids(self) -> list[int]:
        return sorted(self.messages)


@dataclass
class Rule:
    command: str  # the command's key: "UID STORE", "APPEND", "UID EXPUNGE", ...
    action: Literal["refuse", "drop-before", "drop-after", "delay"]
    text: str = ""
    seconds: float = 0.0
    #: How many more times it applies (None: always).
    times: int | None = 1


@dataclass(frozen=True)
class Received:
    connection: int
    key: str
    line: str
    command: c.Command


class Script:
    """The state and the rules of one scripted upstream (one hoster account)."""

    def __init__(self, *capabilities: str, user: str = USER, password: str = PASSWORD) -> None:
        self.capabilities: set[str] = {"IMAP4rev1", "LITERAL+", "ENABLE", *capabilities}
        self.user = user
        self.password = password
        self.folders: dict[str, Folder] = {}
        self.rules: list[Rule] = []
        self.log: list[Received] = []
        self.modseq = 1
        self._uidvalidity = 1_700_000_000
        self.create_folder("INBOX")

    # -- the folder model --------------------------------------------------------------
    def next_modseq(self) -> int:
        self.modseq += 1
        return self.modseq

    def create_folder(self, name: str, *attributes: str) -> Folder:
        self._uidvalidity += 1
        folder = Folder(name, self._uidvalidity, attributes=attributes)
        self.folders[name] = folder
        return folder

    def folder(self, name: str) -> Folder:
        return self.folders[name]

    def add_message(
        self, folder: str, data: bytes, flags: Iterable[str] = (), date: datetime | None = None
    ) -> int:
        f = self.folders[folder]
        uid = f.uidnext
        f.uidnext += 1
        when = date or datetime(2024, 1, 1, 12, 0, uid % 60, tzinfo=UTC)
        f.messages[uid] = Message(uid, data, set(flags), self.next_modseq(), when)
        return uid

    def flags(self, folder: str) -> dict[int, set[str]]:
        return {u: set(m.flags) for u, m in sorted(self.folders[folder].messages.items())}

    def message_ids(self, folder: str) -> list[str]:
        out = []
        for m in self.folders[folder].messages.values():
            found = re.search(rb"^Message-ID:\s*(\S+)", m.data, re.IGNORECASE | re.MULTILINE)
            out.append(found.group(1).decode() if found else "")
        return out

    def expunge_uids(self, folder: str, uids: Iterable[int]) -> list[int]:
        f = self.folders[folder]
        gone = [u for u in sorted(set(uids)) if u in f.messages]
        for u in gone:
            del f.messages[u]
            f.expunged[u] = self.next_modseq()
        return gone

    # -- rules -------------------------------------------------------------------------
    def refuse(self, command: str, text: str, *, times: int | None = 1) -> None:
        """Answer ``command`` (its key, e.g. ``"UID MOVE"``) with ``NO text`` (a text may
        start with a response code, ``"[OVERQUOTA] quota exceeded"``), not acting on it."""
        self.rules.append(Rule(command, "refuse", text=text, times=times))

    def drop(self, command: str, *, after_acting: bool, times: int | None = 1) -> None:
        """Cut the connection at ``command``: before it is carried out, or after (the
        server acted, its answer is lost — the worst case for a client)."""
        self.rules.append(Rule(command, "drop-after" if after_acting else "drop-before", times=times))

    def delay(self, command: str, seconds: float, *, times: int | None = 1) -> None:
        self.rules.append(Rule(command, "delay", seconds=seconds, times=times))

    def _take(self, key: str) -> list[Rule]:
        found = []
        for rule in self.rules:
            if rule.command == key and (rule.times is None or rule.times > 0):
                if rule.times is not None:
                    rule.times -= 1
                found.append(rule)
        return found

    # -- the log -----------------------------------------------------------------------
    def commands(self, *keys: str, since: int = 0) -> list[str]:
        """Lines received (without tags) from index ``since`` of the log, only of the
        command ``keys`` when given (e.g. ``"UID COPY", "UID STORE", "UID EXPUNGE"``)."""
        return [e.line for e in self.log[since:] if not keys or e.key in keys]

    def mark(self) -> int:
        """The log position now, for ``commands(since=...)``."""
        return len(self.log)


class _Refused(Exception):
    def __init__(self, text: str, code: r.ResponseCode | None = None, status: r.StatusWord = "NO") -> None:
        super().__init__(text)
        self.text, self.code, self.status = text, code, status


def _bad(text: str) -> _Refused:
    return _Refused(f"scripted upstream: {text}", status="BAD")


def _code_and_text(text: str) -> tuple[r.ResponseCode | None, str]:
    m = re.match(r"\[([A-Z-]+)\]\s*(.*)", text)
    return (r.AtomCode(m.group(1)), m.group(2)) if m else (None, text)


class _Session:
    """One connection's state: authenticated, selected folder, the UIDs it was told of."""

    def __init__(self, script: Script, number: int) -> None:
        self.script = script
        self.number = number
        self.authenticated = False
        self.selected: Folder | None = None
        self.view: list[int] = []
        self.condstore = False
        self.qresync = False
        self.out: list[r.Response] = []
        #: The command being answered (the server loop looks at IDLE and LOGOUT).
        self.last: c.Command | None = None

    # -- helpers -----------------------------------------------------------------------
    def has(self, cap: str) -> bool:
        return cap.upper() in {x.upper() for x in self.script.capabilities}

    def folder(self, name: str, *, trycreate: bool = False) -> Folder:
        f = self.script.folders.get(name)
        if f is None:
            code = r.AtomCode("TRYCREATE" if trycreate else "NONEXISTENT")
            raise _Refused(f"Mailbox doesn't exist: {name}", code)
        return f

    def need_selected(self) -> Folder:
        if self.selected is None or self.selected.name not in self.script.folders:
            raise _bad("no mailbox selected")
        return self.selected

    def sync_view(self, *, expunges: bool) -> None:
        """Tell this connection of messages others added or removed (RFC 9051 §7.5.2:
        no EXPUNGE during a non-UID FETCH/STORE/SEARCH)."""
        f = self.selected
        if f is None:
            return
        if expunges:
            gone = [u for u in self.view if u not in f.messages]
            self.announce_expunged(gone)
        top = self.view[-1] if self.view else 0
        new = [u for u in f.uids() if u > top]
        if new:
            self.view.extend(new)
            self.out.append(r.Exists(len(self.view)))

    def announce_expunged(self, uids: list[int]) -> None:
        known = [u for u in uids if u in self.view]
        if not known:
            return
        if self.qresync:
            self.out.append(r.Vanished(SequenceSet.from_ids(known)))
            self.view = [u for u in self.view if u not in set(known)]
            return
        for u in known:
            self.out.append(r.Expunge(self.view.index(u) + 1))
            self.view.remove(u)

    def targets(self, seqset: SequenceSet, uid: bool) -> list[int]:
        """UIDs the set names in this connection's view."""
        f = self.need_selected()
        if uid:
            largest = self.view[-1] if self.view else 0
            return [u for u in self.view if u in f.messages and seqset.contains(u, largest)]
        n = len(self.view)
        return [u for i, u in enumerate(self.view, 1) if seqset.contains(i, n) and u in f.messages]

    def seq(self, uid: int) -> int:
        return self.view.index(uid) + 1

    # -- commands ----------------------------------------------------------------------
    def execute(self, cmd: c.Command) -> r.TaggedResponse:
        handler = getattr(self, "do_" + type(cmd).__name__.lower(), None)
        if handler is None:
            raise _bad(f"command {cmd.name} is not scripted")
        if not self.authenticated and not isinstance(cmd, c.Login | c.Capability | c.Noop | c.Logout):
            raise _bad(f"{cmd.name} before LOGIN")
        uid = bool(getattr(cmd, "uid", False))
        self.sync_view(expunges=uid or not isinstance(cmd, c.Fetch | c.Store | c.Search))
        text = handler(cmd)
        code = None
        if isinstance(text, tuple):
            code, text = text
        return r.TaggedResponse(cmd.tag, "OK", code, text)

    def do_capability(self, cmd: c.Capability) -> str:
        self.out.append(r.Capability(tuple(sorted(self.script.capabilities))))
        return "CAPABILITY completed"

    def do_noop(self, cmd: c.Noop) -> str:
        return "NOOP completed"

    def do_check(self, cmd: c.Check) -> str:
        return "CHECK completed"

    def do_logout(self, cmd: c.Logout) -> str:
        self.out.append(r.UntaggedStatus("BYE", None, "Logging out"))
        return "LOGOUT completed"

    def do_id(self, cmd: c.Id) -> str:
        self.out.append(r.IdResponse({"name": "scripted"}))
        return "ID completed"

    def do_login(self, cmd: c.Login) -> str:
        if cmd.user != self.script.user or cmd.password != self.script.password.encode():
            raise _Refused("Authentication failed.", r.AtomCode("AUTHENTICATIONFAILED"))
        self.authenticated = True
        return "Logged in"

    def do_enable(self, cmd: c.Enable) -> str:
        if not self.has("ENABLE"):
            raise _bad("ENABLE is not announced")
        done = tuple(x for x in cmd.capabilities if x.upper() in ("CONDSTORE", "QRESYNC") and self.has(x))
        for x in done:
            self.condstore = True
            self.qresync = self.qresync or x.upper() == "QRESYNC"
        self.out.append(r.Enabled(done))
        return "ENABLE completed"

    def do_list(self, cmd: c.List) -> str:
        names = sorted(self.script.folders)
        for name in names:
            if not any(_matches(cmd.reference + p, name) for p in cmd.patterns):
                continue
            children = any(n.startswith(name + DELIMITER) for n in names)
            kids = "\\HasChildren" if children else "\\HasNoChildren"
            attrs = (*self.script.folders[name].attributes, kids)
            self.out.append(r.ListResponse(attrs, DELIMITER, name))
        return "LIST completed"

    def do_status(self, cmd: c.Status) -> str:
        f = self.folder(cmd.mailbox)
        values = {
            "MESSAGES": len(f.messages),
            "RECENT": 0,
            "UIDNEXT": f.uidnext,
            "UIDVALIDITY": f.uidvalidity,
            "UNSEEN": sum(1 for m in f.messages.values() if "\\Seen" not in m.flags),
            "HIGHESTMODSEQ": self.script.modseq,
        }
        items = {k: values[k] for k in cmd.items if k in values}
        self.out.append(r.StatusResponse(f.name, items))
        return "STATUS completed"

    def _open(self, cmd: c.SelectBase) -> Folder:
        f = self.folder(cmd.mailbox)
        self.selected, self.view = f, f.uids()
        if cmd.condstore or cmd.qresync is not None:
            if not self.has("CONDSTORE"):
                raise _bad("CONDSTORE is not announced")
            self.condstore = True
        self.out += [
            r.Flags(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")),
            r.UntaggedStatus("OK", r.PermanentFlagsCode(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen",
                                                          "\\Draft", "\\*")), "Flags permitted."),
            r.Exists(len(self.view)),
            r.Recent(0),
            r.UntaggedStatus("OK", r.UidValidityCode(f.uidvalidity), "UIDs valid"),
            r.UntaggedStatus("OK", r.UidNextCode(f.uidnext), "Predicted next UID"),
        ]
        if self.condstore:
            self.out.append(r.UntaggedStatus("OK", r.HighestModseqCode(self.script.modseq), "Highest"))
        q = cmd.qresync
        if q is not None and self.qresync and q.uidvalidity == f.uidvalidity:
            gone = [u for u, m in f.expunged.items() if m > q.modseq]
            if gone:
                self.out.append(r.Vanished(SequenceSet.from_ids(gone), earlier=True))
            for u in self.view:
                m = f.messages[u]
                if m.modseq > q.modseq:
                    items: dict[bytes, r.FetchValue] = {
                        b"UID": u, b"FLAGS": tuple(sorted(m.flags)), b"MODSEQ": m.modseq
                    }
                    self.out.append(r.FetchResponse(self.seq(u), items))
        return f

    def do_select(self, cmd: c.Select) -> tuple[r.ResponseCode, str]:
        self._open(cmd)
        return r.AtomCode("READ-WRITE"), "Select completed"

    def do_examine(self, cmd: c.Examine) -> tuple[r.ResponseCode, str]:
        self._open(cmd)
        return r.AtomCode("READ-ONLY"), "Examine completed"

    def do_close(self, cmd: c.Close) -> str:
        f = self.need_selected()
        self.script.expunge_uids(f.name, [u for u, m in f.messages.items() if "\\Deleted" in m.flags])
        self.selected, self.view = None, []
        return "CLOSE completed"

    def do_unselect(self, cmd: c.Unselect) -> str:
        self.selected, self.view = None, []
        return "UNSELECT completed"

    def do_fetch(self, cmd: c.Fetch) -> str:
        f = self.need_selected()
        uids = self.targets(cmd.sequence_set, cmd.uid)
        if cmd.changedsince is not None:
            if not self.condstore:
                raise _bad("CHANGEDSINCE without CONDSTORE")
            since = cmd.changedsince
            if cmd.vanished:
                largest = self.view[-1] if self.view else 0
                gone = [
                    u for u, m in f.expunged.items() if m > since and cmd.sequence_set.contains(u, largest)
                ]
                if gone:
                    self.out.append(r.Vanished(SequenceSet.from_ids(gone), earlier=True))
            uids = [u for u in uids if f.messages[u].modseq > since]
        for u in uids:
            m = f.messages[u]
            items: dict[bytes, r.FetchValue] = {}
            if cmd.uid:
                items[b"UID"] = u
            for attr in cmd.attributes:
                items[attr.response_name()] = _fetch_value(attr, m)
            if cmd.changedsince is not None:
                items[b"MODSEQ"] = m.modseq
            self.out.append(r.FetchResponse(self.seq(u), items))
        return "FETCH completed"

    def do_store(self, cmd: c.Store) -> str | tuple[r.ResponseCode, str]:
        f = self.need_selected()
        uids = self.targets(cmd.sequence_set, cmd.uid)
        if cmd.unchangedsince is not None and not self.has("CONDSTORE"):
            raise _bad("UNCHANGEDSINCE without CONDSTORE")
        failed: list[int] = []
        flags = {x for x in cmd.flags if x != "\\Recent"}
        for u in uids:
            m = f.messages[u]
            if cmd.unchangedsince is not None and m.modseq > cmd.unchangedsince:
                failed.append(u)
                continue
            before = set(m.flags)
            if cmd.operation == "add":
                m.flags |= flags
            elif cmd.operation == "remove":
                m.flags -= flags
            else:
                m.flags = set(flags)
            if m.flags != before:
                m.modseq = self.script.next_modseq()
            items: dict[bytes, r.FetchValue] = {}
            if cmd.uid:
                items[b"UID"] = u
            if not cmd.silent:
                items[b"FLAGS"] = tuple(sorted(m.flags))
            if self.condstore:
                items[b"MODSEQ"] = m.modseq
            if not cmd.silent or self.condstore:
                self.out.append(r.FetchResponse(self.seq(u), items))
        if failed:
            return r.ModifiedCode(SequenceSet.from_ids(failed)), "Conditional STORE failed"
        return "STORE completed"

    def _copy(self, cmd: c.Copy | c.Move) -> tuple[list[int], list[int], Folder]:
        src = self.need_selected()
        dest = self.folder(cmd.mailbox, trycreate=True)
        uids = self.targets(cmd.sequence_set, cmd.uid)
        new = [self.script.add_message(dest.name, src.messages[u].data, src.messages[u].flags,
                                       src.messages[u].internal_date) for u in uids]
        return uids, new, dest

    def do_copy(self, cmd: c.Copy) -> str | tuple[r.ResponseCode, str]:
        uids, new, dest = self._copy(cmd)
        if self.has("UIDPLUS") and uids:
            code = r.CopyUidCode(dest.uidvalidity, SequenceSet.from_ids(uids), SequenceSet.from_ids(new))
            return code, "Copy completed"
        return "Copy completed"

    def do_move(self, cmd: c.Move) -> str:
        if not self.has("MOVE"):
            raise _bad("MOVE is not announced")
        src = self.need_selected()
        uids, new, dest = self._copy(cmd)
        if self.has("UIDPLUS") and uids:
            code = r.CopyUidCode(dest.uidvalidity, SequenceSet.from_ids(uids), SequenceSet.from_ids(new))
            self.out.append(r.UntaggedStatus("OK", code, "Moved UIDs."))
        self.announce_expunged(self.script.expunge_uids(src.name, uids))
        return "Move completed"

    def do_expunge(self, cmd: c.Expunge) -> str:
        f = self.need_selected()
        candidates = [u for u, m in f.messages.items() if "\\Deleted" in m.flags]
        if cmd.uid:
            if not self.has("UIDPLUS"):
                raise _bad("UID EXPUNGE without UIDPLUS")
            assert cmd.uid_set is not None
            largest = self.view[-1] if self.view else 0
            candidates = [u for u in candidates if cmd.uid_set.contains(u, largest)]
        self.announce_expunged(self.script.expunge_uids(f.name, candidates))
        return "Expunge completed"

    def do_search(self, cmd: c.Search) -> str:
        f = self.need_selected()
        largest = self.view[-1] if self.view else 0
        hits = [
            (u if cmd.uid else i)
            for i, u in enumerate(self.view, 1)
            if u in f.messages
            and all(_search(k, f.messages[u], i, largest, len(self.view)) for k in cmd.criteria)
        ]
        self.out.append(r.Search(tuple(hits)))
        return "Search completed"

    def do_append(self, cmd: c.Append) -> str | tuple[r.ResponseCode, str]:
        f = self.folder(cmd.mailbox, trycreate=True)
        new = [self.script.add_message(f.name, m.data, m.flags, m.internal_date) for m in cmd.messages]
        if self.has("UIDPLUS"):
            return r.AppendUidCode(f.uidvalidity, SequenceSet.from_ids(new)), "Append completed"
        return "Append completed"

    def do_create(self, cmd: c.Create) -> str:
        name = cmd.mailbox.rstrip(DELIMITER)
        if name in self.script.folders:
            raise _Refused("Mailbox already exists", r.AtomCode("ALREADYEXISTS"))
        self.script.create_folder(name, *cmd.special_use)
        return "Create completed"

    def do_delete(self, cmd: c.Delete) -> str:
        f = self.folder(cmd.mailbox)
        if f.name == "INBOX":
            raise _Refused("INBOX can't be deleted.")
        del self.script.folders[f.name]
        return "Delete completed"

    def do_rename(self, cmd: c.Rename) -> str:
        f = self.folder(cmd.mailbox)
        if cmd.new_name in self.script.folders:
            raise _Refused("Target mailbox already exists", r.AtomCode("ALREADYEXISTS"))
        moved = [n for n in list(self.script.folders) if n == f.name or n.startswith(f.name + DELIMITER)]
        for old in moved:
            folder = self.script.folders.pop(old)
            folder.name = cmd.new_name + old[len(f.name):]
            self.script.folders[folder.name] = folder
        return "Rename completed"

    def do_subscribe(self, cmd: c.Subscribe) -> str:
        return "Subscribe completed"

    def do_unsubscribe(self, cmd: c.Unsubscribe) -> str:
        return "Unsubscribe completed"


def _matches(pattern: str, name: str) -> bool:
    # IMAP LIST: * matches anything, % anything but the hierarchy delimiter.
    regex = "".join(
        ".*" if ch == "*" else f"[^{DELIMITER}]*" if ch == "%" else re.escape(ch) for ch in pattern
    )
    return re.fullmatch(regex, name) is not None


def _fetch_value(attr: FetchAttribute, m: Message) -> r.FetchValue:
    name = attr.name
    if name == "UID":
        return m.uid
    if name == "FLAGS":
        return tuple(sorted(m.flags))
    if name == "INTERNALDATE":
        return m.internal_date
    if name == "RFC822.SIZE":
        return len(m.data)
    if name == "MODSEQ":
        return m.modseq
    if name == "RFC822":
        return m.data
    if name == "RFC822.HEADER":
        return m.header()
    if name == "RFC822.TEXT":
        return m.text()
    if name == "BODY" and attr.section is not None and not attr.section.part:
        sec = attr.section
        if sec.text == "":
            content = m.data
        elif sec.text == "HEADER":
            content = m.header()
        elif sec.text == "TEXT":
            content = m.text()
        elif sec.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            content = m.header_fields(sec.fields, exclude=sec.text == "HEADER.FIELDS.NOT")
        else:
            raise _bad(f"cannot FETCH {bytes(attr).decode()}")
        if attr.partial is not None:
            start, length = attr.partial
            content = content[start : start + length]
        return content
    raise _bad(f"cannot FETCH {bytes(attr).decode()}")


def _search(key: s.SearchKey, m: Message, seq: int, largest: int, count: int) -> bool:
    if isinstance(key, s.SearchAll):
        return True
    if isinstance(key, s.SearchUid):
        return key.sequence_set.contains(m.uid, largest)
    if isinstance(key, s.SearchSequence):
        return key.sequence_set.contains(seq, count)
    if isinstance(key, s.SearchFlag):
        return (key.flag in m.flags) == key.present
    if isinstance(key, s.SearchKeywordKey):
        return (key.keyword in m.flags) == key.present
    if isinstance(key, s.SearchHeader):
        return key.value.lower() in m.header_fields([key.field]).lower()
    if isinstance(key, s.SearchNot):
        return not _search(key.key, m, seq, largest, count)
    if isinstance(key, s.SearchOr):
        return _search(key.left, m, seq, largest, count) or _search(key.right, m, seq, largest, count)
    raise _bad(f"cannot SEARCH {bytes(key).decode()}")


class ScriptedUpstream:
    """The server: ``async with ScriptedUpstream(script) as up: ... up.port``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def drop_all(self) -> None:
        """Cut every open connection now (the hoster restarted)."""
        for w in list(self._writers):
            w.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        session = _Session(self.script, self.connections)
        self._writers.add(writer)
        framer = CommandFramer(literal_plus="LITERAL+" in self.script.capabilities)
        idling: str | None = None
        caps = r.CapabilityCode(tuple(sorted(self.script.capabilities)))
        try:
            writer.write(write_response(r.UntaggedStatus("OK", caps, "scripted upstream ready.")))
            while data := await reader.read(65536):
                framer.feed(data)
                while (event := framer.next_event()) is not None:
                    if isinstance(event, NeedContinuation):
                        writer.write(write_response(r.ContinuationRequest("OK")))
                        continue
                    if isinstance(event, CodecError):
                        writer.write(write_response(r.TaggedResponse("*", "BAD", None, str(event))))
                        continue
                    assert isinstance(event, Frame)
                    if idling is not None:
                        if parse_idle_done(event.data):
                            done = r.TaggedResponse(idling, "OK", None, "Idle completed")
                            writer.write(write_response(done))
                        idling = None
                        continue
                    answer = await self._answer(session, event.data)
                    if answer is None:
                        return  # the script cut the connection
                    writer.write(answer)
                    if isinstance(session.last, c.Idle):
                        idling = session.last.tag
                        framer.raw_line()
                    if isinstance(session.last, c.Logout):
                        await writer.drain()
                        return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, session: _Session, frame: bytes) -> bytes | None:
        session.last = None
        try:
            cmd = parse_command(frame)
        except CodecError as exc:
            tag = getattr(exc, "tag", None) or "*"
            text = f"scripted upstream cannot parse: {exc}"
            return write_response(r.TaggedResponse(tag, "BAD", None, text))
        uid = bool(getattr(cmd, "uid", False)) and cmd.name in _UID_FORMS
        key = ("UID " if uid else "") + cmd.name
        line = frame.split(b"\r\n", 1)[0].split(b" ", 1)[1].decode("utf-8", "replace")
        if isinstance(cmd, c.Login):
            line = f"LOGIN {cmd.user} <password>"
        self.script.log.append(Received(session.number, key, line, cmd))
        session.last = cmd
        rules = self.script._take(key)
        for rule in rules:
            if rule.action == "delay":
                await asyncio.sleep(rule.seconds)
        if any(rule.action == "drop-before" for rule in rules):
            return None
        refusal = next((rule for rule in rules if rule.action == "refuse"), None)
        if isinstance(cmd, c.Idle):
            return write_response(r.ContinuationRequest("idling"))
        session.out = []
        if refusal is not None:
            code, text = _code_and_text(refusal.text)
            tagged = r.TaggedResponse(cmd.tag, "NO", code, text)
        else:
            try:
                tagged = session.execute(cmd)
            except _Refused as exc:
                tagged = r.TaggedResponse(cmd.tag, exc.status, exc.code, exc.text)
        if any(rule.action == "drop-after" for rule in rules):
            return None
        return b"".join(write_response(x) for x in [*session.out, tagged])
