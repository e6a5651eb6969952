"""Claims, history and the audit search on the dashboard (issue 15 part B), the answered-by
and read-by columns, internal notes and the live feed of team changes (part C), against a real
gateway in front of Dovecot (tests/web/conftest.py: bob may look up ``Secret`` but not
read it, ``Private`` does not exist for him).  Each web claim is a STORE through
``Service.execute``: an IMAP session sees ``$Claimed``, and an IMAP claim shows in the web.

Each test works on messages of its own, APPENDed through the gateway (``_new_message``):
the module's gateway is shared, and a test that took "the second newest message of INBOX"
depended on what the tests before it in the same worker had claimed or appended."""

from __future__ import annotations

import imaplib
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imapgate.web.server import WebServer
from tests.support.gateway import GatewayHarness
from tests.support.web import csrf_token, login, start_web, stop_web, web_client

pytestmark = pytest.mark.integration


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


_numbers = itertools.count(1)


def _new_message(gateway: GatewayHarness, user: str = "alice", *, select_first: bool = False) -> int:
    """APPEND a message of this test's own to INBOX through the gateway as ``user``; its UID.
    ``select_first``: INBOX is selected before the APPEND (the session then sees it arrive)."""
    n = next(_numbers)
    raw = (
        f"From: Customer {n} <c{n}@example.com>\r\nTo: team@example.com\r\n"
        f"Subject: claims web {n}\r\nMessage-ID: <claims-web-{n}@example.com>\r\n\r\nbody {n}\r\n"
    ).encode()
    imap = gateway.imaplib_login(user, f"{user}-pw")
    try:
        if select_first:
            imap.select("INBOX")
        typ, data = imap.append("INBOX", None, None, raw)
        assert typ == "OK", data
        m = re.search(rb"APPENDUID \d+ (\d+)", data[0])
        assert m is not None, data
        return int(m.group(1))
    finally:
        imap.logout()


def _uids(client: httpx.Client, folder: str = "INBOX") -> list[int]:
    r = client.get(f"/api/folders/{folder}/messages", params={"per_page": 200})
    assert r.status_code == 200, r.text
    return [m["uid"] for m in r.json()["messages"]]


def _claimed_by(client: httpx.Client, uid: int, folder: str = "INBOX") -> str | None:
    r = client.get(f"/api/messages/{folder}/{uid}")
    assert r.status_code == 200, r.text
    claimed: str | None = r.json()["claimed_by"]
    return claimed


def _post(client: httpx.Client, body: dict[str, object]) -> httpx.Response:
    return client.post("/api/claims", json=body, headers={"X-CSRF-Token": csrf_token(client)})


def _release(client: httpx.Client, folder: str, uid: int) -> httpx.Response:
    return client.delete(
        "/api/claims", params={"folder": folder, "uid": uid}, headers={"X-CSRF-Token": csrf_token(client)}
    )


def test_claim_in_the_web_is_seen_over_imap_and_refused_to_a_colleague(
    alice: httpx.Client, bob: httpx.Client, gateway: GatewayHarness
) -> None:
    uid = _new_message(gateway)
    r = _post(alice, {"folder": "INBOX", "uid": uid})
    assert r.status_code == 200, r.text
    assert r.json()["claimed_by"] == "alice"
    imap = gateway.imaplib_login("bob", "bob-pw")
    try:
        imap.select("INBOX")
        typ, data = imap.uid("FETCH", str(uid), "(FLAGS)")
        assert typ == "OK" and b"$Claimed" in data[0], data
    finally:
        imap.logout()
    # bob's claim and release are refused with the NO [INUSE] text.
    refused = _post(bob, {"folder": "INBOX", "uid": uid})
    assert refused.status_code == 409
    assert "alice is handling this message" in refused.json()["error"]
    assert _release(bob, "INBOX", uid).status_code == 409
    # The folder page: the column and the filters.
    page = alice.get("/folders/INBOX", params={"filter": "mine"})
    assert page.status_code == 200 and re.search(r'<td class="claim">alice</td>', page.text)
    assert [m["uid"] for m in alice.get("/api/folders/INBOX/messages?filter=mine").json()["messages"]] == [
        uid
    ]
    assert uid not in [
        m["uid"] for m in alice.get("/api/folders/INBOX/messages?filter=unclaimed").json()["messages"]
    ]
    assert any(
        c["uid"] == uid and c["claimed_by"] == "alice" for c in bob.get("/api/claims").json()["claims"]
    )
    # The message's history has the claim's STORE (the journal's CLAIM row names UIDs, not
    # Message-IDs, so the history by Message-ID finds the STORE entry that carries them).
    history = alice.get(f"/api/messages/INBOX/{uid}/history").json()["history"]
    assert any(h["action"] == "flags_changed" and h["user"] == "alice" for h in history), history
    assert _release(alice, "INBOX", uid).json()["claimed_by"] is None
    assert _claimed_by(bob, uid) is None


def test_claim_over_imap_shows_in_the_web(alice: httpx.Client, gateway: GatewayHarness) -> None:
    uid = _new_message(gateway)
    imap = gateway.imaplib_login("bob", "bob-pw")
    try:
        imap.select("INBOX")
        typ, _ = imap.uid("STORE", str(uid), "+FLAGS", "($Claimed)")
        assert typ == "OK"
        assert _claimed_by(alice, uid) == "bob"
        page = alice.get(f"/messages/INBOX/{uid}")
        assert "Claimed by <strong>bob</strong>" in page.text
        imap.uid("STORE", str(uid), "-FLAGS", "($Claimed)")
    finally:
        imap.logout()
    assert _claimed_by(alice, uid) is None


def test_assign_to_a_colleague_through_the_form(
    alice: httpx.Client, bob: httpx.Client, gateway: GatewayHarness
) -> None:
    uid = _new_message(gateway)
    token = csrf_token(alice)
    r = alice.post(
        f"/messages/INBOX/{uid}/claim", data={"csrf_token": token, "action": "assign", "to": "carol"}
    )
    assert r.status_code == 303
    assert _claimed_by(alice, uid) == "carol"
    # Someone else's claim: bob may not assign it to himself.
    r = bob.post(
        f"/messages/INBOX/{uid}/claim", data={"csrf_token": csrf_token(bob), "action": "assign", "to": "bob"}
    )
    assert r.status_code == 409 and "carol is handling this message" in r.text
    # An unknown colleague, and a colleague who may not read the folder.
    assert _post(alice, {"folder": "INBOX", "uid": uid, "to": "nobody"}).status_code == 400
    secret = _uids(alice, "Secret")[0]
    assert _post(alice, {"folder": "Secret", "uid": secret, "to": "bob"}).status_code == 403
    assert _claimed_by(alice, secret, "Secret") is None


def test_a_just_appended_and_claimed_message_opens(
    alice: httpx.Client, bob: httpx.Client, gateway: GatewayHarness
) -> None:
    """A message APPENDed through the gateway and claimed at once, then opened in the web for
    the first time: the upstream FETCH of its body also carries Dovecot's unsolicited flag
    update (the claim's keywords, set on another connection), which used to hide the body
    (404 "message ... is gone").  Several rounds, claimed over IMAP and in the web: which
    connection answers is up to the pool."""
    for _ in range(3):
        uid = _new_message(gateway, "bob", select_first=True)
        imap = gateway.imaplib_login("bob", "bob-pw")
        try:
            imap.select("INBOX")
            typ, _ = imap.uid("STORE", str(uid), "+FLAGS", "($Claimed)")
            assert typ == "OK"
        finally:
            imap.logout()
        r = alice.get(f"/api/messages/INBOX/{uid}")
        assert r.status_code == 200, r.text
        assert r.json()["claimed_by"] == "bob" and r.json()["text"].startswith("body ")
        uid = _new_message(gateway, "bob", select_first=True)
        assert _post(bob, {"folder": "INBOX", "uid": uid}).status_code == 200
        r = alice.get(f"/api/messages/INBOX/{uid}")
        assert r.status_code == 200, r.text
        assert r.json()["claimed_by"] == "bob" and r.json()["text"].startswith("body ")


def test_csrf_and_permissions(alice: httpx.Client, bob: httpx.Client, gateway: GatewayHarness) -> None:
    uid = _new_message(gateway)
    assert alice.post("/api/claims", json={"folder": "INBOX", "uid": uid}).status_code == 403
    assert alice.delete("/api/claims", params={"folder": "INBOX", "uid": uid}).status_code == 403
    form = alice.post(f"/messages/INBOX/{uid}/claim", data={"action": "claim"})
    assert form.status_code == 403
    assert _claimed_by(alice, uid) is None
    assert _post(bob, {"folder": "Secret", "uid": 1}).status_code == 403
    assert _post(bob, {"folder": "Private", "uid": 1}).status_code == 404
    assert bob.get("/api/claims", params={"folder": "Private"}).status_code == 404
    assert bob.get("/api/messages/Secret/1/history").status_code == 403


def test_audit_filters_and_permissions(
    alice: httpx.Client, bob: httpx.Client, gateway: GatewayHarness
) -> None:
    secret = _uids(alice, "Secret")[0]
    assert _post(alice, {"folder": "Secret", "uid": secret}).status_code == 200
    assert _release(alice, "Secret", secret).status_code == 200
    mine = alice.get("/api/audit", params={"user": "alice", "folder": "Secret"}).json()["entries"]
    assert mine and all(e["user"] == "alice" and e["folder"] == "Secret" for e in mine)
    # bob may not read Secret: its entries are not shown to him.
    assert bob.get("/api/audit", params={"folder": "Secret"}).json()["entries"] == []
    paged = alice.get("/api/audit", params={"per_page": 1}).json()
    assert len(paged["entries"]) == 1 and paged["more"] is True
    assert alice.get("/api/audit", params={"action": "no-such"}).status_code == 400
    assert alice.get("/api/audit", params={"since": "yesterday-ish"}).status_code == 400
    assert "Filter" in alice.get("/audit", params={"user": "alice"}).text


def test_recovery_page_lists_and_refuses_unknown_items(alice: httpx.Client) -> None:
    r = alice.get("/api/recovery")
    assert r.status_code == 200 and isinstance(r.json()["items"], list)
    assert alice.get("/recovery").status_code == 200
    token = csrf_token(alice)
    assert alice.post("/api/recovery/999999/restore").status_code == 403
    assert alice.post("/api/recovery/999999/restore", headers={"X-CSRF-Token": token}).status_code == 404


# --- answered by, read by, notes, live team changes (issue 15 part C) -----------------------


@pytest.fixture(scope="module")
def private_web(gateway: GatewayHarness) -> Iterator[WebServer]:
    """A second dashboard on the same gateway with ``[web] show_read_by = false``."""
    server = start_web(gateway, show_read_by=False)
    try:
        yield server
    finally:
        stop_web(gateway, server)


def _new_mail(gateway: GatewayHarness, folder: str = "INBOX", user: str = "alice") -> tuple[int, str]:
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
    uid, _ = _new_mail(gateway)
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
    uid, _ = _new_mail(gateway, "Secret")
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
    uid, _ = _new_mail(gateway)
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


# --- internal notes ------------------------------------------------------------------------


def _note(
    client: httpx.Client, folder: str, uid: int, body: object, token: str | None = ""
) -> httpx.Response:
    headers = {} if token is None else {"X-CSRF-Token": token or csrf_token(client)}
    return client.post(f"/api/messages/{folder}/{uid}/notes", json=body, headers=headers)


def test_a_note_through_the_api_is_kept_shown_journaled_and_never_at_the_hoster(
    alice: httpx.Client, bob: httpx.Client, gateway: GatewayHarness, web_dovecot: Any
) -> None:
    uid, mid = _new_mail(gateway)
    text = f"Called the customer back {time.time_ns()}: refund by Friday"
    r = _note(alice, "INBOX", uid, {"text": text})
    assert r.status_code == 201, r.text
    assert r.json()["user"] == "alice" and r.json()["text"] == text and r.json()["uid"] == uid
    # A colleague sees it in the API, on the page and in the history (action "note").
    got = bob.get(f"/api/messages/INBOX/{uid}").json()
    assert [(n["user"], n["text"]) for n in got["team_notes"]] == [("alice", text)]
    assert any(h["action"] == "note" and h["user"] == "alice" for h in got["history"]), got["history"]
    page = bob.get(f"/messages/INBOX/{uid}").text
    assert text in page and 'id="notes"' in page
    # Journaled, with the message's Message-ID (the audit search finds it).
    entries = alice.get("/api/audit", params={"action": "note", "message_id": mid}).json()["entries"]
    assert len(entries) == 1 and entries[0]["user"] == "alice" and entries[0]["folder"] == "INBOX"
    # Never at the hoster: the shared account has no message with the note's text.
    direct = imaplib.IMAP4("127.0.0.1", web_dovecot.port)
    try:
        direct.login("shared", "shared-secret")
        direct.select("INBOX", readonly=True)
        typ, data = direct.search(None, "TEXT", f'"{text[-30:]}"')
        assert typ == "OK" and data == [b""], data
    finally:
        direct.logout()


def test_note_refusals(
    alice: httpx.Client, bob: httpx.Client, web: WebServer, gateway: GatewayHarness
) -> None:
    uid, _ = _new_mail(gateway)
    # No session: 401; no CSRF header: 403; nothing kept.
    anonymous = web_client(web)
    assert anonymous.post(f"/api/messages/INBOX/{uid}/notes", json={"text": "x"}).status_code == 401
    assert _note(alice, "INBOX", uid, {"text": "x"}, token=None).status_code == 403
    assert _note(alice, "INBOX", uid, {"text": "x"}, token="wrong").status_code == 403
    # bob may look up Secret but not read it (403); Private does not exist for him (404).
    secret, _ = _new_mail(gateway, "Secret")
    assert _note(bob, "Secret", secret, {"text": "x"}).status_code == 403
    assert _note(bob, "Private", 1, {"text": "x"}).status_code == 404
    assert _note(alice, "INBOX", 999_999, {"text": "x"}).status_code == 404
    # Empty, too long, not a string: 400 with the reason.
    assert "needs some text" in _note(alice, "INBOX", uid, {"text": "  "}).json()["error"]
    too_long = _note(alice, "INBOX", uid, {"text": "x" * 4001})
    assert too_long.status_code == 400 and "at most 4000 characters" in too_long.json()["error"]
    assert _note(alice, "INBOX", uid, {"text": 5}).status_code == 400
    assert alice.get(f"/api/messages/INBOX/{uid}").json()["team_notes"] == []
    assert _note(alice, "Secret", secret, {"text": "alice may"}).status_code == 201


def test_the_note_form_on_the_message_page(alice: httpx.Client, gateway: GatewayHarness) -> None:
    uid, _ = _new_mail(gateway)
    page = alice.get(f"/messages/INBOX/{uid}").text
    assert f'action="/messages/INBOX/{uid}/notes"' in page and 'maxlength="4000"' in page
    assert alice.post(f"/messages/INBOX/{uid}/notes", data={"text": "no token"}).status_code == 403
    r = alice.post(
        f"/messages/INBOX/{uid}/notes", data={"csrf_token": csrf_token(alice), "text": "<b>ok</b>"}
    )
    assert r.status_code == 303 and r.headers["location"] == f"/messages/INBOX/{uid}#notes"
    page = alice.get(f"/messages/INBOX/{uid}").text
    assert "&lt;b&gt;ok&lt;/b&gt;" in page and "<b>ok</b>" not in page


# --- the live feed of team changes ---------------------------------------------------------


class _Stream:
    """alice's /api/events in a thread: every change, with when it arrived."""

    def __init__(self, web: WebServer, user: str = "alice") -> None:
        self.client = web_client(web, timeout=httpx.Timeout(10, read=30))
        login(self.client, user, f"{user}-pw")
        self.changes: list[tuple[float, dict[str, Any]]] = []
        self.connected = threading.Event()
        self.stop = False
        self.lock = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.connected.wait(10)

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/api/events") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    if line.startswith("data: "):
                        with self.lock:
                            self.changes.append((time.monotonic(), json.loads(line[6:])))
                            self.lock.notify_all()
                    if self.stop:
                        return
        except httpx.HTTPError:
            if not self.stop:
                raise  # closed by close(): the end of the test

    def wait_for(
        self, kind: str, action: str, uid: int, since: float, timeout: float = 5
    ) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for at, c in self.changes:
                    if c["kind"] == kind and c.get("action") == action and uid in c["uids"] and at >= since:
                        return at - since, c
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind}/{action} for {uid} in {timeout} s: {self.changes[-10:]}")
                self.lock.wait(left)

    def close(self) -> None:
        self.stop = True
        self.client.close()  # the daemon reader ends at its next read


def test_claims_replies_and_notes_appear_live_within_a_second(
    web: WebServer, bob: httpx.Client, gateway: GatewayHarness
) -> None:
    uid, _ = _new_mail(gateway)
    stream = _Stream(web)
    try:
        imap = gateway.imaplib_login("bob", "bob-pw")
        try:
            imap.select("INBOX")
            start = time.monotonic()
            assert imap.uid("STORE", str(uid), "+FLAGS", "($Claimed)")[0] == "OK"
            took, c = stream.wait_for("claim", "claimed", uid, start)
            assert took < 1.0 and c["by"] == "bob" and c["text"] == f"bob claimed message {uid}", c
            start = time.monotonic()
            assert imap.uid("STORE", str(uid), "+FLAGS", "(\\Answered)")[0] == "OK"
            took, c = stream.wait_for("answered", "answered", uid, start)
            assert took < 1.0 and c["by"] == "bob" and "answered by bob" in c["text"], c
            start = time.monotonic()
            assert imap.uid("STORE", str(uid), "-FLAGS", "($Claimed)")[0] == "OK"
            took, c = stream.wait_for("claim", "released", uid, start)
            assert took < 1.0 and c["by"] == "bob", c
        finally:
            imap.logout()
        # An assignment on the dashboard: "bob assigned message N to carol".
        start = time.monotonic()
        r = bob.post("/api/claims", json={"folder": "INBOX", "uid": uid, "to": "carol"},
                     headers={"X-CSRF-Token": csrf_token(bob)})  # fmt: skip
        assert r.status_code == 200, r.text
        took, c = stream.wait_for("claim", "assigned", uid, start)
        assert took < 1.0 and c["by"] == "carol" and c["text"] == f"bob assigned message {uid} to carol", c
        # A note: the whole note in the change, for the message page to show.
        start = time.monotonic()
        assert _note(bob, "INBOX", uid, {"text": "over to carol"}).status_code == 201
        took, c = stream.wait_for("note", "note", uid, start)
        assert took < 1.0 and c["by"] == "bob" and c["note"]["text"] == "over to carol", c
    finally:
        stream.close()


def test_team_changes_of_a_folder_alice_may_not_read_do_not_reach_her(
    web: WebServer, alice: httpx.Client, gateway: GatewayHarness
) -> None:
    """bob's stream: alice's claim and note in Secret (which he may not read) never arrive,
    her note in INBOX does (the feed's permission filter applies to team changes too)."""
    secret, _ = _new_mail(gateway, "Secret")
    uid, _ = _new_mail(gateway)
    stream = _Stream(web, "bob")
    try:
        start = time.monotonic()
        token = csrf_token(alice)
        assert alice.post("/api/claims", json={"folder": "Secret", "uid": secret},
                          headers={"X-CSRF-Token": token}).status_code == 200  # fmt: skip
        assert _note(alice, "Secret", secret, {"text": "salaries"}, token=token).status_code == 201
        assert _note(alice, "INBOX", uid, {"text": "public"}, token=token).status_code == 201
        stream.wait_for("note", "note", uid, start)
        assert not any(c["folder"] == "Secret" for _, c in stream.changes), stream.changes
    finally:
        stream.close()
