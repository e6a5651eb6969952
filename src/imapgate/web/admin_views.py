"""The Admin pages and their JSON API (``/admin...``, ``/api/admin/...``).

Every view asks ``AdminDesk`` (web/admin_data.py), which runs the CLI's
``AdminService`` verbs as the logged-in admin; nothing here decides a
permission or writes.  Non-admins get 403 on every page and endpoint (401
without a login, as everywhere).

Pages are plain HTML forms (they work without JavaScript): each POST carries
the session's CSRF token and an ``action`` field, and is answered with the
page itself, fresh, with what was done or why it was refused (400/403/404 with
the text; no redirect, so the message needs no state of its own).

    GET|POST /admin                 users and groups
    GET      /admin/folders         folders with their read mode
    GET|POST /admin/folders/{name}  a folder's ACL, effective rights, read mode
    GET|POST /admin/sessions        IMAP and dashboard sessions, "end session"

The API (docs/api.md): JSON bodies, the token in ``X-CSRF-Token``.

    GET|POST         /api/admin/users
    PATCH|DELETE     /api/admin/users/{name}           {"disabled"}, {"password"}, {"admin"}
    GET|POST         /api/admin/groups
    DELETE           /api/admin/groups/{name}
    POST             /api/admin/groups/{name}/members  {"users": [...]}
    DELETE           /api/admin/groups/{name}/members/{user}
    GET              /api/admin/folders
    GET|POST|DELETE  /api/admin/acl/{folder}           {"identifier", "rights"}; DELETE ?identifier=
    GET|PUT          /api/admin/folders/{folder}/read-mode   {"seen": "shared|private|default"}
    GET              /api/admin/sessions
    DELETE           /api/admin/sessions/imap/{id}, /api/admin/sessions/web/{n}
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..gateway.policy import Actor
from .admin_data import SEEN_SETTINGS, AdminDesk, Done, SessionRow
from .app import (
    HTTPError,
    View,
    _actor,
    _api,
    _check_csrf,
    _error_page,
    _form,
    _json_object,
    _render,
    _session,
    _web,
)
from .data import DataError
from .sessions import WebSession

#: JSON bodies at most (a user with a password, an ACL entry: well under 1 KiB).
MAX_JSON_BYTES = 16 * 1024

#: A form's action: what it did (or DataError/HTTPError: why not).
Action = Callable[[AdminDesk, Actor, dict[str, str], Request], Awaitable[Done]]


def _desk(request: Request) -> AdminDesk:
    desk: AdminDesk = _web(request).admin
    return desk


def _admin(request: Request, session: WebSession) -> Actor:
    actor = _actor(session)
    if not _desk(request).is_admin(actor):
        raise HTTPError(403, "only admins may use the Admin pages")
    return actor


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _field(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise HTTPError(400, f"{name.replace('_', ' ')} is missing")
    return value


def _number(value: str, what: str) -> int:
    if not value.isdigit() or len(value) > 9:
        raise HTTPError(400, f"{what} must be a number")
    return int(value)


def _names(text: str) -> list[str]:
    """User names from a form field: separated by commas or spaces."""
    return [n for n in text.replace(",", " ").split() if n]


# --- page views ----------------------------------------------------------------------------


async def _users_view(request: Request, session: WebSession) -> View:
    actor = _admin(request, session)
    desk = _desk(request)
    users = await desk.users(actor)
    groups = await desk.groups(actor)
    return View(
        "admin_users.html",
        {"users": users, "groups": groups, "me": session.user},
        json={
            "users": [
                {"name": u.name, "created": _iso(u.created_at), "disabled": u.disabled, "admin": u.admin}
                for u in users
            ],
            "groups": [{"name": f"${g.name}", "members": list(g.members)} for g in groups],
        },
    )


async def _groups_view(request: Request, session: WebSession) -> View:
    actor = _admin(request, session)
    groups = await _desk(request).groups(actor)
    return View("", {}, json={"groups": [{"name": f"${g.name}", "members": list(g.members)} for g in groups]})


async def _folders_view(request: Request, session: WebSession) -> View:
    actor = _admin(request, session)
    folders = await _desk(request).folders(actor)
    return View(
        "admin_folders.html",
        {"folders": folders, "settings": SEEN_SETTINGS},
        json={
            "folders": [
                {"name": f.name, "messages": f.messages, "seen": f.seen, "seen_from_setting": f.from_setting}
                for f in folders
            ]
        },
    )


async def _folder_view(request: Request, session: WebSession) -> View:
    actor = _admin(request, session)
    name = request.path_params.get("name") or request.path_params["folder"]
    f = await _desk(request).folder(actor, name)
    return View(
        "admin_folder.html",
        {"f": f, "settings": SEEN_SETTINGS},
        json={
            "folder": f.folder,
            "own": f.own,
            "entries": [{"identifier": e.identifier, "rights": e.rights} for e in f.entries],
            "effective": [{"user": u, "rights": r} for u, r in f.effective],
            "seen": f.seen,
            "seen_from_setting": f.from_setting,
        },
    )


def _session_json(s: SessionRow) -> dict[str, Any]:
    return {
        "kind": s.kind, "id": s.id, "user": s.user, "address": s.address, "tls": s.tls,
        "since": _iso(s.since), "detail": s.detail,
    }  # fmt: skip


async def _sessions_view(request: Request, session: WebSession) -> View:
    actor = _admin(request, session)
    desk = _desk(request)
    imap, missing = await desk.imap_sessions(actor)
    web = desk.web_sessions(actor)
    return View(
        "admin_sessions.html",
        {"imap": imap, "web": web, "missing": missing, "mine": session.number},
        json={
            "imap": [_session_json(s) for s in imap],
            "web": [_session_json(s) for s in web],
            "imap_unavailable": missing or None,
        },
    )


# --- page actions (forms) ------------------------------------------------------------------


async def _user_action(desk: AdminDesk, actor: Actor, form: dict[str, str], request: Request) -> Done:
    action = form.get("action", "")
    name = _field(form, "name")
    if action == "add":
        return await desk.add_user(actor, name, form.get("password", ""), form.get("admin") == "on")
    if action == "password":
        return await desk.set_password(actor, name, form.get("password", ""))
    if action in ("disable", "enable"):
        return await desk.set_disabled(actor, name, action == "disable")
    if action in ("make-admin", "drop-admin"):
        return await desk.set_admin(actor, name, action == "make-admin")
    if action == "remove":
        return await desk.remove_user(actor, name)
    if action == "add-group":
        return await desk.add_group(actor, name)
    if action == "remove-group":
        return await desk.remove_group(actor, name)
    if action == "add-members":
        return await desk.add_members(actor, name, _names(_field(form, "users")))
    if action == "remove-member":
        return await desk.remove_members(actor, name, [_field(form, "user")])
    raise HTTPError(400, f"unknown action {action!r}")


async def _folder_action(desk: AdminDesk, actor: Actor, form: dict[str, str], request: Request) -> Done:
    folder = request.path_params["name"]
    action = form.get("action", "")
    if action == "set-entry":
        return await desk.set_entry(actor, folder, _field(form, "identifier"), form.get("rights", "").strip())
    if action == "delete-entry":
        return await desk.delete_entry(actor, folder, _field(form, "identifier"))
    if action == "read-mode":
        return await desk.set_read_mode(actor, folder, _field(form, "seen"))
    raise HTTPError(400, f"unknown action {action!r}")


async def _session_action(desk: AdminDesk, actor: Actor, form: dict[str, str], request: Request) -> Done:
    if form.get("action") != "end":
        raise HTTPError(400, f"unknown action {form.get('action', '')!r}")
    kind = form.get("kind", "")
    number = _number(form.get("id", ""), "the session")
    if kind == "imap":
        return await desk.end_imap_session(actor, number)
    if kind == "web":
        return desk.end_web_session(actor, number)
    raise HTTPError(400, "kind must be imap or web")


def _admin_page(
    view: Callable[[Request, WebSession], Awaitable[View]],
    action: Action | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """A page (GET) and, with ``action``, its forms (POST): the action's outcome is
    shown above the page as it is afterwards."""

    async def endpoint(request: Request) -> Response:
        session = _session(request)
        if session is None:
            if request.method == "POST":
                return _error_page(request, 401, "Your login has ended; log in again.", None)
            return RedirectResponse(f"/login?next={quote(request.url.path, safe='')}", status_code=303)
        done: Done | None = None
        failed: DataError | HTTPError | None = None
        try:
            actor = _admin(request, session)
            if request.method == "POST" and action is not None:
                form = await _form(request)
                _check_csrf(request, session, form)
                try:
                    done = await action(_desk(request), actor, form, request)
                except (DataError, HTTPError) as exc:
                    failed = exc
                if not _web(request).sessions.alive(session):
                    # The admin removed or disabled their own account, or ended this login.
                    return RedirectResponse("/login", status_code=303)
            page = await view(request, session)
        except (DataError, HTTPError) as exc:
            return _error_page(request, exc.status, exc.reason, session)
        page.context.update({"done": done, "failed": failed.reason if failed else ""})
        if failed is not None:
            page.status = failed.status
        return _render(request, page, session)

    return endpoint


def _page_view(
    view: Callable[[Request, WebSession], Awaitable[View]],
) -> Callable[[Request], Awaitable[Response]]:
    return _admin_page(view)


# --- API writes ----------------------------------------------------------------------------


async def _body(request: Request, session: WebSession) -> tuple[Actor, dict[str, Any]]:
    """The admin actor and the request's JSON object (CSRF checked first)."""
    actor = _admin(request, session)
    _check_csrf(request, session, None)
    return actor, await _json_object(request, MAX_JSON_BYTES)


def _str(data: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise HTTPError(400, f'"{name}" (a string) is missing')
    return value.strip() if name != "password" else value


def _answer(done: Done, status: int = 200) -> View:
    return View("", {}, json={"ok": True, "changed": done.changed, "text": done.text,
                              "warning": done.warning or None}, status=status)  # fmt: skip


async def _api_add_user(request: Request, session: WebSession) -> View:
    actor, data = await _body(request, session)
    admin = data.get("admin", False)
    if not isinstance(admin, bool):
        raise HTTPError(400, '"admin" is true or false')
    done = await _desk(request).add_user(actor, _str(data, "name"), _str(data, "password"), admin)
    return _answer(done, 201)


async def _api_change_user(request: Request, session: WebSession) -> View:
    actor, data = await _body(request, session)
    desk = _desk(request)
    name = request.path_params["name"]
    known = {"disabled", "password", "admin"}
    if not data or set(data) - known:
        raise HTTPError(400, 'give "disabled" (true/false), "password" or "admin" (true/false)')
    texts: list[str] = []
    warnings: list[str] = []
    for key in ("password", "disabled", "admin"):
        if key not in data:
            continue
        if key == "password":
            done = await desk.set_password(actor, name, _str(data, "password"))
        else:
            flag = data[key]
            if not isinstance(flag, bool):
                raise HTTPError(400, f'"{key}" is true or false')
            done = await (desk.set_disabled if key == "disabled" else desk.set_admin)(actor, name, flag)
        texts.append(done.text)
        warnings.extend([done.warning] if done.warning else [])
    return _answer(Done(" ".join(texts), True, "; ".join(warnings)))


async def _api_remove_user(request: Request, session: WebSession) -> View:
    actor, _ = await _body(request, session)
    return _answer(await _desk(request).remove_user(actor, request.path_params["name"]))


async def _api_add_group(request: Request, session: WebSession) -> View:
    actor, data = await _body(request, session)
    return _answer(await _desk(request).add_group(actor, _str(data, "name")), 201)


async def _api_remove_group(request: Request, session: WebSession) -> View:
    actor, _ = await _body(request, session)
    return _answer(await _desk(request).remove_group(actor, request.path_params["name"]))


async def _api_add_members(request: Request, session: WebSession) -> View:
    actor, data = await _body(request, session)
    users = data.get("users")
    if not isinstance(users, list) or not users or not all(isinstance(u, str) and u for u in users):
        raise HTTPError(400, '"users" is a list of user names')
    return _answer(await _desk(request).add_members(actor, request.path_params["name"], users))


async def _api_remove_member(request: Request, session: WebSession) -> View:
    actor, _ = await _body(request, session)
    name, user = request.path_params["name"], request.path_params["user"]
    return _answer(await _desk(request).remove_members(actor, name, [user]))


async def _api_set_entry(request: Request, session: WebSession) -> View:
    actor, data = await _body(request, session)
    folder = request.path_params["folder"]
    rights = _str(data, "rights", required=False)
    return _answer(await _desk(request).set_entry(actor, folder, _str(data, "identifier"), rights))


async def _api_delete_entry(request: Request, session: WebSession) -> View:
    actor, data = await _body(request, session)
    identifier = request.query_params.get("identifier") or _str(data, "identifier")
    return _answer(await _desk(request).delete_entry(actor, request.path_params["folder"], identifier))


async def _api_read_mode(request: Request, session: WebSession) -> View:
    actor = _admin(request, session)
    folder = request.path_params["folder"]
    desk = _desk(request)
    if request.method == "PUT":
        actor, data = await _body(request, session)
        return _answer(await desk.set_read_mode(actor, folder, _str(data, "seen")))
    f = await desk.folder(actor, folder)
    return View("", {}, json={"folder": f.folder, "seen": f.seen, "seen_from_setting": f.from_setting})


async def _api_end_session(request: Request, session: WebSession) -> View:
    actor, _ = await _body(request, session)
    number = request.path_params["id"]
    desk = _desk(request)
    kind = request.path_params["kind"]
    if kind == "imap":
        return _answer(await desk.end_imap_session(actor, number))
    if kind == "web":
        return _answer(desk.end_web_session(actor, number))
    raise HTTPError(404, "sessions are imap or web")


# --- routes --------------------------------------------------------------------------------


def routes() -> list[Route]:
    """The Admin routes, for ``create_app`` (specific paths before ``{...:path}`` ones)."""

    both = ["GET", "POST"]
    return [
        Route("/admin", _admin_page(_users_view, _user_action), methods=both),
        Route("/admin/folders", _admin_page(_folders_view)),
        Route("/admin/sessions", _admin_page(_sessions_view, _session_action), methods=both),
        Route("/admin/folders/{name:path}", _admin_page(_folder_view, _folder_action), methods=both),
        Route("/api/admin/users", _api(_users_view), methods=["GET"]),
        Route("/api/admin/users", _api(_api_add_user), methods=["POST"]),
        Route("/api/admin/users/{name}", _api(_api_change_user), methods=["PATCH"]),
        Route("/api/admin/users/{name}", _api(_api_remove_user), methods=["DELETE"]),
        Route("/api/admin/groups", _api(_groups_view), methods=["GET"]),
        Route("/api/admin/groups", _api(_api_add_group), methods=["POST"]),
        Route("/api/admin/groups/{name}", _api(_api_remove_group), methods=["DELETE"]),
        Route("/api/admin/groups/{name}/members", _api(_api_add_members), methods=["POST"]),
        Route("/api/admin/groups/{name}/members/{user}", _api(_api_remove_member), methods=["DELETE"]),
        Route("/api/admin/folders", _api(_folders_view), methods=["GET"]),
        Route("/api/admin/folders/{folder:path}/read-mode", _api(_api_read_mode), methods=["GET", "PUT"]),
        Route("/api/admin/acl/{folder:path}", _api(_folder_view), methods=["GET"]),
        Route("/api/admin/acl/{folder:path}", _api(_api_set_entry), methods=["POST", "PUT"]),
        Route("/api/admin/acl/{folder:path}", _api(_api_delete_entry), methods=["DELETE"]),
        Route("/api/admin/sessions", _api(_sessions_view), methods=["GET"]),
        Route("/api/admin/sessions/{kind:str}/{id:int}", _api(_api_end_session), methods=["DELETE"]),
    ]
