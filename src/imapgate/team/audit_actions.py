"""The audit journal's action words: a small, stable vocabulary.

Every journal entry has one action (``journal.action``): what an admin filters
on with ``imapgate audit --action A`` and what scripts read from ``--json``.
The words are documented in docs/audit.md and never renamed; new ones may be
added.  Writers may name the action themselves (``JournalEntry(action=...)``);
otherwise it follows from the command, so entries written before the audit
journal existed (and writers that do not know about actions) still get one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

#: Every action word, with what it means (docs/audit.md lists the same).
ACTIONS: Final[dict[str, str]] = {
    "arrived": "a new message appeared in a folder at the hoster (seen by the sync)",
    "appended": "a client put a message into a folder through the gateway (APPEND)",
    "read": "marked read (\\Seen set)",
    "unread": "marked unread (\\Seen removed)",
    "flagged": "flagged (\\Flagged set)",
    "unflagged": "flag removed (\\Flagged removed)",
    "answered": "marked answered (\\Answered set)",
    "deleted": "marked for deletion (\\Deleted set)",
    "undeleted": "deletion mark removed (\\Deleted removed)",
    "flags_changed": "other flags or keywords changed",
    "moved": "moved to another folder",
    "copied": "copied to another folder",
    "expunged": "removed from the folder (EXPUNGE, or gone at the hoster)",
    "claimed": "claimed by a team member",
    "released": "claim released",
    "restored": "brought back from recovery",
    "note": "internal note added by a team member (dashboard; kept in the gateway, never sent)",
    "purged": "recoverable copy removed for good (retention, or imapgate recovery purge)",
    "refused": "refused by the gateway (permissions, claims)",
    "failed": "asked for, but the hoster refused or could not be reached",
    "login": "logged in",
    "login_failed": "failed login (wrong name or password, disabled, or throttled)",
    "folder_created": "folder created",
    "folder_deleted": "folder deleted",
    "folder_renamed": "folder renamed",
    "folder_changed": "folder setting changed (read state)",
    "acl_changed": "folder permissions changed",
    "group_changed": "group or group membership changed",
    "user_changed": "account added, removed, disabled, enabled or changed",
    "submitted": "mail sent through the gateway's SMTP (or refused there)",
    "admin": "other admin command (index rebuild, sync, kick)",
}

#: Commands whose action follows from the command alone.
_BY_COMMAND: Final[dict[str, str]] = {
    "APPEND": "appended",
    "EXPUNGE": "expunged",
    "MOVE": "moved",
    "COPY": "copied",
    "CREATE": "folder_created",
    "DELETE": "folder_deleted",
    "RENAME": "folder_renamed",
    "FOLDER SET": "folder_changed",
    "SETACL": "acl_changed",
    "DELETEACL": "acl_changed",
    "SUBMIT": "submitted",
    "LOGIN": "login",
    "CLAIM": "claimed",
    "CLAIM RELEASE": "released",
    "CLAIM MOVE": "moved",
    "RESTORE": "restored",
    "NOTE": "note",
    "PURGE": "purged",
}

#: STORE: (flag, added?) -> action; the first that applies names a STORE of several
#: flags (deletion first: it is what an audit looks for).
_FLAG_ACTIONS: Final[tuple[tuple[str, bool, str], ...]] = (
    ("\\deleted", True, "deleted"),
    ("\\deleted", False, "undeleted"),
    ("\\answered", True, "answered"),
    ("\\flagged", True, "flagged"),
    ("\\flagged", False, "unflagged"),
    ("\\seen", True, "read"),
    ("\\seen", False, "unread"),
)


def store_action(mode: str, flags: Iterable[str]) -> str:
    """The action of a STORE (``mode`` "add", "remove" or "replace") of ``flags``."""
    names = {f.lower() for f in flags}
    for flag, added, action in _FLAG_ACTIONS:
        if flag in names and (mode != "remove") == added:
            return action
    return "flags_changed"


def action_of(command: str, result: str = "OK", detail: str | None = None) -> str:
    """The action of an entry that names none: from its command (and, for STORE,
    the mode and flags its detail holds: ``"add \\Seen \\Flagged"``)."""
    if result != "OK":
        return "failed"
    upper = command.upper()
    if upper in _BY_COMMAND:
        return _BY_COMMAND[upper]
    if upper == "STORE" and detail:
        mode, _, flags = detail.partition(" ")
        return store_action(mode, flags.split())
    first = upper.split(" ", 1)[0]
    if first in ("ACL", "GROUP", "USER"):
        return f"{first.lower()}_changed"
    return "admin"
