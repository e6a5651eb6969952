"""The departures record: where messages went when they left a folder.

One row per (folder, UIDVALIDITY, UID): who took it away (a team member, or
nobody when the sync saw it gone at the hoster), how (moved to a folder,
deleted) and when.  Rows are written inside the transaction of the replica's
expunge (``Replica.expunge``: the write path passes ``writer(...)`` as part of
its hook; the sync's expunges get ``hoster`` rows from the replica itself), so
a message is never gone from the replica without its departure, and read when
a colleague's command names a message that is no longer there
(``gateway/departures.py`` turns them into the refusal's text).

Bounded, because a row is only useful while some session may still name the
UID (until that session is told of the expunge, at the latest when it ends):
``RETENTION_SECONDS`` and ``MAX_ROWS``, pruned every ``PRUNE_EVERY`` writes in
the writing transaction.  Portable SQLAlchemy Core: the upsert is
``ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL (half the cost of a delete
and an insert for a bulk move), a delete and an insert elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, and_, delete, func, select

from ..store.schema import departures
from ..store.upsert import upsert

Kind = Literal["moved", "deleted", "hoster"]

#: A departure is looked up only while a session still shows the message (it has
#: not been told of the expunge yet: an idle client, a long-running command, a
#: laptop asleep with its connection open).  A day covers a working day's open
#: sessions; a session older than that sees at worst the generic text.
RETENTION_SECONDS = 24 * 3600.0
#: Hard cap on rows, whatever the age: a folder of 100,000 messages moved in one
#: go stays fully recorded, a mass clean-up every few minutes cannot grow the store
#: without bound.
MAX_ROWS = 200_000
#: Writes between two prunes: pruning is a range delete on the ``ts`` index, cheap
#: but not free, so it runs in one of every ``PRUNE_EVERY`` expunge transactions.
PRUNE_EVERY = 64
#: UIDs per statement (bound parameters: SQLite allows 32,766, PostgreSQL 65,535).
CHUNK = 500


@dataclass(frozen=True)
class Departure:
    """Where one message went: ``user`` None means seen gone at the hoster."""

    uid: int
    kind: Kind
    user: str | None
    dest: str | None
    at: float


class DepartureLog:
    """Writes (as transaction hooks) and reads of the ``departures`` table."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._writes = 0

    def writer(
        self,
        mailbox_id: int,
        uidvalidity: int,
        uids: Iterable[int],
        kind: Kind,
        user: str | None = None,
        dest: str | None = None,
    ) -> Callable[[Connection], None]:
        """A hook writing the departures of ``uids`` in the caller's transaction;
        a later departure of the same key replaces an earlier one (the sync may
        have seen a gateway move at the hoster before the move's own commit)."""
        ordered = sorted(set(uids))
        at = self.clock()

        def write(db: Connection) -> None:
            if not ordered:
                return
            for i in range(0, len(ordered), CHUNK):
                part = ordered[i : i + CHUNK]
                rows = [
                    {
                        "mailbox_id": mailbox_id,
                        "uidvalidity": uidvalidity,
                        "uid": u,
                        "ts": at,
                        "kind": kind,
                        "user_name": user,
                        "dest": dest,
                    }
                    for u in part
                ]
                upsert(db, departures, rows, key=("mailbox_id", "uidvalidity", "uid"))
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                self.prune(db)

        return write

    def prune(self, db: Connection) -> int:
        """Drop rows older than ``RETENTION_SECONDS``, then the oldest beyond
        ``MAX_ROWS``; returns how many went."""
        gone = db.execute(delete(departures).where(departures.c.ts < self.clock() - RETENTION_SECONDS))
        removed = gone.rowcount or 0
        count = db.execute(select(func.count()).select_from(departures)).scalar_one()
        if count > MAX_ROWS:
            # The ts of the oldest row to keep; older ones go.  Rows of the same
            # moment as it stay (one bulk move is never cut in half).
            cut = db.execute(
                select(departures.c.ts).order_by(departures.c.ts.desc()).offset(MAX_ROWS - 1).limit(1)
            ).scalar_one()
            removed += db.execute(delete(departures).where(departures.c.ts < cut)).rowcount or 0
        return removed

    def lookup(self, mailbox_id: int, uidvalidity: int, uids: Sequence[int]) -> dict[int, Departure]:
        """The departures known for ``uids`` (absent: none recorded, or pruned)."""
        found: dict[int, Departure] = {}
        ordered = sorted(set(uids))
        with self.engine.connect() as db:
            for i in range(0, len(ordered), CHUNK):
                part = ordered[i : i + CHUNK]
                rows = db.execute(
                    select(departures).where(
                        and_(
                            departures.c.mailbox_id == mailbox_id,
                            departures.c.uidvalidity == uidvalidity,
                            departures.c.uid.in_(part),
                        )
                    )
                ).all()
                for r in rows:
                    found[r.uid] = Departure(r.uid, r.kind, r.user_name, r.dest, r.ts)
        return found
