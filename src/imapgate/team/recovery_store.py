"""The store side of recoverable deletes: what was removed, and where its copy is.

One ``RecoveryItem`` per message the gateway copied into the hidden recovery
folder before removing it upstream (gateway/recovery.py does the upstream part).
Rows move through states: ``pending`` (the removal is under way; listed nowhere)
-> ``kept`` (recoverable) -> ``restored`` or ``purged``; ``void`` when the
removal did not happen (the original stayed, its copy was dropped).  Only
``kept`` items are listed, restored or purged, so a message is never both in
its folder and recoverable once the removal has settled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update

from ..store.meta import lasting_uidvalidity
from ..store.schema import recovery_items, recovery_trash

PENDING = "pending"
KEPT = "kept"
RESTORED = "restored"
PURGED = "purged"
VOID = "void"
#: The ``meta`` key holding the UIDVALIDITY of every user's "Recovered" folder.
UIDVALIDITY_KEY = "recovery_uidvalidity"
#: Trash origins older than this are forgotten (a year: longer than any sane retention).
TRASH_MEMORY_SECONDS = 366 * 86400.0


@dataclass
class RecoveryItem:
    """One removed message and its copy (``copy_uid`` None: not known yet)."""

    mailbox: str
    uidvalidity: int
    uid: int
    copy_uidvalidity: int
    internal_date: float
    size: int
    how: str
    restore_to: str = ""
    message_id: str | None = None
    subject: str = ""
    sender: str = ""
    date: str = ""
    flags: tuple[str, ...] = ()
    #: Each user's private flags of the message: {user id: flags}.
    private: dict[int, tuple[str, ...]] = field(default_factory=dict)
    removed_by: str | None = None
    client: str | None = None
    removed_at: float = field(default_factory=time.time)
    copy_uid: int | None = None
    state: str = PENDING
    intent_id: int | None = None
    done_at: float | None = None
    id: int = 0

    def row(self) -> dict[str, object]:
        return {
            "state": self.state,
            "intent_id": self.intent_id,
            "copy_uidvalidity": self.copy_uidvalidity,
            "copy_uid": self.copy_uid,
            "mailbox": self.mailbox,
            "uidvalidity": self.uidvalidity,
            "uid": self.uid,
            "restore_to": self.restore_to or self.mailbox,
            "message_id": self.message_id,
            "subject": self.subject,
            "sender": self.sender,
            "date": self.date,
            "internal_date": self.internal_date,
            "size": self.size,
            "flags": " ".join(self.flags),
            "private": json.dumps({str(k): list(v) for k, v in self.private.items()}),
            "removed_by": self.removed_by,
            "client": self.client,
            "removed_at": self.removed_at,
            "how": self.how,
            "done_at": self.done_at,
        }

    def payload(self) -> dict[str, object]:
        """The item as JSON (the intent that records a removal under way)."""
        out = self.row()
        out["flags"] = list(self.flags)
        out["private"] = {str(k): list(v) for k, v in self.private.items()}
        return out

    @classmethod
    def from_payload(cls, p: dict[str, object]) -> RecoveryItem:
        priv = p.get("private") or {}
        assert isinstance(priv, dict)
        flags = p.get("flags") or []
        assert isinstance(flags, list)
        item = cls(**{k: v for k, v in p.items() if k in _SCALARS})  # type: ignore[arg-type]
        item.flags = tuple(str(f) for f in flags)
        item.private = {int(k): tuple(v) for k, v in priv.items()}
        return item


_SCALARS = frozenset(
    {
        "mailbox", "uidvalidity", "uid", "copy_uidvalidity", "internal_date", "size", "how",
        "restore_to", "message_id", "subject", "sender", "date", "removed_by", "client",
        "removed_at", "copy_uid", "state", "intent_id", "done_at",
    }
)  # fmt: skip


def _item(r: object) -> RecoveryItem:
    m = r._mapping  # type: ignore[attr-defined]
    private = {int(k): tuple(v) for k, v in json.loads(m["private"] or "{}").items()}
    return RecoveryItem(
        mailbox=m["mailbox"], uidvalidity=m["uidvalidity"], uid=m["uid"],
        copy_uidvalidity=m["copy_uidvalidity"], internal_date=m["internal_date"], size=m["size"],
        how=m["how"], restore_to=m["restore_to"], message_id=m["message_id"], subject=m["subject"],
        sender=m["sender"], date=m["date"], flags=tuple(m["flags"].split()), private=private,
        removed_by=m["removed_by"], client=m["client"], removed_at=m["removed_at"],
        copy_uid=m["copy_uid"], state=m["state"], intent_id=m["intent_id"], done_at=m["done_at"],
        id=m["id"],
    )  # fmt: skip


@dataclass(frozen=True)
class ItemFilter:
    """Which kept items a listing shows (every field optional)."""

    folder: str | None = None
    user: str | None = None
    since: float | None = None
    search: str | None = None
    ids: tuple[int, ...] | None = None
    states: tuple[str, ...] = (KEPT,)


class RecoveryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writes ------------------------------------------------------------------------
    def add(self, items: Sequence[RecoveryItem], db: Connection | None = None) -> list[int]:
        """Insert ``items``; returns (and sets) their ids."""
        if db is None:
            with self.engine.begin() as conn:
                return self.add(items, conn)
        ids = []
        for item in items:
            key = db.execute(insert(recovery_items).values(**item.row())).inserted_primary_key
            assert key is not None
            item.id = int(key[0])
            ids.append(item.id)
        return ids

    def set_state(self, ids: Iterable[int], state: str, db: Connection | None = None) -> None:
        wanted = list(ids)
        if not wanted:
            return
        if db is None:
            with self.engine.begin() as conn:
                self.set_state(wanted, state, conn)
            return
        done = time.time() if state in (RESTORED, PURGED, VOID) else None
        db.execute(
            update(recovery_items).where(recovery_items.c.id.in_(wanted)).values(state=state, done_at=done)
        )

    def remember_trash(self, trash: str, origins: Sequence[tuple[str, str]]) -> None:
        """Messages (Message-ID, folder they came from) moved into ``trash``."""
        if not origins:
            return
        now = time.time()
        with self.engine.begin() as db:
            db.execute(delete(recovery_trash).where(recovery_trash.c.ts < now - TRASH_MEMORY_SECONDS))
            db.execute(
                insert(recovery_trash),
                [{"ts": now, "trash": trash, "message_id": mid, "origin": o} for mid, o in origins],
            )

    def trash_origin(self, trash: str, message_id: str) -> str | None:
        with self.engine.connect() as db:
            row = db.execute(
                select(recovery_trash.c.origin)
                .where(recovery_trash.c.trash == trash, recovery_trash.c.message_id == message_id)
                .order_by(recovery_trash.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else str(row[0])

    def uidvalidity(self) -> int:
        """The UIDVALIDITY of the "Recovered" folders (made once, kept in ``meta``)."""
        return lasting_uidvalidity(self.engine, UIDVALIDITY_KEY)

    # -- reads -------------------------------------------------------------------------
    def items(self, f: ItemFilter = ItemFilter(), *, limit: int | None = None) -> list[RecoveryItem]:
        c = recovery_items.c
        q = select(recovery_items).where(c.state.in_(f.states)).order_by(c.id)
        if f.folder is not None:
            q = q.where(or_(c.mailbox == f.folder, c.restore_to == f.folder))
        if f.user is not None:
            q = q.where(c.removed_by == f.user)
        if f.since is not None:
            q = q.where(c.removed_at >= f.since)
        if f.ids is not None:
            q = q.where(c.id.in_(f.ids))
        if f.search:
            like = f"%{f.search.lower()}%"
            q = q.where(
                or_(
                    func.lower(c.subject).like(like),
                    func.lower(c.sender).like(like),
                    func.lower(c.message_id).like(like),
                )
            )
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as db:
            return [_item(r) for r in db.execute(q)]

    def of_intent(self, intent_id: int) -> list[RecoveryItem]:
        with self.engine.connect() as db:
            q = select(recovery_items).where(recovery_items.c.intent_id == intent_id)
            return [_item(r) for r in db.execute(q)]

    def open_originals(self, mailbox: str, uidvalidity: int, uids: Iterable[int]) -> dict[int, int | None]:
        """Of ``uids`` in ``mailbox``, those with a pending or kept item already (a
        removal repeated for messages the hoster did not report gone), with the
        intent of each."""
        wanted = list(uids)
        c = recovery_items.c
        with self.engine.connect() as db:
            rows = db.execute(
                select(c.uid, c.intent_id).where(
                    and_(
                        c.mailbox == mailbox,
                        c.uidvalidity == uidvalidity,
                        c.uid.in_(wanted),
                        c.state.in_((PENDING, KEPT)),
                    )
                )
            )
            return {int(r[0]): r[1] for r in rows}

    def copy_uids(self, copy_uidvalidity: int) -> set[int]:
        """Copy UIDs any item claims (pending or kept) at that UIDVALIDITY."""
        c = recovery_items.c
        with self.engine.connect() as db:
            rows = db.execute(
                select(c.copy_uid).where(
                    c.copy_uidvalidity == copy_uidvalidity,
                    c.state.in_((PENDING, KEPT)),
                    c.copy_uid.is_not(None),
                )
            )
            return {int(r[0]) for r in rows}

    def expired(self, before: float) -> list[RecoveryItem]:
        c = recovery_items.c
        q = select(recovery_items).where(c.state == KEPT, c.removed_at < before).order_by(c.id)
        with self.engine.connect() as db:
            return [_item(r) for r in db.execute(q)]
