"""The dashboard's door to the journal and to recovery (issue 15 part B):
a message's history, the audit search, and the recoverable items.

Reads go through ``team.audit.search`` — the query ``AdminService.audit`` and
``imapgate audit`` run — on the gateway's own store, limited in SQL to what the
member may see (``AuditScope``): entries of folders they may read (``l`` and
``r``), entries without a folder only when they are theirs; admins see
everything.  The folder names the journal holds (deleted and renamed folders'
too) are kept in memory and topped up with each page's newer entries, and the
member's readable ones go into the query: a page is always a full page, however
few of the folders the member may read (a filter after the query once gave
short pages and hid older entries).  A page asks for ``page * per_page + 1``
entries and slices.  A restore is
``Restorer.restore`` (the code the CLI's ``imapgate recovery restore`` runs in
the gateway), whose appends go through ``Service.execute`` as the member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..gateway.app import Gateway
from ..gateway.policy import Actor
from ..gateway.team_reads import (
    AuditQuery,
    AuditRecord,
    AuditScope,
    ItemFilter,
    RecoveryItem,
    audit_folders_since,
    audit_search,
)

#: Journal rows read for one audit page at most (page * per_page + 1).
MAX_SCAN: Final = 20_000
#: Journal ids below the last one read that the folder-name cache reads again (``_scope``).
NAMES_MARGIN: Final = 1_000
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
        #: Folder names in the journal, read up to entry ``_names_upto`` (``_scope``).
        self._names: set[str] = set()
        self._names_upto = 0

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
        want = min(MAX_SCAN, page * per_page + 1)
        scope = None if admin else self._scope(actor)
        rows = audit_search(
            self.gw.journal.engine, AuditQuery(**{**query.__dict__, "limit": want, "scope": scope})
        )
        # The scope decided already; the check again is the belt to its braces (a folder name
        # the cache has not seen yet is simply not in the scope).
        visible = [r for r in rows if self._visible(actor, r, admin)]
        chosen = visible[(page - 1) * per_page : page * per_page]
        return AuditPage(tuple(chosen), page, per_page, len(visible) > page * per_page)

    def _scope(self, actor: Actor) -> AuditScope:
        """The folders of the journal ``actor`` may read (and their own folder-less entries)."""
        # Re-read a margin below the last id: on PostgreSQL concurrent writers may commit a
        # lower id after a higher one was read.
        names, upto = audit_folders_since(self.gw.journal.engine, max(0, self._names_upto - NAMES_MARGIN))
        self._names |= names
        self._names_upto = max(self._names_upto, upto)
        candidates = self._names | set(self.gw.replica.names())
        return AuditScope(actor.user, tuple(sorted(n for n in candidates if self.may_read(actor, n))))

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
