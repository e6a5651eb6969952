"""Typed IMAP client commands: one frozen dataclass per command.

These are the values ``command_parser.parse_command`` returns (server side)
and ``command_writer.write_command`` writes (upstream client side).  They hold
meaning, not wire form: mailbox names are decoded ``str``, flags canonical
``str``, sets ``SequenceSet``, dates ``datetime``/``date``.  Where the wire has
two spellings of one meaning (quoted or atom, ``FETCH 1 FLAGS`` or
``FETCH 1 (FLAGS)``) the writer picks one canonical form.

Coverage: IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051) plus IDLE, NAMESPACE,
UIDPLUS, CONDSTORE/QRESYNC, ENABLE, MOVE, ESEARCH/SEARCHRES, LIST-EXTENDED,
LIST-STATUS, SPECIAL-USE, ID, ACL, NOTIFY, UNSELECT, BINARY, SASL-IR,
STATUS=SIZE, SORT, THREAD and MULTIAPPEND.

Credentials (LOGIN password, AUTHENTICATE initial response) never appear in
``repr()``: commands are logged, and logs must not carry secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal, TypeAlias

from .fetch_items import FetchAttribute
from .search import SearchKey
from .sequence import SequenceSet

StoreOperation: TypeAlias = Literal["set", "add", "remove"]


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command; ``tag`` is the client's tag (e.g. ``a001``)."""

    tag: str
    #: The command word as on the wire (without ``UID``).
    name: ClassVar[str] = ""


# --- any state (RFC 9051 §6.1) ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class Capability(Command):
    name = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    name = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    name = "LOGOUT"


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971 ``ID ("name" "x" ...)`` or ``ID NIL`` (``parameters`` None)."""

    parameters: tuple[tuple[str, str | None], ...] | None = None
    name = "ID"


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """RFC 5161 ``ENABLE cap...`` (capability names upper-cased)."""

    capabilities: tuple[str, ...] = ()
    name = "ENABLE"


# --- not authenticated (§6.2) -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    name = "STARTTLS"


@dataclass(frozen=True, slots=True, repr=False)
class Login(Command):
    """``LOGIN user password``.  The password keeps its exact octets (it is
    hashed or forwarded, never shown)."""

    user: str
    password: bytes
    name = "LOGIN"

    def __repr__(self) -> str:
        return f"Login(tag={self.tag!r}, user={self.user!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class Authenticate(Command):
    """``AUTHENTICATE mech [initial-response]`` (RFC 4959 SASL-IR).

    ``initial_response`` is the base64-decoded data: None when absent, ``b""``
    for ``=`` (an empty initial response)."""

    mechanism: str
    initial_response: bytes | None = None
    name = "AUTHENTICATE"

    def __repr__(self) -> str:
        ir = "None" if self.initial_response is None else "<hidden>"
        return f"Authenticate(tag={self.tag!r}, mechanism={self.mechanism!r}, initial_response={ir})"


# --- authenticated (§6.3) -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QresyncParameters:
    """RFC 7162 ``QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])``."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    #: (known-sequence-set, known-uid-set): sequence numbers and their UIDs.
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class SelectBase(Command):
    """SELECT / EXAMINE with the RFC 7162 select-params."""

    mailbox: str
    condstore: bool = False
    qresync: QresyncParameters | None = None


@dataclass(frozen=True, slots=True)
class Select(SelectBase):
    name = "SELECT"


@dataclass(frozen=True, slots=True)
class Examine(SelectBase):
    name = "EXAMINE"


@dataclass(frozen=True, slots=True)
class Create(Command):
    """``CREATE name [(USE (\\Drafts ...))]`` (RFC 6154 special-use)."""

    mailbox: str
    special_use: tuple[str, ...] = ()
    name = "CREATE"


@dataclass(frozen=True, slots=True)
class Delete(Command):
    mailbox: str
    name = "DELETE"


@dataclass(frozen=True, slots=True)
class Rename(Command):
    mailbox: str
    new_name: str
    name = "RENAME"


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    mailbox: str
    name = "SUBSCRIBE"


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    mailbox: str
    name = "UNSUBSCRIBE"


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, with RFC 5258 LIST-EXTENDED and RFC 5819 LIST-STATUS.

    ``selection_options`` is None when the client sent none (not even ``()``);
    ``patterns`` has one element for the basic form.  ``return_options`` is
    None without ``RETURN``; it holds ``"STATUS"`` in its place when the client
    asked for ``STATUS (items)``, whose items are ``status_items``."""

    reference: str
    patterns: tuple[str, ...]
    selection_options: tuple[str, ...] | None = None
    return_options: tuple[str, ...] | None = None
    status_items: tuple[str, ...] = ()
    name = "LIST"


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    reference: str
    pattern: str
    name = "LSUB"


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    name = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """``STATUS name (MESSAGES UIDNEXT ... SIZE HIGHESTMODSEQ)``."""

    mailbox: str
    items: tuple[str, ...]
    name = "STATUS"


@dataclass(frozen=True, slots=True, repr=False)
class AppendMessage:
    """One message of APPEND (several with RFC 3502 MULTIAPPEND).

    ``binary`` marks RFC 3516 literal8 (``~{n}``), needed when data has NUL."""

    data: bytes
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    binary: bool = False

    def __repr__(self) -> str:
        # Message content is private and may be large: log its size only.
        return (
            f"AppendMessage(<{len(self.data)} bytes>, flags={self.flags!r}, "
            f"internal_date={self.internal_date!r}, binary={self.binary!r})"
        )


@dataclass(frozen=True, slots=True)
class Append(Command):
    mailbox: str
    messages: tuple[AppendMessage, ...]
    name = "APPEND"


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """RFC 2177 IDLE; it ends with the untagged line ``DONE``
    (``command_parser.parse_idle_done``)."""

    name = "IDLE"


# --- ACL (RFC 4314) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SetAcl(Command):
    """``SETACL mailbox identifier [+-]rights``."""

    mailbox: str
    identifier: str
    rights: str
    name = "SETACL"


@dataclass(frozen=True, slots=True)
class DeleteAcl(Command):
    mailbox: str
    identifier: str
    name = "DELETEACL"


@dataclass(frozen=True, slots=True)
class GetAcl(Command):
    mailbox: str
    name = "GETACL"


@dataclass(frozen=True, slots=True)
class ListRights(Command):
    mailbox: str
    identifier: str
    name = "LISTRIGHTS"


@dataclass(frozen=True, slots=True)
class MyRights(Command):
    mailbox: str
    name = "MYRIGHTS"


# --- NOTIFY (RFC 5465) ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """An event name (``MessageNew``, ``FlagChange``, ...; known names in RFC
    spelling, others as sent) with MessageNew's optional fetch attributes."""

    event: str
    fetch_attributes: tuple[FetchAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """``(filter [mailboxes] events)``: ``filter`` upper-case (SELECTED,
    SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES);
    ``mailboxes`` only for SUBTREE/MAILBOXES; no events means ``NONE``."""

    filter: str
    events: tuple[NotifyEvent, ...] = ()
    mailboxes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NotifyNone(Command):
    name = "NOTIFY"


@dataclass(frozen=True, slots=True)
class NotifySet(Command):
    groups: tuple[NotifyGroup, ...]
    status: bool = False
    name = "NOTIFY"


# --- selected (§6.4) ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Check(Command):
    name = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    name = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    name = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE, or RFC 4315 ``UID EXPUNGE set`` (``uid`` True, ``uid_set``)."""

    uid: bool = False
    uid_set: SequenceSet | None = None
    name = "EXPUNGE"


@dataclass(frozen=True, slots=True)
class Search(Command):
    """``[UID] SEARCH [RETURN (opts)] [CHARSET cs] keys``.

    ``criteria`` is the top-level key list (all must match).  ``return_options``
    is None for a plain SEARCH and a tuple (maybe empty: ``RETURN ()``) for
    ESEARCH (RFC 4731: MIN MAX ALL COUNT; RFC 5182: SAVE)."""

    criteria: tuple[SearchKey, ...]
    uid: bool = False
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    name = "SEARCH"


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """``[UID] FETCH set items [(CHANGEDSINCE n [VANISHED])]``.

    ``attributes`` always holds the items; when the client used a macro
    (ALL/FAST/FULL) ``macro`` names it and ``attributes`` is its expansion."""

    sequence_set: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    uid: bool = False
    macro: str | None = None
    changedsince: int | None = None
    vanished: bool = False
    name = "FETCH"


@dataclass(frozen=True, slots=True)
class Store(Command):
    """``[UID] STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] (flags)``."""

    sequence_set: SequenceSet
    operation: StoreOperation
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchangedsince: int | None = None
    name = "STORE"


@dataclass(frozen=True, slots=True)
class Copy(Command):
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False
    name = "COPY"


@dataclass(frozen=True, slots=True)
class Move(Command):
    """RFC 6851 ``[UID] MOVE set mailbox``."""

    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False
    name = "MOVE"


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """One RFC 5256 sort key (ARRIVAL CC DATE FROM SIZE SUBJECT TO, RFC 5957
    DISPLAYFROM DISPLAYTO), optionally REVERSE."""

    key: str
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort(Command):
    sort_criteria: tuple[SortCriterion, ...]
    charset: str
    criteria: tuple[SearchKey, ...]
    uid: bool = False
    name = "SORT"


@dataclass(frozen=True, slots=True)
class Thread(Command):
    """RFC 5256 ``[UID] THREAD algorithm charset keys`` (algorithm upper-case)."""

    algorithm: str
    charset: str
    criteria: tuple[SearchKey, ...]
    uid: bool = False
    name = "THREAD"


AnyCommand: TypeAlias = (
    Capability | Noop | Logout | Id | Enable | StartTLS | Login | Authenticate | Select | Examine
    | Create | Delete | Rename | Subscribe | Unsubscribe | List | Lsub | Namespace | Status | Append
    | Idle | SetAcl | DeleteAcl | GetAcl | ListRights | MyRights | NotifyNone | NotifySet | Check
    | Close | Unselect | Expunge | Search | Fetch | Store | Copy | Move | Sort | Thread
)
