"""Composition: build every part of the gateway from the configuration, start
and stop them in order."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine

from ..config import Config
from ..errors import OperatorError
from ..index.indexer import SearchIndex
from ..index.store import SqliteIndexStore
from ..replica.content import CachePurger, ContentCache
from ..replica.events import EventHub
from ..replica.replica import Replica
from ..store.engine import open_engine, open_local_engine
from ..store.health import StoreHealth
from ..store.repository import StoreRepository
from ..sync.algorithms import ProgressFn
from ..sync.engine import SyncEngine
from ..sync.healing import StoreHealer
from ..team.acl import AclTable
from ..team.acl import rights as acl_rights
from ..team.acl_store import AclStore
from ..team.claims import ClaimRegistry
from ..team.journal import Journal
from ..team.recovery_store import RecoveryStore
from ..team.subscriptions import Subscriptions
from ..team.users import UserDirectory, prepare_dummy_hash
from ..upstream.connection import UpstreamError, UpstreamLoginRefused, UpstreamUnavailable
from ..upstream.pool import UpstreamPool
from .acl_policy import AclPolicy
from .acl_watch import AclWatch
from .audit_hoster import HosterJournal
from .audit_retention import AuditRetention
from .auth import Authenticator
from .claim_policy import ClaimPolicy
from .claimed_folder import ClaimedByMe
from .claims_ops import ClaimOps
from .control import (
    DISABLED_REASON,
    REMOVED_REASON,
    AccountSessions,
    ControlServer,
    SessionProvider,
    socket_path,
)
from .indexing import IndexFetcher, IndexSwitch
from .nodes import SharedStore
from .policy import Actor
from .recovered import RecoveredFolder
from .recovery import RecoveryHook, settler
from .removal import Remover
from .restore import RESTORE_KIND, Restorer
from .service import Service

log = logging.getLogger("imapgate")


@dataclass
class Gateway:
    config: Config
    hub: EventHub
    replica: Replica
    pool: UpstreamPool
    sync: SyncEngine
    content: ContentCache
    journal: Journal
    users: UserDirectory
    #: The one entry point of reads and changes (``Service.execute``).
    service: Service
    subscriptions: Subscriptions
    #: The login check of every front end (IMAP; later SMTP submission, web).
    auth: Authenticator
    control: ControlServer | None = None
    #: Logins of other front ends (the web dashboard) that end with their
    #: account, as IMAP sessions do (``user remove``/``disable``, account check).
    extra_sessions: list[AccountSessions] = field(default_factory=list)
    #: The search index (None: off, or a store without one yet).
    index: SearchIndex | None = None
    #: Writes out what the replica kept in memory while the store was unwritable.
    healer: StoreHealer | None = None
    #: Recoverable deletes: restore and purge (None: ``[recovery] enabled`` is off).
    recovery: Restorer | None = None

    @property
    def health(self) -> StoreHealth:
        """Whether the store takes writes (``writable``, ``require_writable()``):
        the service layer asks it before it touches upstream."""
        return self.replica.health

    #: The folder permissions, kept current (``acl`` is the table in force).
    acl_watch: AclWatch | None = None
    #: Purges audit journal entries older than ``[audit] retention``.
    retention: AuditRetention | None = None

    #: What several nodes on one PostgreSQL share (nothing on SQLite).
    nodes: SharedStore = field(default_factory=lambda: SharedStore(None))
    #: The node's own SQLite file beside a PostgreSQL store (content cache, search
    #: index: ``store.engine.open_local_engine``); None on SQLite (all in the store).
    local_engine: Engine | None = None
    #: Deletes cached items of deleted or reset folders in the node-local file.
    purger: CachePurger | None = None

    @property
    def acl(self) -> AclTable:
        """The ACL table in force (an immutable snapshot; see ``gateway/acl_watch.py``)."""
        assert self.acl_watch is not None, "built without Gateway.build"
        return self.acl_watch.table

    @classmethod
    def build(cls, config: Config, *, progress: ProgressFn | None = None) -> Gateway:
        engine = open_engine(config.store.url)
        hub = EventHub()
        nodes = SharedStore.for_engine(engine, config.store.url)
        replica = Replica(
            engine,
            hub,
            repository=StoreRepository(engine, StoreHealth()),
            private_flags=config.folders.private_flags,
            default_seen=config.folders.default_seen,
            seen_modes=config.folders.seen,
            **nodes.replica_parts(),
        )
        replica.load()
        pool = UpstreamPool(config.upstream, leases=nodes.upstream_leases(config.upstream))
        sync = SyncEngine(
            pool, replica, poll_interval=config.upstream.poll_interval, progress=progress, locks=nodes.locks
        )
        # What is derived from message content belongs to the node: beside a PostgreSQL
        # store it lives in the node's data_dir, never in the shared database.
        local = open_local_engine(config.store.data_dir) if engine.dialect.name != "sqlite" else None
        content = ContentCache(local or engine, config.store.cache_max_bytes)
        journal = Journal(engine)
        users = UserDirectory(engine)
        subscriptions = Subscriptions(engine)
        # Folder permissions: the store's ACL table, kept current (control socket + poll).
        acl_watch = AclWatch(AclStore(engine), acl_rights(config.acl.default))
        # Claims: the conflict check composed over the folder permissions.
        claims = ClaimRegistry(engine, shared=nodes.shared)
        claims.load()
        policy = ClaimPolicy(AclPolicy(acl_watch.current), claims, replica.mailbox_id)
        service = Service(
            replica,
            pool,
            sync,
            content,
            journal,
            policy,
            subscriptions=subscriptions,
            health=replica.health,
        )
        service.acl = acl_watch
        # Changes the sync finds made at the hoster are journaled "at the hoster".
        sync.algorithms.observer = HosterJournal(content, service.own_changes)
        service.claims = ClaimOps(claims, policy, replica, journal, config.claims)
        if config.claims.folder_name:
            service.virtual.register(
                ClaimedByMe(config.claims.folder_name, claims, replica, service.execute, policy)
            )
        auth = Authenticator(
            users,
            max_failed_logins=config.server.max_failed_logins,
            cache_ttl=config.server.login_cache_ttl,
            journal=journal,
        )
        nodes.share_logins(auth.throttle)
        recovery = _recovery(config, engine, service)
        index = None
        if config.search.index != "off":
            # Each node indexes for itself (its fetches count against the shared upstream
            # budget: UpstreamPool.background_connection); other nodes' changes reach the
            # indexer as replica events through the change bus.
            fetcher = IndexFetcher(pool)
            switch = IndexSwitch(config.search, pool)
            index = SearchIndex(
                SqliteIndexStore(local or engine), replica, fetcher.headers, fetcher.messages, active=switch
            )
            service.index, service.index_active = index, switch
        purger = None
        if local is not None:
            purger = CachePurger(
                content, hub, lambda: {mb.id: mb.uidvalidity for mb in list(replica.by_id.values())}
            )
        nodes.attach(replica)
        return cls(
            config,
            hub,
            replica,
            pool,
            sync,
            content,
            journal,
            users,
            service,
            subscriptions,
            auth,
            index=index,
            healer=StoreHealer(replica, sync),
            acl_watch=acl_watch,
            retention=AuditRetention(engine, config.audit.retention),
            nodes=nodes,
            recovery=recovery,
            local_engine=local,
            purger=purger,
        )

    async def start(self, *, initial_sync: bool = True) -> None:
        """Settle interrupted operations, sync, start the watcher.

        With ``initial_sync``, a start that would serve nothing useful is an
        ``OperatorError`` (the process exits; systemd restarts it later): the
        hoster refuses the login (a wrong password does not heal by itself and
        must not look like an empty mailbox), or it cannot be reached and the
        replica is empty (first start).  Unreachable with a replica: serve it,
        and catch up when the hoster answers."""
        # In a worker thread while the start goes on (one argon2id hash, ~0.2 s).
        asyncio.get_running_loop().run_in_executor(None, prepare_dummy_hash)
        # Operations interrupted by a crash are settled before anything else.
        await self.service.recover_intents()
        if self.purger is not None:
            # Before the sync: folders it finds gone or renumbered are purged too.
            self.purger.start()
        if initial_sync:
            up = self.config.upstream
            try:
                await self.sync.initial_sync()
            except UpstreamLoginRefused as exc:
                raise OperatorError(
                    f"{exc}; check [upstream] user and the password (password_file) "
                    "for that account at the hoster"
                ) from exc
            except (UpstreamUnavailable, UpstreamError) as exc:
                if not self.replica.names():
                    raise OperatorError(
                        f"cannot sync from {up.host}:{up.port} ({exc}) and the replica is empty, "
                        "so there is nothing to serve yet; check [upstream] host, port and tls"
                    ) from exc
                # Serve what the replica holds; the watcher and the periodic
                # check catch up once the hoster answers again.
                log.warning("start-up sync failed (%s); serving from the replica", exc)
        # With several nodes only the sync leader watches the hoster (nodes.start decides).
        self.sync.start(watch=not self.nodes.shared)
        await self.nodes.start(self.sync, self.config.upstream)
        if self.recovery is not None:
            self.recovery.start()
        if self.healer is not None:
            self.healer.start()
        if self.acl_watch is not None:
            self.acl_watch.start()
        if self.index is not None:
            await self.index.start()
        if self.retention is not None:
            self.retention.start()
        self.service.start_claims()

    async def start_control(self, sessions: SessionProvider) -> None:
        """Serve the admin control socket (``imapgate sessions``, ``kick``, user
        changes) for the IMAP server's ``sessions``."""
        path = socket_path(self.config.store.data_dir)
        self.control = ControlServer(path, self.users, self.replica, sessions, self.extra_sessions)
        if self.acl_watch is not None:
            self.control.acl_changed = self.acl_watch.reload
        self.control.claims_changed = self.service.reload_claims
        if self.recovery is not None:
            self.control.async_requests.update(self.recovery.control_requests())
        await self.control.start()

    async def stop_control(self) -> None:
        if self.control is not None:
            await self.control.stop()
            self.control = None

    def account_ended(self, actor: Actor) -> str | None:
        """Why ``actor``'s account cannot act any more (removed or disabled), else
        None.  Asked only when a command failed unexpectedly: a per-user write for
        a removed user fails in the store (its rows are gone), and that must read
        as "account removed", never as an internal error."""
        user = self.users.get(actor.user)
        if user is None or user.id != actor.user_id:
            self.replica.forget_user(actor.user_id)
            return REMOVED_REASON
        return DISABLED_REASON if user.disabled else None

    async def stop(self) -> None:
        await self.stop_control()
        if self.retention is not None:
            await self.retention.stop()
        if self.acl_watch is not None:
            await self.acl_watch.stop()
        if self.index is not None:
            await self.index.stop()
        await self.service.stop_claims()
        if self.recovery is not None:
            await self.recovery.stop()
        await self.service.stop()
        if self.healer is not None:
            await self.healer.stop()
        await self.nodes.stop()  # first: a node becoming leader now must not start a watcher
        await self.sync.stop()
        await self.pool.close()
        await self.nodes.close_leases()
        if self.purger is not None:
            await self.purger.stop()
        if self.local_engine is not None:
            self.local_engine.dispose()
        self.auth.close()


def _recovery(config: Config, engine: Engine, service: Service) -> Restorer | None:
    """Recoverable deletes (gateway/recovery.py): the pre-removal hook, restore and
    purge, the "Recovered" virtual folder.  The hidden folder stays hidden when
    recovery is off (copies kept before stay at the hoster until purged)."""
    cfg = config.recovery
    service.virtual.hide(cfg.folder)
    if not cfg.enabled:
        return None
    store = RecoveryStore(engine)
    hook = RecoveryHook(cfg, store, service.intents, service.replica, service.sync)
    hook.pool = service.pool
    service.remover = Remover(hook)
    restorer = Restorer(cfg, store, hook, service)
    service.settlers["recovery"] = settler(hook, service.pool)
    service.settlers[RESTORE_KIND] = restorer.settle_restore
    service.virtual.register(
        RecoveredFolder(cfg.visible_name, cfg.folder, store, restorer, service.policy, service.replica)
    )
    return restorer
