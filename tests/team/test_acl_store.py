"""Folder permissions in the store (team/acl_store.py): entries, groups, admins, the
version every change bumps, the folder lifecycle and the last-admin rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from imapgate.store.engine import open_engine, upgrade
from imapgate.team.acl import AclError, rights
from imapgate.team.acl_store import AclStore, LastAdminError, bump_version
from imapgate.team.users import UserDirectory

DEFAULT = rights("lrswipkxte")


@pytest.fixture
def store(tmp_path: Path) -> AclStore:
    engine = open_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    users = UserDirectory(engine)
    for name in ("alice", "bob", "carol"):
        users.add(name, "pw")
    return AclStore(engine)


def shown(store: AclStore, folder: str) -> list[tuple[str, str]]:
    return [(str(e.identifier), str(e.rights)) for e in store.load(DEFAULT).shown_entries(folder)]


def test_first_change_starts_from_the_default_entry(store: AclStore) -> None:
    assert shown(store, "Finance") == [("authenticated", "lrswipkxte")]
    v0 = store.version()
    with pytest.raises(AclError, match=r"^no group \$acct$"):
        store.set_entry("Finance", "$acct", "lrswi", default=DEFAULT)
    assert store.version() == v0
    store.add_group("acct")
    store.add_members("acct", ["alice"])
    assert str(store.set_entry("Finance", "$acct", "lrswipkxte", default=DEFAULT)) == "lrswipkxte"
    assert shown(store, "Finance") == [("authenticated", "lrswipkxte"), ("$acct", "lrswipkxte")]
    assert store.delete_entry("Finance", "authenticated")
    table = store.load(DEFAULT)
    assert str(table.rights("alice", "Finance")) == "lrswipkxte"
    assert str(table.rights("bob", "Finance")) == ""
    assert str(table.rights("bob", "Other")) == "lrswipkxte"  # no entries: the default
    assert table.version > v0


def test_modifiers_and_empty_rights(store: AclStore) -> None:
    store.set_entry("Archive", "authenticated", "-wite", default=DEFAULT)
    assert shown(store, "Archive") == [("authenticated", "lrspkx")]
    store.set_entry("Archive", "bob", "+w", default=DEFAULT)
    store.set_entry("Archive", "bob", "+lr", default=DEFAULT)
    store.set_entry("Archive", "-carol", "", default=DEFAULT)
    assert shown(store, "Archive") == [("authenticated", "lrspkx"), ("bob", "lrw"), ("-carol", "")]
    v = store.version()
    store.set_entry("Archive", "bob", "rwl", default=DEFAULT)  # no change: no new version
    assert store.version() == v


def test_deleting_the_last_entry_never_opens_the_folder(store: AclStore) -> None:
    store.set_entry("Secret", "bob", "lr", default=DEFAULT)
    store.delete_entry("Secret", "authenticated")
    assert store.delete_entry("Secret", "bob")
    assert shown(store, "Secret") == []  # an ACL of its own with no entries: admins only
    assert store.entries("Secret") == () and store.entries("Elsewhere") is None
    assert str(store.load(DEFAULT).rights("alice", "Secret")) == ""
    assert not store.delete_entry("Secret", "bob")
    assert store.reset("Secret")
    assert str(store.load(DEFAULT).rights("alice", "Secret")) == "lrswipkxte"


def test_one_line_errors(store: AclStore) -> None:
    for args, message in [
        (("Finance", "dave", "lr"), "no user 'dave'"),
        (("Finance", "$nope", "lr"), "no group $nope"),
        (("Finance", "bob", "lrz"), "unknown right 'z' in 'lrz'"),
        (("Finance", "b b", "lr"), "invalid identifier 'b b'"),
        (("Nope", "bob", "lr"), "no folder 'Nope'"),
    ]:
        with pytest.raises(AclError) as info:
            store.set_entry(*args, default=DEFAULT, folders={"INBOX", "Finance"})
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
    with pytest.raises(AclError, match="only an admin may give anyone the a right"):
        store.set_entry("Finance", "anyone", "+a", default=DEFAULT, by_admin=False)
    assert store.entries("Finance") is None  # refused changes leave nothing behind


def test_groups_and_membership(store: AclStore) -> None:
    store.add_group("$sales")
    with pytest.raises(AclError, match=r"group \$sales already exists"):
        store.add_group("sales")
    with pytest.raises(AclError, match="invalid group name"):
        store.add_group("anyone")
    assert store.add_members("sales", ["alice", "bob", "alice"]) == ["alice", "bob"]
    assert store.add_members("sales", ["bob"]) == []
    with pytest.raises(AclError, match="no user 'dave'"):
        store.add_members("sales", ["carol", "dave"])
    assert [g.members for g in store.groups()] == [("alice", "bob")]  # all or nothing
    assert store.remove_members("sales", ["bob", "carol"]) == ["bob"]
    store.set_entry("Deals", "$sales", "lr", default=DEFAULT)
    assert store.load(DEFAULT).groups_of == {"alice": frozenset({"sales"})}
    v = store.version()
    store.remove_group("sales")
    assert store.version() > v
    assert shown(store, "Deals") == [("authenticated", "lrswipkxte")]  # the materialized default
    with pytest.raises(AclError, match=r"no group \$sales"):
        store.remove_group("sales")


def test_removed_users_lose_their_entries(store: AclStore, tmp_path: Path) -> None:
    store.set_entry("X", "bob", "lr", default=DEFAULT)
    store.delete_entry("X", "authenticated")
    UserDirectory(store.engine).remove("bob")
    UserDirectory(store.engine).add("bob", "new")
    # A new account with the old name does not inherit the old account's rights, and the
    # folder whose only entry went with the account is not open to everybody now.
    assert shown(store, "X") == []
    assert str(store.load(DEFAULT).rights("bob", "X")) == ""


def test_folder_lifecycle(store: AclStore) -> None:
    store.set_entry("INBOX", "bob", "lr", default=DEFAULT)
    store.folder_created("Top", "/")
    assert shown(store, "Top") == [("authenticated", "lrswipkxte"), ("bob", "lr")]
    store.set_entry("Top", "carol", "l", default=DEFAULT)
    store.folder_created("Top/Child", "/")
    assert shown(store, "Top/Child") == shown(store, "Top")
    store.folder_created("Plain/Sub", "/")  # parent without an ACL: the default
    assert store.entries("Plain/Sub") is None
    store.set_entry("Topper", "alice", "l", default=DEFAULT)  # same prefix, no child
    store.folder_renamed("Top", "Moved", "/")
    assert store.entries("Top") is None and store.entries("Top/Child") is None
    assert [str(e.identifier) for e in store.entries("Moved/Child")] == ["authenticated", "bob", "carol"]
    assert [str(e.identifier) for e in store.entries("Topper")] == ["authenticated", "alice"]
    store.folder_renamed("INBOX", "Old mail", "/")  # INBOX stays, its entries are copied
    assert shown(store, "Old mail") == shown(store, "INBOX")
    store.folder_deleted("Moved")
    assert store.entries("Moved") is None and store.entries("Moved/Child")


def test_admins_and_the_last_admin(store: AclStore) -> None:
    store.refuse_last_admin("alice", "remove")  # nobody is admin: nothing to protect
    store.set_admin("alice", True)
    assert store.admins() == ["alice"]
    assert str(store.load(DEFAULT).rights("alice", "Anything")) == "lrswipkxtea"
    for action, verb in (("remove", "remove"), ("disable", "disable"), ("demote", "take admin from")):
        with pytest.raises(LastAdminError, match=f"^refusing to {verb} alice: they are the last admin"):
            store.refuse_last_admin("alice", action)  # type: ignore[arg-type]
    with pytest.raises(LastAdminError):
        store.set_admin("alice", False)
    store.set_admin("bob", True)
    store.set_admin("alice", False)
    assert store.admins() == ["bob"]
    # A disabled admin is no admin to fall back on.
    store.set_admin("carol", True)
    UserDirectory(store.engine).set_disabled("carol", True)
    with pytest.raises(LastAdminError):
        store.refuse_last_admin("bob", "disable")
    with pytest.raises(AclError, match="no user 'dave'"):
        store.set_admin("dave", True)


def test_also_is_written_with_a_change_and_only_then(store: AclStore) -> None:
    """The admin verbs journal through ``also=``: in the change's transaction, not
    for a change that did not happen, and rolled back with a refused one."""
    calls: list[str] = []

    def also(what: str) -> Callable[[Connection], None]:
        def write(conn: Connection) -> None:
            conn.execute(text("SELECT 1"))
            calls.append(what)

        return write

    store.add_group("acct", also=also("add group"))
    assert store.add_members("acct", ["alice"], also=also("add member")) == ["alice"]
    assert store.add_members("acct", ["alice"], also=also("again")) == []
    store.set_entry("Finance", "alice", "lr", default=DEFAULT, also=also("set"))
    store.set_entry("Finance", "alice", "lr", default=DEFAULT, also=also("same"))
    with pytest.raises(AclError):
        store.set_entry("Finance", "dave", "lr", default=DEFAULT, also=also("unknown user"))
    assert store.delete_entry("Finance", "alice", also=also("delete"))
    assert not store.delete_entry("Finance", "alice", also=also("nothing to delete"))
    assert store.reset("Finance", also=also("reset"))
    assert not store.reset("Finance", also=also("nothing to reset"))
    assert store.remove_members("acct", ["alice"], also=also("remove member")) == ["alice"]
    assert store.set_admin("bob", True, also=also("admin"))
    assert not store.set_admin("bob", True, also=also("admin again"))
    store.remove_group("acct", also=also("remove group"))
    assert calls == [
        "add group", "add member", "set", "delete", "reset", "remove member", "admin", "remove group"
    ]

    def broken(conn: Connection) -> None:
        raise RuntimeError("journal full")

    before = store.version()
    with pytest.raises(RuntimeError):
        store.add_group("leads", also=broken)
    assert store.groups() == [] and store.version() == before  # the change went with it


def test_bump_version_in_another_transaction(store: AclStore) -> None:
    before = store.version()
    with store.engine.begin() as conn:
        bump_version(conn)
    assert store.version() == before + 1


def test_migration_keeps_per_user_rows(tmp_path: Path) -> None:
    """0005 adds users.admin without rebuilding the table: a rebuild in SQLite would
    cascade-delete every user's subscriptions, flags and modseqs."""
    engine = open_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}", migrate=False)
    upgrade(engine, "0004")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, password_hash, created_at, disabled) "
                          "VALUES (1, 'ann', 'x', 0, 0)"))
        conn.execute(text("INSERT INTO subscriptions (user_id, mailbox, subscribed) VALUES (1, 'Junk', 0)"))
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT user_id, mailbox FROM subscriptions")).all() == [(1, "Junk")]
        assert conn.execute(text("SELECT admin FROM users")).scalar_one() == 0
    assert AclStore(engine).version() == 1
