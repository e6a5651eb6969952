"""``imapgate audit`` as an admin uses it: the table, --json, every filter's
spelling (durations and dates), and one-line errors for what cannot be read."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from imapgate.cli import main
from imapgate.cli_audit import parse_when
from imapgate.store.engine import open_engine
from imapgate.team.journal import HOSTER, Journal, JournalEntry, MessageRef
from tests.support.cli import closed_port, invoked_error, invoked_ok, write_config

INVOICE = MessageRef("Archive", 3, "<inv-4711@lieferant-x.de>", "Rechnung 4711 Lieferant X")


class Site:
    """A config and a store holding a small journal (no gateway runs: the verb reads the store)."""

    def __init__(self, tmp_path: Path) -> None:
        self.cfg = write_config(tmp_path, upstream_port=closed_port())
        engine = open_engine(f"sqlite:///{tmp_path / 'imapgate-data' / 'imapgate.sqlite3'}")
        now = time.time()
        journal = Journal(engine)
        for e in (
            JournalEntry(user="alice", client="Thunderbird 128 from 10.0.0.5", command="MOVE",
                         mailbox="INBOX", uids="7", detail="to Archive", messages=(INVOICE,),
                         ts=now - 10 * 86400),
            JournalEntry(user="bob", client="K-9 Mail 6.8 from 10.0.0.9", command="EXPUNGE",
                         mailbox="Archive", uids="3", messages=(INVOICE,), client_id="K-9 Mail 6.8",
                         address="10.0.0.9", ts=now - 3600),
            JournalEntry(user=None, client="at the hoster", command="EXPUNGE", mailbox="Spam", uids="1",
                         action="expunged", origin=HOSTER, ts=now - 60),
        ):  # fmt: skip
            journal.record(e)
        engine.dispose()

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.cfg), "audit", *args])

    def ok(self, *args: str) -> list[str]:
        return invoked_ok(self.run(*args))

    def error(self, *args: str) -> str:
        return invoked_error(self.run(*args))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_table_who_deleted_the_invoice(site: Site) -> None:
    lines = site.ok("--search", "Lieferant X")
    assert lines[0].split()[:5] == ["TIME", "USER", "ACTION", "FOLDER", "MESSAGES"]
    # Oldest first on a terminal: the move, then bob's expunge in Archive.
    assert " alice " in lines[1] and " moved " in lines[1] and "to Archive" in lines[1]
    assert " bob " in lines[2] and " expunged " in lines[2] and '"Rechnung 4711' in lines[2]
    assert "K-9 Mail 6.8 from 10.0.0.9" in lines[2]
    assert lines[-1] == "2 entries"


def test_filters_and_json(site: Site) -> None:
    data = json.loads("\n".join(site.ok("--message-id", "inv-4711@lieferant-x.de", "--json")))
    assert [(d["user"], d["action"], d["folder"]) for d in data] == [
        ("bob", "expunged", "Archive"),
        ("alice", "moved", "INBOX"),
    ]
    assert data[0]["client_id"] == "K-9 Mail 6.8" and data[0]["address"] == "10.0.0.9"
    assert [d["action"] for d in json.loads("\n".join(site.ok("--since", "7d", "--json")))] == [
        "expunged",
        "expunged",
    ]
    assert len(json.loads("\n".join(site.ok("--until", "2d", "--json")))) == 1
    hoster = site.ok("--folder", "Spam")
    assert "(at the hoster)" in hoster[1] and hoster[-1] == "1 entry"
    assert site.ok("--user", "carol") == ["no journal entries match"]
    assert site.ok("--limit", "1")[-1] == "1 entry (the newest 1; --limit N for more)"
    assert len(json.loads("\n".join(site.ok("--action", "moved", "--json")))) == 1


def test_one_line_errors(site: Site) -> None:
    assert "no action 'delete'; actions: arrived" in site.error("--action", "delete")
    assert 'neither a duration like "7d"' in site.error("--since", "last week")
    assert "--since must be before --until" in site.error("--since", "1d", "--until", "2d")
    assert "--limit must be between 1 and" in site.error("--limit", "0")


def test_parse_when() -> None:
    assert parse_when("--since", "90s", 1000.0) == 910.0
    assert parse_when("--since", "2d", 200000.0) == 200000.0 - 2 * 86400
    local = parse_when("--since", "2026-12-01", 0.0)
    assert time.localtime(local)[:6] == (2026, 12, 1, 0, 0, 0)
    assert time.localtime(parse_when("--until", "2026-12-01 14:30", 0.0))[3:5] == (14, 30)
