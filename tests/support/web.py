"""The web dashboard on a :class:`GatewayHarness`'s loop, and an HTTP client for it.

    with GatewayHarness(...) as h:
        web = start_web(h)                       # WebServer on 127.0.0.1, kernel-chosen port
        with web_client(web) as client:          # httpx.Client with base_url
            login(client, "alice", "alice-pw")
            client.get("/api/folders").json()

``login`` goes through the real form (GET /login for the form token, POST with it), as a browser
does; the client then holds the session cookie.  ``csrf_token(client)`` reads the session's token
from a page (for POSTs of the API).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from imapgate.config import WebConfig
from imapgate.web.server import WebServer

from .gateway import GatewayHarness

if TYPE_CHECKING:  # Playwright only where a browser test runs
    from playwright.sync_api import Page

__all__ = ["browser_login", "csrf_token", "login", "shot", "start_web", "web_client"]


def start_web(harness: GatewayHarness, **options: Any) -> WebServer:
    """Start the dashboard on ``harness``'s loop (``options``: WebConfig fields); stopped with
    ``harness.call(web.stop())`` or by :func:`stop_web`."""
    options.setdefault("listen", ("127.0.0.1:0",))
    config = dataclasses.replace(harness.config, web=WebConfig(**options))
    web = WebServer(harness.gw, config, tls=None)
    harness.call(web.start())
    return web


def stop_web(harness: GatewayHarness, web: WebServer) -> None:
    harness.call(web.stop(), timeout=30)


def base_url(web: WebServer) -> str:
    host, port = web.addresses[0]
    return f"http://{host}:{port}"


def web_client(web: WebServer, **options: Any) -> httpx.Client:
    options.setdefault("timeout", 30)
    return httpx.Client(base_url=base_url(web), **options)


_TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: httpx.Client, user: str, password: str, *, follow: bool = False) -> httpx.Response:
    form = client.get("/login")
    m = _TOKEN_RE.search(form.text)
    assert m is not None, form.text
    return client.post(
        "/login",
        data={"csrf_token": m.group(1), "username": user, "password": password, "next": "/inbox"},
        follow_redirects=follow,
    )


def csrf_token(client: httpx.Client) -> str:
    page = client.get("/inbox")
    m = _TOKEN_RE.search(page.text)
    assert m is not None, page.text
    return m.group(1)


#: IMAPGATE_SCREENSHOTS=1 writes the screenshots of docs/dashboard.md into docs/images/;
#: otherwise they go to a temporary folder (a test run leaves the checkout unchanged).
IMAGES = (
    Path(__file__).resolve().parents[2] / "docs" / "images"
    if os.environ.get("IMAPGATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "imapgate-screenshots"
)


def shot(page: Page, name: str) -> None:
    """A screenshot of ``page`` as ``dashboard-NAME.png`` (see IMAGES)."""
    IMAGES.mkdir(exist_ok=True)
    page.screenshot(path=str(IMAGES / f"dashboard-{name}.png"), type="png")


def browser_login(page: Page, web: WebServer, user: str = "alice", password: str = "alice-pw") -> None:
    """Log in through the login form in the browser; waits for the team inbox."""
    page.goto(base_url(web) + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/inbox")
