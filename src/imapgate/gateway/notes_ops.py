"""The ``AddNote`` operation's handler (``Service.execute``): an internal note of the team
on one message, kept with its journal entry (action ``note``) in one store transaction.
Nothing goes upstream: mail clients and the hoster never see a note (team/notes.py).

The note is announced as a ``NoteAdded`` event on the replica's change bus: this node's
dashboards get it from the event hub like every other change, and with several nodes the
bus writes it to the change log in the note's own transaction, so the dashboards of the
other nodes show it too (kept and announced are one step)."""

from __future__ import annotations

from sqlalchemy import Connection

from ..replica.bus import ChangeBus
from ..replica.changes import ChangeSet
from ..replica.events import NoteAdded
from ..team.journal import Journal, JournalEntry
from ..team.notes import Note, NoteBook, NoteError, clean_text
from . import operations as ops
from .audit_refs import message_refs
from .errors import OperationError
from .policy import Actor

#: Characters of a note the journal entry's detail keeps (the note itself is whole in ``notes``).
DETAIL_CHARS = 200


def add_note(journal: Journal, bus: ChangeBus, actor: Actor, op: ops.AddNote) -> Note:
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
    announced = ChangeSet()
    recorded = False

    def announce(conn: Connection, note: Note) -> None:
        nonlocal recorded
        announced.events.append(NoteAdded(mb.id, note.uid, note.to_wire()))
        record = bus.recorder(announced)
        if record is not None:
            record(conn)
            recorded = True

    note = NoteBook(journal.engine).add(
        user=actor.user, mailbox=mb.name, uid=op.uid, message_id=rec.message_id, text=text,
        also=entry.writer(), announce=announce,
    )  # fmt: skip
    announced.logged = recorded
    bus.publish(announced)
    return note
