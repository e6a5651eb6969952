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
import re
from typing import Any

import httpx

from imapgate.config import WebConfig
from imapgate.web.server import WebServer

from .gateway import GatewayHarness

__all__ = ["csrf_token", "login", "start_web", "web_client"]


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
