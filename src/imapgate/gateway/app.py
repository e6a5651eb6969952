"""Composition: build every part of the gateway from the configuration, start
and stop them in order."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Config
from ..errors import OperatorError
from ..replica.content import ContentCache
from ..replica.events import EventHub
from ..replica.replica import Replica
from ..replica.sync import ProgressFn, SyncEngine
from ..store.engine import open_engine
from ..team.journal import Journal
from ..team.subscriptions import Subscriptions
from ..team.users import UserDirectory
from ..upstream.connection import UpstreamError, UpstreamLoginRefused, UpstreamUnavailable
from ..upstream.pool import UpstreamPool
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
        return cls(config, hub, replica, pool, sync, content, journal, users, service, Subscriptions(engine))

    async def start(self, *, initial_sync: bool = True) -> None:
        """Settle interrupted operations, sync, start the watcher.

        With ``initial_sync``, a start that would serve nothing useful is an
        ``OperatorError`` (the process exits; systemd restarts it later): the
        hoster refuses the login (a wrong password does not heal by itself and
        must not look like an empty mailbox), or it cannot be reached and the
        replica is empty (first start).  Unreachable with a replica: serve it,
        and catch up when the hoster answers."""
        # Operations interrupted by a crash are settled before anything else.
        await self.service.recover_intents()
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
        self.sync.start()

    async def stop(self) -> None:
        await self.service.stop()
        await self.sync.stop()
        await self.pool.close()
