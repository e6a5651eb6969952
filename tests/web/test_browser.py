"""The dashboard in Debian's Chromium (Playwright, sync API: no async tests in this module):
login, inbox, a message, every hostile corpus message rendered without running a script or
loading anything from outside, a change made by an imaplib session appearing on the Live page
within 1 s.  Screenshots go to docs/images/ (docs/dashboard.md shows them)."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from playwright.sync_api import Page

from imapgate.web.server import WebServer
from tests.support.browser import page_errors, page_requests_blocked
from tests.support.gateway import GatewayHarness
from tests.support.web import base_url, browser_login, login, shot, web_client

pytestmark = [pytest.mark.slow, pytest.mark.integration]


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
