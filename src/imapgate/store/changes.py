"""Row-level changes of the replica's tables, as typed values.

A replica transition (``replica/``) describes what it changed as a list of
these; ``repository.StoreRepository`` turns them into SQL in one
transaction.  They name rows by mailbox id, UID and user id only, so the same
values can travel to another node (the PostgreSQL change bus) and be applied
there.  No SQL here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MessageRow:
    uid: int
    internal_date: float
    tz_offset: int
    size: int
    flags: tuple[str, ...]
    modseq: int
    message_id: str | None


@dataclass(frozen=True, slots=True)
class InsertMailbox:
    mailbox_id: int
    name: str
    delimiter: str | None
    attributes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpdateMailbox:
    """Set columns of the mailbox row (name, delimiter, attributes, uidvalidity,
    uidnext, upstream_modseq, modseq, seen_mode, synced)."""

    mailbox_id: int
    values: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class DeleteMailbox:
    """The mailbox row and every message, private and expunged row of it."""

    mailbox_id: int


@dataclass(frozen=True, slots=True)
class ClearMessages:
    """Every message, private flag, private modseq and expunged row of a mailbox
    (its UIDVALIDITY changed)."""

    mailbox_id: int


@dataclass(frozen=True, slots=True)
class AddMessages:
    mailbox_id: int
    rows: tuple[MessageRow, ...]


@dataclass(frozen=True, slots=True)
class SetSharedFlags:
    """Messages' shared flags, grouped by the new flag combination, at ``modseq``."""

    mailbox_id: int
    by_flags: Mapping[tuple[str, ...], tuple[int, ...]]
    modseq: int


@dataclass(frozen=True, slots=True)
class ExpungeMessages:
    """Messages gone at ``modseq``: their rows and private modseqs dropped, an
    expunged row each (for VANISHED)."""

    mailbox_id: int
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class TrimExpunged:
    mailbox_id: int
    below_modseq: int


@dataclass(frozen=True, slots=True)
class WritePrivateSets:
    """One user's private flag sets (encoded UID range sets; an empty set is
    written too: its row marks the state as initialised)."""

    mailbox_id: int
    user_id: int
    sets: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class SetPrivateModseqs:
    mailbox_id: int
    user_id: int
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class CompactPrivateModseqs:
    """One user's private modseqs at or below ``floor`` folded into the floor row
    (``floor_uid``)."""

    mailbox_id: int
    user_id: int
    floor: int
    floor_uid: int


@dataclass(frozen=True, slots=True)
class DropPrivateFlag:
    """Every user's private set of ``flag`` in a mailbox (read mode switched)."""

    mailbox_id: int
    flag: str


@dataclass(frozen=True, slots=True)
class RestampMessages:
    """Every message of a mailbox at ``modseq`` (their flags may look different now)."""

    mailbox_id: int
    modseq: int


@dataclass(frozen=True, slots=True)
class PrivateRows:
    """One user's private state in one mailbox, whole."""

    sets: Mapping[str, bytes]
    modseqs: Mapping[int, int]
    floor: int


@dataclass(frozen=True, slots=True)
class ParkMailboxName:
    """Give the mailbox row a name no folder has (``:heal:<id>``), so a heal can
    write names that moved between rows without breaking their uniqueness."""

    mailbox_id: int


@dataclass(frozen=True, slots=True)
class ReplaceMailbox:
    """A mailbox's rows as the replica holds them (the heal after the store was
    unwritable): its row (inserted when missing), every message and expunged
    row, and the private rows of the users in ``private`` (others' rows are
    left alone; a removed user's are skipped).  The content cache and search
    index rows of the folder stay."""

    mailbox_id: int
    values: Mapping[str, object]
    rows: tuple[MessageRow, ...]
    expunged: Mapping[int, int]
    private: Mapping[int, PrivateRows]
    floor_uid: int


@dataclass(frozen=True, slots=True)
class SetMeta:
    key: str
    value: str


RowChange = (
    InsertMailbox
    | UpdateMailbox
    | DeleteMailbox
    | ClearMessages
    | AddMessages
    | SetSharedFlags
    | ExpungeMessages
    | TrimExpunged
    | WritePrivateSets
    | SetPrivateModseqs
    | CompactPrivateModseqs
    | DropPrivateFlag
    | RestampMessages
    | ParkMailboxName
    | ReplaceMailbox
    | SetMeta
)


@dataclass(slots=True)
class RowChanges:
    """The row changes of one transition, in order."""

    items: list[RowChange] = field(default_factory=list)

    def add(self, change: RowChange) -> None:
        self.items.append(change)

    def mailbox_ids(self) -> set[int]:
        return {c.mailbox_id for c in self.items if not isinstance(c, SetMeta)}

    def __bool__(self) -> bool:
        return bool(self.items)
