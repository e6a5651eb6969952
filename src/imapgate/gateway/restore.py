"""Restore and purge of recoverable items (the other half of gateway/recovery.py).

Restore: the copy is read from the hidden recovery folder and APPENDed to the
target folder (created again if it was deleted) with its shared flags; every
user's private flags of the original are set on the new message; then the copy
leaves the recovery folder and the item is ``restored``, its journal entry in
the same transaction.  An intent ("restore") covers the APPEND and the removal
of the copy: after a crash in between, ``settle`` looks for the Message-ID in
the target among the UIDs from before the APPEND and finishes (copy dropped) or
rolls back (the item stays recoverable).

Purge: items older than ``[recovery] retention`` (or ``--older-than``) have their
copies removed from the recovery folder and become ``purged``.  The gateway runs
it in the background (``RETENTION_CHECK``), which also settles recovery intents
left open (a removal whose copies had no COPYUID).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..config import RecoveryConfig
from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute, Section
from ..protocol.search import SearchHeader, SearchUid
from ..protocol.sequence import STAR, SequenceSet
from ..team.journal import JournalEntry, MessageRef
from ..team.recovery_store import KEPT, PURGED, RESTORED, ItemFilter, RecoveryItem, RecoveryStore
from ..upstream.connection import UpstreamError, UpstreamUnavailable
from . import operations as ops
from .errors import OperationError
from .intents import Intent
from .policy import Actor
from .recovery import INTENT_KIND, RecoveryHook
from .removal import Removal

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger("imapgate.recovery")

RESTORE_KIND = "restore"
#: How often the retention pass runs at most / at least: a tenth of the retention
#: (an item outlives it by at most 10 %), never more often than every 30 s, and at
#: least hourly (so a shortened retention takes effect soon).
RETENTION_CHECK_MIN = 30.0
RETENTION_CHECK_MAX = 3600.0
#: An open recovery intent older than this is settled by the retention pass (its
#: removal is over; the copies had no COPYUID, or the settlement failed before).
OPEN_INTENT_AGE = 60.0
_BODY = FetchAttribute("BODY", Section(), peek=True)
_CONTENT = (FetchAttribute("UID"), _BODY, FetchAttribute("INTERNALDATE"))


@dataclass(frozen=True)
class Restored:
    item: int
    folder: str
    uid: int | None


class Restorer:
    def __init__(
        self, cfg: RecoveryConfig, store: RecoveryStore, hook: RecoveryHook, service: Service
    ) -> None:
        self.cfg = cfg
        self.folder = cfg.folder
        self.store = store
        self.hook = hook
        self.service = service
        self._task: asyncio.Task[None] | None = None

    # -- restore -------------------------------------------------------------------------
    async def restore(
        self, actor: Actor, items: Sequence[RecoveryItem], dest: str | None = None
    ) -> list[Restored]:
        """Each of ``items`` back into ``dest`` (None: the folder it came from)."""
        done = []
        for item in items:
            if item.state != KEPT:
                raise OperationError(f"item {item.id} is not recoverable (it is {item.state})", "NONEXISTENT")
            done.append(await self._restore_one(actor, item, dest or item.restore_to))
        return done

    async def _restore_one(self, actor: Actor, item: RecoveryItem, target: str) -> Restored:
        service, replica = self.service, self.service.replica
        if replica.get(target) is None:
            # Deleted since: created again (journaled as a CREATE of the restoring actor).
            await service._create(actor, ops.Create(target))
        dest = service.mailbox(target)
        if dest.uidvalidity and not dest.synced:
            await service._ensure_synced(target)
        data, when = await self._read_copy(item)
        private = replica.private_flags_of(dest)
        shared = [f for f in item.flags if f not in private]
        intent = service.intents.begin(
            RESTORE_KIND,
            {"item": item.id, "target": target, "message_id": item.message_id, "dest_uidnext": dest.uidnext},
        )
        result = await service._append(actor, ops.Append(target, [(data, shared, when)]))
        uid = result.dest[0] if result.dest else None
        if uid is not None:
            for user_id, flags in item.private.items():
                wanted = [f for f in flags if f in private]
                if wanted:
                    replica.private_state(dest, user_id)
                    replica.set_private_flags(dest, user_id, {f: [uid] for f in wanted}, {})
        await self._drop_copies([item])
        self._finish(actor, item, RESTORED, target, uid)
        service.intents.finish(intent)
        return Restored(item.id, target, uid)

    async def _read_copy(self, item: RecoveryItem) -> tuple[bytes, datetime | None]:
        if item.copy_uid is None:
            raise OperationError(
                f"item {item.id}: its copy is not identified yet; try again later", "UNAVAILABLE"
            )
        try:
            async with self.service.pool.connection(self.folder, need_uid=item.copy_uid) as conn:
                if conn.selected_uidvalidity != item.copy_uidvalidity:
                    raise OperationError(
                        f"item {item.id}: the recovery folder was rebuilt at the mail server; "
                        "the copy is gone",
                        "NONEXISTENT",
                    )
                res = await conn.check(
                    lambda tag: cmd.Fetch(tag, SequenceSet.from_ids([item.copy_uid or 0]), _CONTENT, uid=True)
                )
        except (UpstreamError, UpstreamUnavailable) as exc:
            raise OperationError(f"item {item.id}: cannot read its copy: {exc}", "UNAVAILABLE") from None
        for f in res.of_type(rsp.FetchResponse):
            body = f.items.get(_BODY.response_name())
            if f.uid == item.copy_uid and isinstance(body, bytes):
                when = f.items.get(b"INTERNALDATE")
                return body, when if isinstance(when, datetime) else None
        raise OperationError(f"item {item.id}: its copy is no longer in the recovery folder", "NONEXISTENT")

    def _finish(self, actor: Actor, item: RecoveryItem, state: str, folder: str, uid: int | None) -> None:
        verb = "RESTORE" if state == RESTORED else "PURGE"
        detail = (
            f"item {item.id} ({item.message_id or 'no Message-ID'}, {item.subject!r}) "
            f"removed from {item.mailbox} by {item.removed_by or 'the gateway'}"
        )
        # The message's history (`imapgate audit --message-id`) names where it went.
        where = (folder, uid) if uid is not None else (item.mailbox, item.uid)
        entry = JournalEntry.by(
            actor, verb, mailbox=folder, uids=str(uid) if uid is not None else None, detail=detail,
            action="restored" if state == RESTORED else "purged",
            messages=(MessageRef(*where, item.message_id, item.subject),),
        )  # fmt: skip
        with self.store.engine.begin() as db:
            self.store.set_state([item.id], state, db)
            entry.write(db)

    async def _drop_copies(self, items: Sequence[RecoveryItem]) -> None:
        """Remove the copies of ``items`` from the recovery folder (exactly them)."""
        by_validity: dict[int, list[int]] = {}
        for i in items:
            if i.copy_uid is not None:
                by_validity.setdefault(i.copy_uidvalidity, []).append(i.copy_uid)
        for uidvalidity, uids in by_validity.items():
            try:
                async with self.service.pool.connection(self.folder, need_uid=max(uids)) as conn:
                    if conn.selected_uidvalidity != uidvalidity:
                        continue  # rebuilt at the hoster: the copies are gone already
                    removal = Removal("expunge", self.folder, SequenceSet.from_ids(uids), flag_first=True)
                    await self.service.remover.remove(conn, removal, self.service.replica.get(self.folder))
            except (UpstreamError, UpstreamUnavailable) as exc:
                raise OperationError(f"cannot remove the recovery copies: {exc}", "UNAVAILABLE") from None
        self.service.sync.request(self.folder)

    async def settle_restore(self, intent: Intent) -> int:
        """A restore interrupted between its APPEND and the end: finished when the
        message is in the target (by Message-ID), else rolled back (still recoverable)."""
        p = intent.payload
        items = self.store.items(ItemFilter(ids=(int(p["item"]),), states=(KEPT,)))
        if not items:
            self.service.intents.finish(intent.id, "nothing left to do")
            return 1
        item = items[0]
        found: list[int] = []
        try:
            if item.message_id and self.service.replica.get(p["target"]) is not None:
                async with self.service.pool.connection(p["target"]) as conn:
                    criteria = (
                        SearchUid(SequenceSet(((max(int(p["dest_uidnext"]), 1), STAR),))),
                        SearchHeader("Message-ID", item.message_id.encode("utf-8")),
                    )
                    res = await conn.check(lambda tag: cmd.Search(tag, criteria, uid=True))
                    found = [u for s in res.of_type(rsp.Search) for u in s.ids if u >= int(p["dest_uidnext"])]
            if found:
                await self._drop_copies([item])
        except (UpstreamError, UpstreamUnavailable, OperationError) as exc:
            log.warning("recovery: interrupted restore of item %d not settled yet: %s", item.id, exc)
            return 0
        if found:
            self._finish(Actor(0, "", "gateway"), item, RESTORED, p["target"], found[0])
            outcome = "finished (the message had arrived; copy removed)"
        else:
            outcome = "rolled back (the message had not arrived; still recoverable)"
        self.service.intents.finish(intent.id, outcome)
        self.service.sync.request(p["target"])
        log.warning("recovery: interrupted restore of item %d: %s", item.id, outcome)
        return 1

    async def restore_ids(self, actor: Actor, ids: Sequence[int]) -> list[Restored]:
        items = self.store.items(ItemFilter(ids=tuple(ids)))
        missing = sorted(set(ids) - {i.id for i in items})
        if missing:
            raise OperationError(f"no recoverable item {', '.join(map(str, missing))}", "NONEXISTENT")
        return await self.restore(actor, items)

    def control_requests(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        """The control socket's requests of recovery (the CLI asks the running
        gateway, whose connections and replica then carry the change)."""

        async def restore(payload: dict[str, Any]) -> dict[str, Any]:
            ids = payload.get("ids")
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                return {"ok": False, "error": 'recovery-restore needs "ids" (a list of numbers)'}
            try:
                done = await self.restore_ids(_requester(payload), ids)
            except OperationError as exc:
                return {"ok": False, "error": exc.text}
            return {"ok": True, "restored": [dataclasses.asdict(r) for r in done]}

        async def purge(payload: dict[str, Any]) -> dict[str, Any]:
            older = payload.get("older_than")
            if older is not None and not isinstance(older, (int, float)):
                return {"ok": False, "error": '"older_than" must be a number of seconds'}
            try:
                purged = await self.purge(_requester(payload), None if older is None else float(older))
            except OperationError as exc:
                return {"ok": False, "error": exc.text}
            return {"ok": True, "purged": purged}

        return {"recovery-restore": restore, "recovery-purge": purge}

    # -- purge ---------------------------------------------------------------------------
    async def purge(self, actor: Actor, older_than: float | None = None) -> list[int]:
        """Purge the items removed more than ``older_than`` seconds ago (None: the
        retention); returns their ids."""
        age = self.cfg.retention if older_than is None else older_than
        items = self.store.expired(time.time() - age)
        if not items:
            return []
        await self._drop_copies(items)
        entry = JournalEntry.by(
            actor, "PURGE", mailbox=None, detail=f"{len(items)} recoverable item(s) older than {age:.0f} s",
            action="purged",
            messages=tuple(MessageRef(i.mailbox, i.uid, i.message_id, i.subject) for i in items),
        )  # fmt: skip
        with self.store.engine.begin() as db:
            self.store.set_state([i.id for i in items], PURGED, db)
            entry.write(db)
        return [i.id for i in items]

    async def settle_old_intents(self) -> None:
        """Settle recovery intents left open for longer than ``OPEN_INTENT_AGE``."""
        now = time.time()
        for intent in self.service.intents.pending():
            if intent.kind == INTENT_KIND and now - intent.created > OPEN_INTENT_AGE:
                await self.hook.settle(intent, self.service.pool)

    def start(self) -> None:
        """The retention pass, in the background while the gateway runs."""
        interval = min(max(self.cfg.retention / 10, RETENTION_CHECK_MIN), RETENTION_CHECK_MAX)

        async def loop() -> None:
            system = Actor(0, "", "gateway")
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.settle_old_intents()
                    purged = await self.purge(system)
                    if purged:
                        log.info("recovery: purged %d item(s) past the retention", len(purged))
                except OperationError as exc:
                    log.warning("recovery: retention pass failed (%s); tried again later", exc.text)
                except Exception:
                    log.exception("recovery: retention pass failed; tried again later")

        self._task = asyncio.create_task(loop(), name="recovery-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _requester(payload: dict[str, Any]) -> Actor:
    """Who asked over the control socket (the CLI names itself; journaled as such)."""
    user = payload.get("user")
    client = payload.get("client")
    return Actor(
        0, user if isinstance(user, str) else "cli", client if isinstance(client, str) else "imapgate cli"
    )
