"""The folder-permission policy: ``Policy.authorize``/``rights`` answered from
the current ACL table (RFC 4314, the model of ``team/acl.py``).

What it decides (the rules themselves live in ``team/acl.py``):

* a team member's rights are ``AclTable.rights(user, folder)``: admins every
  right, a folder without an ACL of its own the configured default, a
  negative entry winning over every positive one;
* the CLI and the gateway acting for itself (``policy.SYSTEM``) carry user id
  0, which no team member has: they hold every right;
* a refusal is ``NO [NOPERM]`` with a text naming the folder and what the
  user may do there ("you may read but not change messages in Finance");
* a folder without ``l`` is answered exactly as a missing one (the text and
  code ``MailService.mailbox`` gives, ``NONEXISTENT``), so neither its name
  nor its existence leaks.

``AclSource`` keeps the table current: it asks the store's ACL version at
most once a second and loads a new table when it moved, so a change made by
the CLI, another node or another session reaches every session within 2 s;
the gateway's own ACL changes call ``refresh`` so they apply at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ..team.acl import ALL, AclTable, Rights, visible
from .errors import OperationError
from .policy import Actor, Policy

#: What each right lets one do, as the end of "you may ... but not <this>".
_DENIED: Final[dict[str, str]] = {
    "l": "see {f}",
    "r": "read messages in {f}",
    "s": "change the read state (\\Seen) of messages in {f}",
    "w": "change messages in {f}",
    "i": "add messages to {f}",
    "p": "post to {f}",
    "k": "create folders in {f}",
    "x": "delete or rename {f}",
    "t": "delete messages in {f}",
    "e": "expunge messages in {f}",
    "a": "change who may use {f}",
}


def missing_folder(name: str) -> OperationError:
    """The answer for a folder that does not exist, or that the user may not see."""
    return OperationError(f"mailbox {name!r} does not exist", "NONEXISTENT")


def refusal_text(folder: str, have: Rights, right: str) -> str:
    """A readable refusal: what the user may do in ``folder`` and what not."""
    what = _DENIED.get(right, f"use the {right!r} right on {{f}}").format(f=folder)
    if "r" in have and right != "r":
        return f"you may read but not {what}"
    if have:
        return f"you may see {folder} but not {what}"
    return f"you may not {what}"


class AclPolicy(Policy):
    """``Policy`` with the team's folder permissions; ``table`` returns the current
    ACL table (``AclWatch.current``: the gateway's table, kept current)."""

    def __init__(self, table: Callable[[], AclTable]) -> None:
        self._table = table

    def effective(self, actor: Actor, mailbox: str) -> Rights:
        if actor.user_id == 0:  # the CLI and policy.SYSTEM: no team member has id 0
            return ALL
        return self._table().rights(actor.user, mailbox)

    def authorize(self, actor: Actor, mailbox: str, right: str) -> None:
        have = self.effective(actor, mailbox)
        if not visible(have):
            # Checked first: r without l must not open a folder that LIST hides.
            raise missing_folder(mailbox)
        if right in have:
            return
        raise OperationError(refusal_text(mailbox, have, right), "NOPERM")

    def rights(self, actor: Actor, mailbox: str) -> str:
        return str(self.effective(actor, mailbox))

    def is_admin(self, actor: Actor) -> bool:
        """Whether ``actor`` may do what only admins may (give ``anyone`` the ``a`` right)."""
        return actor.user_id == 0 or actor.user in self._table().admins


__all__ = ["AclPolicy", "missing_folder", "refusal_text"]
