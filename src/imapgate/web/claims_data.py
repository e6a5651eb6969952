"""The dashboard's door to claims (issue 15 part B): who holds which message,
and the claim, release and "assign to" buttons.

Every change is one ``Service.execute`` of a ``StoreFlags`` — the very
operation an IMAP ``STORE +FLAGS ($Claimed)`` becomes — so ``ClaimOps``
decides the winner in the store, sets ``$Claimed`` and the claimant keyword
upstream (IMAP clients see them by the usual flag push), journals it, and
refuses a message someone else holds with the ``NO [INUSE]`` text, which the
page shows as it is.  No second write path.

**Assign to a colleague** is a claim in the colleague's name: the assigner
must hold the rights a claim needs (``w`` on the folder, and no one else's
claim on the message), then the STORE runs as the colleague, so the claim row,
the keyword and the journal entry are theirs; the journal's client names who
assigned it.  The colleague must be a gateway user who may read the folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..gateway import operations as ops
from ..gateway.app import Gateway
from ..gateway.claim_policy import refusal_text
from ..gateway.errors import OperationError
from ..gateway.policy import LOOKUP, READ, WRITE, Actor
from ..gateway.team_reads import CLAIMED, Claim, MailboxIndex

#: ``(actor, folder) -> rights`` (the dashboard's ``_rights``: MYRIGHTS through the pipeline).
RightsOf = Callable[[Actor, str], str]

__all__ = ["ClaimDesk", "ClaimView", "Refused"]


@dataclass(frozen=True, slots=True)
class ClaimView:
    user: str
    claimed_at: float
    expires_at: float | None


class Refused(Exception):
    """The gateway said NO: ``code`` is the IMAP response code (INUSE, NOPERM, ...)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class ClaimDesk:
    """Reads and changes claims for one dashboard (``Dashboard.claims``)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def in_folder(self, mailbox_id: int) -> dict[int, ClaimView]:
        """Claims of one folder by UID (one dictionary lookup in the store's cache)."""
        claims = getattr(self.gw.service, "claims", None)
        if claims is None:
            return {}
        return {
            uid: ClaimView(c.user, c.claimed_at, c.expires_at)
            for uid, c in claims.registry.in_mailbox(mailbox_id).items()
        }

    def of(self, mailbox_id: int, uid: int) -> ClaimView | None:
        claims = self.gw.service.claims
        c = claims.registry.get(mailbox_id, uid) if claims is not None else None
        return ClaimView(c.user, c.claimed_at, c.expires_at) if c is not None else None

    async def claim(self, actor: Actor, mb: MailboxIndex, uid: int) -> None:
        """→ ``StoreFlags(+FLAGS $Claimed)`` as ``actor``."""
        await self._store(actor, mb, uid, "add")

    async def release(self, actor: Actor, mb: MailboxIndex, uid: int) -> None:
        """→ ``StoreFlags(-FLAGS $Claimed)``: refused (INUSE) if a colleague holds it.
        Checked here too, before the STORE: the policy in force refuses it as well, but
        a refusal before any upstream change costs nothing (an admin releases through
        ``imapgate claim release`` / the Admin area)."""
        held = self._holder(mb, uid)
        if held is not None and held.user_id != actor.user_id:
            raise Refused("INUSE", refusal_text([held]))
        await self._store(actor, mb, uid, "remove")

    def _holder(self, mb: MailboxIndex, uid: int) -> Claim | None:
        claims = self.gw.service.claims
        return claims.registry.get(mb.id, uid) if claims is not None else None

    async def assign(self, actor: Actor, mb: MailboxIndex, uid: int, to: str, rights_of: RightsOf) -> str:
        """A claim in ``to``'s name (see the module docstring); returns their name."""
        user = self.gw.users.get(to)
        if user is None or user.disabled:
            raise Refused("NONEXISTENT", f"no team member {to!r}")
        name = mb.name
        if WRITE not in rights_of(actor, name):
            raise Refused("NOPERM", f"you may not claim messages in {name!r}")
        held = self._holder(mb, uid)
        if held is not None and held.user not in (actor.user, user.name):
            raise Refused("INUSE", refusal_text([held]))
        colleague = Actor(user.id, user.name, f"web dashboard (assigned by {actor.user})")
        theirs = rights_of(colleague, name)
        if LOOKUP not in theirs or READ not in theirs:
            raise Refused("NOPERM", f"{user.name} may not read {name!r}")
        if held is not None and held.user == actor.user:
            await self._store(actor, mb, uid, "remove")  # hand it over: mine ends first
        await self._store(colleague, mb, uid, "add")
        return user.name

    async def _store(self, actor: Actor, mb: MailboxIndex, uid: int, mode: ops.StoreMode) -> None:
        op = ops.StoreFlags(mb, [uid], mode, (CLAIMED,))
        try:
            await self.gw.service.execute(actor, op)
        except OperationError as exc:
            raise Refused(exc.code or "CANNOT", exc.text) from None
