"""What every web response and request goes through: security headers, the
client's real address and scheme behind trusted proxies, session cookies,
CSRF checks.

Headers (``SecurityHeaders``, pure ASGI so streamed responses get them too):

- ``Content-Security-Policy`` on every response.  Pages: ``default-src
  'none'``; scripts, styles, fetches and frames only from the gateway itself
  (no inline script or style anywhere: every script is a static file);
  images from itself and ``data:``; forms post only to itself; the dashboard
  is never framed (``frame-ancestors 'none'``); no ``<base>``.  A view may set
  a stricter policy of its own (the sanitized mail frame, downloads); the
  middleware then leaves it.
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (mail
  links never tell a sender's site which message was open),
  ``X-Frame-Options: DENY`` (for browsers without CSP level 2),
  ``Cross-Origin-Opener-Policy: same-origin``.
- ``Cache-Control: no-store`` on everything but static files: a page with
  mail on it must not stay in a shared or disk cache.

Behind a reverse proxy (``[web] trusted_proxies``): the address is the
right-most ``X-Forwarded-For`` entry that is not a trusted proxy, the scheme
the first ``X-Forwarded-Proto`` — only when the TCP peer is a trusted proxy;
otherwise both headers are ignored (anyone can send them).

Cookies: the session cookie is ``HttpOnly; SameSite=Strict; Path=/`` and,
over HTTPS, ``Secure`` with the ``__Host-`` name prefix (the browser then
refuses it from plain HTTP and from sub-domains).  CSRF: every state-changing
request carries the session's token in the form field ``csrf_token`` or the
``X-CSRF-Token`` header, and a request whose ``Origin`` is another site is
refused before that; the login form uses a double-submit token of its own
(no session exists yet).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
#: The sanitized HTML of a mail, shown in a sandboxed frame of the message page:
#: nothing runs, nothing loads but data: images, links open in a new tab.
MAIL_FRAME_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; "
    "frame-ancestors 'self'; base-uri 'none'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
#: Downloads: never rendered, and sandboxed should a browser try.
DOWNLOAD_CSP = "default-src 'none'; sandbox"

SESSION_COOKIE = "imapgate_session"
SECURE_SESSION_COOKIE = "__Host-imapgate_session"
LOGIN_COOKIE = "imapgate_login"
SECURE_LOGIN_COOKIE = "__Host-imapgate_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SecurityHeaders:
    """Adds the headers of the module docstring to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                if "content-security-policy" not in h:
                    h["Content-Security-Policy"] = PAGE_CSP
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("Referrer-Policy", "no-referrer")
                h.setdefault("X-Frame-Options", "DENY")
                h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if static:
                    h.setdefault("Cache-Control", "public, max-age=3600")
                else:
                    h["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True)
class Proxies:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Proxies:
        return cls(tuple(ipaddress.ip_network(e, strict=False) for e in entries))

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in n for n in self.networks)


@dataclass(frozen=True)
class Client:
    address: str
    https: bool


def client_of(request: Request, proxies: Proxies) -> Client:
    """The client's address and whether it reached us over HTTPS (see above)."""
    peer = request.client.host if request.client else ""
    https = request.url.scheme == "https"
    if not proxies.networks or not proxies.trusted(peer):
        return Client(peer, https)
    address = peer
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        hops = [h.strip() for h in forwarded.split(",")[-20:] if h.strip()]
        for hop in reversed(hops):
            address = hop
            if not proxies.trusted(hop):
                break
    proto = request.headers.get("x-forwarded-proto")
    if proto:
        https = proto.split(",")[0].strip().lower() == "https"
    return Client(address, https)


def session_cookie_name(https: bool) -> str:
    return SECURE_SESSION_COOKIE if https else SESSION_COOKIE


def login_cookie_name(https: bool) -> str:
    return SECURE_LOGIN_COOKIE if https else LOGIN_COOKIE


def same_origin(request: Request, https: bool) -> bool:
    """False when the browser says the request comes from another site.

    ``Sec-Fetch-Site`` (every current browser) decides when present: only
    ``same-origin`` and ``none`` (typed by the user) pass.  Otherwise
    ``Origin``, unless it is ``null`` (what a browser sends under
    ``Referrer-Policy: no-referrer``).  Requests with neither header (API
    clients) pass, and still need the CSRF token."""
    headers: Headers = request.headers
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return True
    host = headers.get("host", "")
    return origin.lower() in {f"https://{host}".lower(), f"http://{host}".lower()}
