"""An internal note kept on one node reaches the event hub of every node (gateway/notes_ops.py):
the note and its change-log row are one transaction, so a second node's dashboards hear of it
(``NoteAdded``), and a note that was not kept is announced nowhere.  Both store backends."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from imapgate.gateway import operations as ops
from imapgate.gateway.errors import OperationError
from imapgate.gateway.notes_ops import add_note
from imapgate.gateway.policy import Actor
from imapgate.replica.events import NoteAdded
from imapgate.store.schema import change_log, notes
from imapgate.team.journal import Journal
from imapgate.team.notes import Note
from imapgate.team.users import UserDirectory
from tests.support.replica_nodes import node, rec


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_a_note_on_node_a_reaches_node_b(store_engine: Engine) -> None:
    alice = UserDirectory(store_engine).add("alice", "pw")
    actor = Actor(alice.id, "alice", "web")
    a, bus_a, events_a = node(store_engine, "a")
    _b, bus_b, events_b = node(store_engine, "b")
    mb = a.upsert_mailbox("INBOX", "/", ())
    a.reset(mb, 7, "initial")
    a.add_messages(mb, [rec(1)])
    bus_b.poll()
    rows = count(store_engine, change_log)

    note = add_note(Journal(store_engine), bus_a, actor, ops.AddNote(mb, 1, "  Call back on Monday\r\n"))
    assert isinstance(note, Note) and note.text == "Call back on Monday"
    assert count(store_engine, change_log) == rows + 1  # one row, written with the note
    here = [e for e in events_a if isinstance(e, NoteAdded)]
    assert len(here) == 1 and Note.from_wire(here[0].note) == note  # this node's dashboards

    assert bus_b.poll() == 1
    there = [e for e in events_b if isinstance(e, NoteAdded)]
    assert len(there) == 1 and there[0].mailbox_id == mb.id and there[0].uid == 1
    assert Note.from_wire(there[0].note) == note  # the whole note, as kept


def test_a_refused_note_is_announced_nowhere(store_engine: Engine) -> None:
    alice = UserDirectory(store_engine).add("alice", "pw")
    a, bus_a, events_a = node(store_engine, "a")
    mb = a.upsert_mailbox("INBOX", "/", ())
    a.reset(mb, 7, "initial")
    a.add_messages(mb, [rec(1)])
    rows, kept = count(store_engine, change_log), count(store_engine, notes)

    with pytest.raises(OperationError):
        add_note(Journal(store_engine), bus_a, Actor(alice.id, "alice"), ops.AddNote(mb, 1, "   "))
    assert (count(store_engine, change_log), count(store_engine, notes)) == (rows, kept)
    assert not any(isinstance(e, NoteAdded) for e in events_a)
