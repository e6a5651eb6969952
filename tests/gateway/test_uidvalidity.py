"""UIDVALIDITY changes upstream: the gateway rebuilds the folder, never serves
stale UIDs, closes sessions that had it open, and re-attaches each user's
private read state by Message-ID."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo.dovecot import DovecotServer
from imapgate.gateway import operations as ops
from imapgate.replica.events import MailboxReset

from .test_faults import make

pytestmark = pytest.mark.integration


async def test_uidvalidity_change_rebuilds_and_reattaches(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:8]})
    async with make(dc.port, tmp_path) as (gw, alice):
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        old_uv = inbox.uidvalidity
        state = gw.replica.private_state(inbox, alice.user_id)
        # alice marks two mails unread (private), then reads one of them again.
        await gw.service.execute(alice, ops.StoreFlags(inbox, inbox.uids[1:3], "remove", ["\\Seen"]))
        gw.service.execute_now(alice, ops.MarkSeen(inbox, [inbox.uids[2]]))
        assert inbox.uids[1] not in state.flags["\\Seen"] and inbox.uids[2] in state.flags["\\Seen"]
        mids_read = {inbox.records[u].message_id for u in inbox.uids if u in state.flags["\\Seen"]}
        resets: list[MailboxReset] = []
        gw.hub.subscribe(inbox.id, lambda ev: resets.append(ev) if isinstance(ev, MailboxReset) else None)

        dc.doveadm("mailbox", "update", "-u", "shared", "--uid-validity", str(old_uv + 1000), "INBOX")
        await gw.sync.sync_mailbox("INBOX")
        await asyncio.sleep(0)

        assert inbox.uidvalidity == old_uv + 1000
        assert resets, "sessions with the folder open must be told"
        assert inbox.exists == 8
        new_state = gw.replica.private_state(inbox, alice.user_id)
        assert {
            inbox.records[u].message_id for u in inbox.uids if u in new_state.flags["\\Seen"]
        } == mids_read
