"""The "Recovered" virtual folder (issue 13): every team member's list of what
they may restore, in every mail client.

A ``VirtualFolderProvider`` (gateway/virtual.py) over the kept recovery items:
an item is listed to a member who may read (RFC 4314 ``r``) the folder it was
removed from — or, when that folder is gone, the folder it would be restored
into; when neither exists any more, to the member who removed it.  Its UID is
the item's id (stable, never reused), the UIDVALIDITY one per store
(``RecoveryStore.uidvalidity``), the flags those of the original with the
member's own private flags.  COPY or MOVE out of it restores the message into
the folder it is copied to, with its flags and everyone's private read state;
it then leaves the folder.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..replica.replica import Replica
from ..team.recovery_store import ItemFilter, RecoveryStore
from .operations import CopyResult
from .policy import Actor, Policy
from .restore import Restorer
from .virtual import VirtualFolderBase, VirtualMessage


class RecoveredFolder(VirtualFolderBase):
    def __init__(
        self,
        name: str,
        folder: str,
        store: RecoveryStore,
        restorer: Restorer,
        policy: Policy,
        replica: Replica,
    ) -> None:
        super().__init__(name, policy)
        self.folder = folder
        self.store = store
        self.restorer = restorer
        self.replica = replica

    def new_uidvalidity(self) -> int:
        return self.store.uidvalidity()

    def messages(self, actor: Actor) -> Sequence[VirtualMessage]:
        copies = self.replica.get(self.folder)
        if copies is None:
            return []
        out = []
        for item in self.store.items(ItemFilter()):
            if item.copy_uid is None or item.copy_uidvalidity != copies.uidvalidity:
                continue
            if not self.may_see(actor, item.mailbox, item.restore_to, item.removed_by):
                continue
            flags = tuple(sorted({*item.flags, *item.private.get(actor.user_id, ())}))
            out.append(VirtualMessage(item.id, self.folder, item.copy_uid, flags))
        return out

    def may_see(self, actor: Actor, mailbox: str, restore_to: str, removed_by: str | None) -> bool:
        for name in (mailbox, restore_to):
            if self.replica.get(name) is not None:
                return self.may_read(actor, name)
        return removed_by == actor.user

    async def copy_out(
        self, actor: Actor, messages: Sequence[VirtualMessage], dest: str, move: bool
    ) -> CopyResult:
        ids = tuple(m.uid for m in messages)
        items = self.store.items(ItemFilter(ids=ids))
        done = await self.restorer.restore(actor, items, dest)
        target = self.replica.get(dest)
        pairs = [(r.item, r.uid) for r in done if r.uid is not None]
        if target is None or len(pairs) != len(done):
            return CopyResult(target.uidvalidity if target else 0, [], [])
        return CopyResult(
            target.uidvalidity, [p[0] for p in pairs], [p[1] for p in pairs if p[1] is not None]
        )
