"""Folder permissions in the store: ACL entries, groups and their members,
the admin flag, and the ACL version.

Every change runs in one transaction that also bumps ``acl_state.version``;
a running gateway reads ``version()`` (one indexed row) at most every
second or two and calls ``load()`` when it moved, so a change made by the
CLI or by another node reaches every session within 2 s.  ``load()`` returns
an immutable ``acl.AclTable`` -- the pipeline's rights check asks only that.

Folder lifecycle (called by the pipeline after the hoster said OK, in the
same transaction as the replica change where it can be):

* ``folder_created``: a new folder starts with its parent's ACL (INBOX's
  for a top-level folder); a parent without one means the default.
* ``folder_renamed``: the ACLs move with the folder and its children;
  RENAME of INBOX (RFC 3501: the messages move, INBOX stays) copies INBOX's.
* ``folder_deleted``: the folder's ACL goes (its children keep theirs).

A folder has an ACL of its own when it is in ``acl_folders``; its entries
may all be gone (then only admins have rights).  Users and groups are
foreign keys of their entries, so removing one removes its entries and
never the folder's ACL itself.

What the rules refuse raises ``acl.AclError`` with one line for the CLI and
for IMAP's NO: unknown user, group or folder (the caller passes the folder
names it knows), invalid rights or identifier, removing the last admin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, Select, delete, func, insert, select, update

from ..store.schema import acl_entries, acl_folders, acl_state, group_members, groups, users
from .acl import (
    AclEntry,
    AclError,
    AclTable,
    Identifier,
    Kind,
    Rights,
    RightsChange,
    check_change,
    check_group_name,
    default_entries,
    parse_identifier,
    parse_rights,
    rights,
)


class LastAdminError(AclError):
    """The change would leave the team without an (enabled) admin."""


@dataclass(frozen=True)
class Group:
    name: str
    members: tuple[str, ...]


AdminAction = Literal["remove", "disable", "demote"]

#: Written in the same transaction as a change that happened (the admin verb's
#: journal entry, ``JournalEntry.writer()``), as ``team/users.py`` does: the
#: journal never misses a change nor records one that was rolled back.
AlsoWrite = Callable[[Connection], None]


class AclStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ reading
    def version(self) -> int:
        with self.engine.connect() as conn:
            return _version(conn)

    def load(self, default: Rights) -> AclTable:
        """Everything the rights check needs, at one version (one read transaction)."""
        with self.engine.connect() as conn:
            version = _version(conn)
            by_folder: dict[str, list[AclEntry]] = {
                name: [] for name in conn.execute(select(acl_folders.c.mailbox)).scalars()
            }
            for row in conn.execute(_entries_query()):
                by_folder.setdefault(row.mailbox, []).append(_entry(row))
            groups_of: dict[str, set[str]] = {}
            for member in conn.execute(
                select(users.c.name.label("user"), groups.c.name.label("group"))
                .select_from(group_members.join(users).join(groups))
            ):
                groups_of.setdefault(member.user, set()).add(member.group)
            admins = frozenset(conn.execute(select(users.c.name).where(users.c.admin.is_(True))).scalars())
        return AclTable(
            version,
            {folder: tuple(entries) for folder, entries in by_folder.items()},
            {user: frozenset(names) for user, names in groups_of.items()},
            admins,
            default,
        )

    def entries(self, folder: str) -> tuple[AclEntry, ...] | None:
        """The folder's own ACL (None: it has none and uses the default)."""
        with self.engine.connect() as conn:
            if not _has_acl(conn, folder):
                return None
            rows = conn.execute(_entries_query().where(acl_entries.c.mailbox == folder))
            return tuple(_entry(r) for r in rows)

    # ------------------------------------------------------------------ entries
    def set_entry(
        self,
        folder: str,
        identifier: str,
        change: str | RightsChange,
        *,
        default: Rights,
        by_admin: bool = True,
        folders: Collection[str] | None = None,
        also: AlsoWrite | None = None,
    ) -> Rights:
        """``acl set`` / SETACL: replace, add to or take from ``identifier``'s rights on
        ``folder``; the entry's new rights.

        A folder that used the default first gets the entry it had in effect
        (``authenticated <default>``), so the change applies to what GETACL showed."""
        ident = parse_identifier(identifier)
        if isinstance(change, str):
            change = parse_rights(change)
        _check_folder(folder, folders)
        with self.engine.begin() as conn:
            principal, user_id, group_id = _principal(conn, ident)
            changed = False
            if not _has_acl(conn, folder):
                conn.execute(insert(acl_folders).values(mailbox=folder))
                for entry in default_entries(default):
                    _insert(conn, folder, entry.identifier, entry.rights)
                changed = True
            existing = conn.execute(
                select(acl_entries.c.id, acl_entries.c.rights).where(
                    acl_entries.c.mailbox == folder,
                    acl_entries.c.principal == principal,
                    acl_entries.c.negative == ident.negative,
                )
            ).first()
            new = change.apply(rights(existing.rights) if existing is not None else Rights())
            check_change(ident, new, by_admin=by_admin)
            if existing is None:
                conn.execute(
                    insert(acl_entries).values(
                        mailbox=folder, principal=principal, negative=ident.negative,
                        user_id=user_id, group_id=group_id, rights=str(new),
                    )
                )
                changed = True
            elif str(new) != existing.rights:
                conn.execute(
                    update(acl_entries).where(acl_entries.c.id == existing.id).values(rights=str(new))
                )
                changed = True
            if changed:
                _changed(conn, also)
        return new

    def delete_entry(
        self,
        folder: str,
        identifier: str,
        *,
        folders: Collection[str] | None = None,
        also: AlsoWrite | None = None,
    ) -> bool:
        """``acl delete`` / DELETEACL: whether there was such an entry.

        The folder keeps its ACL of its own even when no entry is left (then
        only admins have rights): taking an entry away must never open a
        folder to the whole team.  ``reset`` gives a folder back to the default."""
        ident = parse_identifier(identifier)
        _check_folder(folder, folders)
        with self.engine.begin() as conn:
            principal, _, _ = _principal(conn, ident)
            n = conn.execute(
                delete(acl_entries).where(
                    acl_entries.c.mailbox == folder,
                    acl_entries.c.principal == principal,
                    acl_entries.c.negative == ident.negative,
                )
            ).rowcount
            if n:
                _changed(conn, also)
        return bool(n)

    def reset(self, folder: str, *, also: AlsoWrite | None = None) -> bool:
        """Drop the folder's ACL: it uses the default again.  Whether it had one."""
        with self.engine.begin() as conn:
            had = _drop(conn, [folder])
            if had:
                _changed(conn, also)
        return had

    # ------------------------------------------------------------------ folder lifecycle
    def folder_created(self, name: str, delimiter: str | None) -> None:
        """A new folder starts with its parent's ACL (INBOX's at the top level); a
        parent without one means the default."""
        with self.engine.begin() as conn:
            folder_created_in(conn, name, delimiter)

    def folder_renamed(self, old: str, new: str, delimiter: str | None) -> None:
        """The ACLs move with the folder and its children.  RENAME INBOX moves its
        messages to a new folder and INBOX stays (RFC 3501 §6.3.5): copied."""
        with self.engine.begin() as conn:
            folder_renamed_in(conn, old, new, delimiter)

    def folder_deleted(self, name: str) -> None:
        """The folder's ACL goes (its children keep theirs)."""
        with self.engine.begin() as conn:
            folder_deleted_in(conn, name)

    # ------------------------------------------------------------------ groups
    def add_group(self, name: str, *, also: AlsoWrite | None = None) -> None:
        name = check_group_name(name)
        with self.engine.begin() as conn:
            if conn.execute(select(groups.c.id).where(groups.c.name == name)).first():
                raise AclError(f"group ${name} already exists")
            conn.execute(insert(groups).values(name=name, created_at=time.time()))
            _changed(conn, also)

    def remove_group(self, name: str, *, also: AlsoWrite | None = None) -> None:
        """Its memberships and every ACL entry naming it go with it."""
        with self.engine.begin() as conn:
            group_id = _group_id(conn, name)
            conn.execute(delete(group_members).where(group_members.c.group_id == group_id))
            conn.execute(delete(acl_entries).where(acl_entries.c.group_id == group_id))
            conn.execute(delete(groups).where(groups.c.id == group_id))
            _changed(conn, also)

    def add_members(self, name: str, members: Iterable[str], *, also: AlsoWrite | None = None) -> list[str]:
        """Add users to a group; those who were not members yet."""
        with self.engine.begin() as conn:
            group_id = _group_id(conn, name)
            user_ids = {user: _user_id(conn, user) for user in members}
            present = set(
                conn.execute(
                    select(group_members.c.user_id).where(group_members.c.group_id == group_id)
                ).scalars()
            )
            added = [user for user, uid in user_ids.items() if uid not in present]
            for user in added:
                conn.execute(insert(group_members).values(group_id=group_id, user_id=user_ids[user]))
            if added:
                _changed(conn, also)
        return added

    def remove_members(
        self, name: str, members: Iterable[str], *, also: AlsoWrite | None = None
    ) -> list[str]:
        """Remove users from a group; those who were members."""
        with self.engine.begin() as conn:
            group_id = _group_id(conn, name)
            removed = []
            for user in dict.fromkeys(members):
                n = conn.execute(
                    delete(group_members).where(
                        group_members.c.group_id == group_id, group_members.c.user_id == _user_id(conn, user)
                    )
                ).rowcount
                if n:
                    removed.append(user)
            if removed:
                _changed(conn, also)
        return removed

    def groups(self) -> list[Group]:
        with self.engine.connect() as conn:
            members: dict[int, list[str]] = {}
            for row in conn.execute(
                select(group_members.c.group_id, users.c.name)
                .select_from(group_members.join(users))
                .order_by(users.c.name)
            ):
                members.setdefault(row.group_id, []).append(row.name)
            return [
                Group(row.name, tuple(members.get(row.id, ())))
                for row in conn.execute(select(groups.c.id, groups.c.name).order_by(groups.c.name))
            ]

    # ------------------------------------------------------------------ admins
    def set_admin(self, user: str, admin: bool, *, also: AlsoWrite | None = None) -> bool:
        """``user set --admin|--no-admin``: whether the flag changed."""
        with self.engine.begin() as conn:
            uid = _user_id(conn, user)
            if not admin:
                _refuse_last_admin(conn, user, "demote")
            n = conn.execute(
                update(users).where(users.c.id == uid, users.c.admin.is_not(admin)).values(admin=admin)
            ).rowcount
            if n:
                _changed(conn, also)
        return bool(n)

    def admins(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(users.c.name).where(users.c.admin.is_(True)).order_by(users.c.name)).scalars()
            )

    def refuse_last_admin(self, user: str, action: AdminAction) -> None:
        """Raise ``LastAdminError`` when removing, disabling or demoting ``user``
        would leave no enabled admin.  The CLI calls it before ``user remove`` and
        ``user disable``; a team that never had an admin is not refused anything."""
        with self.engine.connect() as conn:
            _refuse_last_admin(conn, user, action)



# ---------------------------------------------------------------------- folder lifecycle
# In a caller's transaction, so the pipeline commits them with the replica
# change and the journal entry of the same CREATE/RENAME/DELETE.
def folder_created_in(conn: Connection, name: str, delimiter: str | None) -> None:
    """``AclStore.folder_created`` in the transaction of ``conn``."""
    if name == "INBOX":
        return
    parent = name.rsplit(delimiter, 1)[0] if delimiter and delimiter in name else "INBOX"
    # An ACL left from an earlier folder of this name (deleted at the hoster while
    # the gateway was down) must not apply to the new one.
    changed = _drop(conn, [name])
    if _has_acl(conn, parent):
        _copy_acl(conn, parent, name)
        changed = True
    if changed:
        _bump(conn)


def folder_renamed_in(conn: Connection, old: str, new: str, delimiter: str | None) -> None:
    """``AclStore.folder_renamed`` in the transaction of ``conn``."""
    if old == "INBOX":
        _drop(conn, [new])
        if _has_acl(conn, old):
            _copy_acl(conn, old, new)
        _bump(conn)
        return
    moved = [(old, new)]
    if delimiter:
        prefix = old + delimiter
        children = conn.execute(
            select(acl_folders.c.mailbox).where(func.substr(acl_folders.c.mailbox, 1, len(prefix)) == prefix)
        ).scalars()
        moved += [(child, new + child[len(old):]) for child in children]
    _drop(conn, [target for _, target in moved])
    for source, target in moved:
        for table in (acl_entries, acl_folders):
            conn.execute(update(table).where(table.c.mailbox == source).values(mailbox=target))
    _bump(conn)


def folder_deleted_in(conn: Connection, name: str) -> None:
    """``AclStore.folder_deleted`` in the transaction of ``conn``."""
    if _drop(conn, [name]):
        _bump(conn)


# ---------------------------------------------------------------------- helpers
def _version(conn: Connection) -> int:
    return int(conn.execute(select(acl_state.c.version).where(acl_state.c.id == 1)).scalar_one())


def _bump(conn: Connection) -> None:
    conn.execute(update(acl_state).where(acl_state.c.id == 1).values(version=acl_state.c.version + 1))


def bump_version(conn: Connection) -> None:
    """Move the ACL version in a transaction of another part of the team state
    (a user added as admin, a user removed with their entries and memberships),
    so running gateways reload their table."""
    _bump(conn)


def _changed(conn: Connection, also: AlsoWrite | None) -> None:
    _bump(conn)
    if also is not None:
        also(conn)


def _entries_query() -> Select[tuple[str, str, bool, str, str | None, str | None]]:
    return (
        select(
            acl_entries.c.mailbox, acl_entries.c.principal, acl_entries.c.negative,
            acl_entries.c.rights, users.c.name.label("user_name"), groups.c.name.label("group_name"),
        )
        .select_from(acl_entries.outerjoin(users).outerjoin(groups))
        .order_by(acl_entries.c.mailbox, acl_entries.c.id)
    )


def _entry(row: object) -> AclEntry:
    principal: str = row.principal  # type: ignore[attr-defined]
    negative = bool(row.negative)  # type: ignore[attr-defined]
    if principal.startswith("u:"):
        ident = Identifier(Kind.USER, row.user_name, negative)  # type: ignore[attr-defined]
    elif principal.startswith("g:"):
        ident = Identifier(Kind.GROUP, row.group_name, negative)  # type: ignore[attr-defined]
    else:
        kind = Kind.ANYONE if principal == "anyone" else Kind.AUTHENTICATED
        ident = Identifier(kind, principal, negative)
    return AclEntry(ident, rights(row.rights))  # type: ignore[attr-defined]


def _check_folder(folder: str, folders: Collection[str] | None) -> None:
    if folders is not None and folder not in folders:
        raise AclError(f"no folder {folder!r}")


def _user_id(conn: Connection, name: str) -> int:
    uid = conn.execute(select(users.c.id).where(users.c.name == name)).scalar()
    if uid is None:
        raise AclError(f"no user {name!r}")
    return int(uid)


def _group_id(conn: Connection, name: str) -> int:
    bare = name.removeprefix("$")
    gid = conn.execute(select(groups.c.id).where(groups.c.name == bare)).scalar()
    if gid is None:
        raise AclError(f"no group ${bare}")
    return int(gid)


def _principal(conn: Connection, ident: Identifier) -> tuple[str, int | None, int | None]:
    if ident.kind is Kind.USER:
        uid = _user_id(conn, ident.name)
        return f"u:{uid}", uid, None
    if ident.kind is Kind.GROUP:
        gid = _group_id(conn, ident.name)
        return f"g:{gid}", None, gid
    return ident.name, None, None


def _has_acl(conn: Connection, folder: str) -> bool:
    query = select(acl_folders.c.mailbox).where(acl_folders.c.mailbox == folder)
    return conn.execute(query).first() is not None


def _drop(conn: Connection, folders: list[str]) -> bool:
    """Remove these folders' ACLs; whether any had one."""
    conn.execute(delete(acl_entries).where(acl_entries.c.mailbox.in_(folders)))
    return bool(conn.execute(delete(acl_folders).where(acl_folders.c.mailbox.in_(folders))).rowcount)


def _copy_acl(conn: Connection, source: str, target: str) -> None:
    conn.execute(insert(acl_folders).values(mailbox=target))
    for row in conn.execute(select(acl_entries).where(acl_entries.c.mailbox == source)).all():
        conn.execute(insert(acl_entries).values(_copy(row, target)))


def _insert(conn: Connection, folder: str, ident: Identifier, granted: Rights) -> None:
    principal, user_id, group_id = _principal(conn, ident)
    conn.execute(
        insert(acl_entries).values(
            mailbox=folder, principal=principal, negative=ident.negative,
            user_id=user_id, group_id=group_id, rights=str(granted),
        )
    )


def _copy(row: object, folder: str) -> dict[str, object]:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values.pop("id")
    values["mailbox"] = folder
    return values


def _refuse_last_admin(conn: Connection, user: str, action: AdminAction) -> None:
    row = conn.execute(select(users.c.admin, users.c.disabled).where(users.c.name == user)).first()
    if row is None or not row.admin or row.disabled:
        return
    others = conn.execute(
        select(func.count()).select_from(users).where(
            users.c.admin.is_(True), users.c.disabled.is_(False), users.c.name != user
        )
    ).scalar_one()
    if not others:
        verb = {"remove": "remove", "disable": "disable", "demote": "take admin from"}[action]
        raise LastAdminError(
            f"refusing to {verb} {user}: they are the last admin "
            "(make another user admin first: imapgate user set NAME --admin)"
        )


__all__ = [
    "AclStore",
    "AlsoWrite",
    "Group",
    "LastAdminError",
    "bump_version",
    "folder_created_in",
    "folder_deleted_in",
    "folder_renamed_in",
]
