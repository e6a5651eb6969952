"""A change set: what one replica transition changed, as a value.

Each transition of the replica (new messages, flags, expunges, a folder
created, renamed, reset ...) produces one ``ChangeSet``: the row changes the
store repository commits (``store.changes``) and the events sessions and the
dashboard are told (``events``).  The change bus publishes it after the
commit; with several nodes it is what travels to the others, written to the
change log in the commit's own transaction (``logged``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..store.changes import RowChange, RowChanges
from .events import ReplicaEvent


@dataclass(slots=True)
class ChangeSet:
    rows: RowChanges = field(default_factory=RowChanges)
    events: list[ReplicaEvent] = field(default_factory=list)
    #: The bus between nodes wrote this set to its log in the commit's transaction
    #: (``ChangeBus.recorder``): publishing it only tells this node's listeners.
    logged: bool = field(default=False, compare=False, repr=False)

    def add(self, change: RowChange) -> None:
        self.rows.add(change)

    def mailbox_ids(self) -> set[int]:
        """The mailboxes whose rows or sessions this change set touches."""
        ids = self.rows.mailbox_ids()
        ids.update(e.mailbox_id for e in self.events if hasattr(e, "mailbox_id"))
        return ids
