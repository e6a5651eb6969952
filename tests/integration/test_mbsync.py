"""mbsync (isync), a strict full-sync client, mirrors a 2,000-message folder through the gateway
into a local Maildir — and, as reference, directly from Dovecot.  Then another team member
(bob, through the gateway; directly at Dovecot for the reference) flags one message, deletes
another and appends a new one, and the next mbsync run must bring exactly these changes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer, generate_bulk
from tests.integration.test_imaplib_write import APPENDED
from tests.support.gateway import GatewayHarness
from tests.support.imap import dovecot_login, ok, session
from tests.support.mbsync import mbsync_config, require_mbsync

pytestmark = pytest.mark.integration

DovecotFactory = Callable[..., DovecotServer]
COUNT = 2000


def _run(mbsync: str, conf: Path) -> float:
    start = time.monotonic()
    proc = subprocess.run([mbsync, "-c", str(conf), "bulk"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return time.monotonic() - start


def _local(tmp: Path) -> dict[str, str]:
    """Message-ID -> Maildir info flags of the local copy of Bulk."""
    out: dict[str, str] = {}
    for sub in ("cur", "new"):
        for f in (tmp / "mail" / "Bulk" / sub).iterdir():
            head = f.read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
            mid = next(
                line.split(b":", 1)[1].strip().decode()
                for line in head.splitlines()
                if line.lower().startswith(b"message-id:")
            )
            out[mid] = f.name.rsplit(":2,", 1)[1] if ":2," in f.name else ""
    return out


@pytest.mark.parametrize("via", ["gateway", "dovecot"])
def test_mbsync_full_sync_and_incremental_changes(
    via: str, fresh_dovecot: DovecotFactory, tmp_path: Path
) -> None:
    mbsync = require_mbsync()
    dc = fresh_dovecot(folders={"INBOX": [], "Bulk": generate_bulk(COUNT)})
    harness: GatewayHarness | None = None
    try:
        if via == "gateway":
            harness = GatewayHarness(
                upstream_port=dc.port, data_dir=tmp_path / "gw", users={"alice": "a-pw", "bob": "b-pw"}
            ).start()
            conf = mbsync_config(tmp_path, harness.port, "alice", "a-pw")
        else:
            conf = mbsync_config(tmp_path, dc.port, "shared", "shared-secret")
        first = _run(mbsync, conf)
        local = _local(tmp_path)
        assert len(local) == COUNT, (len(local), first)
        assert "<bulk.1.9@kuehne-brandt.de>" in local and "F" not in local["<bulk.1.9@kuehne-brandt.de>"]

        # bob: flag UID 10, delete UID 20, append one.
        bob = harness.imaplib_login("bob", "b-pw") if harness is not None else dovecot_login(dc)
        with session(bob):
            ok(bob.select("Bulk"))
            ok(bob.uid("STORE", "10", "+FLAGS", "(\\Flagged)"))
            ok(bob.uid("STORE", "20", "+FLAGS", "(\\Deleted)"))
            ok(bob.expunge())
            ok(bob.append("Bulk", None, None, APPENDED))

        _run(mbsync, conf)
        local = _local(tmp_path)
        assert len(local) == COUNT, len(local)
        assert "F" in local["<bulk.1.9@kuehne-brandt.de>"]
        assert "<bulk.1.19@kuehne-brandt.de>" not in local
        assert "<append-test@kuehne-brandt.de>" in local
        # Nothing else changed: one more run is a no-op.
        _run(mbsync, conf)
        assert _local(tmp_path) == local
        if harness is not None:
            assert harness.gw.pool.peak_open <= harness.gw.pool.max_connections
    finally:
        if harness is not None:
            harness.stop()
