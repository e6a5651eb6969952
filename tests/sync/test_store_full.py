"""A running gateway in front of a real Dovecot whose store's disk fills up.

For each of STORE, APPEND, MOVE and CREATE: the disk fills, the operation is
carried out at the hoster, and its commit fails — the client is told OK (the
hoster did it; the replica follows upstream in memory), never NO [SERVERBUG].
The next write is refused before it touches the hoster, with NO [UNAVAILABLE]
and nothing changed there (a retrying client cannot duplicate anything).  After
space is freed the healer writes memory out, resyncs, and the replica — and a
fresh load of the store — equals Dovecot: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import imaplib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imapgate.config import from_dict
from imapgate.demo.dovecot import DovecotServer
from imapgate.gateway import operations as ops
from imapgate.gateway.app import Gateway
from imapgate.gateway.errors import OperationError
from imapgate.gateway.policy import Actor
from imapgate.replica.replica import Replica

from ..store.smallfs import small_fs

pytestmark = pytest.mark.integration

MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: full disk\r\n"
    b"Message-ID: <full-1@example.org>\r\n\r\nhello\r\n"
)


def upstream_state(dc: DovecotServer) -> dict[str, dict[int, set[str]]]:
    """Folder -> UID -> flags, as Dovecot has them."""
    m = imaplib.IMAP4("127.0.0.1", dc.port)
    out: dict[str, dict[int, set[str]]] = {}
    try:
        m.login("shared", "shared-secret")
        _typ, listing = m.list()
        for line in listing:
            assert isinstance(line, bytes)
            name = line.rsplit(b" ", 1)[1].strip(b'"').decode()
            m.select(f'"{name}"', readonly=True)
            _typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
            folder: dict[int, set[str]] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                got = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", item) or re.search(
                    rb"FLAGS \(([^)]*)\) UID (\d+)", item
                )
                if got is None:
                    continue
                a, b = got.groups()
                uid, flags = (a, b) if a.isdigit() else (b, a)
                folder[int(uid)] = {f for f in flags.decode().split() if f != "\\Recent"}
            out[name] = folder
    finally:
        m.logout()
    return out


def replica_state(replica: Replica) -> dict[str, dict[int, set[str]]]:
    out: dict[str, dict[int, set[str]]] = {}
    for name in replica.names():
        mb = replica.get(name)
        assert mb is not None
        out[name] = {u: set(mb.records[u].flags) for u in mb.uids}
    return out


async def test_hoster_changes_while_the_store_is_full_are_kept_and_healed(
    fresh_dovecot: Callable[..., DovecotServer],
    tmp_path: Path,
    sample_mailbox: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5], "Archive": []})
    with small_fs(tmp_path / "fs", "16m") as fs:
        cfg = from_dict(
            {
                "upstream": {
                    "host": "127.0.0.1",
                    "port": dc.port,
                    "tls": "none",
                    "user": "shared",
                    "password": "shared-secret",
                },
                "server": {"allow_plaintext": True},
                "store": {"data_dir": str(fs.root / "gw")},
            },
            base_dir=tmp_path,
        )
        gw = Gateway.build(cfg)
        assert gw.healer is not None
        gw.healer.interval = 0.2
        user = gw.users.get("alice") or gw.users.add("alice", "pw")
        alice = Actor(user.id, "alice", "full-disk-test")
        await gw.start()
        try:
            inbox = gw.replica.get("INBOX")
            assert inbox is not None
            caplog.set_level(logging.WARNING)
            flags_of_3 = upstream_state(dc)["INBOX"][3]
            steps: list[tuple[str, Callable[[], ops.Operation[Any]]]] = [
                ("STORE", lambda: ops.StoreFlags(inbox, [1], "add", ["\\Flagged"])),
                ("APPEND", lambda: ops.Append("INBOX", [(MESSAGE, ["\\Answered"], None)])),
                ("MOVE", lambda: ops.Move(inbox, [2], "Archive")),
                ("CREATE", lambda: ops.Create("Projects")),
            ]
            for what, op in steps:
                fs.fill(gw.replica.engine)
                # The first write after the disk filled: carried out at the hoster,
                # its commit fails, the answer is still the truth (OK).
                await gw.service.execute(alice, op())
                assert not gw.health.writable, what
                # The next one is refused before the hoster sees it.
                before = upstream_state(dc)
                with pytest.raises(OperationError) as refused:
                    await gw.service.execute(alice, ops.StoreFlags(inbox, [3], "add", ["\\Flagged"]))
                assert refused.value.code == "UNAVAILABLE", what
                assert "nothing was changed" in refused.value.text
                assert upstream_state(dc) == before, what
                fs.free()
                for _ in range(100):
                    if gw.health.writable:
                        break
                    await gw.healer.heal()
                assert gw.health.writable, what
            # What the hoster did is in memory, and was written out.
            assert "\\Flagged" in inbox.records[1].flags
            assert 2 not in inbox.records
            assert gw.replica.get("Projects") is not None
            assert any("store writable again, healed" in r.getMessage() for r in caplog.records)
            for name in gw.replica.names():
                await gw.sync.sync_mailbox(name)
            up = upstream_state(dc)
            assert replica_state(gw.replica) == up
            assert sum(len(f) for f in up.values()) == 6  # 5 + APPEND; MOVE kept the count
            assert up["INBOX"][1] >= {"\\Flagged"} and up["INBOX"][3] == flags_of_3
            assert "Projects" in up
            assert len(up["Archive"]) == 1
            # The store holds what memory holds: a fresh load equals Dovecot too.
            again = Replica(gw.replica.engine)
            again.load()
            assert replica_state(again) == up
        finally:
            await gw.stop()
            gw.replica.engine.dispose()
