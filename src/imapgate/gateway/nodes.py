"""What a node shares with the other nodes on one PostgreSQL store, in one place.

On SQLite (one node) nothing: the replica keeps its in-process bus and
allocators, the sync engine its asyncio locks.  On PostgreSQL:

* modseqs and mailbox ids from the store's counters (``SharedModseqAllocator``,
  ``SharedMailboxIdAllocator``): two nodes never hand out the same one;
* per-mailbox locks that are also advisory locks (``AdvisoryLockManager``);
* the change bus on the change log with LISTEN/NOTIFY (``LogChangeBus``,
  driven by ``BusListener``): another node's change set is applied to this
  replica (``replica/remote.py``) and pushed to this node's sessions; a node
  that missed more than the log keeps reloads its replica (``rebuild``).

Built by ``Gateway.build``; ``start``/``stop`` with the gateway.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from sqlalchemy import Engine

from ..replica.coordination import SharedMailboxIdAllocator, SharedModseqAllocator
from ..replica.logbus import LogChangeBus
from ..replica.remote import apply_remote, rebuild
from ..replica.replica import Replica
from ..sync.buslisten import BusListener
from ..sync.locks import AdvisoryLockManager


def node_name() -> str:
    """This process among the nodes: host, pid and a random part (a restarted node
    is a new one; it must not skip change-log rows as "its own")."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:64]


class SharedStore:
    def __init__(self, engine: Engine | None, url: str = "") -> None:
        self.engine = engine
        self.url = url
        self.name = node_name()
        self.bus: LogChangeBus | None = None
        self.locks: AdvisoryLockManager | None = None
        self.listener: BusListener | None = None
        if engine is not None:
            self.bus = LogChangeBus(engine, self.name)
            self.listener = BusListener(self.bus, url)
            # A folder's lock taken: first apply what other nodes did to it.
            self.locks = AdvisoryLockManager(engine, on_acquired=self.listener.poll)

    @classmethod
    def for_engine(cls, engine: Engine, url: str) -> SharedStore:
        return cls(engine if engine.dialect.name == "postgresql" else None, url)

    @property
    def shared(self) -> bool:
        return self.engine is not None

    def replica_parts(self) -> dict[str, Any]:
        """The ``Replica`` keyword arguments of the shared implementations (none on SQLite)."""
        if self.engine is None:
            return {}
        return {
            "bus": self.bus,
            "modseqs": SharedModseqAllocator(self.engine),
            "mailbox_ids": SharedMailboxIdAllocator(self.engine),
        }

    def attach(self, replica: Replica) -> None:
        """Other nodes' changes go into ``replica`` (and its sessions)."""
        if self.bus is None:
            return
        self.bus.subscribe_remote(lambda changes: apply_remote(replica, changes))
        self.bus.on_stale = lambda: rebuild(replica, "this gateway node missed changes; please reconnect")

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.start()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
