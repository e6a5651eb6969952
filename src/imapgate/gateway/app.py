"""Composition: build every part of the gateway from the configuration, start
and stop them in order."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Config
from ..index.indexer import SearchIndex
from ..index.store import SqliteIndexStore
from ..replica.content import ContentCache
from ..replica.events import EventHub
from ..replica.replica import Replica
from ..replica.sync import ProgressFn, SyncEngine
from ..store.engine import open_engine
from ..team.journal import Journal
from ..team.subscriptions import Subscriptions
from ..team.users import UserDirectory
from ..upstream.connection import UpstreamError, UpstreamUnavailable
from ..upstream.pool import UpstreamPool
from .auth import Authenticator
from .indexing import IndexFetcher, IndexSwitch
from .mailservice import MailService
from .policy import Policy

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
    service: MailService
    subscriptions: Subscriptions
    #: The login check of every front end (IMAP; later SMTP submission, web).
    auth: Authenticator
    #: The search index (None: off, or a store without one yet).
    index: SearchIndex | None = None

    @classmethod
    def build(cls, config: Config, *, progress: ProgressFn | None = None) -> Gateway:
        engine = open_engine(config.store.url)
        hub = EventHub()
        replica = Replica(
            engine,
            hub,
            private_flags=config.folders.private_flags,
            default_seen=config.folders.default_seen,
            seen_modes=config.folders.seen,
        )
        replica.load()
        pool = UpstreamPool(config.upstream)
        sync = SyncEngine(pool, replica, poll_interval=config.upstream.poll_interval, progress=progress)
        content = ContentCache(engine, config.store.cache_max_bytes)
        journal = Journal(engine)
        users = UserDirectory(engine)
        service = MailService(replica, pool, sync, content, journal, Policy())
        auth = Authenticator(
            users,
            max_failed_logins=config.server.max_failed_logins,
            cache_ttl=config.server.login_cache_ttl,
        )
        index = None
        if config.search.index != "off":
            if engine.dialect.name == "sqlite":
                fetcher = IndexFetcher(pool)
                switch = IndexSwitch(config.search, pool)
                index = SearchIndex(
                    SqliteIndexStore(engine), replica, fetcher.headers, fetcher.messages, active=switch
                )
                service.index, service.index_active = index, switch
            else:
                log.info("search index: not available with %s yet; searches go to the server",
                         engine.dialect.name)
        return cls(
            config, hub, replica, pool, sync, content, journal, users, service, Subscriptions(engine), auth,
            index,
        )

    async def start(self, *, initial_sync: bool = True) -> None:
        # Operations interrupted by a crash are settled before anything else.
        await self.service.recover_intents()
        if initial_sync:
            try:
                await self.sync.initial_sync()
            except (UpstreamUnavailable, UpstreamError) as exc:
                # Serve what the replica holds; the watcher and the periodic
                # check catch up once the hoster answers again.
                log.warning("start-up sync failed (%s); serving from the replica", exc)
                if not self.replica.names():
                    log.warning("the replica is empty: clients will see no folders until upstream answers")
        self.sync.start()
        if self.index is not None:
            await self.index.start()

    async def stop(self) -> None:
        if self.index is not None:
            await self.index.stop()
        await self.service.stop()
        await self.sync.stop()
        await self.pool.close()
        self.auth.close()
