"""Virtual folders: per-user, read-only folders made of messages kept elsewhere.

A virtual folder ("Recovered" of issue 13, "Claimed by me" of the claims
feature) is listed to every team member like a folder, but its messages are
chosen per user by a ``VirtualFolderProvider`` and live in real folders of the
replica (the hidden recovery folder, the team's folders).  The service layer
(``Service.execute``) answers LIST/LSUB/STATUS/SELECT/EXAMINE/FETCH/SEARCH on
it from a ``VirtualIndex`` — a ``MailboxIndex`` of its own UIDVALIDITY and the
provider's stable UIDs, built from the source messages' records — so the
server layer serves it with the same code as any folder (read-only view).
Content (FETCH BODY[], SEARCH TEXT) is read from each message's source folder.

Every write to it is refused (``refusal``): STORE/EXPUNGE with NO [READ-ONLY]
(the view is read-only), APPEND/COPY/MOVE into it, CREATE/DELETE/RENAME of it
with NO [CANNOT].  COPY or MOVE *out* of it calls the provider's ``copy_out``
(for "Recovered": restore), which decides what that means.

A provider's contract (small on purpose):

- ``name``: the folder's name as listed (one level, no delimiter);
- ``uidvalidity(actor)``: stays the same as long as the UIDs it hands out keep
  naming the same messages for that actor;
- ``messages(actor)``: the folder's content for ``actor`` now, each with a UID
  that never names another message under that UIDVALIDITY (ascending order is
  not required), its source folder and UID there, and the flags to show;
- ``copy_out(actor, messages, dest, move)``: COPY/MOVE of those messages to
  the real folder ``dest``; returns a ``CopyResult`` (may be empty).  After a
  MOVE the messages leave the virtual folder (the service announces EXPUNGE).

The index is a snapshot taken at SELECT/EXAMINE/STATUS: messages arriving in
the virtual folder while it is selected show at the next SELECT.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..replica.events import MessagesExpunged
from ..replica.mailbox import MailboxIndex, MessageRecord, intern_flags
from ..replica.replica import Replica
from . import operations as ops
from .errors import OperationError
from .operations import CopyResult
from .policy import READ, Actor, Policy

#: The attributes a virtual folder is listed with: it holds no other folders.
VIRTUAL_ATTRIBUTES = ("\\HasNoChildren",)
#: Operations that only read the folder they name: answered for a virtual folder
#: (which messages the actor may see there is the provider's decision).
READS: tuple[type[ops.Operation[Any]], ...] = (
    ops.MyRights, ops.Status, ops.Select, ops.EnsureSynced, ops.ReadMessages,
    ops.FetchContent, ops.SearchContent, ops.MarkSeen, ops.Subscribe, ops.Unsubscribe,
)  # fmt: skip
#: Virtual indexes get negative ids: never a replica folder's id, so no store row,
#: content cache entry or replica event is ever confused with one of a real folder.
_FIRST_ID = -1_000_000


@dataclass(frozen=True)
class VirtualMessage:
    """One message of a virtual folder: ``uid`` there, kept as ``source_uid`` in
    the real folder ``source``; ``flags``: what the folder shows (None: the
    source's shared flags)."""

    uid: int
    source: str
    source_uid: int
    flags: tuple[str, ...] | None = None


class VirtualFolderProvider(Protocol):
    """What a virtual folder is made of (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def uidvalidity(self, actor: Actor) -> int: ...

    def messages(self, actor: Actor) -> Sequence[VirtualMessage]: ...

    async def copy_out(
        self, actor: Actor, messages: Sequence[VirtualMessage], dest: str, move: bool
    ) -> CopyResult: ...


class VirtualFolderBase(abc.ABC):
    """What every provider shares: its name, a UIDVALIDITY asked of its store once
    (``new_uidvalidity``), and the read check that decides which messages a member
    is shown (a folder the member may not read lists nothing of it)."""

    def __init__(self, name: str, policy: Policy) -> None:
        self._name = name
        self.policy = policy
        self._uidvalidity: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @abc.abstractmethod
    def new_uidvalidity(self) -> int:
        """The folder's UIDVALIDITY, one per store (asked once)."""

    def uidvalidity(self, actor: Actor) -> int:
        if self._uidvalidity is None:
            self._uidvalidity = self.new_uidvalidity()
        return self._uidvalidity

    def may_read(self, actor: Actor, name: str) -> bool:
        try:
            self.policy.authorize(actor, name, READ)
        except OperationError:
            return False
        return True


@dataclass(eq=False)
class VirtualIndex(MailboxIndex):
    """The index of one virtual folder for one user (built by ``VirtualFolders``)."""

    provider: VirtualFolderProvider | None = None
    #: The provider's messages by virtual UID.
    sources: dict[int, VirtualMessage] = field(default_factory=dict)

    def messages(self, uids: Sequence[int]) -> list[VirtualMessage]:
        return [self.sources[u] for u in uids if u in self.sources]


class VirtualFolders:
    """The registered virtual folders, and the per-user indexes built from them."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._providers: dict[str, VirtualFolderProvider] = {}
        #: One id per (folder, user), so a user's views share the index's events.
        self._ids: dict[tuple[str, int], int] = {}

        #: Real folders no client may see or name (the hidden recovery folder).
        self.hidden: set[str] = set()

    def register(self, provider: VirtualFolderProvider) -> None:
        self._providers[provider.name] = provider

    def hide(self, name: str) -> None:
        """``name`` is left out of every listing and answered as missing."""
        self.hidden.add(name)

    def admit(self, op: ops.Operation[Any]) -> bool:
        """Whether ``op`` names a virtual folder (True: the rights of that name are
        not asked of the policy).  Raises for what cannot be done: a write to a
        virtual folder, any operation naming a hidden folder."""
        virtual = False
        for role, name in _names(op):
            if name in self.hidden:
                code = "TRYCREATE" if role == "dest" else "NONEXISTENT"
                raise OperationError(f"mailbox {name!r} does not exist", code)
            if name not in self._providers:
                continue
            virtual = True
            if isinstance(op, READS) or (role == "source" and isinstance(op, ops.Copy | ops.Move)):
                continue
            if isinstance(op, ops.StoreFlags | ops.Expunge):
                raise OperationError(f"{name} is a read-only virtual folder", "READ-ONLY")
            raise refusal(name, _verb(op))
        return virtual

    def names(self) -> list[str]:
        return sorted(self._providers)

    def is_virtual(self, name: str | None) -> bool:
        return name is not None and name in self._providers

    def index(self, actor: Actor, name: str) -> VirtualIndex:
        """A fresh snapshot of virtual folder ``name`` as ``actor`` sees it."""
        provider = self._providers[name]
        key = (name, actor.user_id)
        mailbox_id = self._ids.setdefault(key, _FIRST_ID - len(self._ids))
        sources: dict[int, VirtualMessage] = {}
        records: dict[int, MessageRecord] = {}
        for vm in provider.messages(actor):
            src = self.replica.get(vm.source)
            rec = src.records.get(vm.source_uid) if src is not None else None
            if rec is None:
                continue  # not (or no longer) in the replica: nothing to serve
            flags = intern_flags(vm.flags if vm.flags is not None else rec.flags)
            records[vm.uid] = MessageRecord(
                vm.uid, flags, 1, rec.internal_date, rec.tz_offset, rec.size, rec.message_id
            )
            sources[vm.uid] = vm
        uids = sorted(records)
        return VirtualIndex(
            id=mailbox_id,
            name=name,
            delimiter=self.replica.delimiter(),
            attributes=VIRTUAL_ATTRIBUTES,
            uidvalidity=provider.uidvalidity(actor),
            uidnext=(uids[-1] + 1) if uids else 1,
            modseq=1,
            shared_highest=1,
            upstream_modseq=0,
            # The provider's flags already are this user's: no per-user state on top.
            seen_mode="shared",
            synced=True,
            uids=uids,
            records=records,
            provider=provider,
            sources=sources,
        )

    async def copy_out(
        self, actor: Actor, mb: VirtualIndex, uids: Sequence[int], dest: str, move: bool
    ) -> CopyResult:
        """COPY/MOVE out of a virtual folder: the provider's, then (MOVE) the
        messages leave this user's open views of it."""
        if self.is_virtual(dest):
            raise refusal(dest, "COPY" if not move else "MOVE")
        assert mb.provider is not None
        result = await mb.provider.copy_out(actor, mb.messages(uids), dest, move)
        if move:
            gone = sorted(u for u in uids if u in mb.records)
            records = tuple(mb.records[u] for u in gone)
            mb.modseq += 1
            mb.remove(set(gone), mb.modseq)
            self.replica.hub.publish(MessagesExpunged(mb.id, tuple(gone), mb.modseq, records))
        return result


def _names(op: ops.Operation[Any]) -> list[tuple[str, str]]:
    """The folders ``op`` names, each with its role (source, dest, new)."""
    out: list[tuple[str, str]] = []
    mailbox = getattr(op, "mailbox", None)
    if isinstance(mailbox, MailboxIndex):
        out.append(("source", mailbox.name))
    elif isinstance(mailbox, str):
        out.append(("source", mailbox))
    dest = getattr(op, "dest", None)
    if isinstance(dest, str):
        out.append(("dest", dest))
    new_name = getattr(op, "new_name", None)
    if isinstance(new_name, str):
        out.append(("new", new_name))
    if isinstance(op, ops.Append):
        out = [("dest", op.mailbox)]
    return out


def _verb(op: ops.Operation[Any]) -> str:
    return type(op).__name__.upper()


def refusal(name: str, what: str) -> OperationError:
    """The NO for a write to virtual folder ``name``."""
    return OperationError(
        f"{name} is a read-only virtual folder: {what} is not possible there "
        "(copy or move a message out of it instead)",
        "CANNOT",
    )
