"""The admin's view of sessions (issue 9): ``imapgate sessions``, ``imapgate kick``,
and ``user remove`` / ``user disable`` ending the user's sessions, and ``folder set``
taking effect at once (issue 10), run as separate processes against a gateway in
front of a real Dovecot, as an admin does."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imapgate.demo.dovecot import DovecotServer
from imapgate.gateway import control
from imapgate.store.engine import open_engine
from imapgate.team.acl_store import AclStore
from imapgate.team.journal import Journal
from imapgate.team.users import UserDirectory
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient, upstream_flags

pytestmark = pytest.mark.integration

TEAM = {"alice": "alice-pw", "bob": "bob-pw"}
IMAPGATE = [sys.executable, "-m", "imapgate.cli"]


@pytest.fixture
def upstream(fresh_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    return fresh_dovecot()


@pytest.fixture
def gw(upstream: DovecotServer, tmp_path: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(upstream_port=upstream.port, data_dir=tmp_path / "gw", users=TEAM) as harness:
        yield harness


def cli_config(tmp_path: Path, data_dir: Path, port: int) -> Path:
    """A config file for the admin commands naming the gateway's store."""
    cfg = tmp_path / "admin.toml"
    cfg.write_text(
        f"""
[upstream]
host = "127.0.0.1"
port = {port}
tls = "none"
user = "shared"
password = "shared-secret"

[server]
allow_plaintext = true

[store]
data_dir = "{data_dir}"
"""
    )
    return cfg


def imapgate(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMAPGATE, "--config", str(cfg), *args], capture_output=True, text=True, timeout=60
    )


def login(gw: GatewayHarness, user: str) -> RawClient:
    c = RawClient("127.0.0.1", gw.port)
    c.login(user, TEAM[user])
    return c


def closed_after(c: RawClient, timeout: float = 5) -> list[bytes]:
    """Lines up to the end of the connection (which must come within ``timeout``)."""
    lines: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        c.sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            lines.append(c.readline())
        except ConnectionError:
            return lines
        except TimeoutError:
            raise AssertionError(f"connection still open after {timeout} s: {lines!r}") from None


def test_control_socket_is_owner_only(gw: GatewayHarness) -> None:
    path = gw.config.store.data_dir / control.CONTROL_SOCKET_NAME
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    with pytest.raises(control.ControlError, match="unknown request"):
        control.request(gw.config.store.data_dir, {"request": "nonsense"})


def test_sessions_list_and_kick(gw: GatewayHarness, upstream: DovecotServer, tmp_path: Path) -> None:
    cfg = cli_config(tmp_path, gw.config.store.data_dir, upstream.port)
    alice = login(gw, "alice")
    alice.command(b"A1", b'ID ("name" "Thunderbird" "version" "153.8.0")')
    alice.command(b"A2", b"SELECT INBOX")
    bob = login(gw, "bob")
    bob.command(b"B1", b"SELECT INBOX")
    bob.idle()
    anonymous = RawClient("127.0.0.1", gw.port)  # connected, not logged in
    try:
        res = imapgate(cfg, "sessions", "--json")
        assert res.returncode == 0, res.stderr
        listed = {s["user"]: s for s in json.loads(res.stdout)}
        assert set(listed) == {"alice", "bob", None}
        a, b = listed["alice"], listed["bob"]
        assert a["client_id"] == "Thunderbird 153.8.0" and a["folder"] == "INBOX" and not a["idle"]
        assert a["address"] == "127.0.0.1" and a["tls"] is False
        assert b["idle"] is True and b["folder"] == "INBOX" and b["client_id"] == ""
        assert 0 <= time.time() - a["since"] < 60

        table = imapgate(cfg, "sessions")
        assert table.returncode == 0, table.stderr
        assert "Thunderbird 153.8.0" in table.stdout and "INBOX IDLE" in table.stdout
        assert "(logging in)" in table.stdout and "3 session(s), 2 user(s)" in table.stdout

        # kick bob, who is in IDLE: BYE at once, connection closed
        res = imapgate(cfg, "kick", "bob")
        assert res.returncode == 0 and res.stdout.strip() == "ended 1 session(s) of bob", res
        lines = closed_after(bob)
        assert lines == [b"* BYE [UNAVAILABLE] session ended by the administrator\r\n"], lines

        res = imapgate(cfg, "kick", "bob")
        assert res.returncode == 1 and "no open session of bob" in res.stderr
        assert "Traceback" not in res.stderr

        # one session by id; the others stay
        alice2 = login(gw, "alice")
        listing = json.loads(imapgate(cfg, "sessions", "--json").stdout)
        ids = {s["id"] for s in listing if s["user"] == "alice"}
        assert len(ids) == 2 and a["id"] in ids
        res = imapgate(cfg, "kick", "alice", "--session", str(a["id"]))
        assert res.returncode == 0, res
        assert closed_after(alice)[-1].startswith(b"* BYE [UNAVAILABLE] session ended by the administrator")
        assert alice2.command(b"C1", b"NOOP")[-1].startswith(b"C1 OK")
        alice2.close()
    finally:
        for c in (alice, bob, anonymous):
            c.close()


def test_kick_during_a_command_lets_it_finish(gw: GatewayHarness) -> None:
    """A session told to end in the middle of a command answers it, then says BYE."""
    alice = login(gw, "alice")
    try:
        alice.command(b"A1", b"SELECT INBOX")

        def busy_end() -> int:
            sid = next(s.id for s in gw.server.session_list() if s.user == "alice")
            session = gw.server.live[sid]
            session._busy = True  # as if a command were running
            try:
                return gw.server.end_sessions([sid], control.KICK_REASON)
            finally:
                session._busy = False

        assert gw.call_soon(busy_end) == 1
        lines = alice.command(b"A2", b"NOOP")
        assert lines[-1].startswith(b"A2 OK"), lines
        assert closed_after(alice) == [b"* BYE [UNAVAILABLE] session ended by the administrator\r\n"]
    finally:
        alice.close()


def test_removed_user_mid_session_is_told_not_serverbug(
    gw: GatewayHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """The observed failure: alice is removed by another process that cannot reach
    the gateway, and her open session's next SELECT wrote per-user state for an
    account that no longer exists (FOREIGN KEY constraint failed -> NO [SERVERBUG]
    and a traceback in the log)."""
    alice = login(gw, "alice")
    try:
        assert alice.command(b"A1", b'LIST "" "*"')[-1].startswith(b"A1 OK")
        # another process, straight in the store: no notification
        UserDirectory(open_engine(gw.config.store.url)).remove("alice")
        with caplog.at_level(logging.INFO):
            lines = alice.command(b"A2", b"SELECT INBOX")
            assert lines[-1] == b"A2 NO [UNAVAILABLE] SELECT: your gateway account was removed\r\n", lines
            assert closed_after(alice) == [b"* BYE [UNAVAILABLE] your gateway account was removed\r\n"]
        assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records]
        assert "SERVERBUG" not in b"".join(lines).decode()
    finally:
        alice.close()


def test_account_check_ends_sessions_without_notification(gw: GatewayHarness) -> None:
    """Disabled (or removed) while the CLI could not reach the gateway: the periodic
    account check ends the sessions."""
    alice, bob = login(gw, "alice"), login(gw, "bob")
    try:
        bob.command(b"B1", b"SELECT INBOX")
        bob.idle()
        directory = UserDirectory(open_engine(gw.config.store.url))
        directory.set_disabled("alice", True)
        directory.remove("bob")
        assert gw.gw.control is not None
        assert gw.call_soon(gw.gw.control.check_accounts) == 2
        assert closed_after(alice) == [b"* BYE [UNAVAILABLE] your gateway account was disabled\r\n"]
        assert closed_after(bob) == [b"* BYE [UNAVAILABLE] your gateway account was removed\r\n"]
        assert gw.call_soon(gw.gw.control.check_accounts) == 0
    finally:
        alice.close()
        bob.close()


def test_user_remove_and_disable_end_sessions(
    gw: GatewayHarness, upstream: DovecotServer, tmp_path: Path
) -> None:
    cfg = cli_config(tmp_path, gw.config.store.data_dir, upstream.port)
    alice = login(gw, "alice")
    bob = login(gw, "bob")
    try:
        alice.command(b"A1", b"SELECT INBOX")
        alice.command(b"A2", b"STORE 1 +FLAGS (Old)")  # private state held in memory
        alice.idle()
        res = imapgate(cfg, "user", "remove", "alice", "--yes")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "removed user alice; ended 1 open session(s)"
        assert closed_after(alice) == [b"* BYE [UNAVAILABLE] your gateway account was removed\r\n"]
        user_ids = {u.id for u in gw.gw.users.list()}

        def cached_ids() -> set[int]:
            return {uid for mb in gw.gw.replica.by_id.values() for uid in mb.private}

        assert gw.call_soon(cached_ids) <= user_ids  # nothing kept about alice

        res = imapgate(cfg, "user", "disable", "bob")
        assert res.returncode == 0 and res.stdout.strip() == "disabled user bob; ended 1 open session(s)"
        assert closed_after(bob) == [b"* BYE [UNAVAILABLE] your gateway account was disabled\r\n"]
        again = RawClient("127.0.0.1", gw.port)
        assert again.command(b"L1", b"LOGIN bob bob-pw")[-1].startswith(b"L1 NO")
        again.close()
        res = imapgate(cfg, "user", "enable", "bob")
        assert res.returncode == 0 and res.stdout.strip() == "enabled user bob"
        login(gw, "bob").close()
        res = imapgate(cfg, "user", "disable", "nobody")
        assert res.returncode == 1 and res.stderr.strip() == "imapgate: error: no user 'nobody'"
    finally:
        alice.close()
        bob.close()


def test_without_a_running_gateway(tmp_path: Path, upstream: DovecotServer) -> None:
    data_dir = tmp_path / "store"
    cfg = cli_config(tmp_path, data_dir, upstream.port)
    env = dict(os.environ)
    add = subprocess.run(
        [*IMAPGATE, "--config", str(cfg), "user", "add", "carol", "--password-stdin"],
        input="carol-pw\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert add.returncode == 0, add.stderr
    res = imapgate(cfg, "sessions")
    assert res.returncode == 0 and res.stdout.count("\n") == 1 and "no running gateway" in res.stdout
    res = imapgate(cfg, "sessions", "--json")
    assert res.returncode == 1 and "no running gateway" in res.stderr
    res = imapgate(cfg, "kick", "carol")
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "no running gateway" in res.stderr
    res = imapgate(cfg, "user", "disable", "carol")
    assert res.returncode == 0 and res.stdout.strip() == "disabled user carol", res
    res = imapgate(cfg, "user", "remove", "carol", "--yes")
    assert res.returncode == 0 and res.stdout.strip() == "removed user carol", res


def test_stale_socket_of_a_killed_gateway_is_replaced(upstream: DovecotServer, tmp_path: Path) -> None:
    data_dir = tmp_path / ("deep-" + "x" * 90) / "gw"  # longer than a socket path may be
    data_dir.mkdir(parents=True)
    sock = data_dir / control.CONTROL_SOCKET_NAME
    sock.write_text("")  # whatever a killed process left there
    with GatewayHarness(upstream_port=upstream.port, data_dir=data_dir, users=TEAM) as harness:
        assert stat.S_ISSOCK(sock.stat().st_mode)
        c = login(harness, "alice")
        try:
            answer = control.request(data_dir, {"request": "sessions"})
            assert [s["user"] for s in answer["sessions"]] == ["alice"]
        finally:
            c.close()
    assert not sock.exists()
    with pytest.raises(control.NoGateway):
        control.request(data_dir, {"request": "sessions"})


def test_folder_set_takes_effect_at_once_in_a_running_gateway(
    upstream: DovecotServer, tmp_path: Path
) -> None:
    """``folder set --seen shared`` tells the running gateway (``folder-changed``):
    within 2 s, without a restart and long before its periodic check (10 min
    here), the folder is shared: a member's personal read mark is gone, her next
    FETCH shows the hoster's flags, and an IDLE session is sent the new flags."""
    data_dir = tmp_path / "gw"
    with GatewayHarness(
        upstream_port=upstream.port, data_dir=data_dir, users=TEAM, upstream={"poll_interval": 600}
    ) as harness:
        cfg = cli_config(tmp_path, data_dir, upstream.port)
        at_hoster = upstream_flags("127.0.0.1", upstream.port, "INBOX")
        uid = min(u for u, flags in at_hoster.items() if "\\Seen" not in flags)
        alice, bob = login(harness, "alice"), login(harness, "bob")
        try:
            alice.command(b"A1", b"SELECT INBOX")
            stored = alice.command(b"A2", f"UID STORE {uid} +FLAGS (\\Seen)".encode())
            assert stored[-1].startswith(b"A2 OK") and b"\\Seen" in b"".join(stored), stored
            bob.command(b"B1", b"SELECT INBOX")
            bob.idle()

            res = imapgate(cfg, "folder", "set", "INBOX", "--seen", "shared", "--yes")
            told_at = time.monotonic()
            assert res.returncode == 0, res.stderr
            assert "INBOX: read state is now shared" in res.stdout and "not told" not in res.stdout, res

            lines, _ = bob.wait_for(rb"^\* \d+ FETCH \(.*FLAGS", timeout=2)
            assert lines, lines
            fetched = alice.command(b"A3", f"UID FETCH {uid} FLAGS".encode())
            assert fetched[-1].startswith(b"A3 OK"), fetched
            # Unsolicited FETCHes of every message come first (the new mode's flags):
            # the one asked for shows the hoster's flags, not alice's read mark.
            mine = [line for line in fetched if f"(UID {uid} FLAGS".encode() in line]
            assert mine and all(b"\\Seen" not in line for line in mine), fetched
            mode = harness.call_soon(lambda: harness.gw.replica.seen_mode(harness.gw.replica.get("INBOX")))
            assert mode == "shared"
            assert time.monotonic() - told_at < 2.0
            bob.done()
        finally:
            alice.close()
            bob.close()
        entry = Journal(open_engine(harness.config.store.url)).recent(1)[0]
        assert (entry.user, entry.command, entry.mailbox) == ("cli", "FOLDER SET", "INBOX")
        assert entry.detail is not None and "private -> shared" in entry.detail


def test_acl_change_reaches_the_running_gateway(upstream: DovecotServer, tmp_path: Path) -> None:
    """Issue 11: ``imapgate acl set`` / ``group add-member`` tell the running
    gateway (``acl-changed``), which reloads its ACL table before the CLI returns;
    a change the gateway is not told about (another process writing the store)
    arrives through its 1 s poll of the ACL version, within 2 s."""
    data_dir = tmp_path / "gw"
    with GatewayHarness(upstream_port=upstream.port, data_dir=data_dir, users=TEAM) as harness:
        cfg = cli_config(tmp_path, data_dir, upstream.port)
        watch = harness.gw.acl_watch
        assert watch is not None
        assert "w" in harness.call_soon(lambda: harness.gw.acl.rights("bob", "INBOX"))
        harness.call(watch.stop())  # no poll: only the notice can bring the change now

        res = imapgate(cfg, "acl", "set", "INBOX", "-bob", "w")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "INBOX: -bob now has w", res.stdout  # no "not told"
        table = harness.call_soon(lambda: harness.gw.acl)
        assert "w" not in table.rights("bob", "INBOX") and "w" in table.rights("alice", "INBOX")

        assert imapgate(cfg, "group", "add", "leads").returncode == 0
        assert imapgate(cfg, "group", "add-member", "leads", "alice").returncode == 0
        assert harness.call_soon(lambda: harness.gw.acl.groups_of.get("alice")) == frozenset({"leads"})
        answer = control.request(data_dir, {"request": "acl-changed"})
        assert answer == {"ok": True, "version": harness.call_soon(lambda: harness.gw.acl.version)}

        # Not told: straight into the store, as another node or a CLI without the socket would.
        harness.call_soon(watch.start)
        AclStore(open_engine(harness.config.store.url)).set_admin("bob", True)
        changed_at = time.monotonic()
        while not harness.call_soon(lambda: "bob" in harness.gw.acl.admins):
            assert time.monotonic() - changed_at < 2.0, "the poll did not reload the ACL table"
            time.sleep(0.05)
        assert str(harness.call_soon(lambda: harness.gw.acl.rights("bob", "INBOX"))) == "lrswipkxtea"
