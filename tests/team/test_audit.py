"""The audit journal's store side: entries with their messages, the action words,
every filter of ``imapgate audit``, the retention purge, and that the queries
use the indexes (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from imapgate.store.engine import open_engine
from imapgate.store.schema import journal, journal_messages
from imapgate.team.audit import AuditQuery, message_id_forms, purge, search
from imapgate.team.audit_actions import ACTIONS, action_of, store_action
from imapgate.team.journal import HOSTER, MAX_MESSAGE_ROWS, Journal, JournalEntry, MessageRef

DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")


def _write(engine: Engine, *entries: JournalEntry) -> None:
    j = Journal(engine)
    for e in entries:
        j.record(e)


def _invoice(folder: str = "INBOX", uid: int = 7) -> MessageRef:
    return MessageRef(folder, uid, "<inv-4711@lieferant-x.de>", "Rechnung 4711 Lieferant X")


def test_entry_keeps_old_positional_constructor_and_derives_its_action(engine: Engine) -> None:
    # Writers of before the audit journal (positional, no action) keep working.
    old = JournalEntry("alice", "imaplib from 127.0.0.1", "EXPUNGE", "INBOX", "3:4", ts=NOW)
    _write(engine, old)
    (rec,) = search(engine, AuditQuery())
    assert rec.entry.action_word == "expunged"
    assert rec.entry.origin == "gateway" and rec.entry.messages == ()
    with engine.connect() as conn:
        assert conn.execute(select(journal.c.action)).scalar_one() == "expunged"


@pytest.mark.parametrize(
    ("command", "result", "detail", "action"),
    [
        ("STORE", "OK", "add \\Seen", "read"),
        ("STORE", "OK", "remove \\Seen", "unread"),
        ("STORE", "OK", "add \\Flagged \\Seen", "flagged"),
        ("STORE", "OK", "add \\Deleted \\Seen", "deleted"),
        ("STORE", "OK", "replace \\Answered", "answered"),
        ("STORE", "OK", "add $Label1", "flags_changed"),
        ("MOVE", "OK", "to Archive", "moved"),
        ("COPY", "OK", "to Archive", "copied"),
        ("APPEND", "OK", None, "appended"),
        ("CREATE", "OK", None, "folder_created"),
        ("ACL SET", "OK", None, "acl_changed"),
        ("SETACL", "OK", None, "acl_changed"),
        ("GROUP ADD-MEMBER", "OK", None, "group_changed"),
        ("USER DISABLE", "OK", None, "user_changed"),
        ("MOVE", "NO", "cannot move: the mail server refused", "failed"),
        ("KICK", "OK", None, "admin"),
    ],
)
def test_action_words(command: str, result: str, detail: str | None, action: str) -> None:
    assert action_of(command, result, detail) == action
    assert action in ACTIONS


def test_store_action_prefers_deletion() -> None:
    assert store_action("add", ["\\Seen", "\\Deleted"]) == "deleted"
    assert store_action("remove", ["\\Deleted"]) == "undeleted"


def _history(engine: Engine) -> None:
    """alice reads and moves the invoice, bob deletes it in Archive, a login fails,
    the hoster expunges something, all at known times."""
    inv = _invoice()
    moved = _invoice("Archive", 3)
    _write(
        engine,
        JournalEntry(user=None, client="at the hoster", command="ARRIVED", mailbox="INBOX", uids="7",
                     action="arrived", origin=HOSTER, messages=(inv,), ts=NOW - 30 * DAY),
        JournalEntry(user="alice", client="Thunderbird 128 from 10.0.0.5", command="STORE", mailbox="INBOX",
                     uids="7", detail="add \\Seen", client_id="Thunderbird 128", address="10.0.0.5",
                     messages=(inv,), ts=NOW - 8 * DAY),
        JournalEntry(user="alice", client="Thunderbird 128 from 10.0.0.5", command="MOVE", mailbox="INBOX",
                     uids="7", detail="to Archive", messages=(inv, moved), ts=NOW - 2 * DAY),
        JournalEntry(user="bob", client="K-9 Mail 6.8 from 10.0.0.9", command="STORE", mailbox="Archive",
                     uids="3", detail="add \\Deleted", messages=(moved,), ts=NOW - DAY),
        JournalEntry(user="bob", client="K-9 Mail 6.8 from 10.0.0.9", command="EXPUNGE", mailbox="Archive",
                     uids="3", messages=(moved,), ts=NOW - DAY + 5),
        JournalEntry(user="unknown user [ref 0123456789]", client="10.0.0.66", command="LOGIN", result="NO",
                     action="login_failed", detail="via imap: wrong name or password", address="10.0.0.66",
                     ts=NOW - 3600),
        JournalEntry(user=None, client="at the hoster", command="EXPUNGE", mailbox="Spam", uids="1:9",
                     action="expunged", origin=HOSTER, ts=NOW - 60),
    )  # fmt: skip


def _actions(records: list) -> list[str]:  # type: ignore[type-arg]
    return [r.entry.action_word for r in records]


def test_message_id_is_the_whole_history_across_folders(engine: Engine) -> None:
    _history(engine)
    for form in ("<inv-4711@lieferant-x.de>", "inv-4711@lieferant-x.de"):
        found = search(engine, AuditQuery(message_id=form))
        # Newest first: expunged and deleted by bob in Archive, moved and read by alice, arrived.
        assert _actions(found) == ["expunged", "deleted", "moved", "read", "arrived"], form
    deleted = search(engine, AuditQuery(message_id="inv-4711@lieferant-x.de", action="expunged"))[0]
    assert deleted.entry.user == "bob" and deleted.entry.mailbox == "Archive"
    assert deleted.entry.messages == (_invoice("Archive", 3),)
    assert message_id_forms(" <a@b> ") == ["<a@b>", "a@b"]


def test_filters(engine: Engine) -> None:
    _history(engine)
    assert _actions(search(engine, AuditQuery(user="alice"))) == ["moved", "read"]
    assert _actions(search(engine, AuditQuery(user="alice", since=NOW - 7 * DAY))) == ["moved"]
    assert _actions(search(engine, AuditQuery(until=NOW - 7 * DAY))) == ["read", "arrived"]
    assert _actions(search(engine, AuditQuery(action="login_failed"))) == ["login_failed"]
    # A folder: its own entries and moves into it.
    assert _actions(search(engine, AuditQuery(folder="Archive"))) == ["expunged", "deleted", "moved"]
    # Text: subject (case-insensitive), client, detail; % and _ are literal.
    assert _actions(search(engine, AuditQuery(search="lieferant x", action="deleted"))) == ["deleted"]
    assert _actions(search(engine, AuditQuery(search="k-9"))) == ["expunged", "deleted"]
    assert search(engine, AuditQuery(search="100%")) == []
    assert _actions(search(engine, AuditQuery(limit=2))) == ["expunged", "login_failed"]
    hoster = search(engine, AuditQuery(folder="Spam"))[0].entry
    assert hoster.origin == HOSTER and hoster.user is None
    read = search(engine, AuditQuery(action="read"))[0].entry
    assert (read.client_id, read.address) == ("Thunderbird 128", "10.0.0.5")


def test_json_form(engine: Engine) -> None:
    _history(engine)
    (rec,) = search(engine, AuditQuery(action="moved"))
    data = rec.to_json()
    assert data["user"] == "alice" and data["action"] == "moved" and data["folder"] == "INBOX"
    assert data["messages"] == [
        {"folder": "INBOX", "uid": 7, "message_id": "<inv-4711@lieferant-x.de>",
         "subject": "Rechnung 4711 Lieferant X"},
        {"folder": "Archive", "uid": 3, "message_id": "<inv-4711@lieferant-x.de>",
         "subject": "Rechnung 4711 Lieferant X"},
    ]  # fmt: skip


def test_purge_drops_old_entries_with_their_messages(engine: Engine) -> None:
    _history(engine)
    assert purge(engine, NOW - 7 * DAY) == 2  # arrived (30 d) and read (8 d)
    assert _actions(search(engine, AuditQuery(message_id="inv-4711@lieferant-x.de"))) == [
        "expunged",
        "deleted",
        "moved",
    ]
    with engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(journal_messages)).scalar_one()
        ids = conn.execute(select(func.count()).select_from(journal)).scalar_one()
    assert (left, ids) == (4, 5)
    assert purge(engine, NOW - 7 * DAY) == 0


def test_bulk_entry_is_bounded(engine: Engine) -> None:
    refs = tuple(MessageRef("INBOX", u, f"<m{u}@x>") for u in range(1, MAX_MESSAGE_ROWS + 50))
    _write(engine, JournalEntry(user="alice", client="c", command="EXPUNGE", mailbox="INBOX", messages=refs))
    with engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(journal_messages)).scalar_one() == MAX_MESSAGE_ROWS
        )


def test_queries_use_the_indexes(engine: Engine) -> None:
    """`--user X --since D` and `--message-id M` are index lookups, not scans (SQLite's plan)."""
    from sqlalchemy.dialects import sqlite

    from imapgate.team.audit import conditions

    def plan(q: AuditQuery) -> str:
        stmt = select(journal.c.id).where(*conditions(q)).order_by(journal.c.ts.desc()).limit(100)
        sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        with engine.connect() as conn:
            return " | ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))

    user_plan = plan(AuditQuery(user="alice", since=NOW - 7 * DAY))
    assert "ix_journal_user_ts" in user_plan, user_plan
    mid_plan = plan(AuditQuery(message_id="a@b"))
    assert "ix_journal_messages_message_id" in mid_plan, mid_plan
