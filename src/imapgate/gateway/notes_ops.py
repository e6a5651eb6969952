"""The ``AddNote`` operation's handler (``Service.execute``): an internal note of the team
on one message, kept with its journal entry (action ``note``) in one store transaction.
Nothing goes upstream: mail clients and the hoster never see a note (team/notes.py)."""

from __future__ import annotations

from ..team.journal import Journal, JournalEntry
from ..team.notes import NoteBook, NoteError, clean_text
from . import operations as ops
from .audit_refs import message_refs
from .errors import OperationError
from .policy import Actor

#: Characters of a note the journal entry's detail keeps (the note itself is whole in ``notes``).
DETAIL_CHARS = 200


def add_note(journal: Journal, actor: Actor, op: ops.AddNote) -> object:
    mb = op.mailbox
    rec = mb.records.get(op.uid)
    if rec is None:
        raise OperationError(f"no message {op.uid} in {mb.name!r}", "NONEXISTENT")
    try:
        text = clean_text(op.text)
    except NoteError as exc:
        raise OperationError(str(exc), "CANNOT") from None
    entry = JournalEntry.by(
        actor, "NOTE", mailbox=mb.name, uids=str(op.uid), action="note",
        detail=text[:DETAIL_CHARS] + ("…" if len(text) > DETAIL_CHARS else ""),
        messages=message_refs(mb, [op.uid], None),
    )  # fmt: skip
    return NoteBook(journal.engine).add(
        user=actor.user, mailbox=mb.name, uid=op.uid, message_id=rec.message_id, text=text,
        also=entry.writer(),
    )  # fmt: skip
