"""The folder-permission admin verbs: groups and their members, ACL entries,
and the effective rights with their reasons (``imapgate group ...``,
``imapgate acl ...``).

Reached as ``AdminService.acl``, and the same three steps as every admin
write there: ask the policy (``ADMIN_RIGHTS``: on the folder for ACL verbs, on
the gateway for groups), change the store with the journal entry in the same
transaction (``AclStore``'s ``also=`` hook; written only when something
changed), tell a running gateway (``acl-changed``; its 1 s poll of the ACL
version catches a notice that could not be sent).

Folders are those the replica knows (what ``folder list`` shows): an ACL for
a misspelt folder would protect nothing, so it is refused.  What is wrong is
one line (``AdminError``), from the model's own messages where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from ..store.schema import mailboxes
from ..team.acl import AclError, Rights, parse_identifier, parse_rights, rights
from ..team.acl_store import AclStore
from .admin import AdminError, AdminService, GatewayNotice, NoSuchFolder


@dataclass(frozen=True)
class GroupInfo:
    name: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class EntryInfo:
    identifier: str  # as IMAP and the CLI spell it: alice, $accounting, -bob, anyone
    rights: str


@dataclass(frozen=True)
class FolderAcl:
    folder: str
    #: False: the folder has no ACL of its own; ``entries`` is the default in effect.
    own: bool
    entries: tuple[EntryInfo, ...]


@dataclass(frozen=True)
class Change:
    """What a changing verb did: ``changed`` False means the store already was so
    (nothing journaled, nobody told)."""

    changed: bool
    notice: GatewayNotice
    #: ``acl set``: the entry's rights now; group members: who was added or removed.
    rights: str = ""
    names: tuple[str, ...] = ()


class AclAdmin:
    def __init__(self, service: AdminService) -> None:
        self.service = service
        self.store = AclStore(service.engine)

    @property
    def default(self) -> Rights:
        return rights(self.service.config.acl.default)

    # -- plumbing -------------------------------------------------------------------
    def _folder_names(self) -> set[str]:
        with self.service.engine.connect() as conn:
            return set(conn.execute(select(mailboxes.c.name)).scalars())

    def _require_folder(self, folder: str) -> None:
        if folder not in self._folder_names():
            raise NoSuchFolder(f"no folder {folder!r} (see `imapgate folder list`)")

    def _done(self, changed: bool, *, rights: str = "", names: tuple[str, ...] = ()) -> Change:
        notice = self.service.tell_acl_changed() if changed else GatewayNotice()
        return Change(changed, notice, rights, names)

    # -- groups ---------------------------------------------------------------------
    def groups(self) -> list[GroupInfo]:
        return [GroupInfo(g.name, g.members) for g in self.store.groups()]

    def add_group(self, name: str) -> Change:
        self.service.authorize("group add")
        entry = self.service.journal_entry("GROUP ADD", detail=f"${name.removeprefix('$')}")
        with _one_line():
            self.store.add_group(name, also=entry.writer())
        return self._done(True)

    def remove_group(self, name: str) -> Change:
        """The group, its memberships and every ACL entry naming it."""
        self.service.authorize("group remove")
        entry = self.service.journal_entry("GROUP REMOVE", detail=f"${name.removeprefix('$')}")
        with _one_line():
            self.store.remove_group(name, also=entry.writer())
        return self._done(True)

    def add_members(self, name: str, users: list[str]) -> Change:
        self.service.authorize("group add-member")
        bare = name.removeprefix("$")
        entry = self.service.journal_entry("GROUP ADD-MEMBER", detail=f"${bare}: {', '.join(users)}")
        with _one_line():
            added = self.store.add_members(name, users, also=entry.writer())
        return self._done(bool(added), names=tuple(added))

    def remove_members(self, name: str, users: list[str]) -> Change:
        self.service.authorize("group remove-member")
        bare = name.removeprefix("$")
        entry = self.service.journal_entry("GROUP REMOVE-MEMBER", detail=f"${bare}: {', '.join(users)}")
        with _one_line():
            removed = self.store.remove_members(name, users, also=entry.writer())
        return self._done(bool(removed), names=tuple(removed))

    # -- entries --------------------------------------------------------------------
    def get(self, folder: str) -> FolderAcl:
        self._require_folder(folder)
        table = self.store.load(self.default)
        listed = tuple(EntryInfo(str(e.identifier), str(e.rights)) for e in table.shown_entries(folder))
        return FolderAcl(folder, table.folder_entries(folder) is not None, listed)

    def set_entry(self, folder: str, identifier: str, rights_text: str) -> Change:
        """Replace (``lr``), add to (``+lr``) or take from (``-w``) the entry's rights;
        ``""`` keeps the entry with no rights."""
        self.service.authorize("acl set", folder)
        with _one_line():
            # Validated before the store is asked, so a typo is named before a folder check.
            ident = parse_identifier(identifier)
            change = parse_rights(rights_text)
        self._require_folder(folder)
        written: list[bool] = []
        journal = self.service.journal_entry("ACL SET", mailbox=folder, detail=f"{ident} {rights_text!r}")

        def also(conn: Connection) -> None:
            written.append(True)  # the store calls it only when the entry changed
            journal.write(conn)

        with _one_line():
            new = self.store.set_entry(
                folder, str(ident), change, default=self.default, by_admin=True, also=also
            )
        return self._done(bool(written), rights=str(new))

    def delete_entry(self, folder: str, identifier: str) -> Change:
        self.service.authorize("acl delete", folder)
        with _one_line():
            ident = parse_identifier(identifier)
        self._require_folder(folder)
        entry = self.service.journal_entry("ACL DELETE", mailbox=folder, detail=str(ident))
        with _one_line():
            had = self.store.delete_entry(folder, str(ident), also=entry.writer())
        return self._done(had)

    def reset(self, folder: str) -> Change:
        """Back to the default (``[acl] default``): the folder's own ACL goes."""
        self.service.authorize("acl reset", folder)
        self._require_folder(folder)
        entry = self.service.journal_entry("ACL RESET", mailbox=folder, detail="back to the default")
        with _one_line():
            had = self.store.reset(folder, also=entry.writer())
        return self._done(had)

    def effective(self, folder: str) -> list[tuple[str, str]]:
        """Every team member's effective rights on ``folder`` (name, rights), as
        ``acl rights`` computes them one at a time."""
        self._require_folder(folder)
        table = self.store.load(self.default)
        return [(u.name, str(table.rights(u.name, folder))) for u in self.service.users()]

    def explain(self, user: str, folder: str) -> list[str]:
        """``acl rights USER FOLDER``: the effective rights and which entries gave
        and took what (the model's ``Effective.explain``)."""
        self.service.require_user(user)
        self._require_folder(folder)
        return self.store.load(self.default).explain(user, folder).explain(user, folder)


class _one_line:
    """The model's ``AclError`` (one line saying what is wrong) as an ``AdminError``."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, AclError):
            raise AdminError(str(exc)) from None
