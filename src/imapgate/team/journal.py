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

The audit journal (issue 13) adds, all optional with defaults so every writer
keeps working: the action word (``team/audit_actions.py``; derived from the
command when not given), the client's IMAP ID and address apart, the origin
("gateway", or "hoster" for changes the sync found), and the messages the entry
is about (``messages``: UID, Message-ID, subject) in ``journal_messages``, so a
message's history is one indexed lookup by Message-ID across folders.  Entries
are only ever inserted; the one deletion is the retention purge
(``team/audit.py``).  Build entries with keyword arguments (``JournalEntry.by``
takes the actor's fields).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Row, insert, select

from ..store.schema import answer_marks, journal, journal_messages
from .audit_actions import action_of

#: Journal lines keep UID sets as text; beyond this they are cut (the mailbox
#: and count still say what happened) so one bulk operation cannot write megabytes.
MAX_UIDS_TEXT = 4000
#: Per-message rows one entry writes at most: an expunge of a whole large folder stays
#: one quick transaction (10,000 rows take about 40 ms on SQLite); beyond, the entry's
#: UID text and detail still say what happened, but ``--message-id`` does not find the
#: rest.
MAX_MESSAGE_ROWS = 10_000
#: Longest subject kept per message row (a subject is for recognising the mail).
MAX_SUBJECT = 200
#: Messages without a subject whose subject an entry looks up in earlier entries (by
#: Message-ID, indexed): a single message's history gets it; a bulk change stays cheap.
SUBJECT_LOOKUPS = 100
#: Where a change was made.
GATEWAY = "gateway"
HOSTER = "hoster"


@dataclass(frozen=True)
class MessageRef:
    """One message an entry is about, as it was then."""

    mailbox: str
    uid: int
    message_id: str | None = None
    subject: str | None = None


class ActorLike(Protocol):
    """What the journal needs of an actor (``gateway.policy.Actor``)."""

    @property
    def user(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def address(self) -> str: ...


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
    #: The action word (``audit_actions.ACTIONS``); "" derives it from the command.
    action: str = ""
    #: The client's IMAP ID ("Thunderbird 128.3") and peer address, apart.
    client_id: str = ""
    address: str = ""
    #: ``GATEWAY``, or ``HOSTER`` for a change made at the hoster that the sync found.
    origin: str = GATEWAY
    #: The messages this entry is about (``journal_messages`` rows).
    messages: tuple[MessageRef, ...] = ()

    @classmethod
    def by(cls, actor: ActorLike, command: str, **fields: Any) -> JournalEntry:
        """An entry for ``actor`` (user, client, client ID and address from it)."""
        return cls(
            user=actor.user,
            client=actor.client,
            command=command,
            client_id=actor.client_id,
            address=actor.address,
            **fields,
        )

    @property
    def action_word(self) -> str:
        return self.action or action_of(self.command, self.result, self.detail)

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
            "action": self.action_word,
            "client_id": self.client_id or None,
            "address": self.address or None,
            "origin": self.origin,
        }

    def message_rows(self, entry_id: int, known: dict[str, str] | None = None) -> list[dict[str, object]]:
        """The ``journal_messages`` rows; ``known``: subjects by Message-ID for refs without one."""
        known = known or {}
        return [
            {
                "entry_id": entry_id,
                "mailbox": m.mailbox,
                "uid": m.uid,
                "message_id": m.message_id,
                "subject": (m.subject or known.get(m.message_id or "") or "")[:MAX_SUBJECT] or None,
            }
            for m in self.messages[:MAX_MESSAGE_ROWS]
        ]

    def _known_subjects(self, conn: Connection) -> dict[str, str]:
        """Subjects earlier entries recorded for this entry's messages that lack one
        (a moved copy whose ENVELOPE nobody fetched yet): an indexed lookup each, for
        the first ``SUBJECT_LOOKUPS`` of them."""
        wanted = [m.message_id for m in self.messages if m.message_id and not m.subject][:SUBJECT_LOOKUPS]
        if not wanted:
            return {}
        rows = conn.execute(
            select(journal_messages.c.message_id, journal_messages.c.subject).where(
                journal_messages.c.message_id.in_(wanted), journal_messages.c.subject.is_not(None)
            )
        )
        return {str(mid): str(subject) for mid, subject in rows}

    def write(self, conn: Connection) -> None:
        """Insert the entry (its messages, its answer marks) on ``conn``, in the
        caller's transaction."""
        done = conn.execute(insert(journal).values(**self.row()))
        if self.messages:
            key = done.inserted_primary_key
            assert key is not None
            conn.execute(insert(journal_messages), self.message_rows(int(key[0]), self._known_subjects(conn)))
        if self.answered and self.result == "OK":
            conn.execute(
                insert(answer_marks),
                [
                    {
                        "ts": self.ts,
                        "user_name": self.user or "",
                        "message_id": mid,
                        "mailbox": mailbox,
                        "uid": uid,
                    }
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

    def refused(
        self, actor: ActorLike, command: str, mailbox: str | None, uids: str | None, reason: str
    ) -> None:
        """Journal that the gateway refused ``actor`` a command (permissions now,
        claims and anything else that says no through ``OperationError``)."""
        self.record(
            JournalEntry.by(
                actor,
                command,
                mailbox=mailbox,
                uids=uids or None,
                result="NO",
                detail=reason,
                action="refused",
            )
        )

    def recent(self, limit: int = 100) -> list[JournalEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(journal).order_by(journal.c.id.desc()).limit(limit)).all()
        return [entry_of(r) for r in rows]


def entry_of(r: Row[Any], messages: tuple[MessageRef, ...] = ()) -> JournalEntry:
    """The entry a ``journal`` row holds (with ``messages``, its ``journal_messages``)."""
    return JournalEntry(
        user=r.user_name,
        client=r.client,
        command=r.command,
        mailbox=r.mailbox,
        uids=r.uids,
        result=r.result,
        detail=r.detail,
        ts=r.ts,
        action=r.action or "",
        client_id=r.client_id or "",
        address=r.address or "",
        origin=r.origin or GATEWAY,
        messages=messages,
    )
