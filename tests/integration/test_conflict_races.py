"""Conflicts without claims (issue 12): two members, two connections, the same
message at the same moment, against the real Dovecot behind the gateway.

Each round appends a fresh message at Dovecot, lets both sessions see it, then
runs the two commands from two threads released by one barrier.  Checked every
round: exactly one winner where only one can win, the loser's answer is the
EXPUNGE and ``NO [EXPUNGEISSUED]`` naming who did what (gateway/departures.py),
and Dovecot itself (asked directly, by Message-ID) holds the message exactly as
often as the winners' answers say: never lost, never duplicated.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from imapgate.demo import DovecotServer
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient, ok, session, upstream_login

ROUNDS = 50
FOLDERS = ("INBOX", "RaceA", "RaceB")
CLOCK = rb"\d\d:\d\d"
_EXPUNGE = re.compile(rb"\* \d+ EXPUNGE")


@dataclass
class Race:
    """The gateway, one raw connection per member with INBOX selected, and a direct
    connection to Dovecot (the check of what really happened)."""

    harness: GatewayHarness
    upstream: DovecotServer
    alice: RawClient
    bob: RawClient
    n: int = 0

    def fresh_message(self) -> tuple[int, str]:
        """A new message in INBOX, known to both sessions: (UID, Message-ID)."""
        self.n += 1
        mid = f"<race-{self.n}-{uuid.uuid4().hex}@example.org>"
        body = f"From: x@example.org\r\nSubject: race {self.n}\r\nMessage-ID: {mid}\r\n\r\nround {self.n}\r\n"
        with session(upstream_login(self.upstream.host, self.upstream.port)) as c:
            data = ok(c.append("INBOX", "", None, body.encode()))
        m = re.search(rb"APPENDUID \d+ (\d+)", data[0])
        assert m, data
        uid = int(m.group(1))

        def known() -> bool:
            mb = self.harness.gw.replica.get("INBOX")
            return mb is not None and uid in mb.records

        self.harness.wait_for(known, what=f"UID {uid} in the replica")
        for c in (self.alice, self.bob):
            assert c.command(b"N", b"NOOP")[-1].startswith(b"N OK")
        return uid, mid

    def at_dovecot(self, mid: str) -> dict[str, int]:
        """How many copies of ``mid`` each folder holds at Dovecot (asked directly)."""
        counts: dict[str, int] = {}
        with session(upstream_login(self.upstream.host, self.upstream.port)) as c:
            for folder in FOLDERS:
                ok(c.select(folder, readonly=True))
                data = ok(c.uid("SEARCH", None, "HEADER", "Message-ID", mid))
                counts[folder] = len((data[0] or b"").split())
        return counts

    def both(self, a: bytes, b: bytes) -> tuple[list[bytes], list[bytes]]:
        """alice sends ``a`` and bob ``b`` at the same moment; their full answers."""
        barrier = threading.Barrier(2)
        out: dict[str, list[bytes]] = {}

        def run(name: str, client: RawClient, text: bytes) -> None:
            barrier.wait()
            out[name] = client.command(name.encode()[:1].upper(), text)

        threads = [
            threading.Thread(target=run, args=("alice", self.alice, a)),
            threading.Thread(target=run, args=("bob", self.bob, b)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return out["alice"], out["bob"]


def _ok(lines: list[bytes]) -> bool:
    return lines[-1].split(b" ", 2)[1] == b"OK"


def _refused(lines: list[bytes], text: bytes) -> None:
    """``lines`` end with the EXPUNGE of the message and the NO naming why."""
    tagged = lines[-1].rstrip(b"\r\n")
    assert re.fullmatch(rb"[A-Z] NO \[EXPUNGEISSUED\] " + text, tagged), lines
    assert any(_EXPUNGE.match(ln) for ln in lines[:-1]), lines


@pytest.fixture
def race(upstream: DovecotServer, gateway: GatewayHarness, team: dict[str, str]) -> Iterator[Race]:
    with session(upstream_login(upstream.host, upstream.port)) as c:
        for folder in FOLDERS[1:]:
            typ, data = c.create(folder)
            # A Dovecot reused by fresh_dovecot may still have it from an earlier test.
            assert typ == "OK" or b"ALREADYEXISTS" in data[0], data
    gateway.wait_for(lambda: all(gateway.gw.replica.get(f) for f in FOLDERS), what="race folders")
    clients = []
    for user in ("alice", "bob"):
        c = RawClient(gateway.host, gateway.port)
        c.login(user, team[user])
        assert c.command(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
        clients.append(c)
    try:
        yield Race(gateway, upstream, clients[0], clients[1])
    finally:
        for c in clients:
            c.close()


def _against_alices_move(r: Race, bob: bytes) -> tuple[str, list[bytes]]:
    """A fresh message; alice moves it to RaceA while bob sends ``bob % uid``.  The
    move always wins; bob either came first (OK) or is told that alice moved it.
    Returns the Message-ID and bob's answer."""
    uid, mid = r.fresh_message()
    a, b = r.both(b"UID MOVE %d RaceA" % uid, bob % uid)
    assert _ok(a), a
    if not _ok(b):
        _refused(b, b"alice moved this message to RaceA at " + CLOCK)
    return mid, b


def _rounds(race: Race, one: Callable[[Race], None]) -> None:
    for _ in range(ROUNDS):
        one(race)


def test_move_vs_move_one_winner_the_other_told_who_moved_it_where(race: Race) -> None:
    winners = {"alice": 0, "bob": 0}

    def one(r: Race) -> None:
        uid, mid = r.fresh_message()
        a, b = r.both(b"UID MOVE %d RaceA" % uid, b"UID MOVE %d RaceB" % uid)
        assert _ok(a) != _ok(b), (a, b)
        winner, dest, loser = ("alice", "RaceA", b) if _ok(a) else ("bob", "RaceB", a)
        winners[winner] += 1
        _refused(loser, winner.encode() + b" moved this message to " + dest.encode() + b" at " + CLOCK)
        assert r.at_dovecot(mid) == {"INBOX": 0, "RaceA": int(dest == "RaceA"), "RaceB": int(dest == "RaceB")}

    _rounds(race, one)
    assert sum(winners.values()) == ROUNDS


def test_move_vs_store_the_store_lands_before_the_move_or_is_refused(race: Race) -> None:
    def one(r: Race) -> None:
        mid, b = _against_alices_move(r, b"UID STORE %d +FLAGS (\\Flagged)")
        assert r.at_dovecot(mid) == {"INBOX": 0, "RaceA": 1, "RaceB": 0}
        if _ok(b):
            # Stored first: the flag travelled with the move.
            with session(upstream_login(r.upstream.host, r.upstream.port)) as c:
                ok(c.select("RaceA", readonly=True))
                found = ok(c.uid("SEARCH", None, "FLAGGED", "HEADER", "Message-ID", mid))
                assert found[0], f"bob's STORE answered OK but {mid} is not \\Flagged at Dovecot"

    _rounds(race, one)


def test_move_vs_copy_a_copy_of_a_moved_message_is_refused(race: Race) -> None:
    def one(r: Race) -> None:
        mid, b = _against_alices_move(r, b"UID COPY %d RaceB")
        # Copied first: two messages, both answered OK; else only the moved one.
        assert r.at_dovecot(mid) == {"INBOX": 0, "RaceA": 1, "RaceB": int(_ok(b))}

    _rounds(race, one)


def test_expunge_vs_move_one_winner(race: Race) -> None:
    def one(r: Race) -> None:
        uid, mid = r.fresh_message()
        lines = r.alice.command(b"D", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        assert lines[-1].startswith(b"D OK"), lines
        assert r.bob.command(b"N", b"NOOP")[-1].startswith(b"N OK")
        a, b = r.both(b"UID EXPUNGE %d" % uid, b"UID MOVE %d RaceB" % uid)
        assert _ok(a) != _ok(b), (a, b)
        if _ok(a):
            _refused(b, b"this message is gone: alice deleted it at " + CLOCK)
            assert r.at_dovecot(mid) == {"INBOX": 0, "RaceA": 0, "RaceB": 0}
        else:
            _refused(a, b"bob moved this message to RaceB at " + CLOCK)
            assert r.at_dovecot(mid) == {"INBOX": 0, "RaceA": 0, "RaceB": 1}

    _rounds(race, one)


def test_fetch_after_move_gets_expunge_and_who_moved_it(race: Race) -> None:
    def one(r: Race) -> None:
        mid, b = _against_alices_move(r, b"UID FETCH %d (BODY.PEEK[])")
        if _ok(b):
            # Read before the move: the whole message.
            assert any(mid.encode() in ln for ln in b), b
        # Strictly after the move: the refusal with its reason if bob read first and has
        # not been told yet; told already (the refusal, or an EXPUNGE in the answer of his
        # UID FETCH: RFC 3501 §7.4.1 allows it there), a UID FETCH naming no message of
        # his: OK, nothing.
        uid = int(re.findall(rb"UID (\d+)", b"".join(b))[0]) if _ok(b) else 0
        told = any(re.fullmatch(rb"\* \d+ EXPUNGE\r\n", ln) for ln in b)
        if uid:
            lines = r.bob.command(b"F", b"UID FETCH %d (BODY.PEEK[])" % uid)
            if told:
                assert lines == [b"F OK FETCH completed\r\n"], lines
            else:
                _refused(lines, b"alice moved this message to RaceA at " + CLOCK)
        assert r.at_dovecot(mid) == {"INBOX": 0, "RaceA": 1, "RaceB": 0}

    _rounds(race, one)


def test_a_partly_gone_move_moves_the_rest_and_warns(race: Race) -> None:
    """Decision (docs/architecture.md): what can be done is done and answered OK;
    the gone part is named in an untagged NO [EXPUNGEISSUED] first."""
    (u1, m1), (u2, m2) = race.fresh_message(), race.fresh_message()
    assert race.alice.command(b"A", b"UID MOVE %d RaceA" % u1)[-1].startswith(b"A OK")
    lines = race.bob.command(b"B", b"UID MOVE %d,%d RaceB" % (u1, u2))
    assert lines[-1].startswith(b"B OK MOVE completed"), lines
    warning = re.compile(
        rb"\* NO \[EXPUNGEISSUED\] 1 of 2 messages is gone: alice moved 1 to RaceA at " + CLOCK + rb"\r\n"
    )
    assert any(warning.fullmatch(ln) for ln in lines), lines
    assert any(re.match(rb"\* OK \[COPYUID \d+ %d \d+\]" % u2, ln) for ln in lines), lines
    assert race.at_dovecot(m1) == {"INBOX": 0, "RaceA": 1, "RaceB": 0}
    assert race.at_dovecot(m2) == {"INBOX": 0, "RaceA": 0, "RaceB": 1}


def test_unchangedsince_after_a_colleagues_change_is_modified(race: Race) -> None:
    """RFC 7162 across users: bob's \\Flagged after alice's modseq makes her
    conditional STORE fail with [MODIFIED]; bob reading it (private \\Seen) does not."""
    uid, _ = race.fresh_message()
    for c in (race.alice, race.bob):
        assert c.command(b"E", b"ENABLE CONDSTORE")[-1].startswith(b"E OK")
    lines = race.alice.command(b"F", b"UID FETCH %d (MODSEQ)" % uid)
    before = int(re.findall(rb"MODSEQ \((\d+)\)", b"".join(lines))[0])
    assert race.bob.command(b"R", b"UID FETCH %d (BODY[])" % uid)[-1].startswith(b"R OK")  # \Seen for bob
    lines = race.alice.command(b"A", b"UID STORE %d (UNCHANGEDSINCE %d) +FLAGS (\\Answered)" % (uid, before))
    assert lines[-1].startswith(b"A OK STORE completed"), lines  # not MODIFIED: bob's read is his
    lines = race.alice.command(b"F", b"UID FETCH %d (MODSEQ)" % uid)
    before = int(re.findall(rb"MODSEQ \((\d+)\)", b"".join(lines))[0])
    assert race.bob.command(b"T", b"UID STORE %d +FLAGS (\\Flagged)" % uid)[-1].startswith(b"T OK")
    lines = race.alice.command(b"A", b"UID STORE %d (UNCHANGEDSINCE %d) +FLAGS (\\Deleted)" % (uid, before))
    assert lines[-1].startswith(b"A OK [MODIFIED %d]" % uid), lines
    with session(upstream_login(race.upstream.host, race.upstream.port)) as c:
        ok(c.select("INBOX", readonly=True))
        flags = b"".join(x for x in ok(c.uid("FETCH", str(uid), "(FLAGS)")) if isinstance(x, bytes))
    assert b"\\Flagged" in flags and b"\\Answered" in flags and b"\\Deleted" not in flags, flags
