"""The folder-permission verbs as an operator types them (issue 11): ``user
add --admin``, ``user set``, ``group ...``, ``acl ...`` -- every verb, what it
prints, each error as one line with exit status 1, and the journal entry of
each change (none for a change that did not happen).

In-process (click's runner) against a store with two folders and no hoster;
the running gateway's side is tests/gateway/test_control.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, insert

from imapgate.cli import main
from imapgate.store.engine import open_engine
from imapgate.store.schema import mailboxes
from imapgate.team.journal import Journal
from imapgate.team.users import UserDirectory
from tests.support.cli import closed_port, write_config


class Installation:
    def __init__(self, tmp_path: Path) -> None:
        self.cfg = write_config(tmp_path, upstream_port=closed_port())
        self.engine: Engine = open_engine(f"sqlite:///{tmp_path / 'imapgate-data' / 'imapgate.sqlite3'}")
        users = UserDirectory(self.engine)
        for name in ("alice", "bob"):
            users.add(name, f"{name}-pw")
        with self.engine.begin() as conn:
            for name in ("INBOX", "Finance"):
                conn.execute(
                    insert(mailboxes).values(
                        name=name, delimiter="/", attributes="", uidvalidity=1, uidnext=1,
                        upstream_modseq=0, modseq=1, synced=True,
                    )
                )

    def run(self, *args: str, stdin: str = "") -> Result:
        return CliRunner().invoke(main, ["--config", str(self.cfg), *args], input=stdin)

    def ok(self, *args: str) -> list[str]:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.output.splitlines()

    def error(self, *args: str) -> str:
        """The one error line of a refused verb (exit status 1)."""
        result = self.run(*args)
        assert result.exit_code == 1, result.output
        lines = result.output.splitlines()
        assert len(lines) == 1 and lines[0].startswith("imapgate: error: "), lines
        return lines[0].removeprefix("imapgate: error: ")

    def journal(self) -> list[tuple[str, str | None, str | None]]:
        entries = reversed(Journal(self.engine).recent(100))
        return [(e.command, e.mailbox, e.detail) for e in entries if e.user == "cli"]


@pytest.fixture
def site(tmp_path: Path) -> Installation:
    return Installation(tmp_path)


def test_admin_flag_and_the_last_admin(site: Installation) -> None:
    assert site.ok("user", "list")[-1].startswith("no admin yet: every verb still works")
    # A team without any admin is refused nothing (every deployment before issue 11).
    assert site.ok("user", "disable", "bob") == ["disabled user bob"]
    assert site.ok("user", "enable", "bob") == ["enabled user bob"]
    no_password = site.error("user", "add", "carol", "--admin", "--password-stdin")
    assert no_password == "no password on standard input"
    result = site.run("user", "add", "carol", "--admin", "--password-stdin", stdin="carol-pw\n")
    assert result.exit_code == 0 and result.output == "added user carol (admin)\n", result.output
    listed = site.ok("user", "list")
    assert [line.split()[0] for line in listed if line.endswith("admin")] == ["carol"]
    assert not any(line.startswith("no admin yet") for line in listed)
    last = "they are the last admin (make another user admin first: imapgate user set NAME --admin)"
    assert site.error("user", "set", "carol", "--no-admin") == f"refusing to take admin from carol: {last}"
    assert site.error("user", "disable", "carol") == f"refusing to disable carol: {last}"
    assert site.error("user", "remove", "carol", "--yes") == f"refusing to remove carol: {last}"
    assert site.ok("user", "set", "alice", "--admin") == ["alice is now an admin"]
    assert site.ok("user", "set", "alice", "--admin") == ["alice is already an admin"]
    assert site.ok("user", "set", "carol", "--no-admin") == ["carol is no longer an admin"]
    assert site.ok("user", "set", "carol", "--no-admin") == ["carol is not an admin"]
    assert site.error("user", "set", "alice") == "give --admin or --no-admin"
    assert site.error("user", "set", "dave", "--admin") == "no user 'dave' (see `imapgate user list`)"
    assert site.journal()[-3:] == [
        ("USER ADD", None, "carol (admin)"),
        ("USER SET", None, "alice: admin"),
        ("USER SET", None, "carol: not admin"),
    ]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("anyone", "in folder permissions it means every team member"),
        ("authenticated", "in folder permissions it means every team member"),
        ("$team", "$ in front marks a group in folder permissions"),
        ("-bob", "- in front marks a negative entry in folder permissions"),
    ],
)
def test_reserved_user_names(site: Installation, name: str, why: str) -> None:
    result = site.run("user", "add", "--password-stdin", "--", name, stdin="pw\n")
    assert result.exit_code == 1 and result.output == f"imapgate: error: invalid user name {name!r}: {why}\n"


def test_groups(site: Installation) -> None:
    assert site.ok("group", "list") == ["no groups yet: add one with `imapgate group add NAME`"]
    assert site.ok("group", "add", "acct") == ["added group $acct"]
    assert site.error("group", "add", "$acct") == "group $acct already exists"
    assert site.error("group", "add", "anyone").startswith("invalid group name 'anyone'")
    assert site.ok("group", "add-member", "acct", "alice", "bob") == ["added to $acct: alice, bob"]
    assert site.ok("group", "add-member", "$acct", "bob") == ["already in $acct: bob"]
    assert site.error("group", "add-member", "acct", "dave") == "no user 'dave'"
    assert site.error("group", "add-member", "nope", "alice") == "no group $nope"
    assert site.ok("group", "list") == ["$acct                    alice, bob"]
    assert site.ok("group", "remove-member", "acct", "bob") == ["removed from $acct: bob"]
    assert site.ok("group", "remove-member", "acct", "bob") == ["not in $acct: bob"]
    assert site.error("group", "remove-member", "nope", "bob") == "no group $nope"
    site.ok("acl", "set", "Finance", "$acct", "lr")
    assert site.ok("group", "remove", "acct") == ["removed group $acct and its ACL entries"]
    assert site.ok("acl", "get", "Finance") == ["authenticated            lrswipkxte"]
    assert site.error("group", "remove", "acct") == "no group $acct"
    assert site.ok("group", "list") == ["no groups yet: add one with `imapgate group add NAME`"]
    assert [j for j in site.journal() if j[0].startswith("GROUP")] == [
        ("GROUP ADD", None, "$acct"),
        ("GROUP ADD-MEMBER", None, "$acct: alice, bob"),
        ("GROUP REMOVE-MEMBER", None, "$acct: bob"),
        ("GROUP REMOVE", None, "$acct"),
    ]


def test_acl_set_get_delete_reset(site: Installation) -> None:
    assert site.ok("acl", "get", "Finance") == [
        "Finance has no ACL of its own: the default ([acl] default) applies",
        "authenticated            lrswipkxte",
    ]
    site.ok("group", "add", "acct")
    assert site.ok("acl", "set", "Finance", "$acct", "lrswi") == ["Finance: $acct now has lrswi"]
    # - in front of an identifier or of rights is an argument, not an option
    assert site.ok("acl", "set", "Finance", "-bob", "w") == ["Finance: -bob now has w"]
    assert site.ok("acl", "set", "Finance", "alice", "+lr") == ["Finance: alice now has lr"]
    assert site.ok("acl", "set", "Finance", "alice", "-lr") == ["Finance: alice now has no rights"]
    assert site.ok("acl", "set", "Finance", "alice", "") == ["Finance: alice keeps no rights"]
    assert site.ok("acl", "set", "Finance", "alice", "lrcd") == ["Finance: alice now has lrkxte"]
    assert site.ok("acl", "get", "Finance") == [
        "authenticated            lrswipkxte",
        "$acct                    lrswi",
        "-bob                     w",
        "alice                    lrkxte",
    ]
    assert site.ok("acl", "delete", "Finance", "authenticated") == [
        "Finance: deleted the entry for authenticated"
    ]
    assert site.ok("acl", "delete", "Finance", "authenticated") == [
        "Finance: no entry for authenticated; nothing changed"
    ]
    for ident in ("$acct", "-bob", "alice"):
        site.ok("acl", "delete", "--", "Finance", ident)
    assert site.ok("acl", "get", "Finance") == ["Finance has an ACL with no entries: only admins have rights"]
    assert site.ok("acl", "reset", "Finance") == ["Finance: back to the default ([acl] default)"]
    assert site.ok("acl", "reset", "Finance") == ["Finance: already uses the default; nothing changed"]
    acl_journal = [j for j in site.journal() if j[0].startswith("ACL")]
    assert acl_journal[:2] == [("ACL SET", "Finance", "$acct 'lrswi'"), ("ACL SET", "Finance", "-bob 'w'")]
    assert ("ACL SET", "Finance", "alice ''") not in acl_journal  # nothing changed: nothing journaled
    assert acl_journal[-1] == ("ACL RESET", "Finance", "back to the default")
    assert len([j for j in acl_journal if j[0] == "ACL DELETE"]) == 4


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("acl", "set", "Finance", "alice", "lrz"),
            "unknown right 'z' in 'lrz': rights are the letters lrswipkxtea "
            "(RFC 4314; the obsolete c and d are accepted too)",
        ),
        (("acl", "set", "Finance", "alice", "+"), "rights '+': + needs letters after it (e.g. +w)"),
        (("acl", "set", "Finanse", "alice", "lr"), "no folder 'Finanse' (see `imapgate folder list`)"),
        (("acl", "set", "Finance", "dave", "lr"), "no user 'dave'"),
        (("acl", "set", "Finance", "$acct", "lr"), "no group $acct"),
        (
            ("acl", "set", "Finance", "al ice", "lr"),
            "invalid identifier 'al ice': use a user name, $group, anyone or authenticated "
            "(with - in front for a negative entry)",
        ),
        (("acl", "delete", "Finanse", "alice"), "no folder 'Finanse' (see `imapgate folder list`)"),
        (("acl", "delete", "Finance", "dave"), "no user 'dave'"),
        (("acl", "delete", "Finance", "$"), "invalid group name in identifier '$': after $ use 1-64 "
         "letters, digits and . _ @ + - (starting with a letter or digit)"),
        (("acl", "get", "Finanse"), "no folder 'Finanse' (see `imapgate folder list`)"),
        (("acl", "reset", "Finanse"), "no folder 'Finanse' (see `imapgate folder list`)"),
        (("acl", "rights", "dave", "Finance"), "no user 'dave' (see `imapgate user list`)"),
        (("acl", "rights", "alice", "Finanse"), "no folder 'Finanse' (see `imapgate folder list`)"),
    ],
)
def test_acl_errors_are_one_line(site: Installation, args: tuple[str, ...], line: str) -> None:
    assert site.error(*args) == line
    assert not [j for j in site.journal() if j[0].startswith("ACL")]


def test_acl_rights_explains(site: Installation) -> None:
    assert site.ok("acl", "rights", "alice", "Finance") == [
        "alice on Finance: lrswipkxte",
        "  Finance has no ACL of its own: the default ([acl] default) applies",
        "  authenticated gives lrswipkxte",
    ]
    site.ok("group", "add", "acct")
    site.ok("group", "add-member", "acct", "alice")
    site.ok("acl", "set", "Finance", "$acct", "lrswi")
    site.ok("acl", "set", "Finance", "anyone", "lr")
    site.ok("acl", "set", "Finance", "-alice", "w")
    site.ok("acl", "delete", "Finance", "authenticated")
    assert site.ok("acl", "rights", "alice", "Finance") == [
        "alice on Finance: lrsi",
        "  $acct gives lrswi",
        "  anyone gives lr",
        "  -alice takes away w",
    ]
    site.ok("acl", "set", "Finance", "anyone", "")
    assert site.ok("acl", "rights", "bob", "Finance") == [
        "bob on Finance: none",
        "  anyone gives nothing",
        "  without l, Finance does not exist for bob",
    ]
    site.ok("user", "set", "bob", "--admin")
    assert site.ok("acl", "rights", "bob", "Finance") == [
        "bob on Finance: lrswipkxtea",
        "  bob is an admin: every right on every folder",
    ]


def test_acl_default_from_the_configuration(tmp_path: Path) -> None:
    site = Installation(tmp_path)
    site.cfg.write_text(site.cfg.read_text() + '\n[acl]\ndefault = "lrs"\n')
    assert site.ok("acl", "get", "INBOX")[-1] == "authenticated            lrs"
    # the first change starts from the default entry in effect
    site.ok("acl", "set", "INBOX", "alice", "lrswi")
    assert site.ok("acl", "rights", "bob", "INBOX")[0] == "bob on INBOX: lrs"
    site.cfg.write_text(site.cfg.read_text().replace('default = "lrs"', 'default = "lrq"'))
    result = site.run("acl", "get", "INBOX")
    assert result.exit_code == 78 and result.output.count("\n") == 1
    assert "[acl] default: unknown right 'q' in 'lrq'" in result.output
