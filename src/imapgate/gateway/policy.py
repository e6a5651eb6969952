"""The two decisions of the pipeline: authorization (folder permissions) and
conflict control (claims).

``Service.execute`` calls ``authorize`` for every right the rights table
(``rights.required``) names for an operation, before anything else, and
``check_conflicts`` under the folder's lock, right before upstream is
touched.  The permission and claims features replace these permissive
defaults with real ones, without another code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# The right letters are defined with the table; re-exported for existing callers.
from .rights import (
    ADMIN,
    ALL_RIGHTS,
    CREATE,
    DELETE_MAILBOX,
    DELETE_MESSAGES,
    EXPUNGE,
    INSERT,
    LOOKUP,
    POST,
    READ,
    SEEN,
    WRITE,
)

if TYPE_CHECKING:
    from .operations import Operation

__all__ = [
    "ADMIN",
    "CREATE",
    "DELETE_MAILBOX",
    "DELETE_MESSAGES",
    "EXPUNGE",
    "INSERT",
    "LOOKUP",
    "POST",
    "READ",
    "SEEN",
    "SYSTEM",
    "WRITE",
    "Actor",
    "Policy",
]


@dataclass(frozen=True)
class Actor:
    """Who is acting: a team member, and which client they use (for the journal)."""

    user_id: int
    user: str
    client: str = ""
    #: The client's IMAP ID (name and version) and peer address, for the audit
    #: journal; ``client`` is their readable sum.
    client_id: str = ""
    address: str = ""


#: The gateway acting for itself (work done once for every viewer, such as the
#: dashboard's live feed reading the senders of new mail, each viewer then
#: filtered by their own rights).  A policy grants it every right.
SYSTEM = Actor(0, "", "gateway")


class Policy:
    """Permissive defaults: every team member has every right, no claims."""

    def authorize(self, actor: Actor, mailbox: str, right: str) -> None:
        """Raise ``OperationError`` (code NOPERM) when ``actor`` lacks ``right``."""

    def rights(self, actor: Actor, mailbox: str) -> str:
        return ALL_RIGHTS

    def check_conflicts(
        self, actor: Actor, mailbox: str, uids: Sequence[int], operation: Operation[Any]
    ) -> None:
        """Raise ``OperationError`` when another member's claim forbids ``operation``
        on ``uids`` of ``mailbox``.  Called with the folder's lock held."""
