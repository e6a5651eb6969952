"""The audit journal: who changed what, when, from which client, with what result.

Entries are written by the write path inside the same store transaction as the
change itself (``entry.writer()`` gives the hook), so the journal never
claims a change that did not happen nor misses one that did.  Failed
operations are journaled too, in their own transaction.

An entry that set ``\\Answered`` on messages through the gateway carries them in
``answered``; they are written to ``answer_marks`` with the entry, so "who
answered this mail, and when" is one indexed lookup by Message-ID (the reply
guard, ``submission/guard.py``) rather than a parse of UID-set texts, which are
cut for bulk changes and change meaning when a folder is renamed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, insert, select

from ..store.schema import answer_marks, journal

#: Journal lines keep UID sets as text; beyond this they are cut (the mailbox
#: and count still say what happened) so one bulk operation cannot write megabytes.
MAX_UIDS_TEXT = 4000


@dataclass
class JournalEntry:
    user: str | None
    client: str | None
    command: str
    mailbox: str | None = None
    uids: str | None = None
    result: str = "OK"
    detail: str | None = None
    ts: float = field(default_factory=time.time)
    #: Messages this entry set \\Answered on: (mailbox, uid, Message-ID).
    answered: tuple[tuple[str, int, str], ...] = ()

    def row(self) -> dict[str, object]:
        uids = self.uids
        if uids is not None and len(uids) > MAX_UIDS_TEXT:
            uids = uids[:MAX_UIDS_TEXT] + "…"
        return {
            "ts": self.ts,
            "user_name": self.user,
            "client": self.client,
            "command": self.command,
            "mailbox": self.mailbox,
            "uids": uids,
            "result": self.result,
            "detail": self.detail,
        }

    def write(self, conn: Connection) -> None:
        """Insert the entry (and its answer marks) on ``conn``, in the caller's transaction."""
        conn.execute(insert(journal).values(**self.row()))
        if self.answered and self.result == "OK":
            conn.execute(
                insert(answer_marks),
                [
                    {"ts": self.ts, "user_name": self.user or "", "message_id": mid, "mailbox": mailbox,
                     "uid": uid}
                    for mailbox, uid, mid in self.answered
                ],
            )

    def writer(self) -> Callable[[Connection], None]:
        return self.write


class Journal:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, entry: JournalEntry) -> None:
        """Write ``entry`` in its own transaction (failures, reads worth auditing)."""
        with self.engine.begin() as conn:
            entry.write(conn)

    def recent(self, limit: int = 100) -> list[JournalEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(journal).order_by(journal.c.id.desc()).limit(limit)).all()
        return [
            JournalEntry(
                user=r.user_name,
                client=r.client,
                command=r.command,
                mailbox=r.mailbox,
                uids=r.uids,
                result=r.result,
                detail=r.detail,
                ts=r.ts,
            )
            for r in rows
        ]
