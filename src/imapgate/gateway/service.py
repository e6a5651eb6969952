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

import logging
from typing import Any, TypeVar, cast

from . import operations as ops
from .errors import OperationError
from .mailservice import MailService
from .policy import Actor
from .rights import Need, required
from .storehealth import STORE_UNWRITABLE

log = logging.getLogger("imapgate.service")

R = TypeVar("R")

#: Operations whose handler never waits (memory only): ``execute_now`` may run them.
IMMEDIATE: tuple[type[ops.Operation[Any]], ...] = (
    ops.ListFolders,
    ops.MyRights,
    ops.ReadMessages,
    ops.MarkSeen,
)


class Service(MailService):
    """The gateway's service layer: ``execute`` and the handlers behind it."""

    async def execute(self, actor: Actor, op: ops.Operation[R]) -> R:
        """Run ``op`` for ``actor`` through the pipeline; returns its result.
        Raises ``OperationError`` when it is refused or fails (nothing changed)."""
        if not self._admit(actor, op):
            return cast(R, self._nothing(op))
        if isinstance(op, IMMEDIATE):
            return cast(R, self._run_now(actor, op))
        return cast(R, await self._run(actor, op))

    def execute_now(self, actor: Actor, op: ops.Operation[R]) -> R:
        """``execute`` for an operation of ``IMMEDIATE``, without awaiting."""
        if not isinstance(op, IMMEDIATE):
            raise TypeError(f"{type(op).__name__} waits for upstream or the store: use execute")
        if not self._admit(actor, op):
            return cast(R, self._nothing(op))
        return cast(R, self._run_now(actor, op))

    def _admit(self, actor: Actor, op: ops.Operation[Any]) -> bool:
        """Steps 1 and 2: the rights of the table, then the store's health for a
        write.  False: a skippable need was denied, or a side effect cannot be
        recorded; the operation then does nothing (``_nothing``)."""
        for need in required(op, self.replica.delimiter()):
            if not self._granted(actor, need):
                return False
        if op.writes and not self.health.writable:
            if isinstance(op, ops.MarkSeen):
                # A read must not fail because its side effect cannot be recorded.
                log.warning("store unwritable: \\Seen not set implicitly in %s", op.mailbox.name)
                return False
            raise OperationError(STORE_UNWRITABLE, "UNAVAILABLE")
        return True

    def _granted(self, actor: Actor, need: Need) -> bool:
        """Ask the policy for every letter of ``need``; False only for a need that
        may be skipped (a denial of any other raises)."""
        if need.mailbox is None:
            return True  # a per-folder filter: applied by the listing itself
        try:
            for right in need.rights:
                self.policy.authorize(actor, need.mailbox, right)
        except OperationError as exc:
            if need.skip_if_denied and exc.code == "NOPERM":
                return False
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
                return self.policy.rights(actor, op.mailbox)
            case ops.MarkSeen():
                return self._mark_seen(actor, op)
        raise TypeError(f"{type(op).__name__} is not immediate")

    async def _run(self, actor: Actor, op: ops.Operation[Any]) -> object:
        match op:
            # reads
            case ops.FetchContent():
                return await self._fetch_content(op.mailbox, op.uids, op.attributes)
            case ops.SearchContent():
                return await self._search_content(op.mailbox, op.key, op.charset)
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
        raise TypeError(f"no handler for {type(op).__name__}")

    def _list_folders(self, actor: Actor, op: ops.ListFolders) -> ops.FolderList:
        """The folders ``actor`` may see: those the policy grants LOOKUP on (the
        rights table's per-folder need of a listing)."""
        (need,) = required(op)
        folders: dict[str, tuple[str, ...]] = {}
        for name in self.replica.names():
            mb = self.replica.get(name)
            if mb is None:
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
        return ops.FolderList(folders, subscribed)

    def _is_level(self, name: str, visible: Any) -> bool:
        """``name`` is a visible folder, or a level above one (``a/b`` of ``a/b/c``)."""
        if name in visible:
            return True
        prefix = name + self.replica.delimiter()
        return any(f.startswith(prefix) for f in visible)
