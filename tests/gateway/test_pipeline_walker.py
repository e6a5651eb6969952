"""The deny-policy walker: every IMAP command the server registers, run through
a real session with a policy that denies every right, must ask the policy and
then leave upstream, the replica, the journal and the team state alone.

The list of commands is the server's own command table (``COMMANDS``), so a new
command without a sample line here fails ``test_every_registered_command_is_walked``,
and a new command that reaches upstream or the replica without going through
``Service.execute`` fails the walk.  Commands that need no right are listed once,
in ``NO_RIGHT_NEEDED``, each with its reason.  NOOP, CHECK and IDLE are not
among them: they ask for ``r`` on the selected folder (a user who lost it gets
NO there, issue 11).
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from imapgate.gateway.app import Gateway
from imapgate.gateway.errors import OperationError
from imapgate.gateway.policy import Actor, Policy
from imapgate.protocol import commands as cmd
from imapgate.server import listener  # noqa: F401  (registers the handlers)
from imapgate.server.session import COMMANDS, State
from tests.server.harness import PASSWORDS, Client, connect, make_gateway, running

#: Commands that run without asking for a right, and why.
NO_RIGHT_NEEDED: dict[type[cmd.Command], str] = {
    cmd.Capability: "session: lists the server's capabilities",
    cmd.Logout: "session: ends it",
    cmd.Id: "session: exchanges client and server names",
    cmd.Enable: "session: switches protocol extensions on for this session",
    cmd.Namespace: "session: names the hierarchy delimiter only",
    cmd.StartTLS: "session: before login, no user yet",
    cmd.Login: "login: the authenticator decides, not the folder policy",
    cmd.Authenticate: "login: the authenticator decides, not the folder policy",
    cmd.Unselect: "selected folder: closes the session's view, nothing else",
    cmd.Unsubscribe: "team state: removes only the actor's own decision, reveals nothing (RFC 4314 §4)",
}

MESSAGE = b"From: a@example.org\r\nSubject: walker\r\nMessage-ID: <walk@x>\r\n\r\nhello\r\n"
_PLAIN = base64.b64encode(b"\0alice\0" + PASSWORDS["alice"].encode()).decode()

#: Sample lines per command class (several where UID or options change the path).
SAMPLES: dict[type[cmd.Command], Sequence[bytes]] = {
    cmd.List: (b'LIST "" "*"', b'LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES UNSEEN))'),
    cmd.Lsub: (b'LSUB "" "*"',),
    cmd.Status: (b"STATUS INBOX (MESSAGES UNSEEN HIGHESTMODSEQ)",),
    cmd.Select: (b"SELECT Archive", b"SELECT INBOX"),
    cmd.Examine: (b"EXAMINE INBOX",),
    cmd.Create: (b"CREATE NewFolder", b"CREATE Archive/Sub"),
    cmd.Delete: (b"DELETE Archive",),
    cmd.Rename: (b"RENAME Archive Old",),
    cmd.Subscribe: (b"SUBSCRIBE Archive",),
    cmd.Unsubscribe: (b"UNSUBSCRIBE Archive",),
    cmd.Append: (b"APPEND INBOX (\\Seen) {%d+}\r\n" % len(MESSAGE) + MESSAGE,),
    cmd.Fetch: (b"FETCH 1:* (FLAGS)", b"FETCH 1 (BODY[])", b"UID FETCH 1:* (UID FLAGS ENVELOPE)"),
    cmd.Store: (
        b"STORE 2 +FLAGS (\\Seen)",
        b"STORE 2 +FLAGS (\\Flagged)",
        b"UID STORE 3 +FLAGS.SILENT (\\Deleted)",
        b"STORE 1 FLAGS ()",
    ),
    cmd.Search: (b"SEARCH UNSEEN", b"UID SEARCH BODY hello"),
    cmd.Copy: (b"COPY 1 Archive", b"UID COPY 1:2 Archive"),
    cmd.Move: (b"MOVE 1 Archive", b"UID MOVE 2 Archive"),
    cmd.Expunge: (b"EXPUNGE", b"UID EXPUNGE 1:*"),
    cmd.Close: (b"CLOSE",),
    cmd.Unselect: (b"UNSELECT",),
    cmd.Check: (b"CHECK",),
    cmd.Idle: (b"IDLE",),
    cmd.Capability: (b"CAPABILITY",),
    cmd.Noop: (b"NOOP",),
    cmd.Logout: (b"LOGOUT",),
    cmd.Id: (b'ID ("name" "walker")',),
    cmd.Enable: (b"ENABLE CONDSTORE",),
    cmd.Namespace: (b"NAMESPACE",),
    cmd.StartTLS: (b"STARTTLS",),
    cmd.Login: (b"LOGIN alice " + PASSWORDS["alice"].encode(),),
    cmd.Authenticate: (b"AUTHENTICATE PLAIN " + _PLAIN.encode(),),
    cmd.SetAcl: (b"SETACL Archive bob lr", b"SETACL INBOX anyone +a"),
    cmd.DeleteAcl: (b"DELETEACL Archive bob",),
    cmd.GetAcl: (b"GETACL INBOX",),
    cmd.ListRights: (b"LISTRIGHTS INBOX bob",),
    cmd.MyRights: (b"MYRIGHTS INBOX",),
}


class DenyAll(Policy):
    """Denies every right and every operation's conflict check; records each question."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    def authorize(self, actor: Actor, mailbox: str, right: str) -> None:
        self.asked.append(("authorize", mailbox, right))
        raise OperationError(f"{actor.user} has no right {right!r} on {mailbox!r}", "NOPERM")

    def rights(self, actor: Actor, mailbox: str) -> str:
        self.asked.append(("rights", mailbox, ""))
        return ""

    def check_conflicts(self, actor: Actor, mailbox: str, uids: Sequence[int], operation: Any) -> None:
        self.asked.append(("conflicts", mailbox, type(operation).__name__))
        raise OperationError("refused by the walker's policy", "CANNOT")


#: What counts as a change: replica mutations (and lazy state creation), the
#: journal, the team's subscriptions.
REPLICA_WRITES = (
    "add_messages",
    "set_shared_flags",
    "expunge",
    "set_private_flags",
    "private_state",
    "drop_mailbox",
    "rename_mailbox",
    "upsert_mailbox",
    "set_sync_state",
    "reset",
    "set_seen_mode",
)
TEAM_WRITES = ("subscribe", "unsubscribe", "created")


class Touches:
    """Counts upstream connections asked for and writes made, by name."""

    def __init__(self, gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        self.on = False
        pool_connection = gw.pool.connection

        def connection(*args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
            self._hit("upstream")
            return pool_connection(*args, **kwargs)

        monkeypatch.setattr(gw.pool, "connection", connection)
        for name in REPLICA_WRITES:
            counted = self._counting(f"replica.{name}", getattr(gw.replica, name))
            monkeypatch.setattr(gw.replica, name, counted)
        for name in TEAM_WRITES:
            counted = self._counting(f"subscriptions.{name}", getattr(gw.subscriptions, name))
            monkeypatch.setattr(gw.subscriptions, name, counted)
        monkeypatch.setattr(gw.journal, "record", self._counting("journal", gw.journal.record))
        monkeypatch.setattr(gw.sync, "request", self._counting("sync.request", gw.sync.request))

    def _hit(self, what: str) -> None:
        if self.on:
            self.counts[what] += 1

    def _counting(self, what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self._hit(what)
            return fn(*args, **kwargs)

        return counted


async def _prepare(c: Client, states: frozenset[State]) -> None:
    """Bring the session to the most capable state the command runs in."""
    if State.SELECTED in states:
        await c.login("alice")
        await c.send(b"p SELECT INBOX")
        got = await c.until_tagged(b"p")
        assert got[-1].startswith(b"p OK"), got
    elif State.AUTHENTICATED in states:
        await c.login("alice")


async def _run(c: Client, line: bytes) -> list[bytes]:
    await c.send(b"w " + line)
    if line == b"IDLE":
        first = await c.line()
        if first.startswith(b"w "):
            return [first]  # refused before the continuation (the deny policy)
        assert first.startswith(b"+"), first
        await c.send(b"DONE")
    return await c.until_tagged(b"w")


def test_every_registered_command_is_walked() -> None:
    """A command added to the server needs a sample line here (and so a walk)."""
    missing = sorted(k.__name__ for k in COMMANDS if k not in SAMPLES)
    assert not missing, f"add sample lines (and a right in gateway/rights.py) for: {missing}"
    stale = sorted(k.__name__ for k in NO_RIGHT_NEEDED if k not in COMMANDS)
    assert not stale, f"not registered any more: {stale}"


async def test_deny_policy_stops_every_command_before_upstream_and_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = make_gateway(tmp_path)
    touches = Touches(gw, monkeypatch)
    deny = DenyAll()
    permissive = gw.service.policy
    report: list[str] = []
    async with running(gw) as server:
        for kind, spec in COMMANDS.items():
            for line in SAMPLES[kind]:
                async with connect(server) as c:
                    gw.service.policy = permissive
                    await _prepare(c, spec.states)
                    gw.service.policy = deny
                    deny.asked.clear()
                    touches.counts.clear()
                    touches.on = True
                    try:
                        got = await _run(c, line)
                    finally:
                        touches.on = False
                        gw.service.policy = permissive
                tagged = got[-1]
                assert not re.match(rb"w (NO|BAD) \[SERVERBUG\]", tagged), (line, got)
                changes = dict(touches.counts)
                if kind in NO_RIGHT_NEEDED:
                    allowed = {"subscriptions.unsubscribe"} if kind is cmd.Unsubscribe else set()
                    unexpected = {k: v for k, v in changes.items() if k not in allowed}
                    if unexpected:
                        report.append(f"{line!r} (no right needed) touched {unexpected}")
                    continue
                if not deny.asked:
                    report.append(f"{line!r} did not ask the policy (answer {tagged!r})")
                if changes:
                    report.append(f"{line!r} reached {changes} under a policy that denies everything")
                if tagged.startswith(b"w OK") and kind not in (cmd.List, cmd.Lsub, cmd.Close):
                    # Only a listing (filtered to nothing) and CLOSE (expunges what it
                    # may, then closes) complete without a right.
                    report.append(f"{line!r} completed without a right: {got!r}")
    assert not report, "\n".join(report)


async def test_a_listing_under_the_deny_policy_shows_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        gw.service.policy = DenyAll()
        await c.exchange(b'a LIST "" "*"', b"a OK LIST completed")
        await c.exchange(b'b LSUB "" "*"', b"b OK LSUB completed")
        await c.exchange(
            b"c STATUS INBOX (MESSAGES)", b"c NO [NOPERM] alice has no right 'l' on 'INBOX'"
        )
