"""Folder permissions end to end: clients (imaplib and a raw line client) through a running
gateway in front of Dovecot, ACL changes made by the ``imapgate`` CLI on the gateway's
config, as an admin does (issue 11).

* CREATE starts a folder with its parent's entries (INBOX's for a top-level folder),
  RENAME keeps them (children too), DELETE removes them;
* ``imapgate acl set`` taking ``r`` away from a session's selected folder: within 2 s its
  next command there is ``NO [NOPERM]``, and it hears nothing more about the folder;
* the same for a change of group membership (``imapgate group add-member``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from imapgate.store.engine import open_engine
from imapgate.team.acl_store import AclStore
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient

pytestmark = pytest.mark.integration

TEAM = {"alice": "alice-pw", "bob": "bob-pw"}
IMAPGATE = [sys.executable, "-m", "imapgate.cli"]


@pytest.fixture
def gw(fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path) -> Iterator[GatewayHarness]:
    upstream = fresh_dovecot()
    with GatewayHarness(upstream_port=upstream.port, data_dir=tmp_path / "gw", users=TEAM) as harness:
        yield harness


def _cli(gw: GatewayHarness, tmp_path: Path, *args: str) -> str:
    """``imapgate --config <the gateway's store> ARGS`` in a process of its own."""
    cfg = tmp_path / "admin.toml"
    if not cfg.exists():
        up = gw.config.upstream
        cfg.write_text(
            f'[upstream]\nhost = "127.0.0.1"\nport = {up.port}\ntls = "none"\nuser = "shared"\n'
            f'password = "shared-secret"\n\n[server]\nallow_plaintext = true\n\n'
            f'[store]\ndata_dir = "{gw.config.store.data_dir}"\n'
        )
    res = subprocess.run([*IMAPGATE, "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    assert "not told" not in res.stdout, res.stdout
    return res.stdout


def _entries(gw: GatewayHarness, folder: str) -> dict[str, str] | None:
    found = AclStore(open_engine(gw.config.store.url)).entries(folder)
    if found is None:
        return None
    return {str(e.identifier): str(e.rights) for e in found}


def _login(gw: GatewayHarness, user: str) -> RawClient:
    c = RawClient("127.0.0.1", gw.port)
    c.login(user, TEAM[user])
    return c


def test_create_rename_delete_carry_the_entries(gw: GatewayHarness, tmp_path: Path) -> None:
    _cli(gw, tmp_path, "acl", "set", "INBOX", "bob", "lrs")
    _cli(gw, tmp_path, "acl", "set", "INBOX", "-bob", "w")
    inbox = _entries(gw, "INBOX")
    assert inbox == {"authenticated": "lrswipkxte", "bob": "lrs", "-bob": "w"}, inbox

    alice = gw.imaplib_login("alice", "alice-pw")
    try:
        assert alice.create("Projects")[0] == "OK"
        assert _entries(gw, "Projects") == inbox  # a top-level folder: INBOX's entries
        _cli(gw, tmp_path, "acl", "set", "Projects", "-bob", "rw")
        projects = _entries(gw, "Projects")
        assert projects is not None and projects["-bob"] == "rw"
        assert alice.create("Projects/Q1")[0] == "OK"
        assert _entries(gw, "Projects/Q1") == projects  # its parent's

        assert alice.rename("Projects", "Plans")[0] == "OK"
        assert _entries(gw, "Plans") == projects and _entries(gw, "Plans/Q1") == projects
        assert _entries(gw, "Projects") is None and _entries(gw, "Projects/Q1") is None
        # And the rights follow: bob may see Plans/Q1 but not read it.
        bob = gw.imaplib_login("bob", "bob-pw")
        try:
            typ, data = bob.select("Plans/Q1")
            assert typ == "NO" and b"[NOPERM]" in data[0], data
        finally:
            bob.logout()

        assert alice.delete("Plans/Q1")[0] == "OK"
        assert _entries(gw, "Plans/Q1") is None
        # A new folder of the old name starts fresh from its parent.
        _cli(gw, tmp_path, "acl", "set", "Plans", "-bob", "r")
        assert alice.create("Plans/Q1")[0] == "OK"
        assert _entries(gw, "Plans/Q1") == _entries(gw, "Plans")
    finally:
        alice.logout()


def _lost_read(gw: GatewayHarness, change: Callable[[], object]) -> None:
    """bob has INBOX selected (and a message flagged by alice shows up for him); after
    ``change`` his next command there is NO [NOPERM] within 2 s, and alice's further
    changes no longer reach him."""
    bob, alice = _login(gw, "bob"), _login(gw, "alice")
    try:
        assert bob.command(b"B1", b"SELECT INBOX")[-1].startswith(b"B1 OK")
        assert alice.command(b"A1", b"SELECT INBOX")[-1].startswith(b"A1 OK")
        assert alice.command(b"A2", b"STORE 1 +FLAGS (\\Flagged)")[-1].startswith(b"A2 OK")
        seen = bob.command(b"B2", b"NOOP")
        assert any(b" FETCH " in line for line in seen), seen  # events reach him before

        change()
        changed_at = time.monotonic()
        n = 0
        while True:
            n += 1
            tag = b"B%d" % (10 + n)
            answer = bob.command(tag, b"NOOP")
            if answer[-1].startswith(tag + b" NO [NOPERM]"):
                break
            assert time.monotonic() - changed_at < 2.0, f"still allowed after 2 s: {answer!r}"
            time.sleep(0.1)

        assert alice.command(b"A3", b"STORE 1 -FLAGS (\\Flagged)")[-1].startswith(b"A3 OK")
        assert alice.command(b"A4", b"STORE 2 +FLAGS ($Later)")[-1].startswith(b"A4 OK")
        time.sleep(0.3)
        answer = bob.command(b"B99", b"NOOP")
        assert answer[-1].startswith(b"B99 NO [NOPERM]"), answer
        assert answer[:-1] == [], f"untagged data about a folder bob may no longer read: {answer!r}"
        fetch = bob.command(b"B100", b"FETCH 1 (FLAGS)")
        assert fetch[-1].startswith(b"B100 NO [NOPERM]") and fetch[:-1] == [], fetch
        # Leaving the folder still works.
        assert bob.command(b"B101", b"CLOSE")[-1].startswith(b"B101 OK")
    finally:
        bob.close()
        alice.close()


def test_acl_set_by_the_cli_takes_r_away_from_a_running_session(gw: GatewayHarness, tmp_path: Path) -> None:
    _lost_read(gw, lambda: _cli(gw, tmp_path, "acl", "set", "INBOX", "-bob", "r"))


def test_group_membership_by_the_cli_takes_r_away(gw: GatewayHarness, tmp_path: Path) -> None:
    _cli(gw, tmp_path, "group", "add", "temps")
    _cli(gw, tmp_path, "acl", "set", "INBOX", "-$temps", "r")
    _lost_read(gw, lambda: _cli(gw, tmp_path, "group", "add-member", "temps", "bob"))
