"""What the dashboard reads of the team store, named in the gateway (web/ never
imports store/, team/ or replica/: tests/test_architecture.py ``web-no-state``).

The web's claims, history, audit and recovery pages (web/claims_data.py,
web/journal_data.py) take these types and the audit query from here; every
write still goes through ``Service.execute`` (claims) or the ``Restorer``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, select

from ..replica.mailbox import MailboxIndex as MailboxIndex
from ..replica.uidset import UidSet
from ..store.schema import private_flags
from ..team.audit import AuditQuery as AuditQuery
from ..team.audit import AuditRecord as AuditRecord
from ..team.audit import AuditScope as AuditScope
from ..team.audit import folders_since as audit_folders_since
from ..team.audit import search as audit_search
from ..team.audit_actions import ACTIONS as ACTIONS
from ..team.claims import CLAIMANT_PREFIX as CLAIMANT_PREFIX
from ..team.claims import CLAIMED as CLAIMED
from ..team.claims import Claim as Claim
from ..team.notes import MAX_NOTE_CHARS as MAX_NOTE_CHARS
from ..team.notes import Note as Note
from ..team.notes import NoteBook
from ..team.recovery_store import ItemFilter as ItemFilter
from ..team.recovery_store import RecoveryItem as RecoveryItem
from ..team.replies import ReplyLog

SEEN = "\\Seen"


def seen_by(mb: MailboxIndex, user_ids: Sequence[int], engine: Engine) -> dict[int, UidSet]:
    """user id -> the UIDs their private read state has ``\\Seen`` in ``mb``, for each of
    ``user_ids`` who has a private read state there (one who never looked at the folder has
    none: never initialised here, a read must not write).  From memory where the replica
    holds the state, the others in one query of the store."""
    out: dict[int, UidSet] = {}
    missing: list[int] = []
    for user_id in user_ids:
        state = mb.private.get(user_id)
        if state is None:
            missing.append(user_id)
        elif (seen := state.flags.get(SEEN)) is not None:
            out[user_id] = seen
    if missing:
        t = private_flags.c
        q = select(t.user_id, t.uids).where(t.mailbox_id == mb.id, t.flag == SEEN, t.user_id.in_(missing))
        with engine.connect() as conn:
            for r in conn.execute(q):
                out[int(r.user_id)] = UidSet.decode(r.uids)
    return out


def recent_answers(engine: Engine, message_ids: Sequence[str], since: float) -> list[tuple[float, str, str]]:
    """(time, user, Message-ID) of the ``\\Answered`` marks set through the gateway on these
    messages since ``since`` (the live feed's "answered by alice")."""
    marks = ReplyLog(engine).marks_for(message_ids) if message_ids else []
    return sorted((m.ts, m.user, m.message_id) for m in marks if m.ts >= since)


def notes_of(engine: Engine, message_id: str | None, mailbox: str, uid: int) -> list[Note]:
    """The team's internal notes on one message, oldest first (team/notes.py)."""
    return NoteBook(engine).for_message(message_id, mailbox, uid)


def answered_by(engine: Engine, message_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Message-ID -> who answered it through the gateway, first first: the members who set
    ``\\Answered`` through the write path (``answer_marks``, written with the journal entry;
    a reply sent through the submission guard marks its original so) and those whose reply
    to it went out through the guard (``submissions``)."""
    if not message_ids:
        return {}
    log = ReplyLog(engine)
    found: dict[str, list[tuple[float, str]]] = {}
    for mark in log.marks_for(message_ids):
        found.setdefault(mark.message_id, []).append((mark.ts, mark.user))
    for reply in log.replies_to(message_ids):
        if reply.original is not None and reply.state == "sent":
            found.setdefault(reply.original, []).append((reply.ts, reply.user))
    return {mid: tuple(dict.fromkeys(u for _, u in sorted(rows))) for mid, rows in found.items()}


__all__ = [
    "ACTIONS",
    "CLAIMANT_PREFIX",
    "CLAIMED",
    "MAX_NOTE_CHARS",
    "AuditQuery",
    "AuditRecord",
    "AuditScope",
    "Claim",
    "ItemFilter",
    "MailboxIndex",
    "Note",
    "RecoveryItem",
    "answered_by",
    "audit_folders_since",
    "audit_search",
    "notes_of",
    "recent_answers",
    "seen_by",
]
