"""Claims in the store (team/claims.py): one winner decided by the unique constraint,
the in-memory index coherent with the store, moves, releases, expiry, keywords."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Row, insert, select

from imapgate.store.engine import open_engine
from imapgate.store.schema import claims, mailboxes
from imapgate.team.claims import (
    ClaimRegistry,
    ClaimTaken,
    claimant_keyword,
    claimed_when,
    is_claim_flag,
)
from imapgate.team.users import UserDirectory


@pytest.fixture
def registry(tmp_path: Path) -> ClaimRegistry:
    engine = open_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    users = UserDirectory(engine)
    for name in ("alice", "bob"):
        users.add(name, "pw")
    with engine.begin() as conn:
        conn.execute(insert(mailboxes), [{"id": 1, "name": "INBOX"}, {"id": 2, "name": "Done"}])
    return ClaimRegistry(engine)


def _user_id(reg: ClaimRegistry, name: str) -> int:
    user = UserDirectory(reg.engine).get(name)
    assert user is not None
    return user.id


def _rows(reg: ClaimRegistry) -> set[tuple[int, int, int]]:
    with reg.engine.connect() as conn:
        return {(r.mailbox_id, r.uid, r.user_id) for r in conn.execute(select(claims))}


def test_claim_is_all_or_nothing_and_names_the_holder(registry: ClaimRegistry) -> None:
    alice, bob = _user_id(registry, "alice"), _user_id(registry, "bob")
    registry.claim(1, [5], alice, "alice", expires_after=None, now=100.0)
    with pytest.raises(ClaimTaken) as info:
        registry.claim(1, [4, 5, 6], bob, "bob", expires_after=None)
    assert [(c.uid, c.user) for c in info.value.holders] == [(5, "alice")]
    assert _rows(registry) == {(1, 5, alice)}  # 4 and 6 were not claimed either
    assert registry.get(1, 4) is None and registry.get(1, 6) is None
    claim = registry.get(1, 5)
    assert claim is not None and claim.user == "alice" and claim.claimed_at == 100.0


def test_index_matches_the_store_after_load(registry: ClaimRegistry) -> None:
    alice = _user_id(registry, "alice")
    registry.claim(1, [1, 2, 3], alice, "alice", expires_after=3600, now=1000.0)
    registry.release(1, [2])
    other = ClaimRegistry(registry.engine)
    other.load()
    assert sorted(c.uid for c in other.all()) == [1, 3]
    assert all(c.expires_at == 4600.0 for c in other.all())
    assert _rows(registry) == {(1, 1, alice), (1, 3, alice)}


def test_move_rekeys_claims_and_expiry_lists_old_ones(registry: ClaimRegistry) -> None:
    alice = _user_id(registry, "alice")
    registry.claim(1, [7, 8], alice, "alice", expires_after=60, now=0.0)
    moved = registry.move(1, {7: 70, 9: 90}, 2)
    assert [(c.mailbox_id, c.uid) for c in moved] == [(2, 70)]
    assert registry.get(1, 7) is None and registry.get(2, 70) is not None
    assert _rows(registry) == {(2, 70, alice), (1, 8, alice)}
    assert {c.uid for c in registry.expired(now=61.0)} == {70, 8}
    assert registry.expired(now=59.0) == []


def test_claim_vs_claim_in_threads_has_exactly_one_winner(registry: ClaimRegistry) -> None:
    """Two registries (as two nodes would have) race for the same message, 50 rounds:
    the store's constraint lets exactly one win each time."""
    ids = {n: _user_id(registry, n) for n in ("alice", "bob")}
    regs = {n: ClaimRegistry(registry.engine) for n in ids}
    for round_ in range(50):
        uid = 1000 + round_
        barrier = threading.Barrier(2)
        won: list[str] = []

        def attempt(
            name: str, uid: int = uid, barrier: threading.Barrier = barrier, won: list[str] = won
        ) -> None:
            barrier.wait()
            try:
                regs[name].claim(1, [uid], ids[name], name, expires_after=None)
                won.append(name)
            except ClaimTaken:
                pass

        threads = [threading.Thread(target=attempt, args=(n,)) for n in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, (round_, won)
        assert {r for r in _rows(registry) if r[1] == uid} == {(1, uid, ids[won[0]])}


def test_keywords() -> None:
    assert claimant_keyword("Alice") == "$claimed_alice"
    assert claimant_keyword("j.doe@example.com") == "$claimed_j.doe_example.com"
    assert is_claim_flag("$claimed") and is_claim_flag("$Claimed_bob")
    assert not is_claim_flag("$Junk")
    assert claimed_when(0.0, now=0.0).count(":") == 1
    assert len(claimed_when(0.0, now=10 * 86400.0)) == len("1970-01-01 00:00")


def test_a_node_behind_the_store_never_ends_a_newer_claim(store_url: str) -> None:
    """Two nodes on one store: node B's index still holds alice's claim after node A ended
    it and bob claimed the message anew; B's release (its expiry sweep) must not end bob's
    claim nor journal a release, and B's sweep view comes from the store."""
    engine = open_engine(store_url)
    try:
        users = UserDirectory(engine)
        alice, bob = users.add("alice", "pw"), users.add("bob", "pw")
        with engine.begin() as conn:
            conn.execute(insert(mailboxes), [{"id": 1, "name": "INBOX"}])
        node_a, node_b = ClaimRegistry(engine, shared=True), ClaimRegistry(engine, shared=True)
        node_a.claim(1, [5], alice.id, "alice", expires_after=60, now=1000.0)
        node_b.load()
        assert node_b.get(1, 5) is not None and node_b.get(1, 5).user == "alice"  # type: ignore[union-attr]
        node_a.release(1, [5])
        node_a.claim(1, [5], bob.id, "bob", expires_after=None)
        journaled: list[bool] = []
        assert node_b.release(1, [5], also=lambda conn: journaled.append(True)) == []
        assert not journaled
        assert {(r.uid, r.user_id) for r in _rows_of(engine)} == {(5, bob.id)}
        # The sweep's view is the store's: a claim made on A that B never heard of expires on B.
        node_a.claim(1, [6], alice.id, "alice", expires_after=60, now=1000.0)
        assert [(c.uid, c.user) for c in node_b.expired(2000.0)] == [(6, "alice")]
        assert [c.uid for c in node_b.release(1, [6])] == [6]
        assert {r.uid for r in _rows_of(engine)} == {5}
    finally:
        engine.dispose()


def _rows_of(engine: Engine) -> list[Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(select(claims)))
