"""Per-message order of the writes that run without the folder lock.

STORE (under CONDSTORE) and UID EXPUNGE (under QRESYNC) go upstream without the
folder's lock, so that they do not queue behind a sync.  Against a MOVE of the
same message that leaves two races the hoster cannot settle for us:

* a STORE that reaches the hoster between the MOVE's copy and its expunge is
  answered with the new flags, but the copy was made without them: "OK" and
  the flag is lost;
* a UID EXPUNGE sent while a colleague's MOVE runs is answered with VANISHED
  for that message (the hoster reports the MOVE's expunge to every session),
  so it looks done although the message is safe in the MOVE's destination.

``InFlight`` orders them per message, on this node: a removal (MOVE, UID
EXPUNGE) waits until no other removal and no STORE of its messages is on its
way upstream, and a STORE waits until no removal of its messages is.  Waiting
is all-or-nothing (nobody holds some keys while waiting for others) and never
happens under a folder lock (removals register before they take it; a STORE
releases before its commit takes it), so it cannot deadlock.  Several nodes
(issue 16) need the same per message in the store (advisory locks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable

from ..replica.mailbox import MailboxIndex

Key = tuple[int, int]  # (mailbox id, UID)


class InFlight:
    def __init__(self) -> None:
        self._stores: Counter[Key] = Counter()
        #: Removals on their way, with the user removing: who to name when a
        #: colleague's command finds such a message gone at the hoster.
        self._removals: dict[Key, str] = {}
        self._condition: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def _changed(self) -> asyncio.Condition:
        """The condition of the running loop (a service built outside any loop, or
        served again from another one in tests, gets its own)."""
        loop = asyncio.get_running_loop()
        if self._condition is None or self._loop is not loop:
            self._condition, self._loop = asyncio.Condition(), loop
        return self._condition

    def remover_of(self, mb: MailboxIndex, uid: int) -> str | None:
        return self._removals.get((mb.id, uid))

    @contextlib.asynccontextmanager
    async def storing(self, mb: MailboxIndex, uids: Iterable[int]) -> AsyncIterator[None]:
        """A lock-free STORE of ``uids`` is upstream for the block."""
        keys = [(mb.id, u) for u in uids]
        async with self._changed:
            if self._removals:
                await self._changed.wait_for(lambda: not any(k in self._removals for k in keys))
            self._stores.update(keys)
        try:
            yield
        finally:
            async with self._changed:
                self._stores.subtract(keys)
                for k in keys:
                    if self._stores[k] <= 0:
                        del self._stores[k]
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def removing(self, mb: MailboxIndex, uids: Iterable[int], user: str) -> AsyncIterator[None]:
        """``user`` removes ``uids`` (MOVE, UID EXPUNGE) for the block: upstream and commit."""
        keys = [(mb.id, u) for u in uids]

        def free() -> bool:
            return not any(k in self._removals or k in self._stores for k in keys)

        async with self._changed:
            if self._removals or self._stores:
                await self._changed.wait_for(free)
            self._removals.update(dict.fromkeys(keys, user))
        try:
            yield
        finally:
            async with self._changed:
                for k in keys:
                    self._removals.pop(k, None)
                self._changed.notify_all()
