"""The dashboard's Starlette application: routes, views and their JSON twins.

As in Datasette, one view serves a page and its JSON: a view function
returns a :class:`View` (template, context, JSON body) and the route renders
it as HTML under ``/...`` and as JSON under ``/api/...``.  Permissions are not
decided here: views call ``data.Dashboard`` (the adapter; later the
pipeline), whose ``NotFound``/``Forbidden``/``Unavailable`` become 404/403/503.
Without a login: 401 for the API, a redirect to ``/login`` for pages.

Routes (docs/dashboard.md lists them with examples):

    GET  /login, POST /login, POST /logout
    GET  /                         -> /inbox
    GET  /inbox                    /api/folders
    GET  /folders/{name}           /api/folders/{name}/messages   ?filter=&page=&per_page=
    GET  /messages/{folder}/{uid}  /api/messages/{folder}/{uid}
    GET  /messages/{folder}/{uid}/html        the sanitized HTML, for the sandboxed frame
    GET  /messages/{folder}/{uid}/parts/{n}   an attachment (download)
    GET  /messages/{folder}/{uid}/raw         the whole message (download)
    GET  /live                     /api/events (text/event-stream)
    GET  /audit                    /api/audit     (web/team_views.py: filters and paging)
    GET  /recovery                 /api/recovery  POST .../{id}/restore
    POST /messages/{folder}/{uid}/claim, GET|POST|DELETE /api/claims (web/team_views.py)
    POST /messages/{folder}/{uid}/notes, POST /api/messages/{folder}/{uid}/notes (web/team_views.py)
    GET|POST /admin...             /api/admin/...   (admins only: web/admin_views.py)
    GET  /healthz, /metrics
    GET  /.well-known/autoconfig/mail/config-v1.1.xml, /mail/config-v1.1.xml
    POST /autodiscover/autodiscover.xml
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..config import WebConfig
from ..gateway.policy import Actor
from . import autoconfig
from .admin_data import AdminDesk
from .data import FILTERS, MAX_NOTE, PER_PAGE, Change, Dashboard, DataError, Filter
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import Metrics
from .security import (
    CSRF_FIELD,
    CSRF_HEADER,
    DOWNLOAD_CSP,
    MAIL_FRAME_CSP,
    SAFE_METHODS,
    Client,
    Proxies,
    SecurityHeaders,
    client_of,
    login_cookie_name,
    same_origin,
    session_cookie_name,
)
from .sessions import MemorySessionStore, WebSession, csrf_ok

log = logging.getLogger("imapgate.web")

HERE = Path(__file__).parent
#: Seconds between keep-alive comments on an idle event stream (proxies close
#: silent connections; the stream also notices an ended login at each one).
SSE_PING_SECONDS = 15.0
#: Changes queued for one slow event stream before it is closed (the browser
#: reconnects and replays from Last-Event-ID): a stuck client costs bounded memory.
SSE_QUEUE = 256
#: Form bodies at most (a login form is a few hundred bytes).
MAX_FORM_BYTES = 64 * 1024
#: Live event streams per dashboard login (tabs); more are refused with 429.
MAX_STREAMS_PER_SESSION = 8


@dataclass
class View:
    template: str
    context: dict[str, Any]
    json: Any = None
    status: int = 200


class HTTPError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Web:
    """Everything the views share (``request.app.state.web``)."""

    config: WebConfig
    data: Dashboard
    sessions: MemorySessionStore
    proxies: Proxies
    metrics: Metrics
    templates: jinja2.Environment
    #: The Admin area's door to AdminService (web/admin_data.py).
    admin: AdminDesk
    #: Open event streams per session number.
    streams: dict[int, set[asyncio.Queue[Change | None]]] = field(default_factory=dict)
    closing: bool = False


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["datetime"] = lambda ts: time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
    env.filters["size"] = _size
    return env


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def create_app(config: WebConfig, data: Dashboard) -> Starlette:
    from . import admin_views, team_views  # they build on this module's helpers

    sessions = MemorySessionStore(idle_timeout=config.session_idle_timeout, lifetime=config.session_lifetime)
    web = Web(
        config=config,
        data=data,
        sessions=sessions,
        proxies=Proxies.parse(config.trusted_proxies),
        metrics=Metrics(data, lambda: len(sessions)),
        templates=_templates(),
        admin=AdminDesk(data.gw, sessions),
    )
    sessions.on_end.append(lambda s: _end_streams(web, s))
    routes = [
        Route("/", _home),
        Route("/login", _login_form, methods=["GET"]),
        Route("/login", _login, methods=["POST"]),
        Route("/logout", _logout, methods=["POST"]),
        Route("/inbox", _page(_inbox)),
        Route("/api/folders", _api(_inbox)),
        Route("/api/folders/{name:path}/messages", _api(_folder)),
        Route("/folders/{name:path}", _page(_folder)),
        *team_views.routes(),
        Route("/api/messages/{folder:path}/{uid:int}", _api(_message)),
        Route("/messages/{folder:path}/{uid:int}/html", _message_html),
        Route("/messages/{folder:path}/{uid:int}/parts/{index:int}", _message_part),
        Route("/messages/{folder:path}/{uid:int}/raw", _message_raw),
        Route("/messages/{folder:path}/{uid:int}", _page(_message)),
        Route("/live", _page(_live)),
        Route("/api/events", _events),
        *admin_views.routes(),
        Route("/healthz", _healthz),
        Route("/metrics", _metrics),
        Route("/.well-known/autoconfig/mail/config-v1.1.xml", _autoconfig),
        Route("/mail/config-v1.1.xml", _autoconfig),
        Route("/autodiscover/autodiscover.xml", _autodiscover, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
    app.state.web = web
    app.add_middleware(SecurityHeaders)
    return app


# --- helpers -------------------------------------------------------------------------------


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def _client(request: Request) -> Client:
    return client_of(request, _web(request).proxies)


def _session(request: Request) -> WebSession | None:
    client = _client(request)
    cookie = request.cookies.get(session_cookie_name(client.https))
    return _web(request).sessions.get(cookie) if cookie else None


def _actor(session: WebSession) -> Actor:
    return Actor(session.user_id, session.user, "web dashboard")


def _render(
    request: Request, view: View, session: WebSession | None, events_after: int | None = None
) -> Response:
    """The page of ``view``; ``events_after``: the live feed's newest change when the request
    began, so the page's event stream starts there (a change made while the page was on its
    way to the browser is replayed, not missed)."""
    web = _web(request)
    # The Admin link only for admins (the pages refuse everyone else anyway).
    admin = session is not None and web.admin.is_admin(_actor(session))
    context = {
        "user": session.user if session else None,
        "csrf_token": session.csrf_token if session else "",
        "path": request.url.path,
        "events_after": events_after,
        "nav": NAV if admin else tuple(n for n in NAV if n[0] != "/admin"),
        **view.context,
    }
    html = web.templates.get_template(view.template).render(context)
    return Response(html, status_code=view.status, media_type="text/html; charset=utf-8")


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _error_page(request: Request, status: int, reason: str, session: WebSession | None) -> Response:
    return _render(request, View("error.html", {"status": status, "reason": reason}, status=status), session)


NAV = (
    ("/inbox", "Team inbox"),
    ("/live", "Live"),
    ("/audit", "Audit"),
    ("/recovery", "Recovery"),
    ("/admin", "Admin"),
)

ViewFn = Callable[[Request, WebSession], Awaitable[View]]


def _page(fn: ViewFn) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        session = _session(request)
        if session is None:
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
            return RedirectResponse(f"/login?next={target}", status_code=303)
        # Before the page reads anything: what changes after this reaches the page's stream.
        events_after = _web(request).data.live.last_id
        try:
            view = await fn(request, session)
        except DataError as exc:
            return _error_page(request, exc.status, exc.reason, session)
        except HTTPError as exc:
            return _error_page(request, exc.status, exc.reason, session)
        return _render(request, view, session, events_after)

    return endpoint


def _api(fn: ViewFn) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        session = _session(request)
        if session is None:
            return _json({"error": "not logged in"}, 401)
        try:
            view = await fn(request, session)
        except DataError as exc:
            return _json({"error": exc.reason}, exc.status)
        except HTTPError as exc:
            return _json({"error": exc.reason}, exc.status)
        return _json(view.json, view.status)

    return endpoint


def _int_arg(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 9:
        raise HTTPError(400, f"{name} must be a positive number")
    return int(value)


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (bounded), as a dict of strings."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPError(413, "form too large")
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, "unreadable form") from None
    return dict(pairs)


async def _json_object(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object body (at most ``limit`` bytes; empty: ``{}``)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise HTTPError(413, f"a request body is at most {limit} bytes")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise HTTPError(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise HTTPError(400, "the body is a JSON object")
    return data


def _check_csrf(request: Request, session: WebSession, form: dict[str, str] | None) -> None:
    if request.method in SAFE_METHODS:
        return
    if not same_origin(request, _client(request).https):
        raise HTTPError(403, "cross-site request refused")
    token = request.headers.get(CSRF_HEADER) or (form or {}).get(CSRF_FIELD)
    if not csrf_ok(session, token):
        raise HTTPError(403, "missing or wrong CSRF token")


# --- login ---------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    """Only a local path: never an open redirect (``//evil``, ``/\\evil``, URLs)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return "/inbox"
    return value


async def _home(request: Request) -> Response:
    return RedirectResponse("/inbox", status_code=303)


def _login_page(request: Request, *, error: str = "", status: int = 200, name: str = "") -> Response:
    client = _client(request)
    token = secrets.token_urlsafe(24)
    view = View(
        "login.html",
        {
            "error": error,
            "login_token": token,
            "next": _safe_next(request.query_params.get("next")),
            "name": name,
        },
        status=status,
    )
    response = _render(request, view, None)
    response.set_cookie(
        login_cookie_name(client.https), token, max_age=3600, path="/",
        secure=client.https, httponly=True, samesite="strict",
    )  # fmt: skip
    return response


async def _login_form(request: Request) -> Response:
    if _session(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


async def _login(request: Request) -> Response:
    web = _web(request)
    client = _client(request)
    try:
        form = await _form(request)
    except HTTPError as exc:
        return _login_page(request, error=exc.reason, status=exc.status)
    expected = request.cookies.get(login_cookie_name(client.https))
    given = form.get(CSRF_FIELD, "")
    if not same_origin(request, client.https) or not expected or not secrets.compare_digest(expected, given):
        return _login_page(request, error="The login form expired; please try again.", status=403)
    name = form.get("username", "").strip()
    password = form.get("password", "")
    if not name or not password or len(name) > 255 or len(password) > 1024:
        return _login_page(request, error="Enter your user name and password.", status=400, name=name[:255])
    result = await web.data.login(name, password, client.address)
    if not result.ok or result.user is None:
        status = 401 if result.outcome.value == "failed" else 429 if result.outcome.value == "locked" else 503
        return _login_page(request, error=web.data.refusal(result), status=status, name=name)
    cookie, session = web.sessions.create(
        result.user.name, result.user.id, address=client.address, tls=client.https
    )
    log.info("web login: %s from %s (w%d)", session.user, client.address, session.number)
    target = _safe_next(form.get("next"))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        session_cookie_name(client.https), cookie, path="/", secure=client.https, httponly=True,
        samesite="strict", max_age=int(web.config.session_lifetime),
    )  # fmt: skip
    response.delete_cookie(login_cookie_name(client.https), path="/", secure=client.https, samesite="strict")
    return response


async def _logout(request: Request) -> Response:
    web = _web(request)
    client = _client(request)
    session = _session(request)
    if session is not None:
        try:
            form = await _form(request)
            _check_csrf(request, session, form)
        except HTTPError as exc:
            return _error_page(request, exc.status, exc.reason, session)
        cookie = request.cookies.get(session_cookie_name(client.https), "")
        web.sessions.delete(cookie)
        log.info("web logout: %s (w%d)", session.user, session.number)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        session_cookie_name(client.https), path="/", secure=client.https, httponly=True, samesite="strict"
    )
    return response


# --- pages -----------------------------------------------------------------------------------


async def _inbox(request: Request, session: WebSession) -> View:
    folders = _web(request).data.list_folders(_actor(session))
    return View(
        "inbox.html",
        {"folders": folders},
        json={
            "folders": [
                {"name": f.name, "messages": f.total, "unread": f.unread, "rights": f.rights,
                 "selectable": f.selectable}
                for f in folders
            ]
        },
    )  # fmt: skip


async def _folder(request: Request, session: WebSession) -> View:
    name = request.path_params["name"]
    flt = request.query_params.get("filter", "all")
    if flt not in FILTERS:
        raise HTTPError(400, f"filter must be one of {', '.join(FILTERS)}")
    page = _int_arg(request, "page", 1)
    per_page = _int_arg(request, "per_page", PER_PAGE)
    filt: Filter = flt
    query = request.query_params.get("q", "")
    result = await _web(request).data.list_messages(_actor(session), name, filt, page, per_page, query)
    show_read_by = _web(request).data.show_read_by
    return View(
        "folder.html",
        {"p": result, "filters": FILTERS, "show_read_by": show_read_by},
        json={
            "folder": result.folder.name,
            "query": result.query,
            "messages_total": result.folder.total,
            "unread": result.folder.unread,
            "filter": result.filter,
            "page": result.page,
            "pages": result.pages,
            "per_page": result.per_page,
            "matching": result.matching,
            "messages": [m.to_json(show_read_by) for m in result.messages],
        },
    )


async def _message(request: Request, session: WebSession) -> View:
    folder = request.path_params["folder"]
    uid = request.path_params["uid"]
    web = _web(request)
    actor = _actor(session)
    m = await web.data.message(actor, folder, uid)
    history = web.data.history_of(actor, m, web.admin.is_admin(actor))
    r = m.rendered
    h = r.headers
    show_html = r.html is not None and (r.text is None or request.query_params.get("view") == "html")

    def addrs(xs: tuple[Any, ...]) -> list[dict[str, str]]:
        return [{"name": a.name, "address": a.address} for a in xs]

    return View(
        "message.html",
        {"m": m, "r": r, "h": h, "show_html": show_html, "history": history,
         "may_claim": web.data.may_claim(actor, folder), "show_read_by": web.data.show_read_by,
         "max_note": MAX_NOTE},
        json={
            "folder": m.folder,
            "uid": m.uid,
            "seen": m.seen,
            "flags": list(m.flags),
            "headers": {
                "subject": h.subject, "from": addrs(h.from_), "to": addrs(h.to), "cc": addrs(h.cc),
                "reply_to": addrs(h.reply_to), "date": h.date_iso or h.date, "message_id": h.message_id,
            },
            "text": r.text,
            "has_html": r.html is not None,
            "attachments": [
                {"part": a.index, "filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in r.attachments
            ],
            "notes": list(r.notes),
            "remote_content_blocked": r.remote_content_blocked,
            "size": r.size,
            "claimed_by": m.claim.user if m.claim else None,
            "answered_by": list(m.answered_by),
            "team_notes": [n.to_json() for n in m.notes],
            **({"read_by": None if m.read_by is None else list(m.read_by)} if web.data.show_read_by else {}),
            "history": [e.to_json() for e in history],
        },
    )  # fmt: skip


async def _authed(request: Request) -> WebSession:
    session = _session(request)
    if session is None:
        raise HTTPError(401, "not logged in")
    return session


def _plain_error(exc: DataError | HTTPError) -> Response:
    return Response(exc.reason + "\n", status_code=exc.status, media_type="text/plain; charset=utf-8")


async def _message_html(request: Request) -> Response:
    """The sanitized HTML as a document of its own, for ``<iframe sandbox>``:
    a CSP that forbids scripts and every remote load (see security.py)."""
    try:
        session = await _authed(request)
        m = await _web(request).data.message(
            _actor(session), request.path_params["folder"], request.path_params["uid"]
        )
    except (DataError, HTTPError) as exc:
        return _plain_error(exc)
    html = m.rendered.html or ""
    doc = (
        '<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
        f"</head><body>{html}</body></html>"
    )
    return Response(
        doc,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": MAIL_FRAME_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


def _download(data: bytes, filename: str) -> Response:
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename)
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition, "Content-Security-Policy": DOWNLOAD_CSP},
    )


async def _message_part(request: Request) -> Response:
    try:
        session = await _authed(request)
        filename, data = await _web(request).data.attachment(
            _actor(session), request.path_params["folder"], request.path_params["uid"],
            request.path_params["index"],
        )  # fmt: skip
    except (DataError, HTTPError) as exc:
        return _plain_error(exc)
    return _download(data, filename)


async def _message_raw(request: Request) -> Response:
    try:
        session = await _authed(request)
        uid = request.path_params["uid"]
        data = await _web(request).data.raw_message(_actor(session), request.path_params["folder"], uid)
    except (DataError, HTTPError) as exc:
        return _plain_error(exc)
    return _download(data, f"message-{uid}.eml")


async def _live(request: Request, session: WebSession) -> View:
    return View("live.html", {}, json=None)


def _coming(title: str, issue: str) -> ViewFn:
    async def view(request: Request, session: WebSession) -> View:
        return View("coming.html", {"title": title, "issue": issue})

    return view


# --- live events -----------------------------------------------------------------------------


def _end_streams(web: Web, session: WebSession) -> None:
    for queue in web.streams.pop(session.number, set()):
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)


async def _events(request: Request) -> Response:
    """``text/event-stream`` of every change the user may see (``event:
    change``, ``id``, JSON ``data``); a comment every SSE_PING_SECONDS."""
    web = _web(request)
    session = _session(request)
    if session is None:
        return _json({"error": "not logged in"}, 401)
    mine = web.streams.setdefault(session.number, set())
    if len(mine) >= MAX_STREAMS_PER_SESSION:
        return _json({"error": f"at most {MAX_STREAMS_PER_SESSION} event streams per login"}, 429)
    queue: asyncio.Queue[Change | None] = asyncio.Queue(SSE_QUEUE)
    # A reconnect says where it was (Last-Event-ID); a page's first connect, where the page's
    # data was read (``after``, from the page itself).
    last = request.headers.get("last-event-id", "") or request.query_params.get("after", "")
    last_id = int(last) if last.isdigit() and len(last) < 19 else None

    def deliver(change: Change) -> None:
        try:
            queue.put_nowait(change)
        except asyncio.QueueFull:
            # Too slow: end this stream; the browser reconnects with Last-Event-ID.
            with contextlib.suppress(asyncio.QueueFull):
                queue.get_nowait()
                queue.put_nowait(None)

    mine.add(queue)
    stream = web.data.live.open(_actor(session), deliver, session.number, last_id)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 1000\n: connected\n\n"
            while not web.closing:
                try:
                    change = await asyncio.wait_for(queue.get(), SSE_PING_SECONDS)
                except TimeoutError:
                    if not web.sessions.alive(session):
                        return
                    web.sessions.touch(session)
                    yield b": ping\n\n"
                    continue
                if change is None:
                    return
                yield web.data.live.encoded(change)
        finally:
            web.data.live.close(stream)
            mine.discard(queue)

    return StreamingResponse(body(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})


async def close_streams(web: Web) -> None:
    """End every event stream (shutdown): each gets its end marker."""
    web.closing = True
    for queues in list(web.streams.values()):
        for queue in list(queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


# --- operations ------------------------------------------------------------------------------


async def _healthz(request: Request) -> Response:
    h = _web(request).data.health()
    body = {
        "live": h.live,
        "ready": h.ready,
        "upstream": h.upstream,
        "upstream_error": h.upstream_error,
        "watch": h.watch,
        "folders": h.folders,
        "messages": h.messages,
        "sync_lag_seconds": None if h.sync_lag is None else round(h.sync_lag, 1),
        "upstream_connections": {"open": h.pool_open, "in_use": h.pool_in_use, "max": h.pool_max},
    }
    # ?live: liveness only (the process answers); default: readiness.
    status = 200 if ("live" in request.query_params or h.ready) else 503
    return _json(body, status)


async def _metrics(request: Request) -> Response:
    return Response(_web(request).metrics.render(), media_type=METRICS_TYPE)


def _public_host(request: Request) -> str:
    return autoconfig.public_host(_web(request).config.public_host, request.headers.get("host", ""))


async def _autoconfig(request: Request) -> Response:
    web = _web(request)
    email = request.query_params.get("emailaddress")
    xml = autoconfig.thunderbird(_public_host(request), web.data.imap_endpoints(), email)
    return Response(xml, media_type="application/xml; charset=utf-8")


async def _autodiscover(request: Request) -> Response:
    web = _web(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > autoconfig.MAX_REQUEST_BYTES:
            break
    email = autoconfig.email_from_autodiscover(body) or request.query_params.get("emailaddress")
    xml = autoconfig.outlook(_public_host(request), web.data.imap_endpoints(), email)
    return Response(xml, media_type="application/xml; charset=utf-8")


# --- errors ----------------------------------------------------------------------------------


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return _json({"error": "not found"}, 404)
    return _error_page(request, 404, "There is no such page.", _session(request))


async def _not_allowed(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return _json({"error": "method not allowed"}, 405)
    return _error_page(request, 405, "Method not allowed.", _session(request))
