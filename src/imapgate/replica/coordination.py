"""What several gateway nodes must agree on, behind interfaces: mailbox locks
and modseq allocation.

Today one process holds the replica, so both are in-process (the locks in
``sync/locks.py``, next to the asyncio driver; the allocator here, a counter
per mailbox).  With PostgreSQL (DESIGN decision 11) the database is the
arbiter: modseqs by sequence, locks by advisory lock; those implementations
replace these without a change to their callers.

No asyncio here: the lock interface is an async context manager, whatever
provides it.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from .mailbox import MailboxIndex


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
