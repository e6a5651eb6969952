"""The recovery admin verbs: ``imapgate recovery list | restore | purge``.

Reached as ``AdminService.recovery``.  ``list`` reads the store (no right
asked: whoever can run it can read the store file).  ``restore`` and ``purge``
ask the policy (``ADMIN_RIGHTS``), then act at the hoster: through the running
gateway when there is one (control socket: its connections, replica and
sessions carry the change at once), else in this process under the store lock
(the same code: gateway/restore.py).  Each journals what it did (RESTORE /
PURGE, user ``cli``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from ..config import ConfigError, parse_duration
from ..store.lock import StoreLock
from ..team.recovery_store import ItemFilter, RecoveryItem, RecoveryStore
from . import control
from .admin import AdminError, AdminService
from .errors import OperationError
from .restore import Restored, Restorer

T = TypeVar("T")
#: A restore or purge through the running gateway may wait for the hoster for each
#: message; the CLI waits this long for its answer.
REQUEST_TIMEOUT = 300.0


@dataclass(frozen=True)
class RestoreReport:
    restored: list[Restored]
    via_gateway: bool


def since_time(text: str) -> float:
    """``--since``: a duration ago ("7d", "8h") or a date ("2026-12-01", ISO)."""
    try:
        return time.time() - parse_duration(text, "--since")
    except ConfigError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AdminError(f'--since {text!r}: a duration like "7d" or a date like 2026-12-01') from None
    return when.timestamp()


class RecoveryAdmin:
    def __init__(self, admin: AdminService) -> None:
        self.admin = admin
        self.config = admin.config

    @property
    def _store(self) -> RecoveryStore:
        return RecoveryStore(self.admin.engine)

    def items(
        self,
        *,
        folder: str | None = None,
        user: str | None = None,
        since: float | None = None,
        search: str | None = None,
    ) -> list[RecoveryItem]:
        """The recoverable items, oldest first."""
        return self._store.items(ItemFilter(folder=folder, user=user, since=since, search=search))

    def restore(
        self, ids: list[int] | None = None, *, user: str | None = None, since: float | None = None
    ) -> RestoreReport:
        """Restore items by id, or every item ``user`` removed since ``since``."""
        self.admin.authorize("recovery restore")
        if ids:
            known = {i.id for i in self._store.items(ItemFilter(ids=tuple(ids)))}
            missing = [str(i) for i in ids if i not in known]
            if missing:
                raise AdminError(
                    f"no recoverable item {', '.join(missing)} (restored, purged, or never there: "
                    "see `imapgate recovery list`)"
                )
            chosen = ids
        else:
            if user is None:
                raise AdminError("name the items to restore (IDs), or --user (with --since)")
            chosen = [i.id for i in self.items(user=user, since=since)]
            if not chosen:
                raise AdminError(
                    f"no recoverable items removed by {user}" + (" in that time" if since else "")
                )
        payload = {"request": "recovery-restore", "ids": chosen, "user": self.admin.actor.user,
                   "client": self.admin.actor.client}  # fmt: skip
        try:
            answer = control.request(self.config.store.data_dir, payload, timeout=REQUEST_TIMEOUT)
        except control.NoGateway:
            done = self._offline(lambda r: r.restore_ids(self.admin.actor, chosen))
            return RestoreReport(done, via_gateway=False)
        except control.ControlError as exc:
            raise AdminError(f"recovery restore: {exc}") from None
        return RestoreReport([Restored(**r) for r in answer.get("restored", [])], via_gateway=True)

    def purge(self, older_than: float | None = None) -> list[int]:
        """Purge the items older than ``older_than`` seconds (None: the retention)."""
        self.admin.authorize("recovery purge")
        payload = {"request": "recovery-purge", "older_than": older_than, "user": self.admin.actor.user,
                   "client": self.admin.actor.client}  # fmt: skip
        try:
            answer = control.request(self.config.store.data_dir, payload, timeout=REQUEST_TIMEOUT)
        except control.NoGateway:
            return self._offline(lambda r: r.purge(self.admin.actor, older_than))
        except control.ControlError as exc:
            raise AdminError(f"recovery purge: {exc}") from None
        return [int(i) for i in answer.get("purged", [])]

    def _offline(self, work: Callable[[Restorer], Awaitable[T]]) -> T:
        if not self.config.recovery.enabled:
            raise AdminError("recovery is off: set [recovery] enabled = true (docs/recovery.md)")
        self.admin.close()  # this process's store handle: the gateway below opens its own

        async def run() -> T:
            from .app import Gateway

            gw = Gateway.build(self.config)
            try:
                assert gw.recovery is not None
                await gw.service.recover_intents()
                await gw.sync.sync_list()
                return await work(gw.recovery)
            except OperationError as exc:
                raise AdminError(exc.text) from None
            finally:
                await gw.pool.close()
                gw.replica.engine.dispose()

        with StoreLock(self.config.store.data_dir, "imapgate recovery"):
            return asyncio.run(run())
