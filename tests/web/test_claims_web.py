"""Claims, history and the audit search on the dashboard (issue 15 part B), against a real
gateway in front of Dovecot (tests/web/conftest.py: bob may look up ``Secret`` but not
read it, ``Private`` does not exist for him).  Each web claim is a STORE through
``Service.execute``: an IMAP session sees ``$Claimed``, and an IMAP claim shows in the web.

Each test works on messages of its own, APPENDed through the gateway (``_new_message``):
the module's gateway is shared, and a test that took "the second newest message of INBOX"
depended on what the tests before it in the same worker had claimed or appended."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest

from imapgate.web.server import WebServer
from tests.support.gateway import GatewayHarness
from tests.support.web import csrf_token, login, web_client

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
