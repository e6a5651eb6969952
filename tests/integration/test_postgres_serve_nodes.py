"""Two real ``imapgate serve`` processes on one PostgreSQL in front of one Dovecot (issue 16),
started once for the module: claims across the nodes (the database picks exactly one winner of
a race, the loser gets ``NO [INUSE]``; the claim keywords reach an IDLE session on the other
node through the change bus), then PostgreSQL restarted under load (the last test: it restarts
the session's server)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from tests.conftest import SHARED_PASSWORD, SHARED_USER, MailboxData, require_dovecot
from tests.support.cli import node_configs, run, serving
from tests.support.imap import RawClient
from tests.support.postgres import PostgresDatabase, PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEAM = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


@dataclass
class Cluster:
    dovecot: DovecotServer
    db: PostgresDatabase
    pg: PostgresServer
    ports: tuple[int, int]
    logs: list[Path]

    def client(self, node: int, user: str, folder: bytes = b"INBOX") -> RawClient:
        c = RawClient("127.0.0.1", self.ports[node])
        c.login(user, TEAM[user])
        assert c.command(b"S1", b"SELECT " + folder)[-1].startswith(b"S1 OK")
        return c


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, sample_mailbox: MailboxData, postgres_server: PostgresServer
) -> Iterator[Cluster]:
    require_dovecot()
    tmp = tmp_path_factory.mktemp("serve-nodes")
    dc = DovecotServer(tmp / "dovecot", users={SHARED_USER: SHARED_PASSWORD})
    db = postgres_server.create_database()
    try:
        dc.populate(SHARED_USER, sample_mailbox)
        dc.start()
        ports, cfgs = node_configs(tmp, upstream_port=dc.port, store_url=db.url)
        for user, password in TEAM.items():
            added = run("user", "add", user, "--password-stdin", cfg=cfgs[0], input=password + "\n")
            assert added.returncode == 0, added.stderr
        logs = [tmp / "a.log", tmp / "b.log"]
        with serving(cfgs[0], logs[0], port=ports[0]), serving(cfgs[1], logs[1], port=ports[1]):
            yield Cluster(dc, db, postgres_server, ports, logs)
            for log in logs:
                assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-4000:]
    finally:
        if not postgres_server.running:
            postgres_server.start()
        postgres_server.drop_database(db.name)
        dc.close()


def uids(c: RawClient, criteria: bytes = b"ALL") -> list[int]:
    lines = c.command(b"U1", b"UID SEARCH " + criteria)
    m = re.search(rb"\* SEARCH([\d ]*)", b"".join(lines))
    assert m is not None, lines
    return [int(x) for x in m.group(1).split()]


def claim_rows(db: PostgresDatabase) -> list[tuple[int, str]]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT c.uid, u.name FROM claims c JOIN users u ON u.id = c.user_id ORDER BY c.uid"
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_claim_race_across_nodes_has_one_winner(cluster: Cluster) -> None:
    alice, bob = cluster.client(0, "alice"), cluster.client(1, "bob")
    try:
        contested = uids(alice)[:6]
        assert len(contested) == 6
        answers: dict[str, list[bytes]] = {}
        for uid in contested:
            go = threading.Barrier(2)

            def claim(who: str, c: RawClient, uid: int = uid, go: threading.Barrier = go) -> None:
                go.wait()
                answers[who] = c.command(b"C%d" % uid, b"UID STORE %d +FLAGS ($Claimed)" % uid)

            threads = [
                threading.Thread(target=claim, args=("alice", alice)),
                threading.Thread(target=claim, args=("bob", bob)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            tagged = {who: lines[-1] for who, lines in answers.items()}
            won = [who for who, line in tagged.items() if b" OK" in line]
            assert len(won) == 1, tagged
            lost = "bob" if won == ["alice"] else "alice"
            assert re.match(rb"C\d+ NO \[INUSE\] .*%s" % won[0].encode(), tagged[lost]), tagged
        rows = claim_rows(cluster.db)
        assert sorted(u for u, _ in rows) == sorted(contested)  # one row per message, no double claim
        # Each winner's keywords are on the message as both nodes show it.
        for uid, holder in rows:
            for c in (alice, bob):
                flags = b"".join(c.command(b"F1", b"UID FETCH %d (FLAGS)" % uid))
                assert b"$Claimed" in flags and b"$claimed_" + holder.encode() in flags, (uid, flags)
    finally:
        alice.close()
        bob.close()


def test_claim_reaches_idle_on_the_other_node(cluster: Cluster) -> None:
    alice, carol = cluster.client(0, "alice"), cluster.client(1, "carol")
    try:
        claimed = {u for u, _ in claim_rows(cluster.db)}
        free = [u for u in uids(alice) if u not in claimed][:3]
        assert len(free) == 3
        carol.idle()
        took = []
        for uid in free:
            start = time.monotonic()
            done = alice.command(b"P%d" % uid, b"UID STORE %d +FLAGS.SILENT ($Claimed)" % uid)
            assert done[-1].startswith(b"P%d OK" % uid), done
            carol.wait_for(rb"\* \d+ FETCH \(.*\$Claimed.*\$claimed_alice|\$claimed_alice.*\$Claimed", 5)
            took.append(time.monotonic() - start)
        carol.done()
        print(f"claim pushed to IDLE on the other node: {', '.join(f'{t * 1000:.0f} ms' for t in took)}")
        # Node B knows the claim at once: carol's claim and move of it are refused there.
        uid = free[0]
        refused = carol.command(b"X1", b"UID STORE %d +FLAGS ($Claimed)" % uid)[-1]
        assert refused.startswith(b"X1 NO [INUSE]") and b"alice" in refused, refused
        moved = carol.command(b"X2", b"UID MOVE %d Trash" % uid)[-1]
        assert moved.startswith(b"X2 NO [INUSE]"), moved
        # Released on node A: node B lets carol claim it.
        assert alice.command(b"R1", b"UID STORE %d -FLAGS ($Claimed)" % uid)[-1].startswith(b"R1 OK")
        assert carol.command(b"X3", b"UID STORE %d +FLAGS ($Claimed)" % uid)[-1].startswith(b"X3 OK")
        assert (uid, "carol") in claim_rows(cluster.db)
    finally:
        alice.close()
        carol.close()
