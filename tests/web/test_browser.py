"""The dashboard in Debian's Chromium (Playwright, sync API: no async tests in this module):
login, inbox, a message, every hostile corpus message rendered without running a script or
loading anything from outside, a change made by an imaplib session appearing on the Live page
within 1 s; claims, recovery and admin ACLs with an imaplib session on the other side (a claim
over IMAP on the folder page within 1 s, a claim and an assignment from the message page in
IMAP's FETCH FLAGS, a restore from the Recovery page back in the folder over IMAP, an ACL entry
from the admin page changing LIST and SELECT).  Screenshots go to docs/images/
(docs/dashboard.md shows them).

One Dovecot, one gateway and one browser for the whole module: the gateway is the gateway's
own (``AclPolicy``, carol an admin, ``[recovery] enabled``), not the conftest's stand-in
policy; each test uses its own folder or messages so the order does not matter."""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page

from imapgate.demo import DovecotServer
from imapgate.web.server import WebServer
from tests.support.browser import page_errors, page_requests_blocked
from tests.support.gateway import GatewayHarness
from tests.support.web import base_url, browser_login, login, shot, web_client

from .conftest import USERS

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def gateway(web_dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    """Overrides the conftest's gateway: the gateway's own AclPolicy with carol an admin, and
    recovery on (the Recovery page has something to restore)."""
    data_dir: Path = tmp_path_factory.mktemp("web-browser-gw")
    with GatewayHarness(
        upstream_port=web_dovecot.port, data_dir=data_dir, users=USERS, recovery={"enabled": True}
    ) as h:
        source = h.gw.service.acl
        assert source is not None
        source.store.set_admin("carol", True)
        h.call_soon(source.reload)
        yield h


def test_login_inbox_and_message(page: Page, web: WebServer) -> None:
    page.goto(base_url(web) + "/inbox")
    assert "/login" in page.url
    shot(page, "login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in page.inner_text("main")
    page_errors(page).clear()  # the refused login is answered 401, which Chromium logs
    browser_login(page, web)
    assert page.locator("table.folders a", has_text="INBOX").count() == 1
    shot(page, "inbox")
    page.click("table.folders a >> text=INBOX")
    page.wait_for_selector("table.messages tbody tr")
    shot(page, "folder")
    page.click("text=older")  # htmx swaps the list
    page.wait_for_selector("text=page 2 of")
    assert "page=2" in page.url
    page.locator("table.messages td.subject a").first.click()
    page.wait_for_selector("article.message h1")
    shot(page, "message")
    assert page_errors(page) == [] and page_requests_blocked(page) == []


def test_hostile_mail_runs_nothing_and_loads_nothing(page: Page, web: WebServer) -> None:
    browser_login(page, web)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    with web_client(web) as c:
        login(c, "alice", "alice-pw")
        msgs = c.get("/api/folders/Hostile/messages?per_page=200").json()["messages"]
    assert msgs
    for m in msgs:
        for view in ("", "?view=html"):
            page.goto(f"{base_url(web)}/messages/Hostile/{m['uid']}{view}")
            page.wait_for_load_state("load")
            assert page.evaluate("typeof window.canary") == "undefined", m["subject"]
        # The frame's own document, opened directly: its CSP sandbox still forbids scripts.
        page.goto(f"{base_url(web)}/messages/Hostile/{m['uid']}/html")
        assert page.evaluate("typeof window.canary") == "undefined", m["subject"]
    assert dialogs == []
    assert page_requests_blocked(page) == [], page_requests_blocked(page)
    css = next(m for m in msgs if m["subject"] == "css")
    page.goto(f"{base_url(web)}/messages/Hostile/{css['uid']}")
    shot(page, "hostile-html")


def test_live_page_shows_an_imap_change_within_a_second(
    page: Page, web: WebServer, gateway: GatewayHarness
) -> None:
    browser_login(page, web)
    page.goto(base_url(web) + "/live")
    page.wait_for_selector("#live-state >> text=connected")
    imap = gateway.imaplib_login("bob", "bob-pw")
    try:
        imap.select("Drafts")
        start = time.monotonic()
        typ, _ = imap.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
        assert typ == "OK"
        page.wait_for_selector("#live-feed li[data-kind=flags]", timeout=5000)
        elapsed = time.monotonic() - start
        imap.append(
            "INBOX",
            None,
            None,
            b"From: Customer <c@example.org>\r\nSubject: Live demo mail\r\n"
            b"Message-ID: <live@example.org>\r\n\r\nhello\r\n",
        )
        page.wait_for_selector("#live-feed li[data-kind=new] >> text=Live demo mail", timeout=10000)
    finally:
        imap.logout()
    assert elapsed < 1.0, elapsed
    assert "Drafts" in page.inner_text("#live-feed")
    shot(page, "live")
    assert page_errors(page) == []


def test_folder_page_follows_changes(page: Page, web: WebServer, gateway: GatewayHarness) -> None:
    browser_login(page, web)
    page.goto(f"{base_url(web)}/folders/{quote('Archive', safe='')}")
    page.wait_for_selector("table.messages tbody tr")
    page.wait_for_function("window.imapgateLastChange !== undefined || document.readyState === 'complete'")
    imap = gateway.imaplib_login("bob", "bob-pw")
    try:
        imap.append(
            "Archive",
            None,
            None,
            b"From: X <x@example.org>\r\nSubject: Appears by itself\r\n"
            b"Message-ID: <self@example.org>\r\n\r\nhi\r\n",
        )
        page.wait_for_selector("table.messages >> text=Appears by itself", timeout=10000)
    finally:
        imap.logout()


# --- claims, recovery and admin ACLs: the browser and an IMAP client on the same gateway ------


def _uids_on_page(page: Page) -> list[int]:
    """The UIDs of the message rows shown (newest first), from their links."""
    hrefs = page.eval_on_selector_all("table.messages td.subject a", "as => as.map(a => a.href)")
    return [int(h.rsplit("/", 1)[1]) for h in hrefs]


def _flags(imap: imaplib.IMAP4, uid: int) -> set[str]:
    typ, data = imap.uid("FETCH", str(uid), "(FLAGS)")
    assert typ == "OK" and data and isinstance(data[0], bytes), data
    m = re.search(rb"FLAGS \(([^)]*)\)", data[0])
    assert m is not None, data
    return {f.decode() for f in m.group(1).split()}


def _listed(imap: imaplib.IMAP4) -> set[str]:
    typ, data = imap.list('""', "*")
    assert typ == "OK", data
    names = set()
    for line in data:
        assert isinstance(line, bytes), data
        names.add(line.rsplit(b' "/" ', 1)[-1].strip(b'"').decode())
    return names


def _claim_cell(uid: int) -> str:
    return f'table.messages tr:has(a[href$="/{uid}"]) td.claim'


def test_a_claim_over_imap_appears_on_the_folder_page_within_a_second(
    page: Page, web: WebServer, gateway: GatewayHarness
) -> None:
    browser_login(page, web)
    page.goto(f"{base_url(web)}/folders/Support")
    page.wait_for_selector("table.messages tbody tr")
    uids = _uids_on_page(page)
    assert len(uids) >= 3 and page.inner_text(_claim_cell(uids[0])) == ""
    bob = gateway.imaplib_login("bob", "bob-pw")
    carol = gateway.imaplib_login("carol", "carol-pw")
    try:
        assert bob.select("Support")[0] == "OK" and carol.select("Support")[0] == "OK"
        typ, data = carol.uid("STORE", str(uids[2]), "+FLAGS", "($Claimed)")
        assert typ == "OK", data
        page.wait_for_selector(f"{_claim_cell(uids[2])} >> text=carol", timeout=5000)
        typ, data = bob.uid("STORE", str(uids[0]), "+FLAGS", "($Claimed)")
        ok_at = time.monotonic()
        assert typ == "OK", data
        page.wait_for_function(
            "sel => { const c = document.querySelector(sel); return c && c.textContent.trim() === 'bob'; }",
            arg=_claim_cell(uids[0]),
            polling=20,
            timeout=5000,
        )
        elapsed = time.monotonic() - ok_at
    finally:
        bob.logout()
        carol.logout()
    assert elapsed <= 1.0, f"the claim showed {elapsed:.2f} s after the tagged OK"
    assert "/folders/Support" in page.url  # no reload, no navigation: htmx swapped the list
    assert page.inner_text(_claim_cell(uids[1])) == ""
    shot(page, "claims")
    assert page_errors(page) == []


def test_a_claim_over_imap_appears_on_the_open_message_page_within_a_second(
    page: Page, web: WebServer, gateway: GatewayHarness
) -> None:
    browser_login(page, web)
    page.goto(f"{base_url(web)}/folders/Support")
    page.wait_for_selector("table.messages tbody tr")
    uid = _uids_on_page(page)[5]
    page.goto(f"{base_url(web)}/messages/Support/{uid}")
    page.wait_for_selector("#claim >> text=Nobody has claimed this message")
    bob = gateway.imaplib_login("bob", "bob-pw")
    try:
        assert bob.select("Support")[0] == "OK"
        assert bob.uid("STORE", str(uid), "+FLAGS", "($Claimed)")[0] == "OK"
        ok_at = time.monotonic()
        page.wait_for_selector("#claim >> text=Claimed by bob", timeout=1500)
        elapsed = time.monotonic() - ok_at
    finally:
        bob.logout()
    assert elapsed <= 1.0, elapsed
    assert f"/messages/Support/{uid}" in page.url


def test_claim_and_assign_on_the_message_page_are_seen_in_imap_fetch(
    page: Page, web: WebServer, gateway: GatewayHarness
) -> None:
    browser_login(page, web)
    page.goto(f"{base_url(web)}/folders/INBOX")
    page.wait_for_selector("table.messages tbody tr")
    mine, assigned, taken = _uids_on_page(page)[3:6]
    bob = gateway.imaplib_login("bob", "bob-pw")
    try:
        assert bob.select("INBOX")[0] == "OK"
        assert bob.uid("STORE", str(taken), "+FLAGS", "($Claimed)")[0] == "OK"
        # Claim: alice's button, bob's FETCH.
        page.goto(f"{base_url(web)}/messages/INBOX/{mine}")
        page.click("#claim button >> text=Claim")
        page.wait_for_selector("#claim >> text=Claimed by alice")
        assert {"$Claimed", "$claimed_alice"} <= _flags(bob, mine)
        claimed = page.locator("table.history tr", has_text="claimed").filter(has_text="alice")
        assert claimed.count() >= 1, page.inner_text("table.history")
        shot(page, "message-claim")
        # Assign to bob: a claim in bob's name.
        page.goto(f"{base_url(web)}/messages/INBOX/{assigned}")
        page.fill("#claim input[name=to]", "bob")
        page.click("#claim button >> text=Assign")
        page.wait_for_selector("#claim >> text=Claimed by bob")
        flags = _flags(bob, assigned)
        assert {"$Claimed", "$claimed_bob"} <= flags and "$claimed_alice" not in flags, flags
        # A colleague's claim: the gateway's NO [INUSE] text, and nothing changed.
        page.goto(f"{base_url(web)}/messages/INBOX/{taken}")
        page.wait_for_selector("#claim >> text=Claimed by bob")
        page_errors(page).clear()
        page.fill("#claim input[name=to]", "carol")
        page.click("#claim button >> text=Assign")
        page.wait_for_selector("text=bob is handling this message")
        page_errors(page).clear()  # the refusal is answered 409, which Chromium logs
        flags = _flags(bob, taken)
        assert "$claimed_bob" in flags and "$claimed_carol" not in flags, flags
    finally:
        bob.logout()
    assert page_errors(page) == []


def test_restore_from_the_recovery_page_puts_the_message_back_in_its_folder(
    page: Page, web: WebServer, gateway: GatewayHarness
) -> None:
    subject = "Please restore me"
    bob = gateway.imaplib_login("bob", "bob-pw")
    try:
        raw = (
            f"From: Customer <c@example.org>\r\nSubject: {subject}\r\n"
            "Message-ID: <restore-me@example.org>\r\n\r\nkeep me\r\n"
        ).encode()
        assert bob.append("Junk", None, None, raw)[0] == "OK"
        assert bob.select("Junk")[0] == "OK"
        typ, data = bob.uid("SEARCH", "SUBJECT", f'"{subject}"')
        assert typ == "OK" and len(data[0].split()) == 1, data
        uid = data[0].decode()
        assert bob.uid("STORE", uid, "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert bob.uid("EXPUNGE", uid)[0] == "OK"
        assert bob.uid("SEARCH", "SUBJECT", f'"{subject}"')[1] == [b""]
        browser_login(page, web)
        page.click("header nav a >> text=Recovery")
        page.wait_for_url("**/recovery")
        row = page.locator("table.recovery tr", has_text=subject)
        assert row.count() == 1 and "bob" in row.inner_text() and "Junk" in row.inner_text()
        shot(page, "recovery")
        row.locator("button >> text=Restore").click()
        page.wait_for_url("**/recovery")
        page.wait_for_load_state("load")
        assert page.locator("table.recovery tr", has_text=subject).count() == 0
        # Back in Junk, once, seen from an IMAP client (a fresh SELECT).
        assert bob.select("Junk")[0] == "OK"
        typ, data = bob.uid("SEARCH", "SUBJECT", f'"{subject}"')
        assert typ == "OK" and len(data[0].split()) == 1, data
    finally:
        bob.logout()
    assert page_errors(page) == []


def test_an_acl_entry_set_on_the_admin_page_changes_list_and_select_over_imap(
    page: Page, web: WebServer, gateway: GatewayHarness
) -> None:
    bob = gateway.imaplib_login("bob", "bob-pw")
    try:
        assert "Rechnungen" in _listed(bob) and bob.select("Rechnungen")[0] == "OK"
        assert bob.close()[0] == "OK"
        browser_login(page, web, "carol", "carol-pw")
        page.goto(f"{base_url(web)}/admin/folders/Rechnungen")
        page.fill("form.add input[name=identifier]", "-bob")
        page.fill("form.add input[name=rights]", "lrswipkxtea")
        page.click("button >> text=Set entry")
        page.wait_for_selector("table.acl td >> text=-bob")
        assert "(none" in page.locator("table.effective tr", has_text="bob").inner_text()
        shot(page, "admin-acl")
        # The same logged-in IMAP session: the folder is gone for bob.
        assert "Rechnungen" not in _listed(bob)
        typ, data = bob.select("Rechnungen")
        assert typ == "NO" and b"NONEXISTENT" in data[0], data
        # Deleting the entry gives it back.
        page.locator("table.acl tr", has_text="-bob").locator("button >> text=Delete").click()
        page.wait_for_load_state("load")
        assert page.locator("table.acl td", has_text="-bob").count() == 0
        assert "Rechnungen" in _listed(bob) and bob.select("Rechnungen")[0] == "OK"
    finally:
        bob.logout()
    assert page_errors(page) == []
