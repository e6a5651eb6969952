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

Folder permissions (groups, ACL entries; ``imapgate group``, ``imapgate
acl``) are the same kind of methods in ``admin_acl.py``, reached as
``AdminService.acl``.

It works offline: it opens the store itself (a running gateway may have it
open too: SQLite WAL, one writer at a time, as before).  Read-only verbs
(lists, status) ask nothing: whoever can run them can read the store file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from sqlalchemy import Connection, Engine, func, select

from ..config import Config
from ..errors import OperatorError
from ..store.engine import local_path, open_engine, open_local_engine, read_only_local_engine, safe_url
from ..store.schema import mailboxes, messages
from ..team.acl import AclError
from ..team.acl_store import AclStore, bump_version
from ..team.audit import MAX_LIMIT
from ..team.audit import AuditQuery as AuditQuery  # re-exported for the CLI
from ..team.audit import AuditRecord as AuditRecord
from ..team.audit import search as audit_search
from ..team.audit_actions import ACTIONS
from ..team.journal import Journal, JournalEntry
from ..team.users import UserDirectory, UserError
from . import control
from .errors import OperationError
from .policy import ADMIN, Actor, Policy

if TYPE_CHECKING:
    # The sync and the store copy bring in the whole gateway (sync engine, upstream,
    # index), the replica and the index report much of it: imported when those verbs
    # run, so `user list` and friends start quickly.
    from ..index.report import FolderReport
    from ..replica.replica import Replica
    from .admin_acl import AclAdmin
    from .admin_claims import ClaimsAdmin
    from .admin_recovery import RecoveryAdmin
    from .admin_store import CopyProgress, CopySummary
    from .admin_sync import ProgressCallback, SyncSummary

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
    "user set": ADMIN,
    "group add": ADMIN,
    "group remove": ADMIN,
    "group add-member": ADMIN,
    "group remove-member": ADMIN,
    "acl set": ADMIN,
    "acl delete": ADMIN,
    "acl reset": ADMIN,
    "claim release": ADMIN,
    "folder set": ADMIN,
    "index rebuild": ADMIN,
    "sync": ADMIN,
    "kick": ADMIN,
    "store copy": ADMIN,
    "recovery restore": ADMIN,
    "recovery purge": ADMIN,
}

SeenSetting = Literal["private", "shared", "default"]


class AdminError(OperatorError):
    """An admin verb cannot be carried out; the message says why (one line)."""


class AdminRefused(AdminError):
    """The policy refused the operator the right for this verb."""


class NoSuchFolder(AdminError):
    pass


@dataclass(frozen=True)
class UserInfo:
    name: str
    created_at: float
    disabled: bool
    admin: bool = False


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

    def __init__(
        self,
        config: Config,
        *,
        policy: Policy | None = None,
        actor: Actor = CLI_ACTOR,
        engine: Engine | None = None,
    ) -> None:
        self.config = config
        self.policy = policy if policy is not None else Policy()
        self.actor = actor
        #: An engine given by the caller (the dashboard keeps one open across
        #: requests instead of opening the store per click) is the caller's to close.
        self._own_engine = engine is None
        self._engine: Engine | None = engine
        self._replica: Replica | None = None

    # -- plumbing -------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.config.store.url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None and self._own_engine:
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
        return self.journal_entry(command, mailbox=mailbox, detail=detail)

    def journal_entry(
        self, command: str, *, mailbox: str | None = None, detail: str | None = None
    ) -> JournalEntry:
        """The journal entry of an admin verb by this service's actor."""
        return JournalEntry(
            user=self.actor.user, client=self.actor.client, command=command, mailbox=mailbox, detail=detail
        )

    def _journal(self, entry: JournalEntry) -> None:
        Journal(self.engine).record(entry)

    @property
    def _users(self) -> UserDirectory:
        return UserDirectory(self.engine)

    @property
    def _acl_store(self) -> AclStore:
        return AclStore(self.engine)

    @property
    def recovery(self) -> RecoveryAdmin:
        """The recovery verbs (``imapgate recovery``)."""
        from .admin_recovery import RecoveryAdmin

        return RecoveryAdmin(self)

    @property
    def acl(self) -> AclAdmin:
        """The folder-permission verbs (``imapgate group``, ``imapgate acl``)."""
        from .admin_acl import AclAdmin

        return AclAdmin(self)

    @property
    def claims(self) -> ClaimsAdmin:
        """The claim verbs (``imapgate claim``, ``imapgate clients thunderbird``)."""
        from .admin_claims import ClaimsAdmin

        return ClaimsAdmin(self)

    def journal(self, entry: JournalEntry) -> None:
        """Write an admin verb's journal entry in its own transaction."""
        self._journal(entry)

    def _refuse_last_admin(self, name: str, action: Literal["remove", "disable", "demote"]) -> None:
        try:
            self._acl_store.refuse_last_admin(name, action)
        except AclError as exc:
            raise AdminError(str(exc)) from None

    def tell_acl_changed(self) -> GatewayNotice:
        """Tell a running gateway to reload its ACL table now (else its 1 s poll does)."""
        try:
            version = control.notify_acl_changed(self.config.store.data_dir)
        except control.ControlError as exc:
            return GatewayNotice(error=str(exc))
        return GatewayNotice(reached=version is not None)

    def _tell_user_changed(self, name: str) -> GatewayNotice:
        try:
            ended = control.notify_user_changed(self.config.store.data_dir, name)
        except control.ControlError as exc:
            return GatewayNotice(error=str(exc))
        return GatewayNotice() if ended is None else GatewayNotice(reached=True, ended=ended)

    # -- users ----------------------------------------------------------------------
    def users(self) -> list[UserInfo]:
        return [UserInfo(u.name, u.created_at, u.disabled, u.admin) for u in self._users.list()]

    def require_user(self, name: str) -> None:
        """``AdminError`` unless ``name`` is a team member (asked before a prompt)."""
        if self._users.get(name) is None:
            raise AdminError(f"no user {name!r} (see `imapgate user list`)")

    def authorize(self, verb: str, mailbox: str = GATEWAY) -> None:
        """Ask the policy for ``verb`` up front (before prompting the operator);
        every changing method asks again itself."""
        self._authorize(verb, mailbox)

    def add_user(self, name: str, password: str, *, admin: bool = False) -> GatewayNotice:
        """Add an account (``admin``: with every right on every folder; the running
        gateway is told so, as for any ACL change)."""
        self._authorize("user add")
        entry = self._entry("USER ADD", detail=f"{name} (admin)" if admin else name)
        also = _both(entry.writer(), bump_version) if admin else entry.writer()
        try:
            self._users.add(name, password, admin=admin, also=also)
        except UserError as exc:
            raise AdminError(str(exc)) from None
        return self.tell_acl_changed() if admin else GatewayNotice()

    def set_admin(self, name: str, admin: bool) -> tuple[bool, GatewayNotice]:
        """``user set --admin|--no-admin``: whether the flag changed, and the notice.
        Taking it from the last enabled admin is refused (a team that never had an
        admin is refused nothing)."""
        self._authorize("user set")
        self.require_user(name)
        entry = self._entry("USER SET", detail=f"{name}: {'admin' if admin else 'not admin'}")
        try:
            changed = self._acl_store.set_admin(name, admin, also=entry.writer())
        except AclError as exc:
            raise AdminError(str(exc)) from None
        return changed, self.tell_acl_changed() if changed else GatewayNotice()

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
        self._refuse_last_admin(name, "remove")
        # Their ACL entries and memberships go with the account (foreign keys): the
        # ACL version moves in the same transaction.
        also = _both(self._entry("USER REMOVE", detail=name).writer(), bump_version)
        try:
            self._users.remove(name, also=also)
        except UserError as exc:
            raise AdminError(str(exc)) from None
        self.tell_acl_changed()
        return self._tell_user_changed(name)

    def set_disabled(self, name: str, disabled: bool) -> GatewayNotice:
        """Disable (a running gateway ends the sessions) or enable an account
        (nothing to tell: the next login reads the store)."""
        verb = "user disable" if disabled else "user enable"
        self._authorize(verb)
        if disabled:
            self._refuse_last_admin(name, "disable")
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
            from ..replica.replica import Replica

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
    @contextlib.contextmanager
    def _index_engine(self, *, write: bool = False) -> Iterator[Engine | Literal[False]]:
        """Where this node's search index is: the store itself on SQLite; beside a
        PostgreSQL store the node's local file in ``[store] data_dir`` (False when no
        gateway made one yet: never created here, an admin running as another user
        would leave a file the gateway cannot write)."""
        if self.engine.dialect.name == "sqlite":
            yield self.engine
            return
        data_dir = self.config.store.data_dir
        engine: Engine | None
        if write:
            engine = open_local_engine(data_dir, migrate=False) if local_path(data_dir).exists() else None
        else:
            engine = read_only_local_engine(data_dir)
        try:
            yield engine if engine is not None else False
        finally:
            if engine is not None:
                engine.dispose()

    def index_status(self) -> IndexStatus:
        from ..index.report import folder_reports, index_sizes

        with self._index_engine() as idx:
            reports = folder_reports(self.engine, idx)
            return IndexStatus(reports, index_sizes(idx) if reports else {})

    def rebuild_index(self, folder: str | None) -> int:
        """Retire the index of ``folder`` (None: every folder); a running gateway
        re-indexes within its recheck interval.  How many folders were retired.
        Beside a PostgreSQL store: this node's index only (each node has its own)."""
        from ..index.report import rebuild

        self._authorize("index rebuild", folder or GATEWAY)
        with self._index_engine(write=True) as idx:
            try:
                n = rebuild(self.engine, folder, idx)
            except KeyError:
                raise NoSuchFolder(f"no folder {folder!r} (see `imapgate folder list`)") from None
        self._journal(self._entry("INDEX REBUILD", mailbox=folder, detail=f"{n} folder(s) retired"))
        return n

    # -- sync -----------------------------------------------------------------------
    def sync(self, progress: ProgressCallback) -> SyncSummary:
        """The initial sync in the foreground (refused while a gateway serves the store)."""
        from .admin_sync import sync_once

        self._authorize("sync")
        summary = asyncio.run(sync_once(self.config, progress))
        self._journal(self._entry("SYNC", detail=f"{summary.folders} folders, {summary.messages} messages"))
        return summary

    # -- the audit journal ----------------------------------------------------------
    def audit(self, query: AuditQuery) -> list[AuditRecord]:
        """Journal entries matching ``query``, newest first (read-only: asks nothing)."""
        if query.action and query.action not in ACTIONS:
            raise AdminError(f"no action {query.action!r}; actions: {', '.join(ACTIONS)}")
        if not 1 <= query.limit <= MAX_LIMIT:
            raise AdminError(f"--limit must be between 1 and {MAX_LIMIT}, got {query.limit}")
        if query.since is not None and query.until is not None and query.since >= query.until:
            raise AdminError("--since must be before --until")
        return audit_search(self.engine, query)

    def store_copy(self, target_url: str, progress: CopyProgress | None = None) -> CopySummary:
        """Copy this store into the empty database at ``target_url`` (``imapgate store copy``)."""
        from .admin_store import copy_to

        self._authorize("store copy")
        source = safe_url(self.config.store.url)
        entry = self._entry("STORE COPY", detail=f"from {source}")
        return copy_to(self.engine, target_url, progress, entry=entry)

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

    def kick_other(self, user: str, what: str, end: Callable[[], int]) -> int:
        """End a login of another front end in this process (``what`` names it, e.g.
        "dashboard session w3"; ``end`` ends it and says how many ended): asked and
        journaled as ``kick``.  The dashboard's logins live in the gateway's memory,
        not behind the control socket, so the caller hands in the ending."""
        self._authorize("kick")
        ended = end()
        if ended:
            self._journal(self._entry("KICK", detail=f"{user}: {what}, {ended} ended"))
        return ended


def _both(
    first: Callable[[Connection], None], second: Callable[[Connection], None]
) -> Callable[[Connection], None]:
    """Two writes for one transaction (the journal entry and the ACL version)."""

    def write(conn: Connection) -> None:
        first(conn)
        second(conn)

    return write
