"""The "Claimed by me" virtual folder (issue 12): each member's open claims, for
mail clients that show no keywords (Outlook, Apple Mail, K-9).

A ``VirtualFolderProvider`` (gateway/virtual.py): the folder lists the
messages the member claimed, where they are now (a claim follows its message
when the claimant moves it).  Its UIDs are the claims' row ids (never reused,
kept when a claim follows a move), its UIDVALIDITY one per store
(``ClaimRegistry.uidvalidity``), the flags those of the message.  It is
read-only; COPY out copies the real message, MOVE out moves it (as the
claimant, so the claim follows it, or ends in a "done" folder).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..replica.replica import Replica
from ..team.claims import ClaimRegistry
from . import operations as ops
from .operations import CopyResult
from .policy import Actor, Policy
from .virtual import VirtualFolderBase, VirtualMessage

Execute = Callable[[Actor, ops.Operation[Any]], Awaitable[Any]]


class ClaimedByMe(VirtualFolderBase):
    def __init__(
        self, name: str, registry: ClaimRegistry, replica: Replica, execute: Execute, policy: Policy
    ) -> None:
        # Claims in folders the member may no longer read are not listed.
        super().__init__(name, policy)
        self.registry = registry
        self.replica = replica
        #: ``Service.execute``: COPY/MOVE out go through the whole pipeline.
        self.execute = execute

    def new_uidvalidity(self) -> int:
        return self.registry.uidvalidity()

    def messages(self, actor: Actor) -> Sequence[VirtualMessage]:
        names = {mb.id: name for name in self.replica.names() if (mb := self.replica.get(name)) is not None}
        mine = [c for c in self.registry.all() if c.user_id == actor.user_id and c.mailbox_id in names]
        readable: dict[str, bool] = {}
        out = []
        for c in mine:
            name = names[c.mailbox_id]
            if name not in readable:
                readable[name] = self.may_read(actor, name)
            if readable[name]:
                out.append(VirtualMessage(c.id, name, c.uid))
        return out

    async def copy_out(
        self, actor: Actor, messages: Sequence[VirtualMessage], dest: str, move: bool
    ) -> CopyResult:
        """COPY/MOVE out: the real messages, folder by folder, through the pipeline."""
        by_source: dict[str, list[VirtualMessage]] = {}
        for m in messages:
            by_source.setdefault(m.source, []).append(m)
        source: list[int] = []
        target: list[int] = []
        uidvalidity = 0
        for name, group in by_source.items():
            mb = self.replica.get(name)
            if mb is None:
                continue
            uids = [m.source_uid for m in group]
            op = ops.Move(mb, uids, dest) if move else ops.Copy(mb, uids, dest)
            result: CopyResult = await self.execute(actor, op)
            virtual_of = {m.source_uid: m.uid for m in group}
            source += [virtual_of[s] for s in result.source]
            target += result.dest
            uidvalidity = result.uidvalidity
        return CopyResult(uidvalidity, source, target)


__all__ = ["ClaimedByMe"]
