"""The shared allocators (replica/coordination.py): modseqs in blocks, mailbox ids, from the store."""

from __future__ import annotations

from sqlalchemy import Engine

from imapgate.replica.coordination import SharedMailboxIdAllocator, SharedModseqAllocator
from imapgate.replica.mailbox import MailboxIndex


def mailbox(mid: int, modseq: int = 1) -> MailboxIndex:
    return MailboxIndex(
        id=mid,
        name=f"F{mid}",
        delimiter="/",
        attributes=(),
        uidvalidity=1,
        uidnext=1,
        modseq=modseq,
        shared_highest=modseq,
        upstream_modseq=0,
        seen_mode=None,
        synced=True,
    )


def test_modseqs_come_in_batches(store_engine: Engine) -> None:
    alloc = SharedModseqAllocator(store_engine, batch=16)
    mb = mailbox(1, modseq=5)
    got = [alloc.next(mb) for _ in range(40)]
    assert got == list(range(6, 46)) and mb.modseq == 45 and alloc.current(mb) == 45
    assert alloc.reservations == 3  # 40 modseqs, blocks of 16: three round trips, not 40


def test_two_nodes_never_hand_out_the_same_modseq(store_engine: Engine) -> None:
    a, b = SharedModseqAllocator(store_engine, batch=8), SharedModseqAllocator(store_engine, batch=8)
    mb_a, mb_b = mailbox(1), mailbox(1)  # the same folder in each node's replica
    seen: list[int] = []
    for i in range(30):
        seen.append(a.next(mb_a) if i % 3 else b.next(mb_b))
    assert len(set(seen)) == len(seen)


def test_a_node_never_goes_below_what_it_has_seen(store_engine: Engine) -> None:
    a, b = SharedModseqAllocator(store_engine, batch=8), SharedModseqAllocator(store_engine, batch=8)
    mb_a, mb_b = mailbox(1), mailbox(1)
    first_a = a.next(mb_a)  # a reserved 2..9
    for _ in range(20):
        b.next(mb_b)  # b moved on to 10..33
    mb_a.modseq = mb_b.modseq  # a applied b's changes
    after = a.next(mb_a)
    assert first_a == 2 and after > mb_b.modseq - 1 and after not in range(2, 10)


def test_mailbox_ids_are_shared_and_above_what_was_seen(store_engine: Engine) -> None:
    a, b = SharedMailboxIdAllocator(store_engine), SharedMailboxIdAllocator(store_engine)
    a.seen(7)
    assert a.next() == 8 and b.next() == 9 and a.next() == 10
    b.seen(20)
    assert b.next() == 21 and a.next() == 22
