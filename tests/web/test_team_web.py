"""The dashboard's team columns, internal notes and the live feed of team changes (issue 15),
against a real gateway in front of Dovecot (tests/web/conftest.py: bob may look up ``Secret``
but not read it, ``Private`` does not exist for him; carol is the third member).

Each test works on messages of its own, APPENDed through the gateway, so nothing depends on
what another test of the module did first."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imapgate.web.server import WebServer
from tests.support.gateway import GatewayHarness
from tests.support.web import login, start_web, stop_web, web_client

pytestmark = pytest.mark.integration

_numbers = itertools.count(1)


def _client(web: WebServer, user: str) -> httpx.Client:
    client = web_client(web)
    assert login(client, user, f"{user}-pw").status_code == 303
    return client


@pytest.fixture
def alice(web: WebServer) -> httpx.Client:
    return _client(web, "alice")


@pytest.fixture
def bob(web: WebServer) -> httpx.Client:
    return _client(web, "bob")


@pytest.fixture(scope="module")
def private_web(gateway: GatewayHarness) -> Iterator[WebServer]:
    """A second dashboard on the same gateway with ``[web] show_read_by = false``."""
    server = start_web(gateway, show_read_by=False)
    try:
        yield server
    finally:
        stop_web(gateway, server)


def _new_message(gateway: GatewayHarness, folder: str = "INBOX", user: str = "alice") -> tuple[int, str]:
    """APPEND a message of this test's own through the gateway: (UID, Message-ID)."""
    n = next(_numbers)
    mid = f"<team-web-{n}-{time.time_ns()}@example.com>"
    raw = (
        f"From: Customer {n} <c{n}@example.com>\r\nTo: team@example.com\r\n"
        f"Subject: team web {n}\r\nMessage-ID: {mid}\r\n\r\nquestion {n}\r\n"
    ).encode()
    imap = gateway.imaplib_login(user, f"{user}-pw")
    try:
        typ, data = imap.append(folder, None, None, raw)
        assert typ == "OK", data
        m = re.search(rb"APPENDUID \d+ (\d+)", data[0])
        assert m is not None, data
        return int(m.group(1)), mid
    finally:
        imap.logout()


def _imap_store(gateway: GatewayHarness, user: str, uid: int, flags: str, folder: str = "INBOX") -> None:
    imap = gateway.imaplib_login(user, f"{user}-pw")
    try:
        imap.select(folder)
        typ, data = imap.uid("STORE", str(uid), "+FLAGS", flags)
        assert typ == "OK", data
    finally:
        imap.logout()


def _row(client: httpx.Client, uid: int, folder: str = "INBOX") -> dict[str, Any]:
    r = client.get(f"/api/folders/{folder}/messages", params={"per_page": 200})
    assert r.status_code == 200, r.text
    rows = [m for m in r.json()["messages"] if m["uid"] == uid]
    assert len(rows) == 1, uid
    row: dict[str, Any] = rows[0]
    return row


# --- answered by, read by ------------------------------------------------------------------


def test_answered_by_and_read_by_columns(
    alice: httpx.Client, bob: httpx.Client, web: WebServer, gateway: GatewayHarness
) -> None:
    uid, _ = _new_message(gateway)
    # Nobody has read or answered it yet (alice appended it: the APPEND sets no \Seen).
    row = _row(alice, uid)
    assert row["answered_by"] == [] and "alice" not in row["read_by"] and "bob" not in row["read_by"]
    # alice opens it in the web, bob reads it over IMAP; carol does neither.
    assert alice.get(f"/api/messages/INBOX/{uid}").status_code == 200
    _imap_store(gateway, "bob", uid, "(\\Seen)")
    row = _row(alice, uid)
    assert "alice" in row["read_by"] and "bob" in row["read_by"] and "carol" not in row["read_by"]
    # bob answers it over IMAP: "answered by bob", in the list, the message and the page.
    _imap_store(gateway, "bob", uid, "(\\Answered)")
    assert _row(bob, uid)["answered_by"] == ["bob"]
    assert alice.get(f"/api/messages/INBOX/{uid}").json()["answered_by"] == ["bob"]
    page = alice.get("/folders/INBOX", params={"per_page": 200}).text
    assert "<th>Answered by</th>" in page and "<th>Read by</th>" in page
    assert re.search(rf'/messages/INBOX/{uid}">.*?<td class="answered-by">bob</td>', page, re.S)


def test_read_by_only_names_members_who_may_read_the_folder(
    alice: httpx.Client, gateway: GatewayHarness
) -> None:
    """bob may not read ``Secret``: even a read state of his there (left from before his
    rights were taken) is not shown."""
    uid, _ = _new_message(gateway, "Secret")
    bob_id = gateway.gw.users.get("bob")
    assert bob_id is not None

    def give_bob_a_read_state() -> None:
        mb = gateway.gw.replica.get("Secret")
        assert mb is not None
        gateway.gw.replica.set_private_flags(mb, bob_id.id, {"\\Seen": [uid]}, {})

    gateway.call_soon(give_bob_a_read_state)
    assert alice.get(f"/api/messages/Secret/{uid}").status_code == 200
    row = _row(alice, uid, "Secret")
    assert "alice" in row["read_by"] and "bob" not in row["read_by"]


def test_show_read_by_off_hides_the_column_the_field_and_the_history(
    private_web: WebServer, web: WebServer, gateway: GatewayHarness
) -> None:
    uid, _ = _new_message(gateway)
    _imap_store(gateway, "bob", uid, "(\\Seen)")  # journaled: "read" by bob
    alice = _client(private_web, "alice")
    row = _row(alice, uid)
    assert "read_by" not in row and "answered_by" in row
    assert "read_by" not in alice.get(f"/api/messages/INBOX/{uid}").json()
    assert "Read by" not in alice.get("/folders/INBOX").text
    assert "Read by" not in alice.get(f"/messages/INBOX/{uid}").text
    history = alice.get(f"/api/messages/INBOX/{uid}/history").json()["history"]
    assert not any(h["action"] == "read" and h["user"] == "bob" for h in history), history
    # The same message on the dashboard with the default shows bob's read entry.
    other = _client(web, "alice")
    history = other.get(f"/api/messages/INBOX/{uid}/history").json()["history"]
    assert any(h["action"] == "read" and h["user"] == "bob" for h in history), history
