"""The Admin area's door into the gateway: every Admin page and ``/api/admin/``
call is one method here, and each becomes one ``AdminService`` verb — the
code ``imapgate user``, ``group``, ``acl``, ``folder set`` and ``kick`` run —
with the logged-in admin as the actor.  So the web asks the same policy
(``ADMIN_RIGHTS``), refuses the same things with the same one-line text (a
user that exists, a bad rights string, the last admin), writes the same
journal entries (``USER ADD``, ``ACL SET``, ... by the admin, client ``web
dashboard``) and tells the gateway the same way.  No second write path.

Who may: admins only (``user add --admin`` / ``user set --admin``: the ACL
table's ``admins``, every right on every folder).  Everyone else gets
``Forbidden`` before anything is read.

**Why a worker thread.**  ``AdminService`` is synchronous and tells "the
running gateway" over the control socket — here that is this very process's
event loop.  Called on the loop, a verb would wait for an answer the blocked
loop cannot give.  In a thread the loop answers the control request (reloads
the ACL table, applies a read mode, ends the sessions of a disabled user)
while the verb waits, so the change is in force when the page answers,
exactly as after the CLI.  One verb at a time (a lock): admin clicks are
rare, and the store takes one writer at a time anyway.  Ending a dashboard
session is the exception: those sessions live in this loop's memory, so that
verb runs on the loop (``AdminService.kick_other``, no socket involved).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from sqlalchemy import Engine

from ..gateway import control
from ..gateway.admin import (
    AdminError,
    AdminRefused,
    AdminService,
    GatewayNotice,
    NoSuchFolder,
    SeenSetting,
    UserInfo,
)
from ..gateway.admin_acl import EntryInfo, GroupInfo
from ..gateway.app import Gateway
from ..gateway.policy import Actor
from .data import BadRequest, Forbidden, NotFound, Unavailable
from .sessions import MemorySessionStore

T = TypeVar("T")

#: The read-state settings ``folder set --seen`` takes (``default``: follow the configuration).
SEEN_SETTINGS: tuple[SeenSetting, ...] = ("shared", "private", "default")

__all__ = [
    "SEEN_SETTINGS",
    "AdminDesk",
    "Done",
    "EntryInfo",
    "FolderAdmin",
    "GroupInfo",
    "SessionRow",
    "UserInfo",
]


@dataclass(frozen=True, slots=True)
class Done:
    """What an admin action did, for the page's message and the API's answer."""

    text: str
    changed: bool = True
    #: The running gateway could not be told (it applies the change at its next check).
    warning: str = ""


@dataclass(frozen=True, slots=True)
class FolderRow:
    name: str
    messages: int
    seen: str
    from_setting: bool


@dataclass(frozen=True, slots=True)
class FolderAdmin:
    """One folder's permissions page: its entries, everyone's effective rights, its read mode."""

    folder: str
    #: False: no ACL of its own; ``entries`` is the default in force.
    own: bool
    entries: tuple[EntryInfo, ...]
    effective: tuple[tuple[str, str], ...]
    seen: str
    from_setting: bool


@dataclass(frozen=True, slots=True)
class SessionRow:
    kind: Literal["imap", "web"]
    id: int
    user: str | None
    address: str
    tls: bool
    #: Wall-clock time of the connect or login.
    since: float
    #: IMAP: the client's ID and the selected folder; web: "dashboard".
    detail: str

    @property
    def label(self) -> str:
        return f"w{self.id}" if self.kind == "web" else str(self.id)


class AdminDesk:
    """See the module docstring.  One per dashboard; ``close`` at shutdown."""

    def __init__(self, gw: Gateway, sessions: MemorySessionStore) -> None:
        self.gw = gw
        self.sessions = sessions
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- who may ---------------------------------------------------------------------
    def is_admin(self, actor: Actor) -> bool:
        """An admin in the ACL table in force (kept current by the control socket
        and its 1 s poll: a promotion or demotion by the CLI counts at once)."""
        if self.gw.acl_watch is None:
            return False
        return actor.user in self.gw.acl.admins

    def _require_admin(self, actor: Actor) -> None:
        if not self.is_admin(actor):
            raise Forbidden("only admins may use the Admin pages")

    # -- plumbing --------------------------------------------------------------------
    def _service(self, actor: Actor) -> AdminService:
        service = AdminService(
            self.gw.config, policy=self.gw.service.policy, actor=actor, engine=self._engine
        )
        if self._engine is None:
            self._engine = service.engine  # opened once, kept for the next clicks
        return service

    async def _call(self, actor: Actor, verb: Callable[[AdminService], T]) -> T:
        """``verb`` on an ``AdminService`` acting as ``actor``, in a worker thread
        (see the module docstring); its ``AdminError`` as the dashboard's errors."""
        self._require_admin(actor)

        def work() -> T:
            with self._lock:
                service = self._service(actor)
                try:
                    return verb(service)
                finally:
                    service.close()

        try:
            return await asyncio.to_thread(work)
        except NoSuchFolder as exc:
            raise NotFound(str(exc)) from None
        except AdminRefused as exc:
            raise Forbidden(str(exc)) from None
        except AdminError as exc:
            raise BadRequest(str(exc)) from None
        except control.ControlError as exc:
            raise Unavailable(f"the gateway's sessions cannot be reached: {exc}") from None

    @staticmethod
    def _done(text: str, notice: GatewayNotice | None = None, changed: bool = True) -> Done:
        warning = ""
        if notice is not None and notice.error:
            warning = (
                f"the running gateway could not be told ({notice.error}); it applies it at its next check"
            )
        return Done(text, changed, warning)

    # -- users -----------------------------------------------------------------------
    async def users(self, actor: Actor) -> list[UserInfo]:
        return await self._call(actor, lambda s: s.users())

    async def add_user(self, actor: Actor, name: str, password: str, admin: bool) -> Done:
        notice = await self._call(actor, lambda s: s.add_user(name, password, admin=admin))
        return self._done(f"User {name} added" + (" as an admin." if admin else "."), notice)

    async def set_password(self, actor: Actor, name: str, password: str) -> Done:
        await self._call(actor, lambda s: s.set_password(name, password))
        return Done(f"Password of {name} changed.")

    async def set_disabled(self, actor: Actor, name: str, disabled: bool) -> Done:
        def verb(s: AdminService) -> GatewayNotice:
            s.require_user(name)
            return s.set_disabled(name, disabled)

        notice = await self._call(actor, verb)
        if not disabled:
            return self._done(f"User {name} enabled.", notice)
        ended = f"; {notice.ended} session(s) ended" if notice.ended else ""
        return self._done(f"User {name} disabled{ended}.", notice)

    async def set_admin(self, actor: Actor, name: str, admin: bool) -> Done:
        changed, notice = await self._call(actor, lambda s: s.set_admin(name, admin))
        what = "is an admin now" if admin else "is no admin any more"
        return self._done(f"{name} {what}." if changed else f"{name} was so already.", notice, changed)

    async def remove_user(self, actor: Actor, name: str) -> Done:
        notice = await self._call(actor, lambda s: s.remove_user(name))
        ended = f"; {notice.ended} session(s) ended" if notice.ended else ""
        return self._done(f"User {name} removed{ended}.", notice)

    # -- groups ----------------------------------------------------------------------
    async def groups(self, actor: Actor) -> list[GroupInfo]:
        return await self._call(actor, lambda s: s.acl.groups())

    async def add_group(self, actor: Actor, name: str) -> Done:
        change = await self._call(actor, lambda s: s.acl.add_group(name))
        return self._done(f"Group ${name.removeprefix('$')} created.", change.notice)

    async def remove_group(self, actor: Actor, name: str) -> Done:
        change = await self._call(actor, lambda s: s.acl.remove_group(name))
        return self._done(f"Group ${name.removeprefix('$')} deleted.", change.notice)

    async def add_members(self, actor: Actor, name: str, users: list[str]) -> Done:
        return await self._members(actor, name, users, add=True)

    async def remove_members(self, actor: Actor, name: str, users: list[str]) -> Done:
        return await self._members(actor, name, users, add=False)

    async def _members(self, actor: Actor, name: str, users: list[str], *, add: bool) -> Done:
        change = await self._call(
            actor, lambda s: s.acl.add_members(name, users) if add else s.acl.remove_members(name, users)
        )
        group = f"${name.removeprefix('$')}"
        if not change.changed:
            return Done(f"{', '.join(users)}: {'already' if add else 'not'} in {group}.", changed=False)
        done = f"{'Added to' if add else 'Removed from'} {group}: {', '.join(change.names)}."
        return self._done(done, change.notice)

    # -- folders: ACL and read mode --------------------------------------------------
    async def folders(self, actor: Actor) -> list[FolderRow]:
        found = await self._call(actor, lambda s: s.folders())
        return [FolderRow(f.name, f.messages, f.seen, f.from_setting) for f in found]

    async def folder(self, actor: Actor, folder: str) -> FolderAdmin:
        def verb(s: AdminService) -> FolderAdmin:
            acl = s.acl.get(folder)
            effective = s.acl.effective(folder)
            info = next(f for f in s.folders() if f.name == folder)
            return FolderAdmin(folder, acl.own, acl.entries, tuple(effective), info.seen, info.from_setting)

        return await self._call(actor, verb)

    async def set_entry(self, actor: Actor, folder: str, identifier: str, rights: str) -> Done:
        change = await self._call(actor, lambda s: s.acl.set_entry(folder, identifier, rights))
        if not change.changed:
            return Done(f"{identifier} on {folder}: {change.rights or 'no rights'} already.", changed=False)
        return self._done(f"{identifier} on {folder}: {change.rights or 'no rights'}.", change.notice)

    async def delete_entry(self, actor: Actor, folder: str, identifier: str) -> Done:
        change = await self._call(actor, lambda s: s.acl.delete_entry(folder, identifier))
        if not change.changed:
            return Done(f"{folder} has no entry for {identifier}.", changed=False)
        return self._done(f"Entry {identifier} on {folder} deleted.", change.notice)

    async def set_read_mode(self, actor: Actor, folder: str, seen: str) -> Done:
        if seen not in SEEN_SETTINGS:
            raise BadRequest(f"the read mode is one of {', '.join(SEEN_SETTINGS)}, not {seen!r}")
        setting: SeenSetting = seen  # narrowed by the check above
        change = await self._call(actor, lambda s: s.set_read_mode(folder, setting))
        text = f"Read state of {folder}: {change.after}" + (
            f" (was {change.before})." if change.before != change.after else " (unchanged)."
        )
        return self._done(text, change.notice, change.before != change.after)

    # -- sessions --------------------------------------------------------------------
    async def imap_sessions(self, actor: Actor) -> tuple[list[SessionRow], str]:
        """The IMAP sessions (as ``imapgate sessions``) and why they are missing ("")."""

        def verb(s: AdminService) -> tuple[list[SessionRow], str]:
            try:
                found = s.sessions()
            except control.ControlError as exc:
                return [], str(exc)
            rows = [
                SessionRow(
                    "imap", i.id, i.user, i.address, i.tls, i.since,
                    " · ".join(x for x in (i.client_id, i.folder or "", "IDLE" if i.idle else "") if x),
                )
                for i in found
            ]  # fmt: skip
            return rows, ""

        return await self._call(actor, verb)

    def web_sessions(self, actor: Actor) -> list[SessionRow]:
        self._require_admin(actor)
        return [
            SessionRow("web", s.number, s.user, s.address, s.tls, s.since, "dashboard")
            for s in self.sessions.sessions()
        ]

    async def end_imap_session(self, actor: Actor, session: int) -> Done:
        """``imapgate kick USER --session N`` for the session numbered ``session``."""

        def verb(s: AdminService) -> tuple[str, int] | None:
            found = next((i for i in s.sessions() if i.id == session and i.user is not None), None)
            return None if found is None or found.user is None else (found.user, s.kick(found.user, session))

        result = await self._call(actor, verb)
        if result is None or not result[1]:
            raise NotFound(f"no IMAP session {session} with a login (it may have ended already)")
        return Done(f"IMAP session {session} of {result[0]} ended.")

    def end_web_session(self, actor: Actor, number: int) -> Done:
        """On the loop (the sessions are this loop's memory); asked and journaled
        by ``AdminService.kick_other``."""
        self._require_admin(actor)
        target = next((s for s in self.sessions.sessions() if s.number == number), None)
        if target is None:
            raise NotFound(f"no dashboard session w{number} (it may have ended already)")
        service = self._service(actor)
        try:
            service.kick_other(
                target.user, f"dashboard session w{number}",
                lambda: 1 if self.sessions.end_number(number) is not None else 0,
            )  # fmt: skip
        except AdminRefused as exc:
            raise Forbidden(str(exc)) from None
        finally:
            service.close()
        return Done(f"Dashboard session w{number} of {target.user} ended.")
