"""The running gateway's ACL table: loaded at start, reloaded when the ACLs
change in the store.

Two ways a change arrives, so it reaches running sessions within 2 s:

* the CLI's ``acl-changed`` notice over the control socket (``reload``, at
  once; registered on ``ControlServer.acl_changed`` by ``gateway/app.py``);
* a poll of ``AclStore.version()`` (one indexed row) every ``POLL_SECONDS``,
  for changes whose notice did not arrive: no control socket, a CLI that
  could not reach it, another gateway node writing the same store.

The table itself is immutable (``team/acl.AclTable``); a reload swaps it, so
whoever read ``table`` holds one consistent snapshot.  ``AclPolicy``
(``gateway/acl_policy.py``) asks ``current`` on every rights check; the
gateway's own ACL changes (SETACL, CREATE/RENAME/DELETE carrying entries)
call ``refresh`` so they apply to the next command without waiting for the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from ..team.acl import AclTable, Rights
from ..team.acl_store import AclStore

log = logging.getLogger("imapgate.acl")

#: Seconds between polls of the ACL version (the fallback to the notice).
POLL_SECONDS: Final = 1.0


class AclWatch:
    """Holds the current ``AclTable`` and keeps it in step with the store."""

    def __init__(self, store: AclStore, default: Rights, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.default = default
        self.poll_seconds = poll_seconds
        self.table: AclTable = store.load(default)
        self._task: asyncio.Task[None] | None = None
        #: This gateway changed an ACL: the next ``current`` looks at the version.
        self._stale = False

    def current(self) -> AclTable:
        """The table in force (what ``AclPolicy`` asks on every rights check)."""
        if self._stale:
            self._stale = False
            self.reload()
        return self.table

    def refresh(self) -> None:
        """After this gateway changed an ACL (inside the change's transaction): the
        next ``current`` reloads, so the change applies to the next command at once."""
        self._stale = True

    def reload(self) -> int:
        """Load the table again if the store's version moved; the version held."""
        if self.store.version() != self.table.version:
            self.table = self.store.load(self.default)
            log.info("ACLs reloaded (version %d)", self.table.version)
        return self.table.version

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="acl-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                # Off the event loop: a store busy with a writer must not stall sessions.
                await asyncio.to_thread(self.reload)
            except Exception as exc:  # a locked or broken store: the next poll tries again
                log.warning("ACL version check failed: %s", exc)
