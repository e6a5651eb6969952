"""The CLI half of the deny-policy walker (issue 10): every verb click registers
is run with a policy that denies every right, and none may change the store
without asking it.

The verbs come from the click group itself, so a new verb that is in none of
the tables below breaks the test: whoever adds one decides here whether it
changes something (then it must ask the policy) or only reads.  A permissive
run of the same verbs shows the store comparison sees their changes (each
change is journaled, so even a change with no other trace in the store, such
as an index rebuild of an empty index, is seen).

The IMAP half is tests/gateway/test_pipeline_walker.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select

from imapgate.cli import main
from imapgate.gateway.errors import OperationError
from imapgate.gateway.policy import Actor, Policy
from imapgate.store.engine import open_engine
from imapgate.store.schema import mailboxes, metadata
from imapgate.team.acl import rights
from imapgate.team.acl_store import AclStore
from imapgate.team.users import UserDirectory
from tests.support.cli import closed_port, write_config

Verb = tuple[str, ...]

#: Verbs that change the store (or the running gateway): the arguments to run
#: them with, and the standard input they read.  Each must ask the policy first.
WRITES: dict[Verb, tuple[list[str], str]] = {
    ("user", "add"): (["carol", "--password-stdin"], "carol-pw\n"),
    ("user", "passwd"): (["alice", "--password-stdin"], "new-pw\n"),
    ("user", "remove"): (["alice", "--yes"], ""),
    ("user", "disable"): (["alice"], ""),
    ("user", "enable"): (["alice"], ""),
    ("folder", "set"): (["INBOX", "--seen", "shared", "--yes"], ""),
    ("index", "rebuild"): ([], ""),
    ("sync",): ([], ""),
    ("kick",): (["alice"], ""),
    ("user", "set"): (["alice", "--admin"], ""),
    ("group", "add"): (["leads"], ""),
    ("group", "remove"): (["team"], ""),
    ("group", "add-member"): (["team", "alice"], ""),
    ("group", "remove-member"): (["team", "bob"], ""),
    ("acl", "set"): (["INBOX", "alice", "lr"], ""),
    ("acl", "delete"): (["INBOX", "bob"], ""),
    ("acl", "reset"): (["INBOX"], ""),
    ("store", "copy"): (["--to", "postgresql://imapgate@127.0.0.1:1/nowhere"], ""),
    ("claim", "release"): (["--user", "alice"], ""),
    ("recovery", "restore"): (["1"], ""),
    ("recovery", "purge"): ([], ""),
}

#: Verbs that only read; run too, and the store must come out unchanged.
READ_ONLY: dict[Verb, str] = {
    ("user", "list"): "lists the users table",
    ("folder", "list"): "lists the replica's folders and their read-state modes",
    ("index", "status"): "counts the search index's rows",
    ("sessions",): "asks the running gateway for its session list",
    ("check",): "opens the store read-only (never created, never migrated) and tests the hoster login",
    ("config",): "prints the configuration file with the defaults filled in",
    ("group", "list"): "lists the groups and their members",
    ("acl", "get"): "reads one folder's ACL entries",
    ("acl", "rights"): "computes a user's effective rights from the ACL table",
    ("audit",): "reads the audit journal",
    ("claim", "list"): "lists the claims table",
    ("clients", "thunderbird"): "prints tag definitions from the users table",
    ("recovery", "list"): "lists the recoverable items",
}

#: The arguments a read-only verb is run with (none where it takes none).
READ_ARGS: dict[Verb, list[str]] = {
    ("acl", "get"): ["INBOX"],
    ("acl", "rights"): ["alice", "INBOX"],
}

#: Verbs not run here, and why they are no admin writes.
NOT_ADMIN_WRITES: dict[Verb, str] = {
    ("serve",): "runs the gateway: its writes are the IMAP sessions' operations, each through "
    "Service.execute and its rights check (the IMAP walker), and the sync applying what the hoster "
    "holds, which no actor decides",
    ("demo",): "runs serve on a store and a Dovecot of its own in a temporary folder; the demo "
    "users it adds exist only there",
}


def walk(group: click.Group, prefix: Verb = ()) -> Iterator[Verb]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from walk(command, (*prefix, name))
        else:
            yield (*prefix, name)


@dataclass
class RecordingPolicy(Policy):
    """Asks are recorded; ``deny`` refuses every right."""

    deny: bool = True
    asked: list[tuple[str, str, str]] = field(default_factory=list)

    def authorize(self, actor: Actor, mailbox: str, right: str) -> None:
        self.asked.append((actor.user, mailbox, right))
        if self.deny:
            raise OperationError(f"{actor.user} lacks the right {right!r}", "NOPERM")


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        tables = metadata.sorted_tables
        return {t.name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr) for t in tables}


@pytest.fixture
def installation(tmp_path: Path) -> tuple[Path, Engine]:
    """A store with two team members, one folder with an ACL entry for bob, and
    a group with bob in it; the hoster unreachable."""
    cfg = write_config(tmp_path, upstream_port=closed_port())
    engine = open_engine(f"sqlite:///{tmp_path / 'imapgate-data' / 'imapgate.sqlite3'}")
    UserDirectory(engine).add("alice", "alice-pw")
    UserDirectory(engine).add("bob", "bob-pw")
    with engine.begin() as conn:
        conn.execute(
            insert(mailboxes).values(
                name="INBOX",
                delimiter="/",
                attributes="",
                uidvalidity=1,
                uidnext=1,
                upstream_modseq=0,
                modseq=1,
                synced=True,
            )
        )
    acls = AclStore(engine)
    acls.add_group("team")
    acls.add_members("team", ["bob"])
    acls.set_entry("INBOX", "bob", "lr", default=rights("lrswipkxte"))
    return cfg, engine


def invoke(cfg: Path, verb: Verb, args: list[str], stdin: str, policy: Policy) -> click.testing.Result:
    return CliRunner().invoke(main, ["--config", str(cfg), *verb, *args], input=stdin, obj={"policy": policy})


def test_every_verb_is_classified() -> None:
    registered = set(walk(main))
    classified = set(WRITES) | set(READ_ONLY) | set(NOT_ADMIN_WRITES)
    assert registered == classified, (
        f"not classified: {sorted(registered - classified)}; gone: {sorted(classified - registered)}"
    )
    assert not set(WRITES) & set(READ_ONLY) and not set(WRITES) & set(NOT_ADMIN_WRITES)


@pytest.mark.parametrize("verb", sorted(WRITES), ids=" ".join)
def test_a_denied_write_changes_nothing(installation: tuple[Path, Engine], verb: Verb) -> None:
    cfg, engine = installation
    before = snapshot(engine)
    policy = RecordingPolicy(deny=True)
    args, stdin = WRITES[verb]
    result = invoke(cfg, verb, args, stdin, policy)
    assert result.exit_code == 1, result.output
    assert policy.asked and all(who == "cli" for who, _, _ in policy.asked), policy.asked
    assert "refused: cli lacks the right 'a'" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output  # one line, as every error
    assert snapshot(engine) == before


@pytest.mark.parametrize("verb", sorted(READ_ONLY), ids=" ".join)
def test_a_read_only_verb_changes_nothing(installation: tuple[Path, Engine], verb: Verb) -> None:
    cfg, engine = installation
    before = snapshot(engine)
    result = invoke(cfg, verb, READ_ARGS.get(verb, []), "", RecordingPolicy(deny=True))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    if verb in READ_ARGS:
        assert result.exit_code == 0, result.output
    assert snapshot(engine) == before


#: Allowed writes that need the hoster (or a running gateway) to change anything.
NEED_HOSTER = {("sync",), ("kick",), ("recovery", "restore"), ("recovery", "purge")}
#: Writes into another database (journaled there).
OTHER_STORE = {("store", "copy")}


@pytest.mark.parametrize("verb", sorted(set(WRITES) - NEED_HOSTER - OTHER_STORE), ids=" ".join)
def test_an_allowed_write_is_seen_by_the_comparison(installation: tuple[Path, Engine], verb: Verb) -> None:
    """The same verbs with every right: each asks, changes the store and journals it.
    (``sync`` needs the hoster and ``kick`` a running gateway: both are refused
    without them before anything changes, see test_control and test_cli_admin;
    ``store copy`` changes another database and journals there, see
    tests/store/test_copy.py;
    ``recovery restore``/``purge`` act at the hoster: tests/test_cli_recovery.py.)"""
    cfg, engine = installation
    before = snapshot(engine)
    policy = RecordingPolicy(deny=False)
    args, stdin = WRITES[verb]
    result = invoke(cfg, verb, args, stdin, policy)
    assert result.exit_code == 0, result.output
    assert policy.asked
    after = snapshot(engine)
    assert after != before
    journaled = [row for row in after["journal"] if row not in before["journal"]]
    assert len(journaled) == 1 and journaled[0][2] == "cli", journaled
