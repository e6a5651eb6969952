"""Claims: which team member handles which message (issue 12).

The store (table ``claims``) is the authority; the unique constraint on
(mailbox id, UID) decides the one winner when two members claim the same
message at the same moment: each claim is an INSERT, the loser's fails with
``IntegrityError`` — no Python lock, so it holds across processes and nodes.

``ClaimRegistry`` keeps an in-memory index of every open claim next to the
store (a dict per mailbox id), so the conflict check costs one dictionary
lookup per message.  Every change goes through the registry, which writes the
store first and updates the index only after the commit: the index never
holds a claim the store does not.  Changes made by another process (the CLI
without a running gateway) are read at the next ``load``.

Keywords (what clients see): ``$Claimed`` on every claimed message, and the
claimant's own keyword ``$claimed_<name>`` (lower case, an IMAP atom that
Thunderbird accepts as a tag key), see ``claimant_keyword``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from ..store.meta import lasting_uidvalidity
from ..store.schema import claims as claims_table
from ..store.schema import users

#: The keyword a member sets to claim a message (compared case-insensitively:
#: Thunderbird sends its tag keys in lower case).
CLAIMED: Final = "$Claimed"
#: Prefix of the claimant keyword; the rest is the member's name, see below.
CLAIMANT_PREFIX: Final = "$claimed_"
#: Characters kept from a user name in the claimant keyword: an IMAP atom allows
#: more, but Thunderbird's tag keys and other clients' keyword UIs cope with these.
_UNSAFE = re.compile(r"[^a-z0-9._-]")

Hook = Callable[[Connection], None]
#: ``meta`` key of the "Claimed by me" folders' UIDVALIDITY.
UIDVALIDITY_KEY: Final = "claims_uidvalidity"


def claimant_keyword(user: str) -> str:
    """``$claimed_alice`` for alice: lower case, characters outside
    ``[a-z0-9._-]`` replaced by ``_``."""
    return CLAIMANT_PREFIX + _UNSAFE.sub("_", user.lower())


def is_claim_flag(flag: str) -> bool:
    """``$Claimed`` or a claimant keyword (any case)."""
    low = flag.lower()
    return low == CLAIMED.lower() or low.startswith(CLAIMANT_PREFIX)


def claimed_when(ts: float, now: float | None = None) -> str:
    """``10:42`` today, ``2026-12-02 10:42`` on another day (local time)."""
    at = datetime.fromtimestamp(ts)
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    return at.strftime("%H:%M") if at.date() == today else at.strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Claim:
    mailbox_id: int
    uid: int
    user_id: int
    user: str
    claimed_at: float
    #: None: never expires.
    expires_at: float | None = None
    #: The row's id: never reused (AUTOINCREMENT), kept when the claim follows a
    #: move — the UID of the message in the claimant's "Claimed by me" folder.
    id: int = 0


class ClaimTaken(Exception):
    """The store refused a claim: someone holds one of the messages already."""

    def __init__(self, holders: Sequence[Claim]) -> None:
        super().__init__(f"{len(holders)} message(s) claimed by someone else")
        self.holders = tuple(holders)


class ClaimRegistry:
    """The claims of the store, with an in-memory index by mailbox id and UID."""

    def __init__(self, engine: Engine, *, shared: bool = False) -> None:
        self.engine = engine
        #: Other gateway nodes claim on the same store (PostgreSQL): a check that can
        #: refuse reads the folder's claims from the store first (``fresh``).
        self.shared = shared
        self._by_mailbox: dict[int, dict[int, Claim]] = {}

    # -- reads (memory only) ---------------------------------------------------------
    def load(self) -> None:
        """(Re)read every claim from the store."""
        q = select(claims_table, users.c.name).join(users, users.c.id == claims_table.c.user_id)
        index: dict[int, dict[int, Claim]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                c = Claim(r.mailbox_id, r.uid, r.user_id, r.name, r.claimed_at, r.expires_at, r.id)
                index.setdefault(c.mailbox_id, {})[c.uid] = c
        self._by_mailbox = index

    def fresh(self, mailbox_id: int) -> dict[int, Claim]:
        """The claims of one mailbox as the store holds them now (one indexed query),
        kept in memory: with several nodes, another node's claim counts at once."""
        q = (
            select(claims_table, users.c.name)
            .join(users, users.c.id == claims_table.c.user_id)
            .where(claims_table.c.mailbox_id == mailbox_id)
        )
        with self.engine.connect() as conn:
            per = {
                r.uid: Claim(r.mailbox_id, r.uid, r.user_id, r.name, r.claimed_at, r.expires_at, r.id)
                for r in conn.execute(q)
            }
        if per:
            self._by_mailbox[mailbox_id] = per
        else:
            self._by_mailbox.pop(mailbox_id, None)
        return per

    def in_mailbox(self, mailbox_id: int) -> dict[int, Claim]:
        """The claims of one mailbox by UID (empty dict when none: the fast path)."""
        return self._by_mailbox.get(mailbox_id) or {}

    def get(self, mailbox_id: int, uid: int) -> Claim | None:
        return self.in_mailbox(mailbox_id).get(uid)

    def all(self) -> list[Claim]:
        return [c for per in self._by_mailbox.values() for c in per.values()]

    def expired(self, now: float) -> list[Claim]:
        """The claims whose time is up.  With several nodes (``shared``) the index is read
        from the store first: it learns other nodes' claims only where a check asks
        (``fresh``), and the sweep (which calls this, then ``all``) must neither miss a claim
        made on another node nor end one that another node ended (and maybe someone
        claimed anew) -- one query over the open claims, every sweep."""
        if self.shared:
            self.load()
        return [c for c in self.all() if c.expires_at is not None and c.expires_at <= now]

    # -- writes (store first, then the index) ------------------------------------------
    def claim(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        user_id: int,
        user: str,
        *,
        expires_after: float | None,
        now: float | None = None,
        also: Hook | None = None,
    ) -> list[Claim]:
        """Claim ``uids`` for the user, all or none, in one transaction (with
        ``also``, e.g. the journal entry).  Raises ``ClaimTaken`` naming the
        holders when any of them is claimed already (by the unique constraint)."""
        at = time.time() if now is None else now
        expires = at + expires_after if expires_after else None
        new = [Claim(mailbox_id, u, user_id, user, at, expires) for u in uids]
        if not new:
            return []
        rows = [
            {
                "mailbox_id": mailbox_id,
                "uid": c.uid,
                "user_id": user_id,
                "claimed_at": at,
                "expires_at": expires,
            }
            for c in new
        ]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(claims_table), rows)
                t = claims_table.c
                got = conn.execute(
                    select(t.uid, t.id).where(t.mailbox_id == mailbox_id, t.uid.in_([c.uid for c in new]))
                )
                ids = {r.uid: r.id for r in got}
                if also is not None:
                    also(conn)
        except IntegrityError:
            # Lost a race (or the index was behind another process): learn the truth.
            self.load()
            held = [h for c in new if (h := self.get(mailbox_id, c.uid)) is not None]
            raise ClaimTaken(held) from None
        new = [dataclasses.replace(c, id=ids.get(c.uid, 0)) for c in new]
        per = self._by_mailbox.setdefault(mailbox_id, {})
        for c in new:
            per[c.uid] = c
        return new

    def uidvalidity(self) -> int:
        """The UIDVALIDITY of every "Claimed by me" folder (made once, kept in ``meta``):
        the UIDs there are claim ids, which are never reused."""
        return lasting_uidvalidity(self.engine, UIDVALIDITY_KEY)

    def release(self, mailbox_id: int, uids: Iterable[int], *, also: Hook | None = None) -> list[Claim]:
        """End the claims on ``uids`` (those that exist); returns them.

        Only the very claims the index holds are deleted (folder, UID *and* row id): an index
        that is behind the store (another node released the claim and a colleague claimed
        the message anew) never ends the newer claim.  When none of them is left in the
        store (another node ended them first), nothing is journaled (``also``) and none is
        returned."""
        per = self._by_mailbox.get(mailbox_id, {})
        gone = [c for u in uids if (c := per.get(u)) is not None]
        t = claims_table.c
        with self.engine.begin() as conn:
            deleted = 0
            known = [(c.uid, c.id) for c in gone if c.id]
            unknown = [c.uid for c in gone if not c.id]
            if known:
                deleted += conn.execute(
                    delete(claims_table).where(t.mailbox_id == mailbox_id, tuple_(t.uid, t.id).in_(known))
                ).rowcount
            if unknown:
                deleted += conn.execute(
                    delete(claims_table).where(t.mailbox_id == mailbox_id, t.uid.in_(unknown))
                ).rowcount
            if also is not None and (deleted or not gone):
                also(conn)
        for c in gone:
            per.pop(c.uid, None)
        if not per:
            self._by_mailbox.pop(mailbox_id, None)
        return gone if deleted else []

    def move(
        self, mailbox_id: int, mapping: dict[int, int], dest_id: int, *, also: Hook | None = None
    ) -> list[Claim]:
        """The claims on ``mapping``'s source UIDs follow their messages to
        ``dest_id`` (new UIDs); returns the moved claims at their new place."""
        per = self._by_mailbox.get(mailbox_id, {})
        moving = [(c, mapping[c.uid]) for c in list(per.values()) if c.uid in mapping]
        if not moving:
            return []
        # One executemany: a bulk move of many claimed messages is one round trip.
        stmt = (
            update(claims_table)
            .where(claims_table.c.mailbox_id == mailbox_id, claims_table.c.uid == bindparam("o_uid"))
            .values(mailbox_id=dest_id, uid=bindparam("n_uid"))
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, [{"o_uid": c.uid, "n_uid": new_uid} for c, new_uid in moving])
            if also is not None:
                also(conn)
        dest = self._by_mailbox.setdefault(dest_id, {})
        moved = []
        for c, new_uid in moving:
            per.pop(c.uid, None)
            n = dataclasses.replace(c, mailbox_id=dest_id, uid=new_uid)
            dest[new_uid] = n
            moved.append(n)
        if not per:
            self._by_mailbox.pop(mailbox_id, None)
        return moved


__all__ = [
    "CLAIMANT_PREFIX",
    "CLAIMED",
    "Claim",
    "ClaimRegistry",
    "ClaimTaken",
    "claimant_keyword",
    "claimed_when",
    "is_claim_flag",
]
