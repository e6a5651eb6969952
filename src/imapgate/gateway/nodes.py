"""What a node shares with the other nodes on one PostgreSQL store, in one place.

On SQLite (one node) nothing: the replica keeps its in-process bus and
allocators, the sync engine its asyncio locks.  On PostgreSQL:

* modseqs and mailbox ids from the store's counters (``SharedModseqAllocator``,
  ``SharedMailboxIdAllocator``): two nodes never hand out the same one;
* per-mailbox locks that are also advisory locks (``AdvisoryLockManager``);
* sync leadership: one node per upstream account holds the advisory lock
  ``leader:<user>@<host>:<port>`` and runs the change watcher (NOTIFY/IDLE at
  the hoster); the others try every ``LEADER_RETRY`` seconds and take over
  when the leader's database connection ends (kill -9 included: PostgreSQL
  drops the lock with the connection);
* the change bus on the change log with LISTEN/NOTIFY (``LogChangeBus``,
  driven by ``BusListener``): another node's change set is applied to this
  replica (``replica/remote.py``) and pushed to this node's sessions; a node
  that missed more than the log keeps reloads its replica (``rebuild``);
* one login throttle: this node's login failures (and the successes that clear or
  trust a pair) go to the others as ``NOTIFY imapgate_logins`` and theirs are counted
  here (``share_logins``), so a guesser behind the balancer meets the limit once;
* one upstream connection budget: every upstream connection of any node holds one of
  ``[upstream] max_connections`` advisory-lock leases (``upstream_leases``,
  store/leases.py), so all nodes together never exceed it.

Built by ``Gateway.build``; ``start``/``stop`` with the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from typing import Any

from sqlalchemy import Engine, text

from ..config import UpstreamConfig
from ..replica.coordination import SharedMailboxIdAllocator, SharedModseqAllocator
from ..replica.logbus import LogChangeBus
from ..replica.remote import apply_remote, rebuild
from ..replica.replica import Replica
from ..store.leases import UpstreamLeases
from ..store.lock import UNLOCK_CHANNEL, AdvisoryLock, advisory_key
from ..sync.buslisten import BusListener
from ..sync.engine import SyncEngine
from ..sync.locks import AdvisoryLockManager
from .throttle import LoginThrottle

log = logging.getLogger("imapgate.nodes")

#: NOTIFY channel of login outcomes between the nodes' throttles (payload: JSON).
LOGIN_CHANNEL = "imapgate_logins"
#: NOTIFY payloads are limited to 8,000 bytes.
LOGIN_PAYLOAD_MAX = 7000

#: Seconds between a follower's tries of the leader lock (and the leader's check that it
#: still holds it): failover after a leader died takes about this long.
LEADER_RETRY = 1.0


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
        self.leader: AdvisoryLock | None = None
        #: True while this node is the sync leader (always, alone on SQLite).
        self.leading = engine is None
        self._lead_task: asyncio.Task[None] | None = None
        self.leases: UpstreamLeases | None = None
        if engine is not None:
            self.bus = LogChangeBus(engine, self.name)
            self.listener = BusListener(self.bus, url)
            # A folder's lock taken: first apply what other nodes did to it.
            self.locks = AdvisoryLockManager(engine, on_acquired=self.listener.poll)
            # A folder lock released on any node wakes this node's waiter for it at once.
            self.listener.subscribe(UNLOCK_CHANNEL, self.locks.unlocked)

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

    def share_logins(self, throttle: LoginThrottle) -> None:
        """Login outcomes of ``throttle`` go to the other nodes, and theirs come into it."""
        if self.listener is None:
            return
        throttle.on_outcome = self._send_login
        self.listener.subscribe(LOGIN_CHANNEL, lambda payload: self._login_heard(throttle, payload))

    def _send_login(self, user: str, address: str, ok: bool) -> None:
        payload = json.dumps({"node": self.name, "user": user, "address": address, "ok": ok})
        if len(payload) > LOGIN_PAYLOAD_MAX:
            return  # a name that long never logged in (the limit on login names is far below)
        try:
            asyncio.get_running_loop().run_in_executor(None, self._notify_login, payload)
        except RuntimeError:  # no loop (a test, a thread of its own): at once
            self._notify_login(payload)

    def _notify_login(self, payload: str) -> None:
        assert self.engine is not None
        try:
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_notify(:ch, :p)"), {"ch": LOGIN_CHANNEL, "p": payload})
        except Exception as exc:  # the others miss one outcome: their own limits still hold
            log.warning("login throttle: could not tell the other nodes (%s)", exc.__class__.__name__)

    def _login_heard(self, throttle: LoginThrottle, payload: str) -> None:
        try:
            data = json.loads(payload)
            if data["node"] == self.name:
                return
            user, address, ok = str(data["user"]), str(data["address"]), bool(data["ok"])
        except (ValueError, KeyError, TypeError):
            log.warning("login throttle: unreadable outcome from another node ignored")
            return
        for lock in throttle.apply_remote(user, address, ok):
            log.info(
                "login throttle: %s locked for %.0f s after a failure on another node",
                lock.kind,
                lock.seconds,
            )

    def upstream_leases(self, upstream: UpstreamConfig) -> UpstreamLeases | None:
        """The connection budget shared with the other nodes (None on SQLite: the pool's
        own limit is the whole budget)."""
        if self.engine is None:
            return None
        if self.leases is None:
            self.leases = UpstreamLeases(self.engine, _account(upstream), upstream.max_connections)
        return self.leases

    async def close_leases(self) -> None:
        """After the pool closed: whatever leases are left go back at once."""
        if self.leases is not None:
            await asyncio.to_thread(self.leases.close)

    def attach(self, replica: Replica) -> None:
        """Other nodes' changes go into ``replica`` (and its sessions)."""
        if self.bus is None:
            return
        self.bus.subscribe_remote(lambda changes: apply_remote(replica, changes))
        self.bus.on_stale = lambda: rebuild(replica, "this gateway node missed changes; please reconnect")

    async def start(self, sync: SyncEngine | None = None, upstream: UpstreamConfig | None = None) -> None:
        if self.listener is not None:
            await self.listener.start()
        if self.engine is not None and sync is not None and upstream is not None:
            account = _account(upstream)
            self.leader = AdvisoryLock(self.engine, advisory_key("leader", account))
            self._lead_task = asyncio.create_task(self._lead(sync, account), name="sync-leader")

    async def _lead(self, sync: SyncEngine, account: str) -> None:
        assert self.leader is not None
        while True:
            try:
                if not self.leading:
                    if await asyncio.to_thread(self.leader.try_acquire):
                        self.leading = True
                        log.info("sync leader for %s: this node (%s)", account, self.name)
                        sync.start_watcher()
                elif not await asyncio.to_thread(self.leader.held):
                    # The lock went with its database connection: another node may lead
                    # now, so this one steps down -- one watcher per account, one upstream
                    # connection of the budget -- and tries the lock again like any follower
                    # (taking it back starts the watcher with a check of every folder).
                    log.error(
                        "sync leadership for %s lost with the database connection: this node "
                        "stops watching the mail server and tries to lead again",
                        account,
                    )
                    self.leading = False
                    await sync.stop_watcher()
            except Exception as exc:  # a database error: try again at the next round
                log.warning("sync leadership check failed: %s", exc.__class__.__name__)
            await asyncio.sleep(LEADER_RETRY)

    async def stop(self) -> None:
        if self._lead_task is not None:
            self._lead_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lead_task
            self._lead_task = None
        if self.leader is not None:
            await asyncio.to_thread(self.leader.release)
        if self.listener is not None:
            await self.listener.stop()


def _account(upstream: UpstreamConfig) -> str:
    """The hoster account the nodes share (leadership and leases are per account)."""
    return f"{upstream.user}@{upstream.host}:{upstream.port}"
