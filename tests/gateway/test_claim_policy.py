"""The claims' conflict check (gateway/claim_policy.py) without a hoster: which
operations a colleague's claim forbids, the refusal texts, and that the check is
one lookup per message (a folder without claims costs nothing)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sqlalchemy import insert

from imapgate.gateway import operations as ops
from imapgate.gateway.claim_policy import ClaimConflict, ClaimPolicy, forbids, refusal_text
from imapgate.gateway.policy import SYSTEM, Actor, Policy
from imapgate.replica.mailbox import MailboxIndex
from imapgate.store.engine import open_engine
from imapgate.store.schema import mailboxes
from imapgate.team.claims import Claim, ClaimRegistry
from imapgate.team.users import UserDirectory

MB = MailboxIndex(
    id=1,
    name="INBOX",
    delimiter="/",
    attributes=(),
    uidvalidity=1,
    uidnext=1,
    modseq=1,
    shared_highest=1,
    upstream_modseq=0,
    seen_mode=None,
    synced=True,
)
Setup = tuple[ClaimPolicy, Actor, Actor]


@pytest.fixture
def policy(tmp_path: Path) -> Setup:
    engine = open_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    users = UserDirectory(engine)
    alice, bob = users.add("alice", "pw"), users.add("bob", "pw")
    with engine.begin() as conn:
        conn.execute(insert(mailboxes), [{"id": 1, "name": "INBOX"}])
    reg = ClaimRegistry(engine)
    reg.claim(1, [5, 6], alice.id, "alice", expires_after=None)
    pol = ClaimPolicy(Policy(), reg, lambda name: 1 if name == "INBOX" else None)
    return pol, Actor(alice.id, "alice"), Actor(bob.id, "bob")


@pytest.mark.parametrize(
    ("op", "forbidden"),
    [
        (ops.Move(MB, [5], "Archive"), True),
        (ops.Copy(MB, [5], "Archive"), False),
        (ops.Expunge(MB, [5]), True),
        (ops.Delete("INBOX"), True),
        (ops.StoreFlags(MB, [5], "add", ("\\Deleted",)), True),
        (ops.StoreFlags(MB, [5], "remove", ("\\Deleted",)), False),
        (ops.StoreFlags(MB, [5], "add", ("\\Flagged", "\\Seen", "$Junk")), False),
        (ops.StoreFlags(MB, [5], "remove", ("$claimed",)), True),
        (ops.StoreFlags(MB, [5], "add", ("$Claimed",)), True),
        (ops.StoreFlags(MB, [5], "add", ("$claimed_bob",)), True),
        (ops.StoreFlags(MB, [5], "set", ("\\Seen",)), True),
        (ops.MarkSeen(MB, [5]), False),
    ],
)
def test_what_a_colleagues_claim_forbids(policy: Setup, op: ops.Operation[object], forbidden: bool) -> None:
    pol, alice, bob = policy
    assert forbids(op) is forbidden
    pol.check_conflicts(alice, "INBOX", [5], op)  # the claimant: always fine
    pol.check_conflicts(SYSTEM, "INBOX", [5], op)  # the gateway/CLI: always fine
    pol.check_conflicts(bob, "INBOX", [7], op)  # an unclaimed message: fine
    if not forbidden:
        pol.check_conflicts(bob, "INBOX", [4, 5], op)
        return
    with pytest.raises(ClaimConflict) as info:
        pol.check_conflicts(bob, "INBOX", [4, 5], op)
    assert info.value.code == "INUSE" and info.value.uids == (5,)
    assert re.fullmatch(
        r"alice is handling this message \(claimed \d\d:\d\d\)\. Ask alice, or an admin can release it\.",
        info.value.text,
    )


def test_several_messages_name_how_many_by_whom() -> None:
    now = time.time()
    holders = [Claim(1, u, 1, "alice", now) for u in (1, 2)] + [Claim(1, 3, 2, "bob", now - 60)]
    text = refusal_text(holders)
    assert text.startswith(
        "nothing done: 3 of these messages are being handled by colleagues (2 by alice, 1 by bob;"
    )
    assert text.endswith("Ask alice or bob, or an admin can release them.")


def test_the_check_is_one_lookup_per_message(policy: Setup) -> None:
    """10,000 messages with 1,000 claims by the mover: a few milliseconds per check at
    most, and a folder without claims is not looked through at all."""
    pol, alice, bob = policy
    pol.registry.claim(1, range(10_000, 11_000), alice.user_id, "alice", expires_after=None)
    uids = list(range(10_000, 20_000))
    move = ops.Move(MB, uids, "Archive")
    start = time.perf_counter()
    for _ in range(10):
        pol.check_conflicts(alice, "INBOX", uids, move)
    per_check = (time.perf_counter() - start) / 10
    assert per_check < 0.01, per_check
    with pytest.raises(ClaimConflict) as info:
        pol.check_conflicts(bob, "INBOX", uids, move)
    assert len(info.value.uids) == 1000
    pol.check_conflicts(bob, "Other", uids, move)  # no claims there: nothing looked at


def test_another_nodes_claim_counts_at_once(store_url: str) -> None:
    """Two nodes on one store (PostgreSQL): a claim taken through node A's registry is
    enforced by node B's check at once, though B's memory never heard of it; a claim
    released on A no longer refuses on B."""
    engine = open_engine(store_url)
    users = UserDirectory(engine)
    alice, bob = users.add("alice", "pw"), users.add("bob", "pw")
    with engine.begin() as conn:
        conn.execute(insert(mailboxes), [{"id": 1, "name": "INBOX"}])
    node_a, node_b = ClaimRegistry(engine, shared=True), ClaimRegistry(engine, shared=True)
    node_a.load()
    node_b.load()
    on_b = ClaimPolicy(Policy(), node_b, lambda name: 1 if name == "INBOX" else None)
    move = ops.Move(MB, [5], "Archive")
    on_b.check_conflicts(Actor(bob.id, "bob"), "INBOX", [5], move)  # nothing claimed yet
    node_a.claim(1, [5], alice.id, "alice", expires_after=None)
    with pytest.raises(ClaimConflict, match="alice is handling this message"):
        on_b.check_conflicts(Actor(bob.id, "bob"), "INBOX", [5], move)
    node_a.release(1, [5])
    on_b.check_conflicts(Actor(bob.id, "bob"), "INBOX", [5], move)
    engine.dispose()
