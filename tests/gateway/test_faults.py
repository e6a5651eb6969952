"""Faults on the write path in front of a real Dovecot: the upstream connection
is cut after the server acted but before the gateway saw the answer.  Nothing
may be lost or duplicated, and replica and upstream must agree."""

from __future__ import annotations

import asyncio
import imaplib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from imapgate.config import Config
from imapgate.demo.dovecot import DovecotServer
from imapgate.gateway import operations as ops
from imapgate.gateway.app import Gateway
from imapgate.gateway.errors import OperationError
from imapgate.gateway.policy import Actor
from tests.support.gateway_setup import build_gateway, gateway_config, running_gateway

from .relay import FaultRelay

pytestmark = pytest.mark.integration

MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: fault test\r\n"
    b"Message-ID: <fault-1@example.org>\r\n\r\nhello\r\n"
)


def upstream_count(dc: DovecotServer, folder: str, criterion: str = "ALL") -> int:
    m = imaplib.IMAP4("127.0.0.1", dc.port)
    try:
        m.login("shared", "shared-secret")
        m.select(folder)
        _typ, data = m.uid("SEARCH", criterion)
        return len(data[0].split()) if data and data[0] else 0
    finally:
        m.logout()


def config(dc_port: int, tmp_path: Path) -> Config:
    return gateway_config(upstream_port=dc_port, data_dir=tmp_path / "gw", base_dir=tmp_path)


def alice_of(gw: Gateway) -> Actor:
    user = gw.users.get("alice")
    assert user is not None
    return Actor(user.id, "alice", "fault-test")


@asynccontextmanager
async def make(dc_port: int, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Actor]]:
    """A gateway in front of ``dc_port`` after one initial sync (no watcher: the tests
    decide when to sync), with the user alice; stopped when the block ends."""
    async with running_gateway(config(dc_port, tmp_path), users={"alice": "pw"}, start="sync") as gw:
        yield gw, alice_of(gw)


async def test_append_answer_lost_is_not_duplicated(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with FaultRelay(dc.port) as relay, make(relay.port, tmp_path) as (gw, alice):
        relay.cut_after = b" APPEND "
        result = await gw.service.execute(alice, ops.Append("INBOX", [(MESSAGE, ["\\Flagged"], None)]))
        assert relay.cuts == 1, "the fault was not injected"
        assert len(result.dest) == 1
        inbox = gw.replica.get("INBOX")
        assert inbox is not None and result.dest[0] in inbox.records
        assert upstream_count(dc, "INBOX", 'HEADER Message-ID "<fault-1@example.org>"') == 1
        assert upstream_count(dc, "INBOX") == 6 == inbox.exists


async def test_store_answer_lost_gives_no_and_converges(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    async with FaultRelay(dc.port) as relay, make(relay.port, tmp_path) as (gw, alice):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        relay.cut_after = b" STORE "
        with pytest.raises(OperationError) as info:
            await gw.service.execute(alice, ops.StoreFlags(inbox, [1], "add", ["\\Flagged"]))
        assert info.value.code == "UNAVAILABLE"
        # Upstream did apply it; the next sync brings the replica in line.
        await gw.sync.sync_mailbox("INBOX")
        assert "\\Flagged" in inbox.records[1].flags
        assert upstream_count(dc, "INBOX", "FLAGGED") == sum(
            1 for r in inbox.records.values() if "\\Flagged" in r.flags
        )


async def test_move_without_move_capability_interrupted_is_finished(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """COPY done, then the connection dies before \\Deleted/EXPUNGE: the intent is
    settled at once — the original goes, exactly one copy stays."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5], "Archive": []})
    async with (
        FaultRelay(dc.port, hide_capabilities=(b"MOVE",)) as relay,
        make(relay.port, tmp_path) as (gw, alice),
    ):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        mid = inbox.records[2].message_id
        relay.cut_after = b" COPY "
        with pytest.raises(OperationError):
            await gw.service.execute(alice, ops.Move(inbox, [2], "Archive"))
        assert relay.cuts == 1
        assert gw.service.intents.pending() == []
        assert upstream_count(dc, "INBOX", f'HEADER Message-ID "{mid}"') == 0
        assert upstream_count(dc, "Archive", f'HEADER Message-ID "{mid}"') == 1
        assert upstream_count(dc, "INBOX") == 4


async def test_move_open_at_crash_is_settled_at_start(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """The gateway died (SIGKILL) after COPY: the next start finishes the move."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5], "Archive": []})
    # Not a context manager: this gateway is never stopped cleanly, it "dies".
    gw = build_gateway(config(dc.port, tmp_path), users={"alice": "pw"})
    await gw.sync.initial_sync()
    inbox = gw.replica.get("INBOX")
    archive = gw.replica.get("Archive")
    assert inbox is not None and archive is not None
    mid = inbox.records[3].message_id
    gw.service._move_intent(inbox, [3], archive)
    m = imaplib.IMAP4("127.0.0.1", dc.port)
    m.login("shared", "shared-secret")
    m.select("INBOX")
    assert m.uid("COPY", "3", "Archive")[0] == "OK"  # ... and then the process died
    m.logout()
    await gw.pool.close()  # no clean stop: only the store survives
    async with make(dc.port, tmp_path) as (again, _):
        await again.start()
        assert again.service.intents.pending() == []
        assert upstream_count(dc, "INBOX", f'HEADER Message-ID "{mid}"') == 0
        assert upstream_count(dc, "Archive", f'HEADER Message-ID "{mid}"') == 1
        recovered = [e for e in again.journal.recent() if e.command == "RECOVER"]
        assert recovered and "finished" in (recovered[0].detail or "")


async def test_interrupted_move_waits_for_a_late_copy_and_leaves_other_moves_alone(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """A move whose connection broke before any copy was seen is not rolled back at
    once (the COPY may still land at the hoster): when the copy turns up, the move
    is finished, not left in both folders.  Settling it touches no other open move."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5], "Archive": []})
    async with make(dc.port, tmp_path) as (gw, _alice):
        inbox = gw.replica.get("INBOX")
        archive = gw.replica.get("Archive")
        assert inbox is not None and archive is not None
        mid = inbox.records[3].message_id
        broken = gw.service._move_intent(inbox, [3], archive)
        running = gw.service._move_intent(inbox, [4], archive)  # another move, in progress
        # Right after the failure: no copy yet, so the move stays open.
        assert await gw.service.recover_intents(only=broken, final=False) == 0
        assert {i.id for i in gw.service.intents.pending()} == {broken, running}
        # The COPY that was on its way lands late.
        m = imaplib.IMAP4("127.0.0.1", dc.port)
        m.login("shared", "shared-secret")
        m.select("INBOX")
        assert m.uid("COPY", "3", "Archive")[0] == "OK"
        m.logout()
        # The later re-check finishes it: the mail is in Archive only, once.
        assert await gw.service.recover_intents(only=broken) == 1
        assert {i.id for i in gw.service.intents.pending()} == {running}
        assert upstream_count(dc, "INBOX", f'HEADER Message-ID "{mid}"') == 0
        assert upstream_count(dc, "Archive", f'HEADER Message-ID "{mid}"') == 1
        assert upstream_count(dc, "INBOX") == 4


async def test_interrupted_move_without_copy_is_rolled_back_after_the_delay(
    fresh_dovecot: Callable[..., DovecotServer],
    tmp_path: Path,
    sample_mailbox: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5], "Archive": []})
    async with make(dc.port, tmp_path) as (gw, _alice):
        monkeypatch.setattr("imapgate.gateway.mailservice.INTENT_RECHECK_SECONDS", 0.2)
        inbox = gw.replica.get("INBOX")
        archive = gw.replica.get("Archive")
        assert inbox is not None and archive is not None
        intent = gw.service._move_intent(inbox, [2], archive)
        assert await gw.service.recover_intents(only=intent, final=False) == 0
        gw.service._recheck_later(intent)
        for _ in range(100):
            if not gw.service.intents.pending():
                break
            await asyncio.sleep(0.05)
        assert gw.service.intents.pending() == []
        assert upstream_count(dc, "INBOX") == 5 and upstream_count(dc, "Archive") == 0
        recovered = [e for e in gw.journal.recent() if e.command == "RECOVER"]
        assert recovered and "rolled back" in (recovered[0].detail or "")
