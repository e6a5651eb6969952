"""The write path against a scripted upstream (tests/support/scripted_upstream.py): a
real IMAP client session on the real gateway, which talks real IMAP to a small server
whose capabilities, refusals and broken connections each test chooses.  No Dovecot:
the whole file runs in a few seconds.

What each test pins down: the client's answer, the upstream state, the replica (what
every session is served from), and where the order matters the exact commands the
gateway sent upstream.  The same paths against a real Dovecot: test_write_path.py and
test_faults.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from imapgate.gateway.app import Gateway
from imapgate.server.listener import ImapServer
from tests.server.harness import PASSWORDS, Client, connect
from tests.support.gateway_setup import gateway_config, imap_listener, running_gateway
from tests.support.scripted_upstream import Script, ScriptedUpstream

#: What Dovecot announces of the write-path extensions; each test removes what it needs.
ALL = ("UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC")
#: How the gateway tells a client that the hoster's answer never came.
LOST = b" the mail server is unreachable (upstream connection lost: upstream closed the connection)"
#: The commands of the write path proper (no NOOP, SELECT, LIST of housekeeping).
WRITES = ("UID STORE", "STORE", "UID COPY", "UID MOVE", "UID EXPUNGE", "EXPUNGE", "APPEND",
          "CREATE", "DELETE", "RENAME")


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its real cost is 0.4 s per test for alice's account and login, most
    of this file's time; the login is not what these tests are about."""
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    monkeypatch.setattr("imapgate.team.users._hasher", cheap)


def message(n: int) -> bytes:
    return (
        f"From: a@example.org\r\nTo: team@example.org\r\nSubject: mail {n}\r\n"
        f"Message-ID: <scripted-{n}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()


def script_with(*capabilities: str, messages: int = 4) -> Script:
    """INBOX with ``messages`` mails (UID 1 already \\Seen at the hoster) and an empty Archive."""
    script = Script(*capabilities)
    for n in range(1, messages + 1):
        script.add_message("INBOX", message(n), {"\\Seen"} if n == 1 else ())
    script.create_folder("Archive")
    return script


@dataclass
class Setup:
    script: Script
    upstream: ScriptedUpstream
    gw: Gateway
    server: ImapServer
    client: Client

    async def command(self, line: bytes) -> list[bytes]:
        """Send one tagged command; the response lines up to its completion."""
        await self.client.send(line)
        return await self.client.until_tagged(line.split(b" ", 1)[0])

    async def ok(self, line: bytes) -> list[bytes]:
        got = await self.command(line)
        tag = line.split(b" ", 1)[0]
        assert got[-1].startswith(tag + b" OK"), got
        return got

    def replica_flags(self, folder: str) -> dict[int, set[str]]:
        mb = self.gw.replica.get(folder)
        assert mb is not None, f"{folder} not in the replica"
        return {u: set(mb.records[u].flags) for u in mb.uids}

    def replica_agrees(self, *folders: str) -> None:
        for folder in folders:
            assert self.replica_flags(folder) == self.script.flags(folder), folder


@asynccontextmanager
async def gateway(tmp_path: Path, script: Script, *, select: bytes | None = b"INBOX") -> AsyncIterator[Setup]:
    """The gateway after its initial sync from ``script`` (no watcher: nothing changes
    behind a test's back), alice logged in and ``select`` selected; bob may log in too."""
    async with (
        ScriptedUpstream(script) as upstream,
        running_gateway(
            gateway_config(upstream_port=upstream.port, data_dir=tmp_path / "gw"),
            users=PASSWORDS,
            start="sync",
        ) as gw,
        imap_listener(gw) as server,
        connect(server) as client,
    ):
        await client.login("alice")
        setup = Setup(script, upstream, gw, server, client)
        if select is not None:
            await setup.ok(b"s SELECT " + select)
        yield setup


# -- STORE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("caps", [ALL, ("UIDPLUS",)], ids=["condstore", "no-condstore"])
async def test_store_reaches_upstream_and_replica(tmp_path: Path, caps: tuple[str, ...]) -> None:
    async with gateway(tmp_path, script_with(*caps)) as g:
        mark = g.script.mark()
        got = await g.ok(b"a UID STORE 2:3 +FLAGS (\\Flagged $Work)")
        assert g.script.commands("UID STORE", since=mark) == ["UID STORE 2:3 +FLAGS ($Work \\Flagged)"]
        assert g.script.flags("INBOX")[2] == {"\\Flagged", "$Work"}
        assert g.replica_flags("INBOX")[3] == {"\\Flagged", "$Work"}
        assert any(b"FETCH (" in line and b"\\Flagged" in line for line in got[:-1]), got
        await g.ok(b"b UID STORE 2 -FLAGS (\\Flagged)")
        g.replica_agrees("INBOX")


async def test_seen_stays_private_and_never_reaches_upstream(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        mark = g.script.mark()
        await g.ok(b"a UID STORE 3 +FLAGS (\\Seen)")
        assert g.script.commands(*WRITES, since=mark) == []
        assert "\\Seen" not in g.script.flags("INBOX")[3]


async def test_store_refused_upstream_is_no_with_the_reason_and_changes_nothing(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        g.script.refuse("UID STORE", "[LIMIT] too many keywords in this folder")
        got = await g.command(b"a UID STORE 2 +FLAGS ($Label7)")
        assert got[-1] == (
            b"a NO [LIMIT] cannot change flags: the mail server refused: too many keywords in this folder"
        )
        assert "$Label7" not in g.replica_flags("INBOX")[2]
        assert "$Label7" not in g.script.flags("INBOX")[2]
        g.replica_agrees("INBOX")


async def test_store_answer_lost_is_not_ok_and_the_next_sync_agrees(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        g.script.drop("UID STORE", after_acting=True)
        got = await g.command(b"a UID STORE 2 +FLAGS (\\Flagged)")
        # The hoster did it, the gateway cannot know: never OK, never an internal error.
        assert got[-1] == b"a NO [UNAVAILABLE] cannot change flags:" + LOST
        assert "\\Flagged" in g.script.flags("INBOX")[2]
        await g.gw.sync.sync_mailbox("INBOX")
        g.replica_agrees("INBOX")


async def test_store_dropped_before_acting_changes_nothing(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        g.script.drop("UID STORE", after_acting=False)
        got = await g.command(b"a UID STORE 2 +FLAGS (\\Flagged)")
        assert got[-1] == b"a NO [UNAVAILABLE] cannot change flags:" + LOST
        assert "\\Flagged" not in g.script.flags("INBOX")[2]
        assert "\\Flagged" not in g.replica_flags("INBOX")[2]
        # The gateway works on with a new connection.
        await g.ok(b"b UID STORE 2 +FLAGS (\\Flagged)")
        g.replica_agrees("INBOX")


# -- EXPUNGE -------------------------------------------------------------------------------


async def test_uid_expunge_with_uidplus_removes_exactly_those(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        await g.ok(b"a UID STORE 2,3 +FLAGS (\\Deleted)")
        mark = g.script.mark()
        await g.ok(b"b UID EXPUNGE 2")
        assert g.script.commands(*WRITES, since=mark) == ["UID EXPUNGE 2"]
        assert sorted(g.script.flags("INBOX")) == [1, 3, 4]
        g.replica_agrees("INBOX")


async def test_uid_expunge_without_uidplus_shields_other_deleted_mail(tmp_path: Path) -> None:
    """A plain EXPUNGE would also remove UID 3, which someone marked \\Deleted but wants
    to keep for now: its \\Deleted is lifted around the EXPUNGE, in this order."""
    async with gateway(tmp_path, script_with("CONDSTORE")) as g:
        await g.ok(b"a UID STORE 2,3 +FLAGS (\\Deleted)")
        mark = g.script.mark()
        await g.ok(b"b UID EXPUNGE 2")
        assert g.script.commands(*WRITES, since=mark) == [
            "UID STORE 3 -FLAGS.SILENT (\\Deleted)",
            "EXPUNGE",
            "UID STORE 3 +FLAGS.SILENT (\\Deleted)",
        ]
        assert g.script.flags("INBOX") == {1: {"\\Seen"}, 3: {"\\Deleted"}, 4: set()}
        g.replica_agrees("INBOX")


async def test_expunge_refused_keeps_the_message(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        await g.ok(b"a UID STORE 2 +FLAGS (\\Deleted)")
        g.script.refuse("UID EXPUNGE", "[EXPUNGEISSUED] mailbox is locked by a backup")
        got = await g.command(b"b UID EXPUNGE 2")
        assert got[-1] == (
            b"b NO [EXPUNGEISSUED] cannot expunge: the mail server refused: mailbox is locked by a backup"
        )
        assert 2 in g.script.flags("INBOX") and 2 in g.replica_flags("INBOX")


# -- COPY and MOVE ---------------------------------------------------------------------------


async def test_copy_with_copyuid_records_the_copy_at_once(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        await g.ok(b"a UID STORE 2 +FLAGS (\\Flagged)")
        mark = g.script.mark()
        got = await g.ok(b"b UID COPY 2 Archive")
        assert b"[COPYUID " in got[-1], got
        assert g.script.commands(*WRITES, since=mark) == ["UID COPY 2 Archive"]
        assert g.script.flags("Archive") == {1: {"\\Flagged"}}
        assert g.replica_flags("Archive") == {1: {"\\Flagged"}}
        assert 2 in g.replica_flags("INBOX")


async def test_move_with_native_move(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        mark = g.script.mark()
        await g.ok(b"a UID MOVE 3 Archive")
        assert g.script.commands(*WRITES, since=mark) == ["UID MOVE 3 Archive"]
        assert g.script.message_ids("Archive") == ["<scripted-3@example.org>"]
        assert 3 not in g.script.flags("INBOX")
        g.replica_agrees("INBOX", "Archive")
        assert g.gw.service.intents.pending() == []


async def test_move_without_move_is_copy_store_deleted_uid_expunge_in_this_order(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with("UIDPLUS", "CONDSTORE")) as g:
        mark = g.script.mark()
        await g.ok(b"a UID MOVE 3 Archive")
        assert g.script.commands(*WRITES, since=mark) == [
            "UID COPY 3 Archive",
            "UID STORE 3 +FLAGS.SILENT (\\Deleted)",
            "UID EXPUNGE 3",
        ]
        assert g.script.message_ids("Archive") == ["<scripted-3@example.org>"]
        assert 3 not in g.script.flags("INBOX")
        g.replica_agrees("INBOX", "Archive")
        assert g.gw.service.intents.pending() == []


async def test_move_refused_upstream_changes_nothing(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        g.script.refuse("UID MOVE", "[OVERQUOTA] Archive is over its quota")
        got = await g.command(b"a UID MOVE 3 Archive")
        assert got[-1] == b"a NO [OVERQUOTA] cannot move: the mail server refused: Archive is over its quota"
        assert 3 in g.script.flags("INBOX") and g.script.flags("Archive") == {}
        assert 3 in g.replica_flags("INBOX") and g.replica_flags("Archive") == {}


async def test_fallback_move_whose_copy_answer_is_lost_is_finished_once(tmp_path: Path) -> None:
    """COPY carried out, its answer lost: the move's intent is settled at once —
    the original goes, exactly one copy stays, and the client hears no OK it can't trust."""
    async with gateway(tmp_path, script_with("UIDPLUS", "CONDSTORE")) as g:
        g.script.drop("UID COPY", after_acting=True)
        got = await g.command(b"a UID MOVE 3 Archive")
        assert got[-1] == b"a NO [UNAVAILABLE] cannot move:" + LOST
        assert g.gw.service.intents.pending() == []
        assert g.script.message_ids("Archive") == ["<scripted-3@example.org>"]
        assert "<scripted-3@example.org>" not in g.script.message_ids("INBOX")
        await g.gw.sync.sync_mailbox("INBOX")
        await g.gw.sync.sync_mailbox("Archive")
        g.replica_agrees("INBOX", "Archive")


# -- APPEND --------------------------------------------------------------------------------


async def append(g: Setup, tag: bytes, data: bytes, folder: bytes = b"Archive") -> list[bytes]:
    await g.client.send(tag + b" APPEND " + folder + b" (\\Flagged) {%d+}" % len(data))
    await g.client.send(data)
    return await g.client.until_tagged(tag)


@pytest.mark.parametrize("caps", [ALL, ("CONDSTORE",)], ids=["appenduid", "no-uidplus"])
async def test_append_lands_once_in_upstream_and_replica(tmp_path: Path, caps: tuple[str, ...]) -> None:
    async with gateway(tmp_path, script_with(*caps)) as g:
        got = await append(g, b"a", message(9))
        assert got[-1].startswith(b"a OK"), got
        assert (b"[APPENDUID " in got[-1]) == ("UIDPLUS" in caps), got
        assert g.script.commands("APPEND") == [f"APPEND Archive (\\Flagged) {{{len(message(9))}+}}"]
        assert g.script.message_ids("Archive") == ["<scripted-9@example.org>"]
        assert g.replica_flags("Archive") == {1: {"\\Flagged"}}


async def test_append_refused_is_no_with_the_reason(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        g.script.refuse("APPEND", "[OVERQUOTA] Quota exceeded (mailbox for user is full)")
        got = await append(g, b"a", message(9))
        assert got[-1] == (
            b"a NO [OVERQUOTA] cannot append: the mail server refused: "
            b"Quota exceeded (mailbox for user is full)"
        )
        assert g.script.flags("Archive") == {} and g.replica_flags("Archive") == {}


async def test_append_answer_lost_is_found_and_not_duplicated(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        g.script.drop("APPEND", after_acting=True)
        got = await append(g, b"a", message(9))
        # Found by its Message-ID on a new connection: the APPEND did succeed.
        uidvalidity = g.script.folder("Archive").uidvalidity
        assert got[-1] == b"a OK [APPENDUID %d 1] APPEND completed" % uidvalidity
        assert g.script.message_ids("Archive") == ["<scripted-9@example.org>"]
        assert g.replica_flags("Archive") == {1: {"\\Flagged"}}


async def test_append_dropped_before_acting_is_no(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL)) as g:
        g.script.drop("APPEND", after_acting=False)
        got = await append(g, b"a", message(9))
        assert got[-1] == b"a NO [UNAVAILABLE] cannot append:" + LOST
        assert g.script.flags("Archive") == {} and g.replica_flags("Archive") == {}


# -- mailboxes ------------------------------------------------------------------------------


async def test_create_rename_delete(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL), select=None) as g:
        await g.ok(b"a CREATE Projects")
        assert "Projects" in g.script.folders and g.gw.replica.get("Projects") is not None
        await g.ok(b"b RENAME Projects Done")
        assert "Projects" not in g.script.folders and "Done" in g.script.folders
        assert g.gw.replica.get("Projects") is None and g.gw.replica.get("Done") is not None
        await g.ok(b"c DELETE Done")
        assert "Done" not in g.script.folders and g.gw.replica.get("Done") is None
        assert g.script.commands("CREATE", "RENAME", "DELETE") == [
            "CREATE Projects",
            "RENAME Projects Done",
            "DELETE Done",
        ]


async def test_mailbox_commands_refused_upstream_change_nothing(tmp_path: Path) -> None:
    async with gateway(tmp_path, script_with(*ALL), select=None) as g:
        g.script.refuse("CREATE", "[NOPERM] no folders may be created here")
        got = await g.command(b"a CREATE Projects")
        assert got[-1] == (
            b"a NO [NOPERM] cannot create Projects: the mail server refused: no folders may be created here"
        )
        assert "Projects" not in g.script.folders and g.gw.replica.get("Projects") is None
        g.script.refuse("RENAME", "[INUSE] Archive is in use")
        got = await g.command(b"b RENAME Archive Old")
        assert got[-1] == b"b NO [INUSE] cannot rename Archive: the mail server refused: Archive is in use"
        assert g.gw.replica.get("Archive") is not None and g.gw.replica.get("Old") is None
        g.script.refuse("DELETE", "[INUSE] Archive is in use")
        got = await g.command(b"c DELETE Archive")
        assert got[-1] == b"c NO [INUSE] cannot delete Archive: the mail server refused: Archive is in use"
        assert "Archive" in g.script.folders and g.gw.replica.get("Archive") is not None


# -- the hoster changed things itself ------------------------------------------------------


@pytest.mark.parametrize(
    "caps", [ALL, ("UIDPLUS", "CONDSTORE"), ("UIDPLUS",)], ids=["qresync", "condstore", "plain"]
)
async def test_changes_made_at_the_hoster_reach_the_replica(tmp_path: Path, caps: tuple[str, ...]) -> None:
    """Another client changed flags, expunged and delivered at the hoster: the next sync
    (QRESYNC's VANISHED, CONDSTORE's CHANGEDSINCE, or the full flag scan) brings them in."""
    async with gateway(tmp_path, script_with(*caps)) as g:
        inbox = g.script.folder("INBOX")
        inbox.messages[2].flags.add("\\Answered")
        inbox.messages[2].modseq = g.script.next_modseq()
        g.script.expunge_uids("INBOX", [3])
        g.script.add_message("INBOX", message(7), {"$New"})
        await g.gw.sync.sync_mailbox("INBOX")
        g.replica_agrees("INBOX")
        assert sorted(g.replica_flags("INBOX")) == [1, 2, 4, 5]


async def test_a_slow_upstream_store_does_not_hold_up_other_sessions(tmp_path: Path) -> None:
    """The upstream command runs outside the folder lock: while alice's STORE waits for
    the hoster, bob's session opens the folder and lists its flags."""
    async with gateway(tmp_path, script_with(*ALL)) as g, connect(g.server) as bob:
        await bob.login("bob")
        g.script.delay("UID STORE", 1.0)
        loop = asyncio.get_running_loop()
        await g.client.send(b"a UID STORE 2 +FLAGS (\\Flagged)")
        started = loop.time()
        await bob.send(b"b SELECT INBOX")
        assert (await bob.until_tagged(b"b"))[-1].startswith(b"b OK")
        await bob.send(b"c UID FETCH 1:* (FLAGS)")
        listing = await bob.until_tagged(b"c")
        assert listing[-1].startswith(b"c OK") and len(listing) == 5, listing
        assert loop.time() - started < 0.8, "bob waited for alice's STORE"
        assert (await g.client.until_tagged(b"a"))[-1] == b"a OK STORE completed"
        assert "\\Flagged" in g.replica_flags("INBOX")[2]
