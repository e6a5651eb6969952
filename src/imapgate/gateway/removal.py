"""The one way messages leave a folder at upstream.

Five paths remove mail at the hoster: EXPUNGE / UID EXPUNGE, native MOVE, the
originals of a move without MOVE (COPY, then \\Deleted and expunge), the
settlement of such a move interrupted by a crash, and DELETE of a whole
folder.  Each goes through ``Remover.remove``, which first calls the
pre-removal hook with what is about to go.

The hook is the seam for recoverable deletes (issue 13: gateway/recovery.py
copies the messages to the hidden recovery folder before they go; without
``[recovery]`` it does nothing, ``NoRecovery``).  ``after_removal`` tells it
how the removal ended (``done`` False: the removing command failed), on the
same connection, still on that folder.  It runs on the connection that removes, with that
folder selected (DELETE: the connection before the folder is unselected),
so whatever it copies is the exact messages removed.  When an expunge is
repeated for messages the hoster did not report gone, it is called again
for those: a hook must treat a second call for the same UIDs as harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from ..protocol import commands as cmd
from ..protocol.sequence import SequenceSet
from ..replica.mailbox import MailboxIndex
from ..upstream.connection import CommandResult, UpstreamConnection
from .policy import Actor

RemovalKind = Literal["expunge", "move", "delete-mailbox"]


@dataclass(frozen=True)
class Removal:
    """Messages about to leave ``mailbox`` at upstream.

    ``uids`` None: the whole folder (DELETE).  ``dest``: where a MOVE takes
    them.  ``flag_first``: mark them \\Deleted before the expunge (the
    originals of a move without MOVE); otherwise they carry \\Deleted already."""

    kind: RemovalKind
    mailbox: str
    uids: SequenceSet | None
    dest: str | None = None
    flag_first: bool = False
    #: Who removes them (None: the gateway itself, e.g. a purge or a settlement).
    by: Actor | None = None


class PreRemovalHook(Protocol):
    async def before_removal(
        self, conn: UpstreamConnection, removal: Removal, mb: MailboxIndex | None
    ) -> None: ...

    async def after_removal(self, conn: UpstreamConnection, removal: Removal, done: bool) -> None: ...


class NoRecovery:
    """Nothing is kept before removal (the recovery issue replaces this)."""

    async def before_removal(
        self, conn: UpstreamConnection, removal: Removal, mb: MailboxIndex | None
    ) -> None:
        return None

    async def after_removal(self, conn: UpstreamConnection, removal: Removal, done: bool) -> None:
        return None


class Remover:
    """Runs every removal at upstream, the hook first."""

    def __init__(self, hook: PreRemovalHook | None = None) -> None:
        self.hook: PreRemovalHook = hook or NoRecovery()

    async def remove(
        self, conn: UpstreamConnection, removal: Removal, mb: MailboxIndex | None = None
    ) -> CommandResult:
        """Carry out ``removal`` on ``conn`` (selected on its folder, except for
        DELETE); returns the answer to the removing command.  ``mb``: the
        replica's index of the folder, whose view of other messages' \\Deleted
        shields them when the hoster lacks UIDPLUS."""
        await self.hook.before_removal(conn, removal, mb)
        done = False
        try:
            result = await self._remove(conn, removal, mb)
            done = True
            return result
        finally:
            if conn.alive:
                await self.hook.after_removal(conn, removal, done)

    async def _remove(
        self, conn: UpstreamConnection, removal: Removal, mb: MailboxIndex | None
    ) -> CommandResult:
        if removal.kind == "delete-mailbox":
            name = removal.mailbox
            if conn.selected == name:
                await conn.run(lambda tag: cmd.Unselect(tag) if conn.has("UNSELECT") else cmd.Close(tag))
                conn.selected = None
            return await conn.check(lambda tag: cmd.Delete(tag, name))
        uidset = removal.uids
        assert uidset is not None, "only DELETE removes a whole folder"
        if removal.kind == "move":
            dest = removal.dest
            assert dest is not None
            return await conn.check(lambda tag: cmd.Move(tag, uidset, dest, uid=True))
        if removal.flag_first:
            await conn.check(_uid_store(uidset, "add", ("\\Deleted",)))
        return await _expunge_exactly(conn, uidset, mb)


async def _expunge_exactly(
    conn: UpstreamConnection, uidset: SequenceSet, mb: MailboxIndex | None
) -> CommandResult:
    """Expunge exactly ``uidset``; returns the answer to the expunge command.  With
    UIDPLUS that is UID EXPUNGE; without it a plain EXPUNGE would also remove other
    messages someone marked \\Deleted but meant to keep for now, so their
    \\Deleted is lifted around it."""
    if conn.has("UIDPLUS"):
        return await conn.check(lambda tag: cmd.Expunge(tag, uid=True, uid_set=uidset))
    mine = set(uidset.iter(0))
    others = (
        [] if mb is None else [u for u in mb.uids if u not in mine and "\\Deleted" in mb.records[u].flags]
    )
    shield = SequenceSet.from_ids(others)
    if others:
        await conn.check(_uid_store(shield, "remove", ("\\Deleted",)))
    try:
        return await conn.check(lambda tag: cmd.Expunge(tag))
    finally:
        if others:
            await conn.check(_uid_store(shield, "add", ("\\Deleted",)))


def _uid_store(
    uids: SequenceSet, op: cmd.StoreOperation, flags: tuple[str, ...]
) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Store(tag, uids, op, flags, silent=True, uid=True)

    return build
