"""The dashboard's door to the journal and to recovery (issue 15 part B):
a message's history, the audit search, and the recoverable items.

Reads go through ``team.audit.search`` — the query ``AdminService.audit`` and
``imapgate audit`` run — on the gateway's own store, then keep only what the
member may see: entries of folders they may read (``l`` and ``r``), entries
without a folder only when they are theirs; admins see everything.  The
journal has no offset, so a page asks for ``page * per_page`` visible entries
(at most ``MAX_SCAN`` rows read) and slices.  A restore is
``Restorer.restore`` (the code the CLI's ``imapgate recovery restore`` runs in
the gateway), whose appends go through ``Service.execute`` as the member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..gateway.app import Gateway
from ..gateway.policy import Actor
from ..gateway.team_reads import AuditQuery, AuditRecord, ItemFilter, RecoveryItem, audit_search

#: Journal rows read for one audit page at most: the permission filter runs in
#: Python, and 20,000 rows are read in well under a second on SQLite.
MAX_SCAN: Final = 20_000
#: Entries per audit page (the API may ask for up to MAX_AUDIT_PER_PAGE).
AUDIT_PER_PAGE: Final = 50
MAX_AUDIT_PER_PAGE: Final = 500
#: History entries shown for one message: a message handled for years has a few dozen.
HISTORY_LIMIT: Final = 200

MayRead = Callable[[Actor, str | None], bool]


@dataclass(frozen=True, slots=True)
class AuditPage:
    records: tuple[AuditRecord, ...]
    page: int
    per_page: int
    more: bool


class JournalDesk:
    def __init__(self, gw: Gateway, may_read: MayRead) -> None:
        self.gw = gw
        self.may_read = may_read

    def _visible(self, actor: Actor, record: AuditRecord, admin: bool) -> bool:
        e = record.entry
        if admin:
            return True
        if e.mailbox is None:
            return e.user == actor.user
        return self.may_read(actor, e.mailbox)

    def audit(self, actor: Actor, query: AuditQuery, page: int, per_page: int, admin: bool) -> AuditPage:
        """One page of the entries matching ``query`` that ``actor`` may see, newest first."""
        per_page = max(1, min(per_page, MAX_AUDIT_PER_PAGE))
        want = page * per_page + 1
        scan = min(MAX_SCAN, want if admin else want * 4)
        rows = audit_search(self.gw.journal.engine, AuditQuery(**{**query.__dict__, "limit": scan}))
        visible = [r for r in rows if self._visible(actor, r, admin)]
        chosen = visible[(page - 1) * per_page : page * per_page]
        return AuditPage(tuple(chosen), page, per_page, len(visible) > page * per_page)

    def history(self, actor: Actor, message_id: str | None, admin: bool) -> list[AuditRecord]:
        """What happened to one message (by its Message-ID, across folders), oldest first."""
        if not message_id:
            return []
        found = self.audit(actor, AuditQuery(message_id=message_id), 1, HISTORY_LIMIT, admin)
        return list(reversed(found.records))

    # -- recovery ------------------------------------------------------------------------
    def recoverable(self, actor: Actor, admin: bool) -> list[RecoveryItem]:
        """Items from folders ``actor`` may read (admins: all), oldest first."""
        if self.gw.recovery is None:
            return []
        items = self.gw.recovery.store.items(ItemFilter())
        return [i for i in items if admin or self._may_restore(actor, i)]

    def _may_restore(self, actor: Actor, item: RecoveryItem) -> bool:
        return self.may_read(actor, item.mailbox) and self.may_read(actor, item.restore_to or item.mailbox)

    async def restore(self, actor: Actor, item_id: int, admin: bool) -> tuple[str, int | None]:
        """Restore one item; (folder, new UID).  Raises LookupError for an item the
        actor may not see (404, as for a folder they may not read)."""
        if self.gw.recovery is None:
            raise LookupError("recovery is off ([recovery] enabled)")
        items = self.gw.recovery.store.items(ItemFilter(ids=(item_id,)))
        if not items or not (admin or self._may_restore(actor, items[0])):
            raise LookupError(f"no recoverable item {item_id}")
        done = await self.gw.recovery.restore(actor, items)
        return done[0].folder, done[0].uid
