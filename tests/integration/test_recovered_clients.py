"""The "Recovered" folder with real clients through the gateway, in front of Dovecot:
imaplib and imapclient list it, open it read-only, read a deleted message and get it
back by copying or moving it out; mbsync, syncing every folder, downloads it like a
read-only folder and cannot push into it (what docs/recovery.md says it does)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imapclient
import pytest

from imapgate.demo import DovecotServer
from tests.support.gateway import GatewayHarness
from tests.support.imap import ok, session
from tests.support.mbsync import mbsync_config, require_mbsync

pytestmark = pytest.mark.integration

DovecotFactory = Callable[..., DovecotServer]
USERS = {"alice": "a-pw", "bob": "b-pw"}


@pytest.fixture
def harness(fresh_dovecot: DovecotFactory, tmp_path: Path, sample_mailbox: Any) -> Any:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:5], "Archive": []})
    with GatewayHarness(upstream_port=dc.port, data_dir=tmp_path / "gw", users=USERS,
                        recovery={"enabled": True}) as h:  # fmt: skip
        yield h


def _delete_first(h: GatewayHarness, count: int = 1) -> list[bytes]:
    """alice deletes the first ``count`` INBOX messages (Thunderbird's delete + compact);
    returns their bodies; waits until Recovered lists them."""
    with session(h.imaplib_login("alice", USERS["alice"])) as c:
        ok(c.select("INBOX"))
        bodies = [ok(c.fetch(str(i), "(BODY.PEEK[])"))[0][1] for i in range(1, count + 1)]
        ok(c.store(f"1:{count}", "+FLAGS", "(\\Deleted)"))
        ok(c.expunge())
        deadline = time.monotonic() + 15
        while True:
            status = ok(c.status("Recovered", "(MESSAGES)"))[0]
            if b"MESSAGES %d" % count in status:
                return bodies
            assert time.monotonic() < deadline, status
            time.sleep(0.1)


def test_imaplib_lists_reads_and_restores(harness: GatewayHarness) -> None:
    (body,) = _delete_first(harness)
    with session(harness.imaplib_login("bob", USERS["bob"])) as c:
        listed = b" ".join(ok(c.list()))
        assert b'"Recovered"' in listed or b" Recovered" in listed
        assert b"imapgate-recovery" not in listed
        typ, data = c.select("Recovered", readonly=True)
        assert typ == "OK" and data == [b"1"]
        assert c.untagged_responses.get("READ-ONLY") is not None
        assert ok(c.fetch("1", "(BODY.PEEK[])"))[0][1] == body
        typ, data = c.store("1", "+FLAGS", "(\\Flagged)")
        assert typ == "NO" and b"read-only" in data[0]
        typ, data = c.append("Recovered", None, None, b"Subject: x\r\n\r\nx\r\n")
        assert typ == "NO" and b"[CANNOT]" in data[0]
        ok(c.copy("1", "INBOX"))
        ok(c.select("INBOX"))
        found = ok(c.search(None, "ALL"))[0].split()
        assert len(found) == 5
        typ, data = c.select("Recovered", readonly=True)
        assert data == [b"0"]


def test_imapclient_moves_out_of_it(harness: GatewayHarness) -> None:
    _delete_first(harness, 2)
    client = imapclient.IMAPClient("127.0.0.1", port=harness.port, ssl=False, timeout=30)
    try:
        client.login("alice", USERS["alice"])
        names = [f[2] for f in client.list_folders()]
        assert "Recovered" in names and "imapgate-recovery" not in names
        info = client.select_folder("Recovered", readonly=True)
        assert info[b"EXISTS"] == 2
        uids = client.search("ALL")
        assert len(uids) == 2
        client.move(uids[:1], "Archive")
        assert client.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 1
        assert client.folder_status("Recovered", ["MESSAGES"])[b"MESSAGES"] == 1
    finally:
        client.logout()


def test_mbsync_downloads_it_read_only(harness: GatewayHarness, tmp_path: Path) -> None:
    mbsync = require_mbsync()
    _delete_first(harness)
    conf = mbsync_config(
        tmp_path,
        harness.port,
        "alice",
        USERS["alice"],
        channel="all",
        patterns="*",
        sync="All",
        expunge="Both",
    )
    local = tmp_path / "mail"

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([mbsync, "-c", str(conf), "all"], capture_output=True, text=True, timeout=120)

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    copies = list((local / "Recovered" / "cur").iterdir()) + list((local / "Recovered" / "new").iterdir())
    assert len(copies) == 1  # downloaded like any folder
    # A local change to it cannot be pushed: mbsync says so, and the folder stays as it was.
    copies[0].rename(copies[0].with_name(copies[0].name.split(":2,")[0] + ":2,FT"))
    (local / "Recovered" / "new" / "1.local:2,").write_bytes(b"Subject: local\r\n\r\nlocal\r\n")
    second = run()
    said = second.stdout + second.stderr
    print(f"mbsync exit {second.returncode}: {said[-800:]}")
    with session(harness.imaplib_login("alice", USERS["alice"])) as c:
        _typ, data = c.select("Recovered", readonly=True)
        assert data == [b"1"]  # nothing appended, nothing expunged
        assert b"\\Flagged" not in ok(c.fetch("1", "(FLAGS)"))[0]
    # mbsync reports each refusal and carries on (exit 0): the flag change (\\Flagged and
    # its "trashed" mark, which it sends as \\Deleted) and the upload of the local message.
    assert second.returncode == 0, said
    assert "NO [READ-ONLY] Recovered is a read-only virtual folder" in said, said
    assert "NO [CANNOT] Recovered is a read-only virtual folder: APPEND" in said, said
