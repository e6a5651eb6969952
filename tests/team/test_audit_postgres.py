"""The audit journal's SQL on the private PostgreSQL 15 (portable Core, no SQLite-only
SQL): the tables as schema.py defines them, entries with messages, every filter, the
purge."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from imapgate.store.schema import journal, journal_messages, metadata
from imapgate.team.audit import AuditQuery, AuditScope, folders_since, purge, search
from imapgate.team.journal import Journal, JournalEntry, MessageRef
from tests.support.postgres import PostgresDatabase

pytestmark = pytest.mark.integration


def test_journal_queries_on_postgres(postgres_db: PostgresDatabase) -> None:
    engine = create_engine(postgres_db.url.replace("postgresql://", "postgresql+psycopg://", 1))
    metadata.create_all(engine, tables=[journal, journal_messages])
    inv = MessageRef("Archive", 3, "<inv-4711@lieferant-x.de>", "Rechnung 4711 Lieferant_X 100%")
    j = Journal(engine)
    j.record(JournalEntry(user="alice", client="c", command="MOVE", mailbox="INBOX", detail="to Archive",
                          messages=(inv,), ts=1000.0))  # fmt: skip
    j.record(JournalEntry(user="bob", client="c", command="EXPUNGE", mailbox="Archive", messages=(inv,),
                          ts=2000.0))  # fmt: skip
    j.record(JournalEntry(user="bob", client="c", command="STORE", mailbox="Archive", detail="add \\Deleted",
                          messages=(MessageRef("Archive", 4, "<other@x>"),), ts=3000.0))  # fmt: skip
    history = search(engine, AuditQuery(message_id="inv-4711@lieferant-x.de"))
    assert [r.entry.action_word for r in history] == ["expunged", "moved"]
    window = search(engine, AuditQuery(user="bob", since=1500.0, until=2500.0))
    assert [r.entry.user for r in window] == ["bob"]
    assert len(search(engine, AuditQuery(folder="Archive"))) == 3
    assert len(search(engine, AuditQuery(search="lieferant_x 100%"))) == 2  # literal _ and %, any case
    assert search(engine, AuditQuery(search="lieferantx")) == []
    # The subject an earlier row had is taken for a row without one.
    bare = MessageRef("Archive", 3, "<inv-4711@lieferant-x.de>")
    j.record(JournalEntry(user="carol", client="c", command="COPY", mailbox="A", messages=(bare,), ts=4000.0))
    (copy,) = search(engine, AuditQuery(user="carol"))
    assert copy.entry.messages[0].subject == inv.subject
    # A member's scope: the folders they may read, and their own entries without a folder.
    j.record(JournalEntry(user="dave", client="c", command="LOGIN", ts=3500.0))
    scoped = search(engine, AuditQuery(scope=AuditScope("dave", ("INBOX",))))
    assert [(r.entry.user, r.entry.mailbox) for r in scoped] == [("dave", None), ("alice", "INBOX")]
    assert [r.entry.user for r in search(engine, AuditQuery(scope=AuditScope("dave", ())))] == ["dave"]
    names, top = folders_since(engine, 0)
    assert names == {"INBOX", "Archive", "A"} and folders_since(engine, top) == (set(), top)
    assert purge(engine, 2500.0) == 2
    assert [r.entry.user for r in search(engine, AuditQuery())] == ["carol", "dave", "bob"]
    engine.dispose()
