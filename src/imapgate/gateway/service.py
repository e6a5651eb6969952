"""Service.execute: the one entry point of every read that needs a right and
every change, from every front end (IMAP, SMTP submission, web, CLI).

The pipeline, the same for every operation:

1. rights: the policy is asked for each right the table names
   (``rights.required``) — before anything else is looked at;
2. store truth: a write is refused while the store is known unwritable
   (``STORE_UNWRITABLE``), before upstream is touched;
3. the operation's handler (``MailService``) then runs, in this order:
   conflict check under the folder's lock, pre-removal hook (inside the one
   removal primitive), intent, upstream, one store transaction for replica
   and journal, publish.

Handlers are private to the service; front ends hold an operation value and
an ``Actor``, never a handler.  ``execute_now`` is the same pipeline for the
operations answered from memory without waiting (``IMMEDIATE``), for callers
that cannot await: the dashboard's live feed decides per change, inside the
change bus's callback, whom it may reach.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, TypeVar, cast

from ..replica.mailbox import MailboxIndex
from ..team.acl import AclError, Identifier, check_change, list_rights, parse_identifier, parse_rights
from ..team.journal import JournalEntry
from . import operations as ops
from .acl_policy import AclPolicy, missing_folder
from .acl_watch import AclWatch
from .audit_refs import op_command, op_target
from .claims_ops import ClaimOps
from .errors import OperationError
from .mailservice import MailService
from .notes_ops import add_note
from .policy import Actor
from .rights import Need, required
from .storehealth import STORE_UNWRITABLE
from .virtual import VIRTUAL_ATTRIBUTES, VirtualIndex, VirtualMessage

log = logging.getLogger("imapgate.service")

R = TypeVar("R")

#: Operations whose handler never waits (memory only): ``execute_now`` may run them.
IMMEDIATE: tuple[type[ops.Operation[Any]], ...] = (
    ops.ListFolders,
    ops.MyRights,
    ops.ReadMessages,
    ops.MarkSeen,
    ops.GetAcl,
    ops.ListRights,
)


class Service(MailService):
    """The gateway's service layer: ``execute`` and the handlers behind it."""

    #: Claims (issue 12) around the handlers; None: a gateway without claims.
    claims: ClaimOps | None = None

    async def execute(self, actor: Actor, op: ops.Operation[R]) -> R:
        """Run ``op`` for ``actor`` through the pipeline; returns its result.
        Raises ``OperationError`` when it is refused or fails (nothing changed)."""
        admitted = self._admitted(actor, op)
        if admitted is None:
            return cast(R, self._nothing(op))
        if isinstance(admitted, IMMEDIATE):
            return cast(R, self._run_now(actor, admitted))
        with self.own_changes.during(admitted):
            return cast(R, await self._run(actor, admitted))

    def execute_now(self, actor: Actor, op: ops.Operation[R]) -> R:
        """``execute`` for an operation of ``IMMEDIATE``, without awaiting."""
        if not isinstance(op, IMMEDIATE):
            raise TypeError(f"{type(op).__name__} waits for upstream or the store: use execute")
        admitted = self._admitted(actor, op)
        if admitted is None:
            return cast(R, self._nothing(op))
        return cast(R, self._run_now(actor, admitted))

    def _admitted(self, actor: Actor, op: ops.Operation[R]) -> ops.Operation[R] | None:
        """``_admit``; a change refused for want of rights is journaled (a refused read
        is not: a session whose folder lost ``r`` would write one per command)."""
        try:
            return self._admit(actor, op)
        except OperationError as exc:
            if exc.code == "NOPERM" and op.writes:
                mailbox, uids = op_target(op)
                self._refused(actor, op_command(op), mailbox, uids, exc)
            raise

    def _admit(self, actor: Actor, op: ops.Operation[R]) -> ops.Operation[R] | None:
        """Steps 1 and 2: the rights of the table, then the store's health for a
        write.  Returns the operation to run: ``op``, or for STORE +FLAGS/-FLAGS
        ``op`` without the flags the actor may not change.  None: a skippable
        need was denied, or a side effect cannot be recorded; the operation then
        does nothing (``_nothing``)."""
        # A virtual folder refuses writes; its reads are the provider's to filter.
        if self.virtual.admit(op) and isinstance(op, ops.MarkSeen):
            return None  # read-only: a body fetch there sets no \Seen
        denied_flags: set[str] = set()
        first_denial: OperationError | None = None
        for need in required(op, self.replica.delimiter()):
            try:
                if not self._granted(actor, need):
                    return None
            except OperationError as exc:
                if not need.flags or exc.code != "NOPERM":
                    raise
                denied_flags.update(need.flags)
                first_denial = first_denial or exc
        if denied_flags and isinstance(op, ops.StoreFlags):
            kept = tuple(f for f in op.flags if f not in denied_flags)
            if not any(f.lower() != "\\recent" for f in kept):
                assert first_denial is not None
                raise first_denial  # none of the asked flags may be changed
            op = cast(ops.Operation[R], dataclasses.replace(op, flags=kept))
        if op.writes and not self.health.writable:
            if isinstance(op, ops.MarkSeen):
                # A read must not fail because its side effect cannot be recorded.
                log.warning("store unwritable: \\Seen not set implicitly in %s", op.mailbox.name)
                return None
            raise OperationError(STORE_UNWRITABLE, "UNAVAILABLE")
        return op

    def _granted(self, actor: Actor, need: Need) -> bool:
        """Ask the policy for every letter of ``need``; False only for a need that
        may be skipped (a denial of any other raises)."""
        if need.mailbox is None:
            return True  # a per-folder filter: applied by the listing itself
        if self.virtual.is_virtual(need.mailbox):
            return True  # admitted by ``virtual.admit``; the provider picks the messages
        try:
            for right in need.rights:
                self.policy.authorize(actor, need.mailbox, right)
        except OperationError as exc:
            if need.skip_if_denied and exc.code == "NOPERM":
                return False
            if need.missing is not None and exc.code == "NONEXISTENT":
                raise OperationError(exc.text, need.missing) from None
            raise
        return True

    @staticmethod
    def _nothing(op: ops.Operation[Any]) -> object:
        """The result of an operation that was admitted to do nothing."""
        if isinstance(op, ops.MarkSeen):
            return []
        raise AssertionError(f"{type(op).__name__} has no skippable need")

    def _run_now(self, actor: Actor, op: ops.Operation[Any]) -> object:
        match op:
            case ops.ReadMessages():
                return None
            case ops.ListFolders():
                return self._list_folders(actor, op)
            case ops.MyRights():
                if self.virtual.is_virtual(op.mailbox):
                    return "lr"
                return self.policy.rights(actor, op.mailbox)
            case ops.MarkSeen():
                return self._mark_seen(actor, op)
            case ops.GetAcl():
                return self._get_acl(op)
            case ops.ListRights():
                return self._list_rights(op)
        raise TypeError(f"{type(op).__name__} is not immediate")

    async def _run(self, actor: Actor, op: ops.Operation[Any]) -> object:
        if self.virtual.is_virtual(_folder_name(op)):
            return await self._run_virtual(actor, op)
        if self.claims is not None:
            return await self.claims.run(actor, op, self._handle)
        return await self._handle(actor, op)

    def start_claims(self) -> None:
        """Start ending expired claims in the background (``Gateway.start``)."""
        if self.claims is not None:
            self.claims.start(self._handle)

    async def stop_claims(self) -> None:
        if self.claims is not None:
            await self.claims.stop()

    def reload_claims(self) -> int:
        """Claims changed in the store (``imapgate claim release``): reload them and
        remove the keywords no claim stands behind, in the background; how many
        claims are open now."""
        if self.claims is None:
            return 0
        return self.claims.reload(self._handle)

    async def _handle(self, actor: Actor, op: ops.Operation[Any]) -> object:
        match op:
            # reads
            case ops.FetchContent():
                return await self._fetch_content(op.mailbox, op.uids, op.attributes)
            case ops.SearchContent():
                return await self._search_content(op.mailbox, op.key, op.charset)
            case ops.ExplainGone():
                gone = self.departures.gone(op.mailbox, op.uids, op.total)
                return gone.text if gone is not None else ""
            case ops.Select() | ops.Status() | ops.EnsureSynced():
                return await self._ensure_synced(op.mailbox)
            # changes
            case ops.StoreFlags():
                return await self._store(actor, op)
            case ops.Expunge():
                return await self._expunge(actor, op)
            case ops.Copy() | ops.Move():
                return await self._copy(actor, op)
            case ops.Append():
                return await self._append(actor, op)
            case ops.Create():
                await self._create(actor, op)
                return None
            case ops.Delete():
                await self._delete(actor, op)
                return None
            case ops.Rename():
                await self._rename(actor, op)
                return None
            case ops.Subscribe():
                visible = self._list_folders(actor, ops.ListFolders()).folders
                self._subscribe(actor, op, self._is_level(op.mailbox, visible))
                return None
            case ops.Unsubscribe():
                self._unsubscribe(actor, op)
                return None
            case ops.SetReadMode():
                self._set_read_mode(actor, op)
                return None
            case ops.AddNote():
                return add_note(self.journal, self.replica.bus, actor, op)
            case ops.SetAcl():
                return self._set_acl(actor, op)
            case ops.DeleteAcl():
                return self._delete_acl(actor, op)
        raise TypeError(f"no handler for {type(op).__name__}")

    async def _run_virtual(self, actor: Actor, op: ops.Operation[Any]) -> object:
        """An operation on a virtual folder (admitted: a read, or a copy out of it)."""
        match op:
            case ops.Select() | ops.Status() | ops.EnsureSynced():
                return self.virtual.index(actor, op.mailbox)
            case ops.FetchContent() if isinstance(op.mailbox, VirtualIndex):
                return await self._virtual_content(op.mailbox, op.uids, op.attributes)
            case ops.SearchContent() if isinstance(op.mailbox, VirtualIndex):
                return await self._virtual_search(op.mailbox, op.key, op.charset)
            case ops.Copy() | ops.Move() if isinstance(op.mailbox, VirtualIndex):
                move = isinstance(op, ops.Move)
                return await self.virtual.copy_out(actor, op.mailbox, op.uids, op.dest, move)
            case ops.Subscribe() | ops.Unsubscribe():
                return None  # a virtual folder is always listed as subscribed
        raise TypeError(f"{type(op).__name__} is not possible on a virtual folder")

    def _by_source(self, mb: VirtualIndex, uids: Any) -> dict[str, list[VirtualMessage]]:
        groups: dict[str, list[VirtualMessage]] = {}
        for vm in mb.messages(list(uids)):
            groups.setdefault(vm.source, []).append(vm)
        return groups

    async def _virtual_content(self, mb: VirtualIndex, uids: Any, attrs: Any) -> dict[tuple[int, bytes], Any]:
        """Content of a virtual folder's messages, read from their source folders."""
        out: dict[tuple[int, bytes], Any] = {}
        for name, vms in self._by_source(mb, uids).items():
            back = {vm.source_uid: vm.uid for vm in vms}
            got = await self._fetch_content(self.mailbox(name), list(back), attrs)
            out.update(((back[u], k), v) for (u, k), v in got.items() if u in back)
        return out

    async def _virtual_search(self, mb: VirtualIndex, key: Any, charset: str | None) -> set[int]:
        found: set[int] = set()
        for name, vms in self._by_source(mb, mb.uids).items():
            back = {vm.source_uid: vm.uid for vm in vms}
            hits = await self._search_content(self.mailbox(name), key, charset)
            found.update(back[u] for u in hits if u in back)
        return found

    def _list_folders(self, actor: Actor, op: ops.ListFolders) -> ops.FolderList:
        """The folders ``actor`` may see: those the policy grants LOOKUP on (the
        rights table's per-folder need of a listing)."""
        (need,) = required(op)
        folders: dict[str, tuple[str, ...]] = {}
        for name in self.replica.names():
            mb = self.replica.get(name)
            if mb is None or name in self.virtual.hidden:
                continue
            try:
                for right in need.rights:
                    self.policy.authorize(actor, name, right)
            except OperationError:
                continue
            folders[name] = mb.attributes
        subscribed: frozenset[str] = frozenset()
        if op.subscriptions and self.subscriptions is not None:
            subscribed = frozenset(self.subscriptions.subscribed_names(actor.user_id, folders))
        # A real folder of a virtual folder's name is hidden behind it (as for every operation).
        virtual = {name: VIRTUAL_ATTRIBUTES for name in self.virtual.names()}
        folders.update(virtual)
        return ops.FolderList(folders, subscribed | frozenset(virtual))

    def _is_level(self, name: str, visible: Any) -> bool:
        """``name`` is a visible folder, or a level above one (``a/b`` of ``a/b/c``)."""
        if name in visible:
            return True
        prefix = name + self.replica.delimiter()
        return any(f.startswith(prefix) for f in visible)

    # -- folder permissions (RFC 4314) ---------------------------------------------------
    def _acl_source(self) -> AclWatch:
        if self.acl is None:
            raise OperationError("folder permissions are not kept by this gateway", "CANNOT")
        return self.acl

    def _existing(self, name: str) -> str:
        """``name`` when it is a folder (the rights check already hid the invisible ones)."""
        if self.replica.get(name) is None:
            raise missing_folder(name)
        return name

    def _get_acl(self, op: ops.GetAcl) -> tuple[ops.AclEntryView, ...]:
        table = self._acl_source().current()
        return tuple(
            ops.AclEntryView(str(e.identifier), e.rights.wire())
            for e in table.shown_entries(self._existing(op.mailbox))
        )

    def _list_rights(self, op: ops.ListRights) -> tuple[str, tuple[str, ...]]:
        self._existing(op.mailbox)
        ident = _identifier(op.identifier)
        table = self._acl_source().current()
        return list_rights(ident, names_admin=ident.name in table.admins)

    def _set_acl(self, actor: Actor, op: ops.SetAcl) -> str:
        source = self._acl_source()
        folder = self._existing(op.mailbox)
        ident = _identifier(op.identifier)
        try:
            change = parse_rights(op.rights)
        except AclError as exc:
            raise OperationError(str(exc), "CLIENTBUG", status="BAD") from None
        by_admin = isinstance(self.policy, AclPolicy) and self.policy.is_admin(actor)
        if change.mode != "remove":
            try:
                check_change(ident, change.rights, by_admin=by_admin)
            except AclError as exc:
                raise OperationError(str(exc), "NOPERM") from None
        try:
            new = source.store.set_entry(
                folder, op.identifier, change, default=source.default, by_admin=by_admin
            )
        except AclError as exc:
            raise OperationError(str(exc), "CANNOT") from None
        source.refresh()
        self.journal.record(
            JournalEntry.by(
                actor, "SETACL", mailbox=folder, detail=f"{ident} {op.rights or '(none)'} -> {new or 'none'}"
            )
        )  # fmt: skip
        return str(new)

    def _delete_acl(self, actor: Actor, op: ops.DeleteAcl) -> bool:
        source = self._acl_source()
        folder = self._existing(op.mailbox)
        ident = _identifier(op.identifier)
        try:
            had = source.store.delete_entry(folder, op.identifier)
        except AclError as exc:
            raise OperationError(str(exc), "CANNOT") from None
        if had:
            source.refresh()
            entry = JournalEntry.by(actor, "DELETEACL", mailbox=folder, detail=str(ident))
            self.journal.record(entry)
        return had


def _folder_name(op: ops.Operation[Any]) -> str | None:
    """The folder an operation acts on (its source), by name."""
    mailbox = getattr(op, "mailbox", None)
    if isinstance(mailbox, MailboxIndex):
        return mailbox.name
    return mailbox if isinstance(mailbox, str) else None


def _identifier(text: str) -> Identifier:
    """An RFC 4314 identifier, or BAD: its syntax is the client's mistake."""
    try:
        return parse_identifier(text)
    except AclError as exc:
        raise OperationError(str(exc), "CLIENTBUG", status="BAD") from None
