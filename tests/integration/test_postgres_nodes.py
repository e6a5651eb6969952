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
from typing import Any

import pytest
from sqlalchemy import text

from imapgate.demo import DovecotServer, SampleMessage
from imapgate.gateway.admin import AdminService
from imapgate.gateway.mailservice import MailService
from imapgate.index import indexer
from imapgate.store.engine import LOCAL_FILE
from tests.conftest import SHARED_PASSWORD, SHARED_USER
from tests.support.cli import node_configs, run, serving
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient, dovecot_login
from tests.support.postgres import PostgresDatabase
from tests.support.search_corpus import RawSearch, crafted, generated, key_criteria

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
        # Across nodes the change arrives by the bus, asynchronously (p99 target 100 ms): wait.
        deadline = time.monotonic() + 5
        tag = 0
        while not seen_on(alice_b, b"R3%d" % tag):
            assert time.monotonic() < deadline, "alice's \\Seen from node a never reached node b"
            tag += 1
            time.sleep(0.02)
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


class _UpstreamSearches:
    """Counts the searches the gateways of this process send to the hoster."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = MailService._search_upstream

        async def counted(service: MailService, *args: Any, **kwargs: Any) -> set[int]:
            self.calls += 1
            return await original(service, *args, **kwargs)

        monkeypatch.setattr(MailService, "_search_upstream", counted)


#: (key, string) pairs of at least 3 characters (shorter ones always go to the hoster).
SEARCHES = [
    (field, value)
    for field in ("SUBJECT", "BODY", "TEXT", "FROM")
    for value in ("rechnung", "Grüße", "angebot", "example.com", "meeting", "Lieferung", "Käse")
]


def _table_rows(db: PostgresDatabase, table: str) -> int:
    with db.connect() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_each_node_searches_and_caches_in_its_own_data_dir(
    fresh_dovecot: Callable[..., DovecotServer],
    postgres_db: PostgresDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16: the content cache and the search index are per node, in each node's data_dir.
    On both nodes SUBJECT/BODY/TEXT/FROM give Dovecot's hits from the node's own index (the
    hoster is not asked); mail appended through node A becomes searchable on node B (B's
    indexer heard of it through the change bus); the shared database holds no content and no
    index rows."""
    corpus = crafted() + generated(60, seed=16)
    dc = fresh_dovecot(folders={"INBOX": [SampleMessage(raw) for raw in corpus]})
    with node(dc, postgres_db, tmp_path / "a", users=TEAM) as a, node(dc, postgres_db, tmp_path / "b") as b:
        for gw in (a, b):
            index = gw.gw.index
            assert index is not None
            gw.wait_for(index.complete, timeout=120, what="the node's index to cover every folder")
            assert gw.gw.local_engine is not None
            assert str(gw.gw.local_engine.url).endswith(str(gw.config.store.data_dir / LOCAL_FILE))
        searches = _UpstreamSearches(monkeypatch)
        direct = RawSearch(dc.host, dc.port, SHARED_USER, SHARED_PASSWORD)
        on = {n: RawSearch("127.0.0.1", gw.port, "alice", TEAM["alice"]) for n, gw in (("a", a), ("b", b))}
        hits = 0
        for field, value in SEARCHES:
            crit = key_criteria(field, value)
            expected = direct.search(crit)
            assert isinstance(expected, set)
            hits += len(expected)
            for name, c in on.items():
                assert c.search(crit) == expected, (name, field, value)
        assert hits > 0  # the strings do occur in the corpus
        assert searches.calls == 0, "a search went to the hoster"
        # What `imapgate index status` shows on each node: its own index covers INBOX.
        for gw in (a, b):
            status = AdminService(gw.config).index_status()
            inbox = next(r for r in status.folders if r.name == "INBOX")
            assert inbox.indexed == inbox.messages == len(corpus), inbox
            assert status.sizes["docs"] >= len(corpus)

        # New mail through node A: node B indexes it from the bus and answers from its index.
        word = "zaunkoenigfeder"
        msg = f"From: a@example.net\r\nSubject: {word} report\r\n\r\nthe {word} body\r\n".encode()
        appender = client(a, "alice")
        appender.send(b"P1 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        answer = appender.read_until_tagged(b"P1")[-1]
        assert answer.startswith(b"P1 OK"), answer
        appender.close()
        direct.command(b"NOOP")  # the hoster's session takes in the new message
        uid_at_hoster = direct.search(key_criteria("BODY", word))
        assert isinstance(uid_at_hoster, set) and len(uid_at_hoster) == 1
        (uid,) = uid_at_hoster
        index_b, mb_b = b.gw.index, b.gw.replica.get("INBOX")
        assert index_b is not None and mb_b is not None
        b.wait_for(lambda: uid in (index_b.covered(mb_b, 2) or ()), timeout=30, what="node b indexing")
        on["b"].command(b"NOOP")  # its session is told of the new message (EXISTS)
        for field in ("SUBJECT", "BODY", "TEXT"):
            assert on["b"].search(key_criteria(field, word)) == {uid}, field
        assert searches.calls == 0
        for c in (*on.values(), direct):
            c.close()

        # Content fetched through each node is cached in that node's file only.
        for gw in (a, b):
            c = client(gw, "bob")
            c.command(b"S1", b"SELECT INBOX")
            assert c.command(b"F1", b"UID FETCH 1:5 (BODY.PEEK[] ENVELOPE)")[-1].startswith(b"F1 OK")
            c.close()
            assert gw.gw.content.engine is gw.gw.local_engine
            assert gw.gw.content.stored_bytes() > 0
        assert _table_rows(postgres_db, "content") == 0
        assert _table_rows(postgres_db, "search_docs") == 0
        assert _table_rows(postgres_db, "search_folders") == 0

        # `imapgate index rebuild` on node B retires B's index only; A's stays whole.
        assert AdminService(b.config).rebuild_index("INBOX") == 1
        after = {n: AdminService(gw.config).index_status() for n, gw in (("a", a), ("b", b))}
        inbox = {n: next(r for r in st.folders if r.name == "INBOX") for n, st in after.items()}
        assert inbox["a"].indexed == inbox["a"].messages == len(corpus) + 1, inbox
        assert inbox["b"].indexed < inbox["b"].messages, inbox


def test_expunge_and_folder_delete_on_one_node_clean_the_others_cache_and_index(
    fresh_dovecot: Callable[..., DovecotServer],
    postgres_db: PostgresDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Node B hears of node A's expunge and folder delete through the bus: the expunged message
    leaves B's index, the deleted folder's items leave B's content cache (no foreign key
    cascades in a node-local file) and its index generation is retired and purged."""
    monkeypatch.setattr(indexer, "NEW_FOLDER_DELAY", 0.2)
    monkeypatch.setattr(indexer, "RECHECK_SECONDS", 0.5)
    dc = fresh_dovecot(folders={"INBOX": [SampleMessage(raw) for raw in generated(20, seed=3)]})
    with node(dc, postgres_db, tmp_path / "a", users=TEAM) as a, node(dc, postgres_db, tmp_path / "b") as b:
        on_a, on_b = client(a, "alice"), client(b, "bob")
        assert on_a.command(b"C1", b"CREATE Temp")[-1].startswith(b"C1 OK")
        word = "kreuzschnabel"
        msg = f"From: a@example.net\r\nSubject: {word}\r\n\r\n{word}\r\n".encode()
        for tag in (b"P1", b"P2"):
            on_a.send(tag + b" APPEND Temp {%d+}\r\n" % len(msg) + msg + b"\r\n")
            assert on_a.read_until_tagged(tag)[-1].startswith(tag + b" OK")
        index_b = b.gw.index
        assert index_b is not None
        b.wait_for(index_b.complete, timeout=60, what="node b indexing Temp and INBOX")
        temp = b.gw.replica.get("Temp")
        assert temp is not None and temp.exists == 2
        temp_id = temp.id
        # Node B caches Temp's bodies in its own file.
        assert on_b.command(b"S1", b"SELECT Temp")[-1].startswith(b"S1 OK")
        assert on_b.command(b"F1", b"UID FETCH 1:* (BODY.PEEK[])")[-1].startswith(b"F1 OK")
        assert _local_rows(b, "content", temp_id) > 0

        # An expunge through A leaves B's index (B answers SEARCH without it).
        assert on_a.command(b"S2", b"SELECT Temp")[-1].startswith(b"S2 OK")
        assert on_a.command(b"E1", b"UID STORE 1 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"E1 OK")
        assert on_a.command(b"E2", b"UID EXPUNGE 1")[-1].startswith(b"E2 OK")
        b.wait_for(lambda: 1 not in (index_b.covered(temp, 2) or {1}), what="node b dropping uid 1")
        lines = on_b.command(b"S3", b"UID SEARCH BODY " + word.encode())
        assert lines[-1].startswith(b"S3 OK") and b"* SEARCH 2\r\n" in lines, lines

        # A folder delete through A: B's cached items and index of the folder go.
        assert on_b.command(b"S4", b"SELECT INBOX")[-1].startswith(b"S4 OK")
        assert on_a.command(b"S5", b"SELECT INBOX")[-1].startswith(b"S5 OK")
        assert on_a.command(b"D1", b"DELETE Temp")[-1].startswith(b"D1 OK")
        b.wait_for(lambda: b.gw.replica.get("Temp") is None, what="node b hearing of the delete")
        b.wait_for(lambda: _local_rows(b, "content", temp_id) == 0, what="node b purging Temp's content")
        b.wait_for(lambda: _local_rows(b, "search_folders", temp_id) == 0, what="node b purging Temp's index")
        on_a.close()
        on_b.close()


def _local_rows(gw: GatewayHarness, table: str, mailbox_id: int) -> int:
    engine = gw.gw.local_engine
    assert engine is not None
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE mailbox_id = :m"), {"m": mailbox_id}
            ).scalar_one()
        )


def test_login_failures_on_one_node_count_on_the_other(
    fresh_dovecot: Callable[..., DovecotServer], postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    """One throttle for the nodes behind a balancer: wrong passwords for alice on node a lock
    her out on node b too (b never saw a failure itself); bob's success on b clears the
    failures a counted for him."""
    dc = fresh_dovecot()
    limits = {"max_failed_logins": 3}
    with (
        node(dc, postgres_db, tmp_path / "a", users=TEAM, server=limits) as a,
        node(dc, postgres_db, tmp_path / "b", server=limits) as b,
    ):
        for gw in (a, b):
            gw.gw.auth.failure_delay = 0.0

        def login(gw: GatewayHarness, user: str, password: str) -> bytes:
            c = RawClient(gw.host, gw.port)
            try:
                return c.command(b"L1", f"LOGIN {user} {password}".encode())[-1]
            finally:
                c.close()

        def until(cond: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 5
            while not cond():
                assert time.monotonic() < deadline, "the other node did not hear of it"
                time.sleep(0.02)

        for _ in range(3):
            assert b"AUTHENTICATIONFAILED" in login(a, "alice", "wrong")
        until(lambda: b.gw.auth.throttle.retry_after("alice", "127.0.0.1") > 0)
        assert re.match(rb"L1 NO \[UNAVAILABLE\] too many failed logins", login(b, "alice", "alice-pw"))

        for _ in range(2):
            assert b"AUTHENTICATIONFAILED" in login(a, "bob", "wrong")
        time.sleep(0.3)  # both failures heard on b (not locked: the limit is 3)
        assert login(b, "bob", "bob-pw").startswith(b"L1 OK")
        # Cleared on a by b's success: two more failures there stay under the limit.
        until(lambda: a.gw.auth.throttle.is_trusted("bob", "127.0.0.1"))
        for _ in range(2):
            assert b"AUTHENTICATIONFAILED" in login(a, "bob", "wrong")
        assert a.gw.auth.throttle.retry_after("bob", "127.0.0.1") == 0
        assert login(a, "bob", "bob-pw").startswith(b"L1 OK")
