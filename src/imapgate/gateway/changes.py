"""The changes the gateway publishes, as the front ends see them.

The replica's transitions end in change sets on the change bus; a front end
that shows changes live (the dashboard's event stream) subscribes through the
service layer and reads these types, never the replica module itself.
"""

from __future__ import annotations

from ..replica.events import (
    FlagsChanged,
    MailboxListChanged,
    MailboxReset,
    MessagesAdded,
    MessagesExpunged,
    ModeChanged,
    NoteAdded,
    ReplicaEvent,
)

__all__ = [
    "FlagsChanged",
    "MailboxListChanged",
    "MailboxReset",
    "MessagesAdded",
    "MessagesExpunged",
    "ModeChanged",
    "NoteAdded",
    "ReplicaEvent",
]
