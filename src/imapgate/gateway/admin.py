"""Administration: every ``imapgate`` admin verb as one method with a typed result.

The command line parses arguments, calls ``AdminService`` and prints; it
never touches the store, the team state or the replica itself.  Each
method that changes something

1. asks the policy first (``Policy.authorize`` with the operator's actor, the
   right from ``ADMIN_RIGHTS``, on the folder concerned or on ``GATEWAY`` for
   what concerns the gateway as a whole) — the same seam the IMAP commands
   go through, so the permission issue decides for both in one place;
2. makes the change in the store with its journal entry (who: the ``cli``
   actor; what; when) in the same transaction where the part that changes
   offers one (users), else right after it;
3. tells a running gateway over the control socket, so the change takes
   effect at once instead of at its next periodic check; no gateway running
   is fine: the change is in the store and taken at start.

It works offline: it opens the store itself (a running gateway may have it
open too: SQLite WAL, one writer at a time, as before).  Read-only verbs
(lists, status) ask nothing: whoever can run them can read the store file.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import Engine, func, select

from ..config import Config
from ..errors import OperatorError
from ..index.report import FolderReport, folder_reports, index_sizes, rebuild
from ..replica.replica import Replica
from ..store.engine import open_engine
from ..store.schema import mailboxes, messages
from ..team.journal import Journal, JournalEntry
from ..team.users import UserDirectory, UserError
from . import control
from .admin_sync import ProgressCallback, SyncSummary, sync_once
from .errors import OperationError
from .policy import ADMIN, Actor, Policy

#: Who acts when the operator runs ``imapgate``: not a team member (no user id),
#: named ``cli`` in the journal.  The permission issue makes it an admin with
#: every right; until then the permissive ``Policy`` grants everything anyway.
CLI_ACTOR: Final = Actor(user_id=0, user="cli", client="imapgate cli")

#: The "mailbox" of rights that concern the gateway as a whole (users, sync,
#: sessions), not one folder.
GATEWAY: Final = ""

#: The right each admin write needs (RFC 4314 ``a``: administer).  One table,
#: read by ``AdminService._authorize``; the CLI walker test checks that every
#: verb that changes something asks.
ADMIN_RIGHTS: Final[dict[str, str]] = {
    "user add": ADMIN,
    "user passwd": ADMIN,
    "user remove": ADMIN,
    "user disable": ADMIN,
    "user enable": ADMIN,
    "folder set": ADMIN,
    "index rebuild": ADMIN,
    "sync": ADMIN,
    "kick": ADMIN,
}

SeenSetting = Literal["private", "shared", "default"]


class AdminError(OperatorError):
    """An admin verb cannot be carried out; the message says why (one line)."""


class AdminRefused(AdminError):
    """The policy refused the operator the right for this verb."""


class NoSuchFolder(AdminError):
    pass


class IndexUnavailable(AdminError):
    """The search index cannot be reached with this store."""


@dataclass(frozen=True)
class UserInfo:
    name: str
    created_at: float
    disabled: bool


@dataclass(frozen=True)
class GatewayNotice:
    """What telling the running gateway gave: nothing to tell (no gateway runs),
    its answer, or why it could not be told."""

    reached: bool = False
    ended: int = 0  # sessions it ended (user changes)
    error: str | None = None


@dataclass(frozen=True)
class FolderInfo:
    name: str
    messages: int
    seen: str  # the read-state mode in force
    from_setting: bool  # set by ``folder set`` (else: the configuration)


@dataclass(frozen=True)
class ReadModePlan:
    """What ``folder set --seen`` would do: the mode before and after, and how many
    users' personal read marks a switch from private to shared drops."""

    folder: str
    before: str
    after: str
    drops_users: int


@dataclass(frozen=True)
class ReadModeChange:
    folder: str
    before: str
    after: str
    notice: GatewayNotice


@dataclass(frozen=True)
class IndexStatus:
    folders: list[FolderReport]
    sizes: dict[str, int]


class AdminService:
    """The admin verbs on one installation (its configuration and store).

    ``policy`` is the authorization seam (tests inject one that denies);
    ``actor`` who acts.  The store is opened at first use, so verbs that only
    talk to the running gateway (``sessions``) do not create one.
    """

    def __init__(self, config: Config, *, policy: Policy | None = None, actor: Actor = CLI_ACTOR) -> None:
        self.config = config
        self.policy = policy if policy is not None else Policy()
        self.actor = actor
        self._engine: Engine | None = None
        self._replica: Replica | None = None

    # -- plumbing -------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.config.store.url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._replica = None

    def _authorize(self, verb: str, mailbox: str = GATEWAY) -> None:
        try:
            self.policy.authorize(self.actor, mailbox, ADMIN_RIGHTS[verb])
        except OperationError as exc:
            where = f" on {mailbox}" if mailbox else ""
            raise AdminRefused(f"{verb}{where} refused: {exc.text}") from None

    def _entry(self, command: str, *, mailbox: str | None = None, detail: str | None = None) -> JournalEntry:
        return JournalEntry(
            user=self.actor.user, client=self.actor.client, command=command, mailbox=mailbox, detail=detail
        )

    def _journal(self, entry: JournalEntry) -> None:
        Journal(self.engine).record(entry)

    @property
    def _users(self) -> UserDirectory:
        return UserDirectory(self.engine)

    def _tell_user_changed(self, name: str) -> GatewayNotice:
        try:
            ended = control.notify_user_changed(self.config.store.data_dir, name)
        except control.ControlError as exc:
            return GatewayNotice(error=str(exc))
        return GatewayNotice() if ended is None else GatewayNotice(reached=True, ended=ended)

    # -- users ----------------------------------------------------------------------
    def users(self) -> list[UserInfo]:
        return [UserInfo(u.name, u.created_at, u.disabled) for u in self._users.list()]

    def require_user(self, name: str) -> None:
        """``AdminError`` unless ``name`` is a team member (asked before a prompt)."""
        if self._users.get(name) is None:
            raise AdminError(f"no user {name!r} (see `imapgate user list`)")

    def authorize(self, verb: str, mailbox: str = GATEWAY) -> None:
        """Ask the policy for ``verb`` up front (before prompting the operator);
        every changing method asks again itself."""
        self._authorize(verb, mailbox)

    def add_user(self, name: str, password: str) -> None:
        self._authorize("user add")
        try:
            self._users.add(name, password, also=self._entry("USER ADD", detail=name).writer())
        except UserError as exc:
            raise AdminError(str(exc)) from None

    def set_password(self, name: str, password: str) -> None:
        self._authorize("user passwd")
        try:
            self._users.set_password(name, password, also=self._entry("USER PASSWD", detail=name).writer())
        except UserError as exc:
            raise AdminError(str(exc)) from None

    def remove_user(self, name: str) -> GatewayNotice:
        """Remove the account (with its read state and subscriptions); a running
        gateway ends its sessions."""
        self._authorize("user remove")
        try:
            self._users.remove(name, also=self._entry("USER REMOVE", detail=name).writer())
        except UserError as exc:
            raise AdminError(str(exc)) from None
        return self._tell_user_changed(name)

    def set_disabled(self, name: str, disabled: bool) -> GatewayNotice:
        """Disable (a running gateway ends the sessions) or enable an account
        (nothing to tell: the next login reads the store)."""
        verb = "user disable" if disabled else "user enable"
        self._authorize(verb)
        entry = self._entry(verb.upper(), detail=name)
        try:
            self._users.set_disabled(name, disabled, also=entry.writer())
        except UserError as exc:
            raise AdminError(str(exc)) from None
        return self._tell_user_changed(name) if disabled else GatewayNotice()

    # -- folders --------------------------------------------------------------------
    @property
    def replica(self) -> Replica:
        if self._replica is None:
            folders = self.config.folders
            replica = Replica(
                self.engine,
                private_flags=folders.private_flags,
                default_seen=folders.default_seen,
                seen_modes=folders.seen,
            )
            replica.load()
            self._replica = replica
        return self._replica

    def folders(self) -> list[FolderInfo]:
        """The folders with their read-state mode, read from the store as it is.

        Not through ``Replica.load``: loading settles a read-state mode changed
        in the configuration (drops stale personal read marks), a write that a
        listing must not make; the next start (or ``folder set``) makes it."""
        folders = self.config.folders
        with self.engine.connect() as conn:
            per_folder = select(messages.c.mailbox_id, func.count()).group_by(messages.c.mailbox_id)
            counts: dict[int, int] = {int(mid): int(n) for mid, n in conn.execute(per_folder)}
            rows = conn.execute(select(mailboxes.c.id, mailboxes.c.name, mailboxes.c.seen_mode)).all()
        out = []
        for r in sorted(rows, key=lambda r: str(r.name)):
            # The rule of Replica.seen_mode: the folder's setting, else the configuration's.
            mode = r.seen_mode or folders.seen.get(r.name) or folders.default_seen
            seen = "shared" if mode == "shared" else "private"
            out.append(FolderInfo(r.name, counts.get(r.id, 0), seen, bool(r.seen_mode)))
        return out

    def plan_read_mode(self, folder: str, seen: SeenSetting) -> ReadModePlan:
        """What ``set_read_mode`` would change (asks the policy: the operator is
        not asked a question whose answer would be refused)."""
        self._authorize("folder set", folder)
        replica = self.replica
        mb = replica.get(folder)
        if mb is None:
            raise NoSuchFolder(f"no folder {folder!r} (see `imapgate folder list`)")
        before = replica.seen_mode(mb)
        after = replica.seen_mode(mb, "" if seen == "default" else seen)
        drops = replica.users_with_private_seen(mb) if before == "private" and after == "shared" else 0
        return ReadModePlan(folder, before, after, drops)

    def set_read_mode(self, folder: str, seen: SeenSetting) -> ReadModeChange:
        """Set the folder's read-state mode (``default``: follow the configuration),
        journal it, and tell a running gateway to apply it now."""
        plan = self.plan_read_mode(folder, seen)
        replica = self.replica
        mb = replica.by_name[folder]
        replica.set_seen_mode(mb, None if seen == "default" else seen)
        after = replica.seen_mode(mb)
        # Replica.set_seen_mode commits its own transaction: the entry follows it.
        detail = f"read state {plan.before} -> {after} (setting: {seen})"
        if plan.drops_users:
            detail += f"; personal read marks of {plan.drops_users} user(s) dropped"
        self._journal(self._entry("FOLDER SET", mailbox=folder, detail=detail))
        try:
            told = control.notify_folder_changed(self.config.store.data_dir, folder)
        except control.ControlError as exc:
            notice = GatewayNotice(error=str(exc))
        else:
            notice = GatewayNotice(reached=told is not None)
        return ReadModeChange(folder, plan.before, after, notice)

    # -- search index ---------------------------------------------------------------
    def _index_engine(self) -> Engine:
        engine = self.engine
        if engine.dialect.name != "sqlite":
            raise IndexUnavailable("the search index needs the SQLite store for now")
        return engine

    def index_status(self) -> IndexStatus:
        engine = self._index_engine()
        reports = folder_reports(engine)
        return IndexStatus(reports, index_sizes(engine) if reports else {})

    def rebuild_index(self, folder: str | None) -> int:
        """Retire the index of ``folder`` (None: every folder); a running gateway
        re-indexes within its recheck interval.  How many folders were retired."""
        self._authorize("index rebuild", folder or GATEWAY)
        engine = self._index_engine()
        try:
            n = rebuild(engine, folder)
        except KeyError:
            raise NoSuchFolder(f"no folder {folder!r} (see `imapgate folder list`)") from None
        self._journal(self._entry("INDEX REBUILD", mailbox=folder, detail=f"{n} folder(s) retired"))
        return n

    # -- sync -----------------------------------------------------------------------
    def sync(self, progress: ProgressCallback) -> SyncSummary:
        """The initial sync in the foreground (refused while a gateway serves the store)."""
        self._authorize("sync")
        summary = asyncio.run(sync_once(self.config, progress))
        self._journal(
            self._entry("SYNC", detail=f"{summary.folders} folders, {summary.messages} messages")
        )
        return summary

    # -- the running gateway's sessions ---------------------------------------------
    def sessions(self) -> list[control.SessionInfo]:
        """Raises ``control.NoGateway`` when none runs, ``ControlError`` else."""
        return control.list_sessions(self.config.store.data_dir)

    def kick(self, user: str, session: int | None = None) -> int:
        """End ``user``'s sessions (one of them with ``session``); how many ended."""
        self._authorize("kick")
        ended = control.kick(self.config.store.data_dir, user, session)
        if ended:
            which = f"session {session}" if session is not None else "all sessions"
            self._journal(self._entry("KICK", detail=f"{user}: {which}, {ended} ended"))
        return ended

