"""The two checks on the write path: authorization (folder permissions) and
conflict control (claims).

Every operation of ``MailService`` calls ``authorize`` and then
``check_conflicts`` before touching upstream; the permission and claims
features replace these permissive defaults with real ones, without another
code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# RFC 4314 rights, named for readability at the call sites.
LOOKUP = "l"
READ = "r"
SEEN = "s"
WRITE = "w"
INSERT = "i"
POST = "p"
CREATE = "k"
DELETE_MAILBOX = "x"
DELETE_MESSAGES = "t"
EXPUNGE = "e"
ADMIN = "a"


@dataclass(frozen=True)
class Actor:
    """Who is acting: a team member, and which client they use (for the journal)."""

    user_id: int
    user: str
    client: str = ""


class Policy:
    """Permissive defaults: every team member has every right, no claims."""

    def authorize(self, actor: Actor, mailbox: str, right: str) -> None:
        """Raise ``OperationError`` (code NOPERM) when ``actor`` lacks ``right``."""

    def rights(self, actor: Actor, mailbox: str) -> str:
        return "lrswipkxtea"

    def check_conflicts(self, actor: Actor, mailbox: str, uids: Sequence[int], operation: str) -> None:
        """Raise ``OperationError`` when another member's claim forbids ``operation``."""
