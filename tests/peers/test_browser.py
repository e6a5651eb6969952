"""Headless Debian Chromium through Playwright: load a local page, click, screenshot, DOM check;
remote requests are blocked and recorded."""

from __future__ import annotations

import http.server
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.support.browser import ChromiumBrowser, page_errors, page_requests_blocked

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>peer check</title></head>
<body>
  <p id="state">not yet</p>
  <button id="go" onclick="document.getElementById('state').textContent = 'clicked ' + (++window.n)">
    Claim</button>
  <script>window.n = 0;</script>
</body></html>
"""
REMOTE = b"""<!doctype html><html><body>
  <img src="http://tracker.example.com/pixel.png" alt="">
  <p id="ok">local text</p>
</body></html>
"""


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """A tiny local web server (stdlib) on 127.0.0.1 with a kernel-chosen port."""
    pages = {"/": PAGE, "/remote": REMOTE}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_chromium_is_debians_and_playwright_drives_it(chromium: ChromiumBrowser) -> None:
    major = int(chromium.version.split(".")[0])
    assert major >= 120, chromium.version


def test_click_changes_the_dom_and_screenshot(page: Page, site: str, tmp_path: Path) -> None:
    page.goto(site + "/")
    assert page.title() == "peer check"
    assert page.text_content("#state") == "not yet"
    page.get_by_role("button", name="Claim").click()
    page.click("#go")
    assert page.text_content("#state") == "clicked 2"
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width == 1280 and height >= 100
    assert page_errors(page) == []


def test_remote_requests_are_blocked_and_recorded(page: Page, site: str) -> None:
    page.goto(site + "/remote")
    page.wait_for_load_state("load")
    assert page.text_content("#ok") == "local text"
    assert page_requests_blocked(page) == ["http://tracker.example.com/pixel.png"]


def test_each_test_gets_a_fresh_context(page: Page, site: str) -> None:
    page.goto(site + "/")
    assert page.evaluate("document.cookie") == ""
    page.evaluate("document.cookie = 'session=abc'")
    assert page.context.cookies() != []
    other = page.context.browser
    assert other is not None
    fresh = other.new_context()
    try:
        assert fresh.cookies() == []
    finally:
        fresh.close()
