"""The claims' conflict check: ``Policy.check_conflicts`` refusing what another
member's claim forbids (issue 12), composed over the folder permissions.

``ClaimPolicy`` wraps the permission policy (``AclPolicy``) and answers
``authorize``/``rights`` through it unchanged.  Its ``check_conflicts`` is
called by every handler at the same step (targets known, upstream next) and
refuses, while a message is claimed by someone else:

* MOVE out of the folder, EXPUNGE/UID EXPUNGE of it (which also covers the
  expunge half of a COPY + EXPUNGE move), DELETE of its folder;
* STORE that sets ``\\Deleted`` on it, removes or replaces the claim
  (``-FLAGS $Claimed``, ``FLAGS (...)`` without it, the claimant keyword) or
  claims it (``+FLAGS $Claimed``).

Reading, COPY, and other flags (``\\Seen``, ``\\Flagged``, keywords) stay allowed.
The refusal is ``NO [INUSE]`` with a text a client shows as it is; a command
on several messages is refused as a whole and says how many are claimed by
whom.  The check is one dictionary lookup per message (``ClaimRegistry``), and
nothing at all for a folder without claims.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ..team.claims import Claim, ClaimRegistry, claimed_when, is_claim_flag
from . import operations as ops
from .errors import OperationError
from .policy import Actor, Policy


class ClaimConflict(OperationError):
    """``NO [INUSE]``: the messages ``uids`` are claimed by someone else.  The
    IMAP session sends their true flags (untagged FETCH) before the tagged NO,
    so a client that already showed the change locally corrects its view."""

    def __init__(self, holders: Sequence[Claim]) -> None:
        super().__init__(refusal_text(holders), "INUSE")
        self.holders = tuple(holders)
        self.uids = tuple(sorted(c.uid for c in holders))
        self.mailbox_id = holders[0].mailbox_id if holders else 0


def refusal_text(holders: Sequence[Claim]) -> str:
    """``alice is handling this message (claimed 10:42). Ask alice, or an admin
    can release it.`` — or, for several messages, how many by whom."""
    if len(holders) == 1:
        c = holders[0]
        return (
            f"{c.user} is handling this message (claimed {claimed_when(c.claimed_at)}). "
            f"Ask {c.user}, or an admin can release it."
        )
    by_user = Counter(c.user for c in holders)
    who = ", ".join(f"{n} by {u}" for u, n in sorted(by_user.items(), key=lambda kv: (-kv[1], kv[0])))
    since = claimed_when(min(c.claimed_at for c in holders))
    names = " or ".join(sorted(by_user))
    return (
        f"nothing done: {len(holders)} of these messages are being handled by colleagues "
        f"({who}; claimed since {since}). Ask {names}, or an admin can release them."
    )


def forbids(operation: ops.Operation[Any]) -> bool:
    """Whether ``operation`` may not touch a message claimed by someone else."""
    match operation:
        case ops.Move() | ops.Expunge() | ops.Delete():
            return True
        case ops.StoreFlags(mode=mode, flags=flags):
            if any(is_claim_flag(f) for f in flags):
                return True  # claiming, releasing or forging the claimant keyword
            if mode != "remove" and any(f.lower() == "\\deleted" for f in flags):
                return True
            return mode == "set"  # a replace drops $Claimed and the claimant keyword
    return False


class ClaimPolicy(Policy):
    """``inner``'s permissions plus the claims' conflict check; ``mailbox_id``
    finds a folder's id by name (None: no such folder)."""

    def __init__(
        self, inner: Policy, registry: ClaimRegistry, mailbox_id: Callable[[str], int | None]
    ) -> None:
        self.inner = inner
        self.registry = registry
        self._mailbox_id = mailbox_id

    def authorize(self, actor: Actor, mailbox: str, right: str) -> None:
        self.inner.authorize(actor, mailbox, right)

    def rights(self, actor: Actor, mailbox: str) -> str:
        return self.inner.rights(actor, mailbox)

    def is_admin(self, actor: Actor) -> bool:
        is_admin: Callable[[Actor], bool] | None = getattr(self.inner, "is_admin", None)
        return actor.user_id == 0 if is_admin is None else is_admin(actor)

    def held_by_others(self, actor: Actor, mailbox: str, uids: Sequence[int]) -> list[Claim]:
        """The claims of members other than ``actor`` on ``uids`` (one lookup each)."""
        mb_id = self._mailbox_id(mailbox)
        if mb_id is None:
            claims: dict[int, Claim] = {}
        elif self.registry.shared:
            claims = self.registry.fresh(mb_id)  # another node may have claimed meanwhile
        else:
            claims = self.registry.in_mailbox(mb_id)
        if not claims or actor.user_id == 0:
            # No claims here, or the gateway/CLI itself (expiry, admin release).
            return []
        get = claims.get
        return [c for u in uids if (c := get(u)) is not None and c.user_id != actor.user_id]

    def check_conflicts(
        self, actor: Actor, mailbox: str, uids: Sequence[int], operation: ops.Operation[Any]
    ) -> None:
        self.inner.check_conflicts(actor, mailbox, uids, operation)
        if not forbids(operation):
            return
        held = self.held_by_others(actor, mailbox, uids)
        if held:
            raise ClaimConflict(held)


__all__ = ["ClaimConflict", "ClaimPolicy", "forbids", "refusal_text"]
