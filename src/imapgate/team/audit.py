"""Reading the audit journal: filtered queries and the retention purge.

``search`` answers ``imapgate audit`` (through ``AdminService.audit``): every
filter is a condition on indexed columns where it can be — ``user_name, ts``
for "what did alice do this week", ``journal_messages.message_id`` for one
message's history across folders — newest first, bounded by ``limit``.
``purge`` is the only deletion the journal ever sees: entries older than
``[audit] retention``, in short batches so a large purge never holds the
store's write lock for long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, and_, delete, func, or_, select

from ..store.schema import journal, journal_messages
from .journal import JournalEntry, MessageRef, entry_of

#: Entries a query returns at most, whatever ``--limit`` says: a terminal or a
#: script reads that many comfortably, and the query stays one index range.
MAX_LIMIT = 100_000
#: Entries one purge transaction deletes: short enough that the gateway's own
#: writes never wait long for the store's lock.
PURGE_BATCH = 5_000


@dataclass(frozen=True)
class AuditScope:
    """What one member may see of the journal (the dashboard's permission filter, in SQL so
    that a page is a page): entries about one of ``folders``, and entries about no folder
    that are ``user``'s own."""

    user: str
    folders: tuple[str, ...]


@dataclass(frozen=True)
class AuditQuery:
    """The filters of ``imapgate audit``; None (or "") means "any"."""

    user: str | None = None
    folder: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None
    message_id: str | None = None
    search: str | None = None
    limit: int = 100
    #: Only what a member may see (None: everything, as for an admin).
    scope: AuditScope | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One journal entry as read back, with its row id."""

    id: int
    entry: JournalEntry

    def to_json(self) -> dict[str, object]:
        """The entry for scripts (``imapgate audit --json``): stable keys."""
        e = self.entry
        return {
            "id": self.id,
            "time": e.ts,
            "user": e.user,
            "action": e.action_word,
            "command": e.command,
            "folder": e.mailbox,
            "uids": e.uids,
            "result": e.result,
            "detail": e.detail,
            "client": e.client,
            "client_id": e.client_id or None,
            "address": e.address or None,
            "origin": e.origin,
            "messages": [
                {"folder": m.mailbox, "uid": m.uid, "message_id": m.message_id, "subject": m.subject}
                for m in e.messages
            ],
        }


def message_id_forms(message_id: str) -> list[str]:
    """A Message-ID as typed, with and without its angle brackets (headers keep them)."""
    bare = message_id.strip().removeprefix("<").removesuffix(">")
    return [f"<{bare}>", bare]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def conditions(q: AuditQuery) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``q`` (portable SQL: SQLite and PostgreSQL)."""
    where: list[ColumnElement[bool]] = []
    if q.user:
        where.append(journal.c.user_name == q.user)
    if q.folder:
        # Entries in the folder, and moves/copies into it ("to F").
        where.append(or_(journal.c.mailbox == q.folder, journal.c.detail == f"to {q.folder}"))
    if q.action:
        where.append(journal.c.action == q.action)
    if q.since is not None:
        where.append(journal.c.ts >= q.since)
    if q.until is not None:
        where.append(journal.c.ts < q.until)
    if q.scope is not None:
        own = and_(journal.c.mailbox.is_(None), journal.c.user_name == q.scope.user)
        where.append(or_(own, journal.c.mailbox.in_(q.scope.folders)) if q.scope.folders else own)
    if q.message_id:
        about = select(journal_messages.c.entry_id).where(
            journal_messages.c.message_id.in_(message_id_forms(q.message_id))
        )
        where.append(journal.c.id.in_(about))
    if q.search:
        pattern = _like(q.search)
        in_messages = select(journal_messages.c.entry_id).where(
            or_(
                journal_messages.c.subject.ilike(pattern, escape="\\"),
                journal_messages.c.message_id.ilike(pattern, escape="\\"),
            )
        )
        where.append(
            or_(
                *(
                    col.ilike(pattern, escape="\\")
                    for col in (journal.c.detail, journal.c.mailbox, journal.c.user_name, journal.c.client)
                ),
                journal.c.id.in_(in_messages),
            )
        )
    return where


def search(engine: Engine, q: AuditQuery) -> list[AuditRecord]:
    """The entries matching ``q``, newest first, at most ``q.limit`` (capped at
    ``MAX_LIMIT``), each with the messages it is about."""
    limit = max(1, min(q.limit, MAX_LIMIT))
    stmt = select(journal).where(*conditions(q)).order_by(journal.c.ts.desc(), journal.c.id.desc())
    with engine.connect() as conn:
        rows = conn.execute(stmt.limit(limit)).all()
        ids = [int(r.id) for r in rows]
        refs: dict[int, list[MessageRef]] = {}
        for chunk in _chunks(ids, 500):
            found = conn.execute(
                select(journal_messages)
                .where(journal_messages.c.entry_id.in_(chunk))
                .order_by(journal_messages.c.id)
            )
            for m in found:
                refs.setdefault(int(m.entry_id), []).append(
                    MessageRef(m.mailbox, int(m.uid), m.message_id, m.subject)
                )
    return [AuditRecord(int(r.id), entry_of(r, tuple(refs.get(int(r.id), ())))) for r in rows]


def folders_since(engine: Engine, after_id: int) -> tuple[set[str], int]:
    """The folder names of the entries with an id above ``after_id``, and the highest id
    read (for a caller that keeps the names and asks again for what is new)."""
    with engine.connect() as conn:
        top = conn.execute(select(func.max(journal.c.id))).scalar()
        if top is None or int(top) <= after_id:
            return set(), after_id
        names = conn.execute(
            select(journal.c.mailbox)
            .where(journal.c.id > after_id, journal.c.id <= int(top), journal.c.mailbox.is_not(None))
            .distinct()
        ).scalars()
        return {str(n) for n in names}, int(top)


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def purge(engine: Engine, older_than: float) -> int:
    """Delete the entries (with their message rows) from before ``older_than``
    (seconds since the epoch); returns how many went."""
    total = 0
    while True:
        with engine.begin() as conn:
            due = select(journal.c.id).where(journal.c.ts < older_than).order_by(journal.c.id)
            ids = [int(i) for (i,) in conn.execute(due.limit(PURGE_BATCH))]
            if not ids:
                return total
            conn.execute(delete(journal_messages).where(journal_messages.c.entry_id.in_(ids)))
            conn.execute(delete(journal).where(journal.c.id.in_(ids)))
        total += len(ids)
