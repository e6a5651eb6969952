"""Who answered which mail: what the reply guard remembers, in the store.

Two tables (``store/schema.py``): ``submissions`` — every message a team member
submitted through the gateway's SMTP server, with its state (``sending`` →
``sent``, or ``unknown`` when the gateway stopped between the end of the data
and the hoster's answer; ``refused`` when the guard held it back) — and
``answer_marks``, written by the write path with each STORE journal entry that
set ``\\Answered`` (``team/journal.py``).  In the store, not in memory: an
override must work when the client sends again on another connection, after a
restart, and later on another gateway node.

Each change that goes with a journal entry is written in one transaction with
it.  The methods are synchronous (one or two indexed statements); callers on
the event loop run them in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, or_, select, update

from ..store.schema import answer_marks, submissions
from .journal import JournalEntry

#: Refused attempts are kept this long at least (the override window is at most
#: a day); older ones are pruned.
KEEP_REFUSED_SECONDS = 2 * 86400
#: Sent messages are remembered this long for the guard ("alice already replied")
#: and for recognising a client's retransmission; a team sending 1,000 mails a day
#: keeps ~400,000 rows (~100 bytes each).
KEEP_SENT_SECONDS = 400 * 86400
#: Message-IDs asked about in one query, at most (SQL parameter limits).
MAX_IDS_PER_QUERY = 500


@dataclass(frozen=True)
class SubmissionRow:
    id: int
    ts: float
    user: str
    message_id: str
    recipients: str
    subject: str
    original: str | None
    state: str
    reason: str | None


@dataclass(frozen=True)
class AnswerMarkRow:
    ts: float
    user: str
    message_id: str
    mailbox: str
    uid: int


def recipients_key(recipients: Iterable[str]) -> str:
    """Envelope recipients as stored: lower case, sorted, unique, ``", "``-joined."""
    return ", ".join(sorted({r.strip().lower() for r in recipients}))


def _row(r: object) -> SubmissionRow:
    return SubmissionRow(
        r.id, r.ts, r.user_name, r.message_id, r.recipients, r.subject,  # type: ignore[attr-defined]
        r.original, r.state, r.reason,  # type: ignore[attr-defined]
    )


class ReplyLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- reads --------------------------------------------------------------------------
    def replies_to(self, originals: Sequence[str]) -> list[SubmissionRow]:
        """Replies to these Message-IDs that went out, may have, or are going out now: any user."""
        out: list[SubmissionRow] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(originals):
                rows = conn.execute(
                    select(submissions).where(
                        submissions.c.original.in_(chunk),
                        submissions.c.state.in_(("sending", "sent", "unknown")),
                    )
                )
                out.extend(_row(r) for r in rows)
        return out

    def marks_for(self, message_ids: Sequence[str]) -> list[AnswerMarkRow]:
        out: list[AnswerMarkRow] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(message_ids):
                rows = conn.execute(select(answer_marks).where(answer_marks.c.message_id.in_(chunk)))
                out.extend(AnswerMarkRow(r.ts, r.user_name, r.message_id, r.mailbox, r.uid) for r in rows)
        return out

    def own_attempts(
        self, user: str, message_id: str, original: str | None, since: float
    ) -> list[SubmissionRow]:
        """``user``'s submissions of ``message_id`` (any time), and their refused attempts
        since ``since`` at the same original (or at none)."""
        refused = submissions.c.state == "refused"
        same_original = (
            submissions.c.original.is_(None) if original is None else submissions.c.original == original
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(submissions).where(
                    submissions.c.user_name == user,
                    or_(
                        (submissions.c.message_id == message_id) & ~refused,
                        refused & same_original & (submissions.c.ts >= since),
                    ),
                )
            )
            return [_row(r) for r in rows]

    def recent(self, limit: int = 100) -> list[SubmissionRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(submissions).order_by(submissions.c.id.desc()).limit(limit))
            return [_row(r) for r in rows]

    # -- writes -------------------------------------------------------------------------
    def begin(
        self,
        *,
        user: str,
        message_id: str,
        recipients: str,
        subject: str,
        original: str | None,
        ts: float | None = None,
    ) -> int:
        """Record a message about to be handed to the hoster (state ``sending``)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(submissions).values(
                    ts=ts if ts is not None else time.time(), user_name=user, message_id=message_id,
                    recipients=recipients, subject=subject, original=original, state="sending",
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish(self, row_id: int, state: str, entry: JournalEntry, reason: str | None = None) -> None:
        """Settle a ``sending`` row (``sent``, ``unknown``) with its journal entry, in one
        transaction; ``failed`` (the hoster refused: nothing went out) deletes it."""
        with self.engine.begin() as conn:
            if state == "failed":
                conn.execute(delete(submissions).where(submissions.c.id == row_id))
            else:
                conn.execute(
                    update(submissions)
                    .where(submissions.c.id == row_id)
                    .values(state=state, reason=reason, ts=entry.ts)
                )
            entry.write(conn)

    def refuse(
        self,
        *,
        user: str,
        message_id: str,
        recipients: str,
        subject: str,
        original: str | None,
        reason: str,
        entry: JournalEntry,
    ) -> None:
        """Record a refused attempt (for the override window) with its journal entry."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(submissions).values(
                    ts=entry.ts, user_name=user, message_id=message_id, recipients=recipients,
                    subject=subject, original=original, state="refused", reason=reason,
                )
            )
            entry.write(conn)

    def settle_interrupted(self) -> int:
        """At start: messages left ``sending`` by a stopped process have an unknown
        outcome (the hoster may have taken them).  Returns how many."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(submissions)
                .where(submissions.c.state == "sending")
                .values(state="unknown", reason="the gateway stopped while the mail server was taking it")
            )
            return int(result.rowcount or 0)

    def prune(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            a = conn.execute(
                delete(submissions).where(
                    submissions.c.state == "refused", submissions.c.ts < now - KEEP_REFUSED_SECONDS
                )
            ).rowcount
            b = conn.execute(
                delete(submissions).where(
                    submissions.c.state != "sending", submissions.c.ts < now - KEEP_SENT_SECONDS
                )
            ).rowcount
            c = conn.execute(delete(answer_marks).where(answer_marks.c.ts < now - KEEP_SENT_SECONDS)).rowcount
        return int((a or 0) + (b or 0) + (c or 0))


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    items = list(dict.fromkeys(items))
    for i in range(0, len(items), MAX_IDS_PER_QUERY):
        yield items[i : i + MAX_IDS_PER_QUERY]
