"""A hoster that stops answering without closing its connections (issue 9):
Dovecot's processes frozen with SIGSTOP, later resumed with SIGCONT.

Observed before: a STORE on an open connection waited the whole freeze and then
answered OK; an uncached FETCH answered after 20 s with an empty reason; after
the hoster was back, changes made there reached IDLE sessions only after the
change watcher's back-off (14 s).  Now: the write is answered NO [UNAVAILABLE]
after ``command_timeout`` with a truthful text and settled by a resync, the
dead hoster is detected within seconds even without traffic (idle probes),
every later request fails at once with a readable reason, and changes at the
hoster reach IDLE sessions within about a second of its return."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imapgate.demo.dovecot import DovecotServer
from imapgate.upstream import pool as pool_module
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient, dovecot_login, session, uid_flags

pytestmark = pytest.mark.integration

COMMAND_TIMEOUT = 3.0
CONNECT_TIMEOUT = 3.0
PROBE_INTERVAL = 2.0


@pytest.fixture
def upstream(fresh_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    return fresh_dovecot()


@pytest.fixture
def gw(upstream: DovecotServer, tmp_path: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(
        upstream_port=upstream.port,
        data_dir=tmp_path / "gw",
        users={"alice": "alice-pw", "bob": "bob-pw"},
        upstream={
            "command_timeout": COMMAND_TIMEOUT,
            "connect_timeout": CONNECT_TIMEOUT,
            "probe_interval": PROBE_INTERVAL,
            "poll_interval": 600,  # the periodic check must not be what finds changes
        },
    ) as harness:
        yield harness


@contextlib.contextmanager
def frozen(dc: DovecotServer) -> Iterator[Callable[[], float]]:
    """Every process of the Dovecot instance stopped; yields a function that
    resumes them and returns the time it did."""
    pids = dc.processes()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    resumed = False

    def resume() -> float:
        nonlocal resumed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        resumed = True
        return time.monotonic()

    try:
        yield resume
    finally:
        if not resumed:
            resume()


def readable(text: str) -> None:
    """A reason a person can act on: never an empty one like ``... PORT: )``."""
    assert not re.search(r":\s*\)|\(\s*\)", text), text
    assert "[UNAVAILABLE]" in text, text


def test_store_on_a_frozen_hoster_is_bounded_and_settled(gw: GatewayHarness, upstream: DovecotServer) -> None:
    alice = RawClient("127.0.0.1", gw.port, timeout=60)
    alice.login("alice", "alice-pw")
    bob = RawClient("127.0.0.1", gw.port, timeout=60)
    bob.login("bob", "bob-pw")
    try:
        assert alice.command(b"A1", b"SELECT INBOX")[-1].startswith(b"A1 OK")
        assert alice.command(b"A2", b"UID STORE 3 +FLAGS (\\Answered)")[-1].startswith(b"A2 OK")
        assert bob.command(b"B1", b"SELECT INBOX")[-1].startswith(b"B1 OK")
        bob.idle()
        gw.wait_for(lambda: gw.gw.sync._watcher_conn is not None, what="the change watcher")

        with frozen(upstream) as resume:
            start = time.monotonic()
            lines = alice.command(b"A3", b"UID STORE 1 +FLAGS (\\Flagged)")
            took = time.monotonic() - start
            answer = lines[-1].decode()
            assert answer.startswith("A3 NO [UNAVAILABLE]"), lines
            assert f"did not answer within {COMMAND_TIMEOUT:.0f} s" in answer and "may still carry" in answer
            readable(answer)
            # bounded by command_timeout (not the freeze, not 300 s)
            assert COMMAND_TIMEOUT - 0.5 <= took < COMMAND_TIMEOUT + 5, took

            # the hoster now counts as down: other requests fail at once, with a reason
            start = time.monotonic()
            lines = alice.command(b"A4", b"UID FETCH 5 (BODY.PEEK[])")
            assert time.monotonic() - start < 2.5
            assert lines[-1].startswith(b"A4 NO [UNAVAILABLE]"), lines
            readable(lines[-1].decode())
            # what the replica holds still works
            assert alice.command(b"A5", b"UID FETCH 1:3 (FLAGS)")[-1].startswith(b"A5 OK")
            time.sleep(2)
            back = resume()

        # a change made at the hoster right after its return reaches the IDLE session
        with session(dovecot_login(upstream)) as direct:
            direct.select("INBOX")
            changed = time.monotonic()
            typ, _ = direct.uid("STORE", "2", "+FLAGS", "(\\Seen \\Deleted)")
            assert typ == "OK"
        _lines, waited = bob.wait_for(rb"^\* 2 FETCH \(.*\\Deleted", timeout=10)
        resumed_after = time.monotonic() - back
        print(f"STORE answered after {took:.1f} s; change reached IDLE {waited:.2f} s after it was made")
        assert waited < 3.0, f"change reached the IDLE session {waited:.1f} s after it was made"
        assert resumed_after < 5.0, resumed_after
        assert gw.call_soon(lambda: not gw.gw.pool.down)
        assert changed - back < 5.0

        # the timed-out STORE is settled: replica and hoster agree on message 1
        def agree() -> bool:
            mb = gw.gw.replica.get("INBOX")
            assert mb is not None
            return ("\\Flagged" in mb.records[1].flags) == ("\\Flagged" in upstream_uid1[0])

        upstream_uid1 = [uid_flags_direct(upstream)]
        gw.wait_for(agree, timeout=15, what="replica and hoster to agree on UID 1")
        bob.done()
    finally:
        alice.close()
        bob.close()


def uid_flags_direct(dc: DovecotServer) -> set[str]:
    with session(dovecot_login(dc)) as direct:
        direct.select("INBOX", readonly=True)
        return uid_flags(direct, "1")[1]


def test_dead_hoster_found_without_traffic_and_work_resumes(
    gw: GatewayHarness, upstream: DovecotServer
) -> None:
    alice = gw.imaplib_login("alice", "alice-pw")
    alice.select("INBOX")
    assert alice.uid("FETCH", "1", "(BODY.PEEK[HEADER])")[0] == "OK"  # a pooled connection
    try:
        with frozen(upstream) as resume:
            start = time.monotonic()
            gw.wait_for(lambda: gw.gw.pool.down, timeout=30, what="the pool to find the hoster down")
            detected = time.monotonic() - start
            bound = PROBE_INTERVAL + pool_module.PROBE_TIMEOUT + pool_module.RECOVERY_PROBE_SECONDS
            print(f"hoster down detected after {detected:.1f} s without traffic")
            assert detected < bound + 4, detected  # within seconds, with a margin for a busy machine
            start = time.monotonic()
            typ, data = alice.uid("FETCH", "4", "(BODY.PEEK[])")
            assert typ == "NO" and time.monotonic() - start < 2.5, data
            readable(data[0].decode())
            back = resume()
        gw.wait_for(lambda: not gw.gw.pool.down, timeout=15, what="the pool to find the hoster again")
        print(f"pool up again {time.monotonic() - back:.2f} s after the hoster resumed")
        assert time.monotonic() - back < 5.0
        typ, data = alice.uid("FETCH", "4", "(BODY.PEEK[])")
        assert typ == "OK", data
    finally:
        with contextlib.suppress(Exception):
            alice.logout()
