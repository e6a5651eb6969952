"""Internal notes: what a team member writes about a message for the team (issue 15).

A note lives in the gateway's store only (table ``notes``): it is never sent, never
written to the hoster, and mail clients never see it.  It is shown on the dashboard's
message page, in the message's history and in the live feed, and every note is journaled
(action ``note``) in the same transaction as its row (``also``: the entry's writer).

Notes are found like a message's history: by Message-ID across folders (a note follows
its message when it is moved), and by folder and UID for a message without a Message-ID.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, insert, select

from ..store.schema import notes

#: Characters of one note at most: a few paragraphs ("customer called, wants a refund by
#: Friday, see ticket 1234"), never a second mail body.  A bound keeps every note one small
#: row, one journal line and one live event under the event stream's queue budget, and the
#: message page readable; 4,000 characters are about a printed page.
MAX_NOTE_CHARS: Final = 4000
#: Notes shown for one message at most (oldest dropped first).
MAX_NOTES_SHOWN: Final = 200

Hook = Callable[[Connection], None]


class NoteError(ValueError):
    """A note that cannot be kept (empty, too long)."""


@dataclass(frozen=True)
class Note:
    id: int
    ts: float
    user: str
    mailbox: str
    uid: int
    message_id: str | None
    text: str

    def to_wire(self) -> dict[str, Any]:
        """Everything of the note as plain values (``from_wire`` reads it back)."""
        return {**self.to_json(), "ts": self.ts, "mailbox": self.mailbox, "message_id": self.message_id}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Note:
        return cls(
            int(data["id"]), float(data["ts"]), str(data["user"]), str(data["mailbox"]), int(data["uid"]),
            data.get("message_id"), str(data["text"]),
        )  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ts)),
            "user": self.user,
            "folder": self.mailbox,
            "uid": self.uid,
            "text": self.text,
        }


def clean_text(text: str) -> str:
    """The note as kept: line ends normalised, outer blank space removed; NoteError when
    nothing is left or it is longer than MAX_NOTE_CHARS."""
    cleaned = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    cleaned = "".join(c for c in cleaned if c in "\n\t" or ord(c) >= 32)
    if not cleaned:
        raise NoteError("a note needs some text")
    if len(cleaned) > MAX_NOTE_CHARS:
        raise NoteError(f"a note is at most {MAX_NOTE_CHARS} characters (this one has {len(cleaned)})")
    return cleaned


class NoteBook:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        *,
        user: str,
        mailbox: str,
        uid: int,
        message_id: str | None,
        text: str,
        also: Hook | None = None,
        announce: Callable[[Connection, Note], None] | None = None,
        ts: float | None = None,
    ) -> Note:
        """Keep a note (``text`` as ``clean_text`` leaves it), with ``also`` (the journal
        entry) and then ``announce`` (telling the other nodes of it) in the same
        transaction."""
        kept = clean_text(text)
        at = time.time() if ts is None else ts
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(notes).values(
                    ts=at, user_name=user, mailbox=mailbox, uid=uid, message_id=message_id, text=kept
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            note = Note(int(key[0]), at, user, mailbox, uid, message_id, kept)
            if also is not None:
                also(conn)
            if announce is not None:
                announce(conn, note)
        return note

    def for_message(self, message_id: str | None, mailbox: str, uid: int) -> list[Note]:
        """The notes on one message, oldest first: by Message-ID where it has one (across
        folders), else those kept by this folder and UID."""
        t = notes.c
        if message_id:
            where = t.message_id == message_id
        else:
            where = (t.mailbox == mailbox) & (t.uid == uid) & t.message_id.is_(None)
        q = select(notes).where(where).order_by(t.ts.desc(), t.id.desc()).limit(MAX_NOTES_SHOWN)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            Note(int(r.id), float(r.ts), r.user_name, r.mailbox, int(r.uid), r.message_id, r.text)
            for r in reversed(rows)
        ]


__all__ = ["MAX_NOTE_CHARS", "Note", "NoteBook", "NoteError", "clean_text"]
