"""Recoverable deletes in front of a real Dovecot (gateway/recovery.py, restore.py,
recovered.py): EXPUNGE and DELETE keep a copy in the hidden folder with what the
message was; the copy is checked at Dovecot directly; restore puts it back with
its flags and everyone's private read state; a quota refusal expunges nothing;
a restore into a deleted folder creates it again; retention purges."""

from __future__ import annotations

import asyncio
import imaplib
import re
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
from imapgate.team.recovery_store import KEPT, PURGED, RESTORED, ItemFilter, RecoveryStore
from tests.support.gateway_setup import gateway_config, running_gateway

pytestmark = pytest.mark.integration

HIDDEN = "imapgate-recovery"


def recovery_config(dc_port: int, tmp_path: Path, **recovery: Any) -> Config:
    return gateway_config(
        upstream_port=dc_port,
        data_dir=tmp_path / "gw",
        base_dir=tmp_path,
        recovery={"enabled": True, **recovery},
    )


def actor(gw: Gateway, name: str) -> Actor:
    user = gw.users.get(name)
    assert user is not None
    return Actor(user.id, name, f"{name}-test")


@asynccontextmanager
async def make(dc: DovecotServer, tmp_path: Path, **recovery: Any) -> AsyncIterator[Gateway]:
    users = {"alice": "pw", "bob": "pw"}
    async with running_gateway(
        recovery_config(dc.port, tmp_path, **recovery), users=users, start="full"
    ) as gw:
        yield gw


def at_dovecot(dc: DovecotServer, folder: str) -> dict[str, set[str]]:
    """Message-ID -> flags of every message in ``folder``, read at Dovecot directly
    ({} when the folder does not exist)."""
    m = imaplib.IMAP4("127.0.0.1", dc.port)
    try:
        m.login("shared", "shared-secret")
        typ, _ = m.select(f'"{folder}"')
        if typ != "OK":
            return {}
        _t, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        out: dict[str, set[str]] = {}
        for part in data:
            if not isinstance(part, tuple):
                continue
            flags = re.search(rb"FLAGS \(([^)]*)\)", part[0])
            mid = re.search(rb"<[^>]+>", part[1])
            assert mid is not None, part
            out[mid.group().decode()] = set(flags.group(1).decode().split()) if flags else set()
        return out
    finally:
        m.logout()


async def cleared(dc: DovecotServer) -> dict[str, set[str]]:
    """The hidden folder at Dovecot once the copies' \\Deleted is cleared (in the background)."""
    for _ in range(100):
        kept = at_dovecot(dc, HIDDEN)
        if kept and not any("\\Deleted" in f for f in kept.values()):
            return kept
        await asyncio.sleep(0.05)
    raise AssertionError(f"copies still \\Deleted: {kept}")


def items(gw: Gateway, **f: Any) -> list[Any]:
    return RecoveryStore(gw.journal.engine).items(ItemFilter(**f))


async def expunge(gw: Gateway, who: Actor, folder: str, uids: list[int]) -> None:
    mb = gw.replica.get(folder)
    assert mb is not None
    await gw.service.execute(who, ops.StoreFlags(mb, uids, "add", ("\\Deleted",)))
    await gw.service.execute(who, ops.Expunge(mb, uids))


async def synced_recovered(gw: Gateway, who: Actor) -> Any:
    await gw.sync.sync_list()
    await gw.sync.sync_mailbox(HIDDEN)
    return await gw.service.execute(who, ops.Select("Recovered", readonly=True))


async def test_expunge_keeps_a_copy_and_restore_puts_it_back(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5]})
    before = at_dovecot(dc, "INBOX")
    async with make(dc, tmp_path) as gw:
        alice, bob = actor(gw, "alice"), actor(gw, "bob")
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        mid2 = inbox.records[2].message_id
        await gw.service.execute(alice, ops.StoreFlags(inbox, [2], "add", ("\\Flagged",)))
        await gw.service.execute(bob, ops.StoreFlags(inbox, [2], "add", ("\\Seen",)))  # bob's own \Seen
        alice_seen = gw.replica.private_state(inbox, alice.user_id).flags.get("\\Seen")
        alice_had_seen = alice_seen is not None and 2 in alice_seen
        await expunge(gw, alice, "INBOX", [2, 3])
        # At Dovecot: gone from INBOX, once each in the hidden folder, without \Deleted.
        inbox_now, kept = at_dovecot(dc, "INBOX"), await cleared(dc)
        assert set(inbox_now) == set(before) - set(kept) and len(kept) == 2
        assert "\\Deleted" not in kept[mid2 or ""] and "\\Flagged" in kept[mid2 or ""]
        (item2, item3) = items(gw)
        assert (item2.mailbox, item2.uid, item2.state, item2.removed_by) == ("INBOX", 2, KEPT, "alice")
        assert item2.client == "alice-test" and item2.subject and item2.sender and item2.size > 0
        assert item2.message_id == mid2 and "\\Flagged" in item2.flags and "\\Deleted" not in item2.flags
        assert item2.private.get(bob.user_id) == ("\\Seen",)
        assert ("\\Seen" in item2.private.get(alice.user_id, ())) == alice_had_seen
        # The hidden folder is listed to nobody; "Recovered" is, with the items.
        listed = await gw.service.execute(alice, ops.ListFolders())
        assert "Recovered" in listed.folders and HIDDEN not in listed.folders
        recovered = await synced_recovered(gw, bob)
        assert recovered.uids == [item2.id, item3.id]
        assert "\\Seen" in recovered.records[item2.id].flags  # bob's read state
        # Restore: back into INBOX, with \Flagged and bob's \Seen, no longer recoverable.
        restored = await gw.recovery.restore(alice, [item2])  # type: ignore[union-attr]
        assert restored[0].folder == "INBOX" and restored[0].uid is not None
        assert set(at_dovecot(dc, "INBOX")) == set(inbox_now) | {mid2}
        assert set(at_dovecot(dc, HIDDEN)) == set(kept) - {mid2}
        assert "\\Flagged" in at_dovecot(dc, "INBOX")[mid2 or ""]
        new = restored[0].uid
        assert new in inbox.records and "\\Flagged" in inbox.records[new].flags
        assert new in gw.replica.private_state(inbox, bob.user_id).flags["\\Seen"]
        seen_alice = gw.replica.private_state(inbox, alice.user_id).flags.get("\\Seen")
        assert (seen_alice is not None and new in seen_alice) == alice_had_seen
        assert [i.id for i in items(gw)] == [item3.id]
        assert [i.id for i in items(gw, states=(RESTORED,))] == [item2.id]


async def test_copy_out_of_recovered_restores(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:3], "Archive": []})
    async with make(dc, tmp_path) as gw:
        alice = actor(gw, "alice")
        await expunge(gw, alice, "INBOX", [1])
        (item,) = items(gw)
        recovered = await synced_recovered(gw, alice)
        result = await gw.service.execute(alice, ops.Move(recovered, [item.id], "Archive"))
        assert result.source == [item.id] and len(result.dest) == 1
        assert set(at_dovecot(dc, "Archive")) == {item.message_id}
        assert at_dovecot(dc, HIDDEN) == {}
        assert items(gw) == []
        # Writes into it are refused.
        with pytest.raises(OperationError) as info:
            await gw.service.execute(alice, ops.Append("Recovered", [(b"Subject: x\r\n\r\nx\r\n", [], None)]))
        assert info.value.code == "CANNOT"


async def test_delete_folder_keeps_copies_and_restore_creates_it_again(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(
        folders={"INBOX": sample_mailbox["INBOX"][:2], "Projects": sample_mailbox["INBOX"][2:5]}
    )
    projects = at_dovecot(dc, "Projects")
    async with make(dc, tmp_path) as gw:
        alice = actor(gw, "alice")
        await gw.service.execute(alice, ops.Delete("Projects"))
        assert at_dovecot(dc, "Projects") == {} and set(at_dovecot(dc, HIDDEN)) == set(projects)
        kept = items(gw, folder="Projects")
        assert len(kept) == 3 and {i.how for i in kept} == {"DELETE"}
        # The folder is gone; alice removed it, so she sees the items.
        recovered = await synced_recovered(gw, alice)
        assert len(recovered.uids) == 3
        await gw.recovery.restore(alice, kept)  # type: ignore[union-attr]
        assert set(at_dovecot(dc, "Projects")) == set(projects)
        assert at_dovecot(dc, HIDDEN) == {}
        assert gw.replica.get("Projects") is not None


async def test_quota_refusal_expunges_nothing(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:4]}, quota_rules={"shared": "*:messages=4"})
    before = at_dovecot(dc, "INBOX")
    async with make(dc, tmp_path) as gw:
        alice = actor(gw, "alice")
        with pytest.raises(OperationError) as info:
            await expunge(gw, alice, "INBOX", [1])
        assert info.value.code == "OVERQUOTA", info.value
        assert "nothing was expunged" in info.value.text
        assert set(at_dovecot(dc, "INBOX")) == set(before)
        assert items(gw, states=("pending", KEPT)) == []
        inbox = gw.replica.get("INBOX")
        assert inbox is not None and 1 in inbox.records


async def test_trash_restores_to_the_folder_before(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(
        folders={"INBOX": sample_mailbox["INBOX"][:1], "Work": sample_mailbox["INBOX"][1:3], "Trash": []}
    )
    async with make(dc, tmp_path) as gw:
        alice = actor(gw, "alice")
        work = gw.replica.get("Work")
        assert work is not None
        mid = work.records[1].message_id
        await gw.service.execute(alice, ops.Move(work, [1], "Trash"))
        await gw.sync.sync_mailbox("Trash")
        trash = gw.replica.get("Trash")
        assert trash is not None and trash.uids
        await expunge(gw, alice, "Trash", list(trash.uids))
        (item,) = items(gw)
        assert (item.mailbox, item.restore_to) == ("Trash", "Work")
        await gw.recovery.restore(alice, [item])  # type: ignore[union-attr]
        assert mid in at_dovecot(dc, "Work") and at_dovecot(dc, "Trash") == {}


async def test_purge_removes_expired_copies(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:3]})
    async with make(dc, tmp_path, retention="1h") as gw:
        alice = actor(gw, "alice")
        await expunge(gw, alice, "INBOX", [1, 2])
        assert await gw.recovery.purge(alice) == []  # type: ignore[union-attr]
        assert len(at_dovecot(dc, HIDDEN)) == 2
        purged = await gw.recovery.purge(alice, older_than=0)  # type: ignore[union-attr]
        assert len(purged) == 2 and at_dovecot(dc, HIDDEN) == {}
        assert items(gw) == [] and len(items(gw, states=(PURGED,))) == 2
