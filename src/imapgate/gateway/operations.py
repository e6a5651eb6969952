"""Typed operations: every read that needs a right and every change, as a value.

A front end (IMAP session, SMTP submission, web dashboard, CLI) builds one of
these and hands it to ``Service.execute``; nothing else reaches the replica,
the team state or upstream.  The rights an operation needs come from one
table (``rights.required``), and the conflict check is told the operation
itself, not a free string, so claims (issue 12) can decide per kind.

Operations on a folder a session has open carry its ``MailboxIndex`` (the
session's view is bound to that object); the others carry folder names, as a
client names them.  One value per command, never one per message: the FETCH
and flag-listing hot paths build at most one per round of messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from ..protocol.fetch_items import FetchAttribute
from ..protocol.search import SearchKey
from ..replica.mailbox import MailboxIndex

StoreMode = Literal["add", "remove", "set"]
#: One message of an APPEND: its bytes, flags and internal date (None: now).
AppendMessage = tuple[bytes, Sequence[str], datetime | None]
#: A folder's read state: "private" (per user), "shared", or None (the config's default).
ReadMode = Literal["private", "shared"] | None
#: Content items by (uid, cache key); None: NIL.
Content = dict[tuple[int, bytes], bytes | None]

R = TypeVar("R")


# --- results ---------------------------------------------------------------------------------
@dataclass
class StoreResult:
    changed: list[int]
    modified: list[int]  # failed UNCHANGEDSINCE
    #: Some messages named were gone (a colleague moved or deleted them): why, for
    #: an untagged ``NO [EXPUNGEISSUED]`` before the OK (gateway/departures.py).
    gone: str | None = None


@dataclass
class CopyResult:
    """UIDs of a COPY/MOVE (``source`` -> ``dest``) or an APPEND (``dest`` only),
    in the destination's ``uidvalidity``; empty when upstream did not say."""

    uidvalidity: int
    source: list[int]
    dest: list[int]
    #: Some messages named were gone: why (as ``StoreResult.gone``).
    gone: str | None = None


@dataclass(frozen=True)
class FolderList:
    """The folders an actor may see, with their attributes; ``subscribed``: which
    of them (and which other names) the actor counts as subscribed, when asked."""

    folders: Mapping[str, tuple[str, ...]]
    subscribed: frozenset[str] = field(default_factory=frozenset)


# --- operations ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Operation(Generic[R]):
    """Base of all operations; ``R`` is what ``Service.execute`` returns for it.
    ``writes``: the operation changes the replica, the team state or upstream,
    so it is refused while the store is known unwritable (nothing could be
    recorded)."""

    writes: ClassVar[bool] = False


# --- reads ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ListFolders(Operation[FolderList]):
    """The folders the actor may see (LIST, LSUB, the dashboard's folder list);
    ``subscriptions``: also the actor's subscribed names."""

    subscriptions: bool = False


@dataclass(frozen=True, eq=False)
class MyRights(Operation[str]):
    """The actor's rights on ``mailbox`` (RFC 4314 MYRIGHTS; the dashboard asks it
    to decide what to show)."""

    mailbox: str


@dataclass(frozen=True, eq=False)
class Status(Operation[MailboxIndex]):
    """STATUS of ``mailbox``: returns its synchronised index, whose counts the
    front end reads for the actor."""

    mailbox: str


@dataclass(frozen=True, eq=False)
class Select(Operation[MailboxIndex]):
    """SELECT (``readonly`` False) or EXAMINE: returns the synchronised index."""

    mailbox: str
    readonly: bool = False


@dataclass(frozen=True, eq=False)
class EnsureSynced(Operation[MailboxIndex]):
    """Open ``mailbox`` for reading outside IMAP (the dashboard): returns the
    synchronised index."""

    mailbox: str


@dataclass(frozen=True, eq=False)
class ReadMessages(Operation[None]):
    """Read the replica's items of messages in an open folder: FETCH of UID,
    FLAGS, MODSEQ, sizes and dates, SEARCH on replica keys.  No upstream."""

    mailbox: MailboxIndex


@dataclass(frozen=True, eq=False)
class FetchContent(Operation[Content]):
    """Content items (BODY[...], ENVELOPE, BODYSTRUCTURE, BINARY...) of ``uids``:
    returns {(uid, cache key): bytes or None}, from the cache or upstream."""

    mailbox: MailboxIndex
    uids: Sequence[int]
    attributes: Sequence[FetchAttribute]


@dataclass(frozen=True, eq=False)
class ExplainGone(Operation[str]):
    """Why ``uids`` of an open folder are gone (who moved or deleted them, where
    to, when), out of ``total`` messages a command named: the text of its
    ``NO [EXPUNGEISSUED]`` (gateway/departures.py)."""

    mailbox: MailboxIndex
    uids: Sequence[int]
    total: int


@dataclass(frozen=True, eq=False)
class SearchContent(Operation[set[int]]):
    """UIDs matching one content criterion (text, header, sent date): from the
    search index where it can answer, else upstream."""

    mailbox: MailboxIndex
    key: SearchKey
    charset: str | None = None


# --- changes ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StoreFlags(Operation[StoreResult]):
    """STORE: ``mode`` the ``flags`` of ``uids`` (shared ones upstream, private
    ones per user).  ``unchangedsince``: CONDSTORE's UNCHANGEDSINCE."""

    writes: ClassVar[bool] = True
    mailbox: MailboxIndex
    uids: Sequence[int]
    mode: StoreMode
    flags: Sequence[str]
    unchangedsince: int | None = None


@dataclass(frozen=True, eq=False)
class MarkSeen(Operation[list[int]]):
    """The implicit \\Seen of a non-PEEK body fetch (IMAP FETCH BODY[], opening a
    message on the dashboard).  Without the ``s`` right nothing is set and the
    read itself goes on (RFC 4314 §4)."""

    writes: ClassVar[bool] = True
    mailbox: MailboxIndex
    uids: Sequence[int]


@dataclass(frozen=True, eq=False)
class Expunge(Operation[list[int]]):
    """EXPUNGE (``uids`` None) or UID EXPUNGE of the messages flagged \\Deleted."""

    writes: ClassVar[bool] = True
    mailbox: MailboxIndex
    uids: Sequence[int] | None = None


@dataclass(frozen=True, eq=False)
class Copy(Operation[CopyResult]):
    """COPY ``uids`` of ``mailbox`` to the folder named ``dest``."""

    writes: ClassVar[bool] = True
    mailbox: MailboxIndex
    uids: Sequence[int]
    dest: str


@dataclass(frozen=True, eq=False)
class Move(Operation[CopyResult]):
    """MOVE ``uids`` of ``mailbox`` to the folder named ``dest`` (native MOVE, or
    COPY + \\Deleted + expunge recorded as an intent first)."""

    writes: ClassVar[bool] = True
    mailbox: MailboxIndex
    uids: Sequence[int]
    dest: str


@dataclass(frozen=True, eq=False)
class Append(Operation[CopyResult]):
    """APPEND ``messages`` to the folder named ``mailbox``."""

    writes: ClassVar[bool] = True
    mailbox: str
    messages: Sequence[AppendMessage]


@dataclass(frozen=True, eq=False)
class Create(Operation[None]):
    """CREATE ``mailbox`` (with SPECIAL-USE attributes); the creator's own
    subscription decision is recorded with it (RFC 3501: CREATE does not subscribe)."""

    writes: ClassVar[bool] = True
    mailbox: str
    special_use: Sequence[str] = ()


@dataclass(frozen=True, eq=False)
class Delete(Operation[None]):
    """DELETE ``mailbox``."""

    writes: ClassVar[bool] = True
    mailbox: str


@dataclass(frozen=True, eq=False)
class Rename(Operation[None]):
    """RENAME ``mailbox`` to ``new_name``."""

    writes: ClassVar[bool] = True
    mailbox: str
    new_name: str


@dataclass(frozen=True, eq=False)
class Subscribe(Operation[None]):
    """SUBSCRIBE: the actor's "yes" for ``mailbox``."""

    writes: ClassVar[bool] = True
    mailbox: str


@dataclass(frozen=True, eq=False)
class Unsubscribe(Operation[None]):
    """UNSUBSCRIBE: the actor's "no" for ``mailbox``."""

    writes: ClassVar[bool] = True
    mailbox: str


@dataclass(frozen=True, eq=False)
class SetReadMode(Operation[None]):
    """Switch ``mailbox`` between private and shared read state (None: back to
    the configured default)."""

    writes: ClassVar[bool] = True
    mailbox: str
    mode: ReadMode


# --- folder permissions (RFC 4314) ------------------------------------------------------------
@dataclass(frozen=True)
class AclEntryView:
    """One entry of a folder's ACL as GETACL shows it: ``identifier`` as written
    (``-`` for a negative one, ``$`` for a group), ``rights`` in wire form."""

    identifier: str
    rights: str


@dataclass(frozen=True, eq=False)
class GetAcl(Operation[tuple[AclEntryView, ...]]):
    """GETACL: the folder's entries (the default as one ``authenticated`` entry when
    it has none of its own)."""

    mailbox: str


@dataclass(frozen=True, eq=False)
class ListRights(Operation[tuple[str, tuple[str, ...]]]):
    """LISTRIGHTS: (rights ``identifier`` always has, rights grantable one by one)."""

    mailbox: str
    identifier: str


@dataclass(frozen=True, eq=False)
class SetAcl(Operation[str]):
    """SETACL: replace (``lr``), add to (``+lr``) or take from (``-w``) the rights of
    ``identifier`` on ``mailbox``; returns the entry's new rights."""

    writes: ClassVar[bool] = True
    mailbox: str
    identifier: str
    rights: str


@dataclass(frozen=True, eq=False)
class DeleteAcl(Operation[bool]):
    """DELETEACL: remove ``identifier``'s entry; whether there was one."""

    writes: ClassVar[bool] = True
    mailbox: str
    identifier: str


@dataclass(frozen=True, eq=False)
class AddNote(Operation[Any]):
    """An internal note of the team on message ``uid`` of ``mailbox`` (the dashboard):
    kept in the gateway's store with its journal entry, never sent, never upstream.
    Returns the kept ``team.notes.Note``."""

    writes: ClassVar[bool] = True
    mailbox: MailboxIndex
    uid: int
    text: str


#: Every operation type, for the rights table's completeness test.
ALL: tuple[type[Operation[Any]], ...] = (
    AddNote,
    ListFolders,
    MyRights,
    Status,
    Select,
    EnsureSynced,
    ReadMessages,
    FetchContent,
    ExplainGone,
    SearchContent,
    StoreFlags,
    MarkSeen,
    Expunge,
    Copy,
    Move,
    Append,
    Create,
    Delete,
    Rename,
    Subscribe,
    Unsubscribe,
    SetReadMode,
    GetAcl,
    ListRights,
    SetAcl,
    DeleteAcl,
)
