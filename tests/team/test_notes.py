"""Internal notes in the store (team/notes.py), on SQLite and PostgreSQL: kept with their
journal entry in one transaction, found by Message-ID across folders (the note follows its
message) or by folder and UID for a message without one, bounded in length."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, func, select

from imapgate.store.schema import journal, notes
from imapgate.team.journal import JournalEntry
from imapgate.team.notes import MAX_NOTE_CHARS, NoteBook, NoteError, clean_text


def test_notes_by_message_id_and_by_place(store_engine: Engine) -> None:
    book = NoteBook(store_engine)
    entry = JournalEntry(user="alice", client="web dashboard", command="NOTE", mailbox="INBOX", action="note")
    a = book.add(user="alice", mailbox="INBOX", uid=7, message_id="<m@x>", text=" called back \r\n",
                 also=entry.writer(), ts=100.0)  # fmt: skip
    b = book.add(user="bob", mailbox="Archive", uid=3, message_id="<m@x>", text="refund sent", ts=200.0)
    c = book.add(user="bob", mailbox="INBOX", uid=9, message_id=None, text="no id here", ts=150.0)
    # By Message-ID: both folders (the message was moved), oldest first, text as kept.
    found = book.for_message("<m@x>", "Archive", 3)
    assert [(n.id, n.user, n.text) for n in found] == [
        (a.id, "alice", "called back"),
        (b.id, "bob", "refund sent"),
    ]
    # Without a Message-ID: by folder and UID only, never another message's notes.
    assert [n.id for n in book.for_message(None, "INBOX", 9)] == [c.id]
    assert book.for_message(None, "INBOX", 7) == []
    assert book.for_message("<other@x>", "INBOX", 7) == []
    with store_engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(journal).where(journal.c.action == "note")).scalar()
            == 1
        )


def test_a_failed_journal_write_keeps_no_note(store_engine: Engine) -> None:
    def broken(conn: Connection) -> None:
        raise RuntimeError("journal write failed")

    with pytest.raises(RuntimeError):
        NoteBook(store_engine).add(
            user="alice", mailbox="INBOX", uid=1, message_id="<n@x>", text="x", also=broken
        )
    with store_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(notes)).scalar() == 0


@pytest.mark.parametrize(
    ("text", "kept"),
    [("  two\r\nlines \n", "two\nlines"), ("tab\there", "tab\there"), ("bell\x07 gone", "bell gone")],
)
def test_clean_text(text: str, kept: str) -> None:
    assert clean_text(text) == kept


@pytest.mark.parametrize("text", ["", "   \r\n ", "\x00\x01"])
def test_an_empty_note_is_refused(text: str) -> None:
    with pytest.raises(NoteError, match="needs some text"):
        clean_text(text)


def test_the_length_limit() -> None:
    assert len(clean_text("é" * MAX_NOTE_CHARS)) == MAX_NOTE_CHARS
    with pytest.raises(NoteError, match=f"at most {MAX_NOTE_CHARS} characters"):
        clean_text("x" * (MAX_NOTE_CHARS + 1))
