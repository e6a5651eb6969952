"""Two gateway nodes on one PostgreSQL in front of one Dovecot (issue 16): the team's state is
shared, a change on one node reaches IDLE sessions on the other at once, per-user read state
follows the user across nodes.  Each node is a whole gateway (own loop thread, own data_dir)."""

from __future__ import annotations

import imaplib
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from tests.support.cli import node_configs, run, serving
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient, dovecot_login
from tests.support.postgres import PostgresDatabase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEAM = {"alice": "alice-pw", "bob": "bob-pw"}


def node(dc: DovecotServer, db: PostgresDatabase, path: Path, **kw: object) -> GatewayHarness:
    return GatewayHarness(upstream_port=dc.port, data_dir=path, store={"url": db.url}, **kw)  # type: ignore[arg-type]


def client(gw: GatewayHarness, user: str) -> RawClient:
    c = RawClient(gw.host, gw.port)
    c.login(user, TEAM[user])
    return c


def test_two_nodes_share_users_push_and_read_state(
    fresh_dovecot: Callable[..., DovecotServer], postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    dc = fresh_dovecot()
    with node(dc, postgres_db, tmp_path / "a", users=TEAM) as a, node(dc, postgres_db, tmp_path / "b") as b:
        assert a.gw.nodes.shared and b.gw.nodes.shared
        # Users added once (on node a) log in on node b.
        on_b = client(b, "bob")
        on_a = client(a, "alice")
        assert on_b.command(b"S1", b"SELECT INBOX")[-1].startswith(b"S1 OK")
        assert on_a.command(b"S1", b"SELECT INBOX")[-1].startswith(b"S1 OK")

        # Cross-node push: a shared flag set on node a reaches bob's IDLE on node b.
        latencies: list[float] = []
        on_b.idle()
        for uid in range(1, 11):
            start = time.monotonic()
            done = on_a.command(b"F%d" % uid, b"UID STORE %d +FLAGS.SILENT (\\Flagged)" % uid)
            assert done[-1].startswith(b"F%d OK" % uid), done
            on_b.wait_for(rb"\* \d+ FETCH \(.*\\Flagged", timeout=5)
            latencies.append(time.monotonic() - start)
        on_b.done()
        p50 = statistics.median(latencies)
        # Issue target p99 <= 100 ms, measured by benchmarks/store_postgres.py; here: pushed by
        # NOTIFY (the safety-net poll is 30 s), with room for a loaded 2-core CI machine
        # (one sample of 1.4 s seen at load 10, the hoster's STORE on node A waiting).
        assert p50 < 0.5 and max(latencies) < 3.0, latencies
        print(f"cross-node push: p50 {p50 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")

        # Private read state: alice reads an unread message on node a; her session on node b
        # sees it read, bob's does not (the folder's \Seen is private).
        alice_b = client(b, "alice")
        alice_b.command(b"S2", b"SELECT INBOX")
        unseen = re.search(rb"\* SEARCH ((?:\d+ ?)+)", b"".join(on_a.command(b"U1", b"UID SEARCH UNSEEN")))
        assert unseen is not None
        uid = int(unseen.group(1).split()[0])

        def seen_on(c: RawClient, tag: bytes) -> bool:
            lines = c.command(tag, b"UID FETCH %d (FLAGS)" % uid)
            return bool(re.search(rb"FLAGS \([^)]*\\Seen", b"".join(lines)))

        assert not seen_on(alice_b, b"R0") and not seen_on(on_b, b"R1")
        assert on_a.command(b"R2", b"UID STORE %d +FLAGS.SILENT (\\Seen)" % uid)[-1].startswith(b"R2 OK")
        assert seen_on(alice_b, b"R3")
        assert not seen_on(on_b, b"R4")

        # Modseqs from the database: the two nodes never handed out the same one.
        mb_a, mb_b = a.gw.replica.get("INBOX"), b.gw.replica.get("INBOX")
        assert mb_a is not None and mb_b is not None
        b.wait_for(lambda: mb_b.modseq >= mb_a.modseq, what="node b caught up")
        flags_a = {u: (r.flags, r.modseq) for u, r in mb_a.records.items()}
        flags_b = {u: (r.flags, r.modseq) for u, r in mb_b.records.items()}
        assert flags_a == flags_b
        for c in (on_a, on_b, alice_b):
            c.close()


def _append_at_hoster(dc: DovecotServer, subject: str) -> None:
    client = dovecot_login(dc)
    try:
        msg = f"From: x@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
        typ, data = client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), msg)
        assert typ == "OK", data
    finally:
        client.logout()


def _wait_log(log: Path, text: str, timeout: float) -> float:
    start = time.monotonic()
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() - start < timeout, f"{text!r} not in {log}:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)
    return time.monotonic() - start


def test_leader_killed_another_node_takes_over(
    fresh_dovecot: Callable[..., DovecotServer], postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    """Two ``imapgate serve`` processes: one watches the hoster (the leader), the other does
    not; an upstream change reaches IDLE on the follower through the bus; after kill -9 of the
    leader the follower takes over within 10 s and pushes the next upstream change itself."""
    dc = fresh_dovecot()
    ports, cfgs = node_configs(tmp_path, upstream_port=dc.port, store_url=postgres_db.url)
    assert run("user", "add", "bob", "--password-stdin", cfg=cfgs[0], input="bob-pw\n").returncode == 0
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with serving(cfgs[0], logs[0], port=ports[0]) as leader:
        _wait_log(logs[0], "sync leader for", 30)
        with serving(cfgs[1], logs[1], port=ports[1]):
            follower = RawClient("127.0.0.1", ports[1])
            follower.login("bob", "bob-pw")
            follower.command(b"S1", b"SELECT INBOX")
            follower.idle()
            # The leader sees the upstream change; the follower's session hears of it by the bus.
            _append_at_hoster(dc, "while a leads")
            follower.wait_for(rb"\* \d+ EXISTS", timeout=15)
            assert "sync leader for" not in logs[1].read_text()

            leader.kill()  # kill -9: no clean shutdown, no release of anything
            leader.wait(10)
            took = _wait_log(logs[1], "sync leader for", 10)
            _append_at_hoster(dc, "after the leader died")
            _, pushed = follower.wait_for(rb"\* \d+ EXISTS", timeout=15)
            print(f"failover: {took:.1f} s to take over, {pushed:.2f} s from the APPEND to the push")
            follower.done()
            follower.close()
