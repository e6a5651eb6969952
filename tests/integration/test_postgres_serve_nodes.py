"""Two real ``imapgate serve`` processes on one PostgreSQL in front of one Dovecot (issue 16),
started once for the module: claims across the nodes (the database picks exactly one winner of
a race, the loser gets ``NO [INUSE]``; the claim keywords reach an IDLE session on the other
node through the change bus), then PostgreSQL restarted under load (the last test: it restarts
the session's server)."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from tests.conftest import SHARED_PASSWORD, SHARED_USER, MailboxData, require_dovecot
from tests.support.cli import node_configs, run, serving
from tests.support.imap import RawClient, dovecot_login
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
    #: The nodes' config files (each node's data_dir beside its own).
    cfgs: list[Path] = field(default_factory=list)

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
            yield Cluster(dc, db, postgres_server, ports, logs, cfgs)
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


def test_each_node_has_its_own_index_and_content_cache(cluster: Cluster) -> None:
    """``imapgate index status`` and ``check`` on each node read that node's local file in its
    data_dir; bodies fetched through either node are cached there, never in PostgreSQL."""
    for node, cfg in enumerate(cluster.cfgs):
        local = cfg.parent / "imapgate-data" / "node-cache.sqlite3"
        assert local.exists(), local
        deadline = time.monotonic() + 120
        while True:
            status = run("index", "status", cfg=cfg)
            assert status.returncode == 0, status.stderr
            total = re.search(r"^(\d+) of (\d+) messages indexed", status.stdout, re.M)
            assert total is not None, status.stdout
            if total.group(1) == total.group(2) != "0":
                break
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.5)
        check = run("check", cfg=cfg)
        assert f"this node's, in {local}" in check.stdout, check.stdout
        assert f"{total.group(1)} of {total.group(2)} messages indexed (100%)" in check.stdout, check.stdout
        c = cluster.client(node, "bob")
        try:
            assert c.command(b"F1", b"UID FETCH 1:3 (BODY.PEEK[])")[-1].startswith(b"F1 OK")
        finally:
            c.close()
    with cluster.db.connect() as conn:
        for table in ("content", "search_docs"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[arg-type]
            assert row is not None and row[0] == 0, table
    for cfg in cluster.cfgs:
        local = cfg.parent / "imapgate-data" / "node-cache.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{local}?mode=ro", uri=True)) as db:
            assert db.execute("SELECT count(*) FROM content").fetchone()[0] > 0, local


@dataclass
class Worker:
    """One client looping STORE and APPEND on one node; what it was told, command by command."""

    name: str
    node: int
    user: str
    uids: list[int]
    stored: set[int] = field(default_factory=set)  # UIDs whose STORE was answered OK
    appended: set[str] = field(default_factory=set)  # Message-IDs whose APPEND was answered OK
    tried: set[str] = field(default_factory=set)  # every Message-ID sent
    refused: list[bytes] = field(default_factory=list)  # NO [UNAVAILABLE] answers
    other: list[bytes] = field(default_factory=list)  # anything else: must stay empty
    ok_after: int = 0  # OK answers after the database came back

    private: bool = False  # sets the user's own \Seen (read state: in the store alone)

    @property
    def keyword(self) -> bytes:
        return b"\\Seen" if self.private else b"$" + self.name.encode()


def _work(c: RawClient, w: Worker, stop: threading.Event, back: threading.Event) -> None:
    n = 0
    try:
        while not stop.is_set():
            n += 1
            tag = b"W%d" % n
            if n % 3 == 0:
                mid = f"<{w.name}-{n}@restart.test>"
                head = f"From: x@example.net\r\nSubject: {w.name} {n}\r\nMessage-ID: {mid}\r\n"
                msg = (head + "\r\nbody\r\n").encode()
                w.tried.add(mid)
                c.send(tag + b" APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
                answer = c.read_until_tagged(tag)[-1]
            else:
                uid = w.uids[n % len(w.uids)]
                answer = c.command(tag, b"UID STORE %d +FLAGS.SILENT (%s)" % (uid, w.keyword))
                answer = answer[-1]
            if answer.startswith(tag + b" OK"):
                if n % 3 == 0:
                    w.appended.add(mid)
                else:
                    w.stored.add(uid)
                if back.is_set():
                    w.ok_after += 1
            elif answer.startswith(tag + b" NO [UNAVAILABLE]"):
                w.refused.append(answer)
                time.sleep(0.1)  # a client backing off
            else:
                w.other.append(answer)
    except Exception as exc:  # a hang (timeout) or a dropped connection
        w.other.append(repr(exc).encode())
    finally:
        c.close()


def test_postgres_restarted_under_load(cluster: Cluster) -> None:
    """Clients on both nodes store flags and append while PostgreSQL is stopped and started:
    while it is away they get NO [UNAVAILABLE] (never a hang, never an internal error), the
    nodes reconnect by themselves, no acknowledged change is lost and no mail is duplicated."""
    probe = cluster.client(0, "carol")
    claimed = {u for u, _ in claim_rows(cluster.db)}
    free = [u for u in uids(probe) if u not in claimed]
    workers = [
        Worker(f"w{i}", i % 2, ("alice", "bob", "alice", "bob")[i], free[i * 5 : i * 5 + 5]) for i in range(4)
    ]
    unseen = free[20:30]  # carol's own read state: unread, then set by the load
    ids = b",".join(b"%d" % u for u in unseen)
    assert probe.command(b"R1", b"UID STORE %s -FLAGS.SILENT (\\Seen)" % ids)[-1].startswith(b"R1 OK")
    assert uids(probe, b"UID %s UNSEEN" % ids) == unseen
    probe.close()
    workers.append(Worker("w4", 1, "carol", unseen, private=True))
    stop, back = threading.Event(), threading.Event()
    clients = [cluster.client(w.node, w.user) for w in workers]  # logged in before the outage
    threads = [
        threading.Thread(target=_work, args=(c, w, stop, back)) for c, w in zip(clients, workers, strict=True)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)  # load before the outage
        cluster.pg.stop("fast")
        time.sleep(3.0)  # the database is away for a while
        cluster.pg.start()
        back.set()
        deadline = time.monotonic() + 60
        while any(w.ok_after < 3 for w in workers) and not any(w.other for w in workers):
            assert time.monotonic() < deadline, [(w.name, w.ok_after, w.refused[-1:]) for w in workers]
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert all(not w.other for w in workers), [(w.name, w.other) for w in workers]
    assert any(w.refused for w in workers), "nobody noticed the database was away"
    # Nothing acknowledged is lost, at the hoster and through both nodes; nothing duplicated.
    hoster = dovecot_login(cluster.dovecot)
    try:
        hoster.select("INBOX")
        for w in workers:
            for uid in w.stored if not w.private else ():
                typ, data = hoster.uid("FETCH", str(uid), "(FLAGS)")
                assert typ == "OK" and w.keyword in data[0], (w.name, uid, data)  # type: ignore[operator]
            for mid in w.tried:
                typ, data = hoster.uid("SEARCH", "HEADER", "Message-ID", mid)
                found = data[0].split() if data and data[0] else []
                assert len(found) == (1 if mid in w.appended else len(found)) and len(found) <= 1, (
                    mid,
                    found,
                )
    finally:
        hoster.logout()
    for node, user in ((0, "alice"), (1, "alice"), (0, "carol"), (1, "carol")):
        c = cluster.client(node, user)
        try:
            for w in workers:
                if w.private and user != w.user:
                    continue
                for uid in w.stored:
                    flags = b"".join(c.command(b"F1", b"UID FETCH %d (FLAGS)" % uid))
                    assert w.keyword in flags, (node, w.name, uid, flags)
                for mid in w.appended:
                    found = uids(c, f"HEADER Message-ID {mid}".encode())
                    assert len(found) == 1, (node, mid, found)
        finally:
            c.close()
    print({w.name: (len(w.stored), len(w.appended), len(w.refused)) for w in workers})
