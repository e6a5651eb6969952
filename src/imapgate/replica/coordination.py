"""What several gateway nodes must agree on, behind interfaces: mailbox locks
and modseq allocation.

One process alone holds its replica with the in-process implementations (the
locks in ``sync/locks.py``, next to the asyncio driver; the allocators here,
counters in memory).  Several nodes on one PostgreSQL (DESIGN decision 11) use
the database as the arbiter: ``SharedModseqAllocator`` and
``SharedMailboxIdAllocator`` take their values from the store's ``counters``
(``store/counters.py``), the locks are advisory locks (``sync/locks.py``
``AdvisoryLockManager``); they replace the in-process ones without a change to
their callers.

No asyncio here: the lock interface is an async context manager, whatever
provides it.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from sqlalchemy import Engine

from ..store.counters import advance
from .mailbox import MailboxIndex

#: Modseqs a node reserves per round trip: a flag storm of N commands costs N/64 UPDATEs,
#: not N; a node that dies wastes at most this many (modseqs need not be dense).
MODSEQ_BATCH = 64


class LockManager(Protocol):
    """Per-mailbox mutual exclusion between a folder's sync and the replica
    updates of the gateway's own writes: ``async with locks.mailbox(name): ...``."""

    def mailbox(self, name: str) -> AbstractAsyncContextManager[object]: ...


class ModseqAllocator(Protocol):
    """Hands out the gateway's own modseqs, per mailbox (DESIGN decision 4):
    every shared change, expunge and private change takes the next one."""

    def next(self, mb: MailboxIndex) -> int:
        """A new modseq for ``mb``, above every one handed out before."""
        ...

    def current(self, mb: MailboxIndex) -> int:
        """The highest modseq handed out for ``mb`` (no new one)."""
        ...


class MemoryModseqAllocator:
    """One counter per mailbox, kept on the mailbox's index (``mb.modseq``) and
    persisted with each change set: the in-process allocator of one node."""

    def next(self, mb: MailboxIndex) -> int:
        mb.modseq += 1
        return mb.modseq

    def current(self, mb: MailboxIndex) -> int:
        return mb.modseq


class MailboxIdAllocator(Protocol):
    """Hands out the ids of new mailboxes (the replica's key for a folder)."""

    def seen(self, highest: int) -> None:
        """Ids up to ``highest`` are taken (start-up: the store's highest)."""
        ...

    def next(self) -> int: ...


class MemoryMailboxIdAllocator:
    """Ids from a counter, never reused within a run: a folder created while the
    store cannot be written still gets its id at once (its row follows at the
    heal)."""

    def __init__(self) -> None:
        self._highest = 0

    def seen(self, highest: int) -> None:
        self._highest = max(self._highest, highest)

    def next(self) -> int:
        self._highest += 1
        return self._highest


class SharedModseqAllocator:
    """Modseqs from blocks of ``batch`` reserved in the store's counter
    ``modseq:<mailbox id>``: blocks of two nodes never overlap.  A new modseq is
    also above the mailbox's current one (``mb.modseq``, raised by the changes
    this node applied, its own and other nodes'), so a node never goes back
    below what it has seen; its block is skipped ahead when needed.

    The reservation is one short transaction on the caller's thread (the loop's,
    like the replica's commits); if the database cannot be reached it raises,
    like the commit that follows would."""

    def __init__(self, engine: Engine, *, batch: int = MODSEQ_BATCH) -> None:
        self.engine = engine
        self.batch = batch
        #: mailbox id -> (next value of the block, last value of the block)
        self._blocks: dict[int, tuple[int, int]] = {}
        self.reservations = 0

    def next(self, mb: MailboxIndex) -> int:
        nxt, last = self._blocks.get(mb.id, (0, -1))
        nxt = max(nxt, mb.modseq + 1)
        if nxt > last:
            with self.engine.begin() as conn:
                last = advance(conn, f"modseq:{mb.id}", by=self.batch, floor=mb.modseq)
            self.reservations += 1
            nxt = max(nxt, last - self.batch + 1)
        self._blocks[mb.id] = (nxt + 1, last)
        mb.modseq = nxt
        return nxt

    def current(self, mb: MailboxIndex) -> int:
        return mb.modseq


class SharedMailboxIdAllocator:
    """Mailbox ids from the store's counter ``mailbox_id`` (one UPDATE per new
    folder: rare), never below an id this node has seen."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._highest = 0

    def seen(self, highest: int) -> None:
        self._highest = max(self._highest, highest)

    def next(self) -> int:
        with self.engine.begin() as conn:
            self._highest = advance(conn, "mailbox_id", by=1, floor=self._highest)
        return self._highest
