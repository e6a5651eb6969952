"""The dashboard's team pages (issue 15 part B): claim buttons and the claims
API, a message's history, the audit search and the recovery page.

Each write is one ``Dashboard`` method (web/data.py), which runs one
operation through ``Service.execute``; refusals come back as the gateway's
text (``NO [INUSE]`` → 409).  Forms and the JSON API both need the CSRF token
(form field or ``X-CSRF-Token`` header) and a same-origin request.

Routes:

    POST   /messages/{folder}/{uid}/claim   form: action=claim|release|assign, to=
    GET    /api/claims?folder=              the claims in folders the user may read
    POST   /api/claims                      {"folder", "uid", "to"?}: claim (or assign)
    DELETE /api/claims?folder=&uid=         release
    GET    /api/messages/{folder}/{uid}/history
    POST   /messages/{folder}/{uid}/notes   form: text= (an internal note)
    POST   /api/messages/{folder}/{uid}/notes   {"text": ...}: 201 with the note
    GET    /audit, /api/audit               ?user=&folder=&action=&since=&until=&message_id=&q=&page=
    GET    /recovery, /api/recovery
    POST   /recovery/{id}/restore, /api/recovery/{id}/restore
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..gateway.admin import AdminError
from ..gateway.admin_recovery import since_time
from ..gateway.team_reads import ACTIONS, MAX_NOTE_CHARS, AuditQuery
from .app import (
    HTTPError,
    View,
    _actor,
    _api,
    _check_csrf,
    _error_page,
    _form,
    _int_arg,
    _json_object,
    _page,
    _session,
    _web,
)
from .claims_data import ClaimView
from .data import DataError
from .journal_data import AUDIT_PER_PAGE
from .sessions import WebSession

#: A JSON body of the claims API at most (a folder name, a UID and a user name).
MAX_JSON_BYTES = 16 * 1024
#: A note's JSON body at most: MAX_NOTE_CHARS characters, each \\uXXXX-escaped at worst.
MAX_NOTE_JSON_BYTES = 8 * MAX_NOTE_CHARS


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _claim_json(folder: str, uid: int, c: ClaimView | None) -> dict[str, Any]:
    return {
        "folder": folder,
        "uid": uid,
        "claimed_by": c.user if c else None,
        "claimed_at": _iso(c.claimed_at) if c else None,
        "expires_at": _iso(c.expires_at) if c else None,
    }


def _admin(request: Request, session: WebSession) -> bool:
    return _web(request).admin.is_admin(_actor(session))


# --- claims ----------------------------------------------------------------------------------


async def _claim_form(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _error_page(request, 401, "Your login has ended; log in again.", None)
    folder = request.path_params["folder"]
    uid = request.path_params["uid"]
    try:
        form = await _form(request)
        _check_csrf(request, session, form)
        await _web(request).data.change_claim(
            _actor(session), folder, uid, form.get("action", ""), form.get("to", "")
        )
    except (DataError, HTTPError) as exc:
        return _error_page(request, exc.status, exc.reason, session)
    from urllib.parse import quote

    return RedirectResponse(f"/messages/{quote(folder, safe='')}/{uid}", status_code=303)


async def _json_body(request: Request, session: WebSession) -> dict[str, Any]:
    _check_csrf(request, session, None)
    return await _json_object(request, MAX_JSON_BYTES)


def _target(data: dict[str, Any]) -> tuple[str, int]:
    folder, uid = data.get("folder"), data.get("uid")
    if isinstance(uid, str) and uid.isdigit():
        uid = int(uid)
    if not isinstance(folder, str) or not folder or not isinstance(uid, int) or uid < 1:
        raise HTTPError(400, '"folder" (a string) and "uid" (a number) are needed')
    return folder, uid


async def _claims_list(request: Request, session: WebSession) -> View:
    folder = request.query_params.get("folder") or None
    rows = _web(request).data.claim_list(_actor(session), folder)
    return View("error.html", {}, json={"claims": [_claim_json(f, u, c) for f, u, c in rows]})


async def _claims_post(request: Request, session: WebSession) -> View:
    data = await _json_body(request, session)
    folder, uid = _target(data)
    to = data.get("to") or ""
    if not isinstance(to, str):
        raise HTTPError(400, '"to" is a user name')
    action = "assign" if to else "claim"
    c = await _web(request).data.change_claim(_actor(session), folder, uid, action, to)
    return View("error.html", {}, json=_claim_json(folder, uid, c))


async def _claims_delete(request: Request, session: WebSession) -> View:
    params = dict(request.query_params)
    data = params if "folder" in params else await _json_body(request, session)
    _check_csrf(request, session, None)
    folder, uid = _target(data)
    c = await _web(request).data.change_claim(_actor(session), folder, uid, "release")
    return View("error.html", {}, json=_claim_json(folder, uid, c))


# --- notes -----------------------------------------------------------------------------------


async def _note_form(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _error_page(request, 401, "Your login has ended; log in again.", None)
    folder = request.path_params["folder"]
    uid = request.path_params["uid"]
    try:
        form = await _form(request)
        _check_csrf(request, session, form)
        await _web(request).data.add_note(_actor(session), folder, uid, form.get("text", ""))
    except (DataError, HTTPError) as exc:
        return _error_page(request, exc.status, exc.reason, session)
    from urllib.parse import quote

    return RedirectResponse(f"/messages/{quote(folder, safe='')}/{uid}#notes", status_code=303)


async def _note_api(request: Request, session: WebSession) -> View:
    _check_csrf(request, session, None)
    data = await _json_object(request, MAX_NOTE_JSON_BYTES)
    text = data.get("text")
    if not isinstance(text, str):
        raise HTTPError(400, f'"text" (a string of at most {MAX_NOTE_CHARS} characters) is needed')
    note = await _web(request).data.add_note(
        _actor(session), request.path_params["folder"], request.path_params["uid"], text
    )
    return View("error.html", {}, json=note.to_json(), status=201)


# --- history -----------------------------------------------------------------------------------


async def _history(request: Request, session: WebSession) -> View:
    folder = request.path_params["folder"]
    uid = request.path_params["uid"]
    records = await _web(request).data.history(_actor(session), folder, uid, _admin(request, session))
    return View(
        "error.html", {}, json={"folder": folder, "uid": uid, "history": [r.to_json() for r in records]}
    )


# --- audit -----------------------------------------------------------------------------------


def _time_arg(request: Request, name: str) -> float | None:
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    try:
        return since_time(value)
    except AdminError:
        raise HTTPError(
            400, f"{name} must be a date (2026-12-01), a time (2026-12-01T10:00) or an age (2h, 3d)"
        ) from None


def audit_query(request: Request) -> AuditQuery:
    p = request.query_params
    action = p.get("action", "").strip() or None
    if action and action not in ACTIONS:
        raise HTTPError(400, f"action must be one of {', '.join(ACTIONS)}")
    return AuditQuery(
        user=p.get("user", "").strip() or None,
        folder=p.get("folder", "").strip() or None,
        action=action,
        since=_time_arg(request, "since"),
        until=_time_arg(request, "until"),
        message_id=p.get("message_id", "").strip() or None,
        search=p.get("q", "").strip()[:200] or None,
    )


async def audit_view(request: Request, session: WebSession) -> View:
    query = audit_query(request)
    page = max(1, _int_arg(request, "page", 1))
    per_page = _int_arg(request, "per_page", AUDIT_PER_PAGE)
    result = _web(request).data.audit_page(_actor(session), query, page, per_page, _admin(request, session))
    args = {k: v for k, v in request.query_params.items() if k != "page" and v}
    return View(
        "audit.html",
        {"result": result, "f": args, "actions": list(ACTIONS)},
        json={
            "page": result.page,
            "per_page": result.per_page,
            "more": result.more,
            "entries": [r.to_json() for r in result.records],
        },
    )


# --- recovery --------------------------------------------------------------------------------


async def _recovery(request: Request, session: WebSession) -> View:
    items = _web(request).data.recoverable(_actor(session), _admin(request, session))
    return View(
        "recovery.html",
        {"items": items},
        json={
            "items": [
                {"id": i.id, "folder": i.mailbox, "restore_to": i.restore_to or i.mailbox,
                 "subject": i.subject, "from": i.sender, "message_id": i.message_id,
                 "removed_by": i.removed_by,
                 "removed_at": _iso(i.removed_at), "how": i.how, "size": i.size}
                for i in items
            ]
        },
    )  # fmt: skip


async def _restore_api(request: Request, session: WebSession) -> View:
    _check_csrf(request, session, None)
    folder, uid = await _web(request).data.restore(
        _actor(session), request.path_params["id"], _admin(request, session)
    )
    return View("error.html", {}, json={"restored": request.path_params["id"], "folder": folder, "uid": uid})


async def _restore_form(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _error_page(request, 401, "Your login has ended; log in again.", None)
    try:
        form = await _form(request)
        _check_csrf(request, session, form)
        await _web(request).data.restore(_actor(session), request.path_params["id"], _admin(request, session))
    except (DataError, HTTPError) as exc:
        return _error_page(request, exc.status, exc.reason, session)
    return RedirectResponse("/recovery", status_code=303)


def routes() -> list[Route]:
    """The team routes, for ``create_app`` (before the ``{folder:path}`` message routes)."""
    return [
        Route("/messages/{folder:path}/{uid:int}/claim", _claim_form, methods=["POST"]),
        Route("/api/messages/{folder:path}/{uid:int}/history", _api(_history)),
        Route("/messages/{folder:path}/{uid:int}/notes", _note_form, methods=["POST"]),
        Route("/api/messages/{folder:path}/{uid:int}/notes", _api(_note_api), methods=["POST"]),
        Route("/api/claims", _api(_claims_list), methods=["GET"]),
        Route("/api/claims", _api(_claims_post), methods=["POST"]),
        Route("/api/claims", _api(_claims_delete), methods=["DELETE"]),
        Route("/audit", _page(audit_view)),
        Route("/api/audit", _api(audit_view)),
        Route("/recovery", _page(_recovery)),
        Route("/api/recovery", _api(_recovery)),
        Route("/recovery/{id:int}/restore", _restore_form, methods=["POST"]),
        Route("/api/recovery/{id:int}/restore", _api(_restore_api), methods=["POST"]),
    ]
