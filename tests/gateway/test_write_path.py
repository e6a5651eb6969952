"""The write path in front of a real Dovecot: upstream commands outside the
folder lock, answers applied in upstream order, the gateway's own writes not
turned into re-SELECTs, and the safety nets for what the pool's shortcuts
could miss."""

from __future__ import annotations

import asyncio
import imaplib
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo.dovecot import DovecotServer
from imapgate.gateway import operations as ops
from imapgate.gateway.errors import OperationError
from imapgate.protocol import commands as cmd
from imapgate.replica.events import MessagesAdded
from imapgate.replica.mailbox import MessageRecord
from imapgate.upstream.connection import CommandResult, UpstreamConnection
from tests.support.imap import upstream_flags

from .relay import FaultRelay
from .test_faults import MESSAGE, make, upstream_count

pytestmark = pytest.mark.integration


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Upstream commands sent by the gateway, by name."""
    sent: Counter[str] = Counter()
    original = UpstreamConnection.run

    async def run(self: UpstreamConnection, build: Callable[[str], cmd.Command], **kw: Any) -> CommandResult:
        sent[build("X").name] += 1
        return await original(self, build, **kw)

    monkeypatch.setattr(UpstreamConnection, "run", run)
    return sent


def flags_upstream(dc: DovecotServer, folder: str = "INBOX") -> dict[int, set[str]]:
    return {u: f - {"\\Recent"} for u, f in upstream_flags("127.0.0.1", dc.port, folder).items()}


async def test_store_does_not_hold_the_folder_lock_upstream(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with make(dc.port, tmp_path) as (gw, alice):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        async with gw.sync.mailbox_lock("INBOX"):  # e.g. a long sync
            flag = ops.StoreFlags(inbox, [2], "add", ["\\Flagged"])
            task = asyncio.create_task(gw.service.execute(alice, flag))
            for _ in range(200):
                if "\\Flagged" in (await asyncio.to_thread(flags_upstream, dc))[2]:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the STORE did not reach upstream while the lock was held")
            assert "\\Flagged" not in inbox.records[2].flags  # the replica waits for the lock
            assert not task.done()
        await task
        assert "\\Flagged" in inbox.records[2].flags


async def test_concurrent_stores_leave_the_replica_equal_to_upstream(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """Writers race on the same messages; their answers reach the replica in any
    order; the flags with the newest upstream MODSEQ win."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:6]})
    async with make(dc.port, tmp_path) as (gw, alice):
        rng = random.Random(5)
        inbox = gw.replica.get("INBOX")
        assert inbox is not None

        async def writer() -> None:
            for _ in range(15):
                uids = rng.sample(inbox.uids, 2)
                op = rng.choice(["add", "remove"])
                flag = rng.choice(["\\Flagged", "\\Answered", "$Label1"])
                await gw.service.execute(alice, ops.StoreFlags(inbox, uids, op, [flag]))
                await asyncio.sleep(rng.random() * 0.003)

        await asyncio.gather(*(writer() for _ in range(6)))
        upstream = await asyncio.to_thread(flags_upstream, dc)
        shown = {u: set(inbox.records[u].flags) for u in inbox.uids}
        assert shown == upstream


async def test_a_store_answer_older_than_a_sync_does_not_undo_it(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """A STORE's answer waits for the lock while a sync reads a newer state of the
    same message (changed again elsewhere): applied late, it must not win."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with make(dc.port, tmp_path) as (gw, alice):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        lock = gw.sync.mailbox_lock("INBOX")
        await lock.acquire()
        try:
            mine = ops.StoreFlags(inbox, [2], "add", ["$Mine"])
            task = asyncio.create_task(gw.service.execute(alice, mine))
            for _ in range(200):
                if "$Mine" in (await asyncio.to_thread(flags_upstream, dc))[2]:
                    break
                await asyncio.sleep(0.01)

            def elsewhere() -> None:
                m = imaplib.IMAP4("127.0.0.1", dc.port)
                m.login("shared", "shared-secret")
                m.select("INBOX")
                m.uid("STORE", "2", "-FLAGS", "($Mine)")
                m.uid("STORE", "2", "+FLAGS", "($Theirs)")
                m.logout()

            await asyncio.to_thread(elsewhere)
            await gw.sync._sync_locked("INBOX")  # a sync that had the lock first
            assert "$Theirs" in inbox.records[2].flags
        finally:
            lock.release()
        await task
        assert set(inbox.records[2].flags) == (await asyncio.to_thread(flags_upstream, dc))[2]
        assert "$Mine" not in inbox.records[2].flags


async def test_own_writes_coming_back_through_notify_cost_no_select(
    fresh_dovecot: Callable[..., DovecotServer],
    tmp_path: Path,
    sample_mailbox: Any,
    commands: Counter[str],
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with make(dc.port, tmp_path) as (gw, alice):
        gw.sync.start()
        for _ in range(50):
            if gw.sync._notify_active:
                break
            await asyncio.sleep(0.05)
        assert gw.sync.watch_method == "NOTIFY"
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        commands.clear()
        for uid in (1, 2, 3):
            await gw.service.execute(alice, ops.StoreFlags(inbox, [uid], "add", ["\\Flagged"]))
        added = await gw.service.execute(alice, ops.Append("INBOX", [(MESSAGE, (), None)]))
        await gw.service.execute(alice, ops.StoreFlags(inbox, added.dest, "add", ["\\Deleted"]))
        await gw.service.execute(alice, ops.Expunge(inbox, added.dest))
        await asyncio.sleep(2.0)  # Dovecot's NOTIFY arrives after about 0.5 s
        assert commands["SELECT"] <= 1, commands  # at most the first pooled SELECT
        assert commands["NOOP"] <= 4, commands
        assert {u: set(inbox.records[u].flags) for u in inbox.uids} == await asyncio.to_thread(
            flags_upstream, dc
        )


async def test_changes_made_directly_upstream_still_arrive(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with make(dc.port, tmp_path) as (gw, alice):
        gw.sync.start()
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        # a pooled connection has INBOX
        await gw.service.execute(alice, ops.StoreFlags(inbox, [1], "add", ["\\Flagged"]))

        def elsewhere() -> None:
            m = imaplib.IMAP4("127.0.0.1", dc.port)
            m.login("shared", "shared-secret")
            m.select("INBOX")
            m.uid("STORE", "3", "+FLAGS", "(\\Answered)")
            m.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
            m.uid("EXPUNGE", "4")
            m.append("INBOX", "", None, b"Subject: direct\r\n\r\nhello\r\n")
            m.logout()

        await asyncio.to_thread(elsewhere)
        # Push takes milliseconds (benchmarks/gateway_idle.py); the bound is for a
        # loaded CI machine, the loop ends as soon as everything has arrived.
        for _ in range(200):
            if "\\Answered" in inbox.records[3].flags and 4 not in inbox.records and inbox.exists == 5:
                break
            await asyncio.sleep(0.05)
        assert "\\Answered" in inbox.records[3].flags
        assert 4 not in inbox.records and inbox.exists == 5
        assert {u: set(inbox.records[u].flags) for u in inbox.uids} == await asyncio.to_thread(
            flags_upstream, dc
        )


async def test_expunge_keeps_what_upstream_did_not_expunge(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """The replica says \\Deleted, but someone lifted it upstream and no sync ran
    since: UID EXPUNGE leaves the message there, so it must stay here too."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with make(dc.port, tmp_path) as (gw, alice):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        await gw.service.execute(alice, ops.StoreFlags(inbox, [2], "add", ["\\Deleted"]))

        def undelete() -> None:
            m = imaplib.IMAP4("127.0.0.1", dc.port)
            m.login("shared", "shared-secret")
            m.select("INBOX")
            m.uid("STORE", "2", "-FLAGS", "(\\Deleted)")
            m.logout()

        await asyncio.to_thread(undelete)
        assert await gw.service.execute(alice, ops.Expunge(inbox, [2])) == []
        assert 2 in inbox.records
        assert upstream_count(dc, "INBOX") == 5
        await gw.sync.sync_mailbox("INBOX")
        assert "\\Deleted" not in inbox.records[2].flags


async def test_expunge_answer_lost_converges(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with FaultRelay(dc.port) as relay, make(relay.port, tmp_path) as (gw, alice):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        await gw.service.execute(alice, ops.StoreFlags(inbox, [3], "add", ["\\Deleted"]))
        relay.cut_after = b" EXPUNGE "
        with pytest.raises(OperationError) as info:
            await gw.service.execute(alice, ops.Expunge(inbox, [3]))
        assert info.value.code == "UNAVAILABLE" and relay.cuts == 1
        await gw.sync.sync_mailbox("INBOX")
        assert 3 not in inbox.records and inbox.exists == upstream_count(dc, "INBOX") == 4


async def test_store_on_a_uid_the_connection_was_not_told_about_still_lands(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """Should the pool skip a NOOP it needed (its UID tracking wrong), Dovecot
    skips the unannounced UID silently: the STORE notices no answer, NOOPs and
    repeats; a content fetch likewise."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with make(dc.port, tmp_path) as (gw, alice):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        # a pooled INBOX connection
        await gw.service.execute(alice, ops.StoreFlags(inbox, [1], "add", ["$Probe"]))
        idle = [c for c in gw.pool._idle if c.selected == "INBOX"]
        assert idle
        m = imaplib.IMAP4("127.0.0.1", dc.port)
        m.login("shared", "shared-secret")
        _typ, data = m.append("INBOX", "", None, MESSAGE)
        m.logout()
        new_uid = int(str(data[0]).split("APPENDUID ")[1].split()[1].rstrip("]'"))
        # The replica learns of it (as from another connection's sync); the
        # pooled connection was told nothing, but claims it was.
        gw.replica.add_messages(inbox, [MessageRecord(new_uid, (), 0, 1.7e9, 0, len(MESSAGE), None)])
        for c in idle:
            c.known_uid = 10**6
        await gw.service.execute(alice, ops.StoreFlags(inbox, [new_uid], "add", ["\\Flagged"]))
        assert "\\Flagged" in (await asyncio.to_thread(flags_upstream, dc))[new_uid]
        assert "\\Flagged" in inbox.records[new_uid].flags


async def test_append_records_a_lower_uid_it_finds_unrecorded_first(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """Two APPENDs finishing out of order (here: one made directly at Dovecot that
    no sync has seen yet, since this gateway runs no watcher): the gateway records
    the lower UID before its own, so sessions, which learn new mail in UID order
    and never below the highest UID they know, see both."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with make(dc.port, tmp_path) as (gw, alice):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None and inbox.uids[-1] == 5
        added: list[tuple[int, ...]] = []
        gw.replica.hub.subscribe(
            inbox.id, lambda ev: added.append(ev.uids) if isinstance(ev, MessagesAdded) else None
        )

        def direct_append() -> None:
            m = imaplib.IMAP4("127.0.0.1", dc.port)
            m.login("shared", "shared-secret")
            other = MESSAGE.replace(b"<fault-1@", b"<direct-1@")
            assert m.append("INBOX", None, None, other)[0] == "OK"
            m.logout()

        await asyncio.to_thread(direct_append)
        result = await gw.service.execute(alice, ops.Append("INBOX", [(MESSAGE, [], None)]))
        assert result.dest == [7]
        assert inbox.uids[-2:] == [6, 7]
        assert inbox.records[6].message_id == "<direct-1@example.org>"
        assert added == [(6,), (7,)], "UID 6 must be published before UID 7"
