"""Headless Chromium driven by Playwright: the web dashboard as a person sees it.

:class:`ChromiumBrowser` launches Debian's ``/usr/bin/chromium`` (package ``chromium``) through
the Playwright Python package, never Playwright's own browser download (``playwright install``
cannot work here), with the flags this network needs.  :meth:`ChromiumBrowser.new_page` gives a
page in a fresh browser context (own cookies, storage, cache) in which every request to anything
but 127.0.0.1/localhost is blocked and recorded (``page_requests_blocked(page)``): a dashboard
test can assert that hostile mail made the browser fetch nothing from outside.

Fixtures (tests/support/peers.py): ``chromium`` (per module: one browser process, ~0.6 s to
launch) and ``page`` (per test: a fresh context and page, closed afterwards; console errors and
uncaught page errors collected in ``page_errors(page)``).

TESTING-notes (what bites):

* Playwright 1.5x drives Chromium over CDP; Debian's Chromium (156 here) is newer than the one a
  Playwright release is built against -- fine for CDP, checked by the smoke test
  (tests/support/test_browser.py).  ``playwright`` needs its bundled node driver only, which the
  wheel ships.
* Flags: ``--headless`` (new headless), ``--no-sandbox`` (we are root), ``--disable-gpu``;
  without ``--disable-background-networking --disable-component-update --disable-sync`` Chromium
  tries Google's hosts at every start and this closed network refuses them, many at a time;
  ``--disable-quic --no-first-run`` for the same reason.
* ``launch()`` gives every browser process a fresh, empty profile (a ``--user-data-dir`` that
  Playwright makes in the temp dir and deletes at close); every context within is isolated.
* The sync API cannot run inside a running asyncio loop: use it from plain (sync) tests; a
  server under test runs in its own thread (GatewayHarness does that).  The other way round
  too: while a sync Playwright is started, asyncio takes its loop for the running one in this
  thread, so no ``async def`` test can run -- hence the per-module ``chromium`` fixture, stopped
  before the next module.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, Playwright, Request, Route, sync_playwright

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "ChromiumBrowser",
    "chromium_available",
    "page_errors",
    "page_requests_blocked",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
_LOCAL_SCHEMES = {"data", "blob", "about"}


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def page_errors(page: Page) -> list[str]:
    """Console errors and uncaught exceptions the page produced so far (pages from
    :meth:`ChromiumBrowser.new_page`)."""
    errors: list[str] = getattr(page, "_imapgate_errors", [])
    return errors


def page_requests_blocked(page: Page) -> list[str]:
    """URLs of requests to non-local hosts the page tried (and was refused)."""
    blocked: list[str] = getattr(page, "_imapgate_blocked", [])
    return blocked


class ChromiumBrowser:
    """One headless Chromium process; ``start()``/``stop()`` or a context manager."""

    def __init__(self, *, executable: str = CHROMIUM, extra_args: list[str] | None = None) -> None:
        self.executable = executable
        self.args = CHROMIUM_ARGS + list(extra_args or [])
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    @property
    def browser(self) -> Browser:
        if self._browser is None:
            raise RuntimeError("ChromiumBrowser is not started")
        return self._browser

    @property
    def version(self) -> str:
        return self.browser.version

    def start(self) -> None:
        if self._browser is not None:
            return
        if not Path(self.executable).exists():
            raise RuntimeError(f"{self.executable} is missing (apt-get install -y chromium; "
                               "scripts/setup-env.sh) -- never `playwright install`")
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, args=self.args, headless=True, timeout=60_000)
        except BaseException:
            self._playwright.stop()
            self._playwright = None
            raise

    def stop(self) -> None:
        if self._browser is not None:
            with contextlib.suppress(Exception):
                self._browser.close()
            self._browser = None
        if self._playwright is not None:
            self._playwright.stop()
            self._playwright = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def new_page(self, *, viewport: tuple[int, int] = (1280, 800), block_remote: bool = True) -> Page:
        """A page in a fresh context; close it with ``page.context.close()``."""
        context = self.browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors: list[str] = []
        blocked: list[str] = []
        page._imapgate_errors = errors  # type: ignore[attr-defined]
        page._imapgate_blocked = blocked  # type: ignore[attr-defined]
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        if block_remote:
            def guard(route: Route, request: Request) -> None:
                parts = urlsplit(request.url)
                if parts.scheme in _LOCAL_SCHEMES or (parts.hostname or "") in _LOCAL_HOSTS:
                    route.continue_()
                else:
                    blocked.append(request.url)
                    route.abort("blockedbyclient")

            context.route("**/*", guard)
        return page
