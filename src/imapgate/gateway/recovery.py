"""Recoverable deletes: the pre-removal hook that copies a message into the hidden
recovery folder before the gateway removes it upstream (issue 13, docs/recovery.md).

Which removals keep a copy: EXPUNGE, UID EXPUNGE, CLOSE, and DELETE of a folder
with messages.  Not kept: a native MOVE and the originals of a move without MOVE
(their copies have arrived in the target), and removals in the recovery folder
itself.  A MOVE into a ``\\Trash`` folder is remembered by Message-ID, so a
message expunged there is later restored into the folder it was in before.

Order, on the removing connection (its folder selected), for one removal:

1. the messages' flags, date, size and headers (UID FETCH), everyone's private
   flags from the replica, and ``STATUS`` of the recovery folder (its UIDVALIDITY
   and UIDNEXT: where the copies will be);
2. an intent ("recovery") with all of that, before anything changes upstream;
3. ``UID COPY`` into the recovery folder.  A refusal (quota: ``[OVERQUOTA]``)
   ends the removal with a NO that says so: nothing is removed without a copy;
4. the items, ``pending`` (listed nowhere), with their copy UIDs (COPYUID);
5. the removal itself (``Remover``); then ``after_removal`` marks ``kept`` the
   items whose originals are gone, and finishes the intent.

A crash anywhere leaves an open intent.  ``settle`` (at start-up, before
anything is served) looks at the hoster: an original still in its folder keeps
its place, and its copy is dropped (``void``); an original gone has its copy
``kept`` (found by COPYUID or, after a crash before the answer, by Message-ID
among the recovery folder's new UIDs).  So a message is where it was or
recoverable, never gone, never both.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..config import RecoveryConfig
from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute, Section
from ..protocol.search import SearchHeader, SearchUid
from ..protocol.sequence import STAR, SequenceSet
from ..replica.mailbox import MailboxIndex
from ..replica.replica import Replica
from ..sync.engine import SyncEngine
from ..team.recovery_store import KEPT, PENDING, VOID, RecoveryItem, RecoveryStore
from ..upstream.connection import CommandResult, UpstreamConnection, UpstreamError, UpstreamUnavailable
from ..upstream.pool import UpstreamPool
from .errors import OperationError
from .intents import Intent, IntentLog
from .removal import Removal, Remover

log = logging.getLogger("imapgate.recovery")

INTENT_KIND = "recovery"
#: Headers kept with an item (what `imapgate recovery list` and its search show).
_HEADER = FetchAttribute(
    "BODY", Section((), "HEADER.FIELDS", ("MESSAGE-ID", "SUBJECT", "FROM", "DATE")), peek=True
)
_META = (FetchAttribute("UID"), FetchAttribute("FLAGS"), FetchAttribute("INTERNALDATE"),
         FetchAttribute("RFC822.SIZE"), _HEADER)  # fmt: skip
#: Flags a copy's item does not keep: \\Deleted is why it went, \\Recent is session state.
_DROPPED_FLAGS = frozenset({"\\Deleted", "\\Recent"})


def is_trash(mb: MailboxIndex | None, name: str) -> bool:
    """A folder clients delete into: SPECIAL-USE ``\\Trash``, else named Trash."""
    if mb is not None and any(a.lower() == "\\trash" for a in mb.attributes):
        return True
    return name.rsplit("/", 1)[-1].lower() in ("trash", "deleted items", "deleted messages")


class RecoveryHook:
    """The pre-removal hook of ``[recovery] enabled`` (see the module docstring)."""

    def __init__(
        self,
        cfg: RecoveryConfig,
        store: RecoveryStore,
        intents: IntentLog,
        replica: Replica,
        sync: SyncEngine,
    ) -> None:
        self.cfg = cfg
        self.folder = cfg.folder
        self.store = store
        self.intents = intents
        self.replica = replica
        self.sync = sync
        #: Removals under way: id(removal) -> the intents whose items they settle.
        self._open: dict[int, set[int]] = {}
        #: For work on a connection of its own (set by the composition: app.py).
        self.pool: UpstreamPool | None = None

    # -- the hook ------------------------------------------------------------------------
    async def before_removal(
        self, conn: UpstreamConnection, removal: Removal, mb: MailboxIndex | None
    ) -> None:
        if removal.mailbox == self.folder:
            return  # the recovery folder's own removals (restore, purge) keep nothing
        if removal.kind == "move" or removal.flag_first:
            # The messages arrive in the target; remember where Trash's came from.
            self._remember_trash(removal, mb)
            return
        uids, uidvalidity = await self._targets(conn, removal, mb)
        if not uids:
            return
        already = self.store.open_originals(removal.mailbox, uidvalidity, uids)
        if already:
            # A repeated removal (the hoster kept some): their items exist already.
            self._open.setdefault(id(removal), set()).update(i for i in already.values() if i)
        todo = [u for u in uids if u not in already]
        if not todo:
            return
        items = await self._describe(conn, removal, mb, uidvalidity, todo)
        if not items:
            return
        copy_uidvalidity, copy_from = await self._recovery_status(conn)
        for item in items:
            item.copy_uidvalidity = copy_uidvalidity
        intent = self.intents.begin(
            INTENT_KIND,
            {"kind": removal.kind, "copy_from": copy_from, "items": [i.payload() for i in items]},
        )
        uidset = SequenceSet.from_ids([i.uid for i in items])
        try:
            res = await conn.run(lambda tag: cmd.Copy(tag, uidset, self.folder, uid=True))
        except UpstreamUnavailable:
            raise  # the intent stays open: settled when the hoster answers again
        if not res.ok:
            self.intents.finish(intent, "refused")
            raise _refused(res, removal)
        copyuid = res.code_of_type(rsp.CopyUidCode)
        if copyuid is not None and copyuid.uidvalidity == copy_uidvalidity:
            mapping = dict(zip(copyuid.source.iter(0), copyuid.dest.iter(0), strict=False))
            for item in items:
                item.copy_uid = mapping.get(item.uid)
        for item in items:
            item.intent_id = intent
        self.store.add(items)
        self._open.setdefault(id(removal), set()).add(intent)
        copies = [i.copy_uid for i in items if i.copy_uid is not None]
        if copies and self.pool is not None:
            self.sync.spawn(self._clear_deleted(self.pool, copies, copy_uidvalidity))
        elif self.replica.get(self.folder) is None:
            self.sync.request_list()

    async def after_removal(self, conn: UpstreamConnection, removal: Removal, done: bool) -> None:
        intents = self._open.pop(id(removal), set())
        for intent in sorted(intents):
            items = [i for i in self.store.of_intent(intent) if i.state == PENDING]
            if removal.kind == "delete-mailbox":
                if done:
                    self.store.set_state([i.id for i in items], KEPT)
                    self.intents.finish(intent)
                continue  # not done: the folder may still be there; settled later
            try:
                still = await _present(conn, [i.uid for i in items])
            except (UpstreamError, UpstreamUnavailable) as exc:
                log.warning("recovery: cannot check the removal in %s yet (%s)", removal.mailbox, exc)
                continue
            # Kept: gone, with a copy known.  Without COPYUID (no UIDPLUS) the copies are
            # found by Message-ID when the intent is settled (the retention pass does).
            kept = [i for i in items if i.uid not in still and i.copy_uid is not None]
            self.store.set_state([i.id for i in kept], KEPT)
            if len(kept) == len(items):
                self.intents.finish(intent)
            # Messages the hoster kept stay pending (listed nowhere): a repeated removal
            # settles them, else ``settle`` does (their copies are then dropped).

    async def _clear_deleted(self, pool: UpstreamPool, copy_uids: Sequence[int], uidvalidity: int) -> None:
        """The copies arrive with the originals' \\Deleted: cleared at once, on a
        connection of their own, so nothing but the gateway's exact UID EXPUNGE of
        a restore or purge ever removes one (not an EXPUNGE of the folder by
        anyone at the hoster; not the shielding of a server without UIDPLUS)."""
        try:
            async with pool.connection(self.folder, need_uid=max(copy_uids)) as conn:
                if conn.selected_uidvalidity == uidvalidity:
                    uidset = SequenceSet.from_ids(copy_uids)
                    await conn.check(
                        lambda tag: cmd.Store(tag, uidset, "remove", ("\\Deleted",), silent=True, uid=True)
                    )
        except (UpstreamError, UpstreamUnavailable) as exc:
            log.warning("recovery: \\Deleted not cleared on copies %s yet: %s", copy_uids, exc)
        if self.replica.get(self.folder) is None:
            await self.sync.sync_list()
        self.sync.request(self.folder)

    # -- settling after a crash ----------------------------------------------------------
    async def settle(self, intent: Intent, pool: UpstreamPool) -> int:
        """Settle an open recovery intent from what the hoster holds; 1 when done, 0
        when the hoster cannot be asked now (the intent stays open)."""
        p = intent.payload
        planned = [RecoveryItem.from_payload(x) for x in p.get("items", [])]
        rows = {(i.mailbox, i.uid): i for i in self.store.of_intent(intent.id)}
        items = [rows.get((x.mailbox, x.uid), x) for x in planned]
        items = [i for i in items if i.state == PENDING]
        try:
            if items and any(i.copy_uid is None for i in items):
                async with pool.connection(self.folder) as conn:
                    if conn.selected_uidvalidity == items[0].copy_uidvalidity:
                        await self._find_copies(conn, items, int(p.get("copy_from", 1)))
            present = await self._originals_present(pool, items)
            drop = [i.copy_uid for i in items if (i.mailbox, i.uid) in present and i.copy_uid is not None]
            if drop:
                await self._drop_copies(pool, drop, items[0].copy_uidvalidity)
        except (UpstreamError, UpstreamUnavailable) as exc:
            log.warning("recovery: open removal %d not settled yet: %s", intent.id, exc)
            return 0
        kept = [i for i in items if (i.mailbox, i.uid) not in present and i.copy_uid is not None]
        lost = [i for i in items if (i.mailbox, i.uid) not in present and i.copy_uid is None]
        void = [i for i in items if (i.mailbox, i.uid) in present]
        for state, group in ((KEPT, kept), (VOID, void + lost)):
            new = [i for i in group if i.id == 0]
            for i in new:
                i.state, i.intent_id = state, intent.id
            self.store.add(new)
            self.store.set_state([i.id for i in group if i not in new], state)
        for i in lost:
            # Only possible for a message without Message-ID whose COPY answer was lost:
            # its copy is in the recovery folder, unlisted (purged with the folder's others).
            log.error("recovery: the copy of %s UID %d cannot be identified", i.mailbox, i.uid)
        self.intents.finish(intent.id, f"settled: {len(kept)} kept, {len(void)} stayed, {len(lost)} unknown")
        log.warning(
            "recovery: interrupted removal settled (%d kept, %d stayed in place)", len(kept), len(void)
        )
        return 1

    # -- steps -----------------------------------------------------------------------------
    def _remember_trash(self, removal: Removal, mb: MailboxIndex | None) -> None:
        dest = removal.dest
        if dest is None or mb is None or removal.uids is None:
            return
        if not is_trash(self.replica.get(dest), dest) or is_trash(mb, mb.name):
            return
        origins = []
        for uid in removal.uids.iter(0):
            rec = mb.records.get(uid)
            if rec is not None and rec.message_id:
                origins.append((rec.message_id, mb.name))
        self.store.remember_trash(dest, origins)

    async def _targets(
        self, conn: UpstreamConnection, removal: Removal, mb: MailboxIndex | None
    ) -> tuple[list[int], int]:
        """The UIDs about to go and their folder's UIDVALIDITY (DELETE: every message,
        as the hoster lists them, on the removing connection)."""
        if removal.kind == "delete-mailbox":
            if conn.selected != removal.mailbox:
                await conn.select(removal.mailbox)
            res = await conn.check(
                lambda tag: cmd.Search(tag, (SearchUid(SequenceSet(((1, STAR),))),), uid=True)
            )
            uids = sorted({u for s in res.of_type(rsp.Search) for u in s.ids})
            return uids, conn.selected_uidvalidity
        assert removal.uids is not None
        uidvalidity = conn.selected_uidvalidity or (mb.uidvalidity if mb is not None else 0)
        return sorted(set(removal.uids.iter(0))), uidvalidity

    async def _describe(
        self,
        conn: UpstreamConnection,
        removal: Removal,
        mb: MailboxIndex | None,
        uidvalidity: int,
        uids: Sequence[int],
    ) -> list[RecoveryItem]:
        """An item per message still there: flags, date, size, headers, private flags."""
        res = await conn.check(lambda tag: cmd.Fetch(tag, SequenceSet.from_ids(uids), _META, uid=True))
        private = self._private_flags(mb, uids)
        restore_to = removal.mailbox
        by = removal.by
        items: list[RecoveryItem] = []
        for f in res.of_type(rsp.FetchResponse):
            uid = f.uid
            if uid is None or uid not in uids:
                continue
            header = f.items.get(_HEADER.response_name())
            fields = _headers(header if isinstance(header, bytes) else b"")
            when = f.items.get(b"INTERNALDATE")
            size = f.items.get(b"RFC822.SIZE")
            message_id = fields.get("message-id") or None
            target = restore_to
            if message_id and is_trash(mb, removal.mailbox):
                target = self.store.trash_origin(removal.mailbox, message_id) or restore_to
            items.append(
                RecoveryItem(
                    mailbox=removal.mailbox, uidvalidity=uidvalidity, uid=uid, copy_uidvalidity=0,
                    internal_date=when.timestamp() if isinstance(when, datetime) else 0.0,
                    size=size if isinstance(size, int) else 0, how=_how(removal), restore_to=target,
                    message_id=message_id, subject=fields.get("subject", ""), sender=fields.get("from", ""),
                    date=fields.get("date", ""),
                    flags=tuple(sorted(set(f.flags or ()) - _DROPPED_FLAGS)),
                    private={user: flags for user, per in private.items() if (flags := per.get(uid, ()))},
                    removed_by=by.user if by is not None else None,
                    client=by.client if by is not None else "gateway",
                )
            )  # fmt: skip
        return items

    def _private_flags(
        self, mb: MailboxIndex | None, uids: Sequence[int]
    ) -> dict[int, dict[int, tuple[str, ...]]]:
        """{user id: {uid: private flags}} of everyone with private state in ``mb``."""
        out: dict[int, dict[int, tuple[str, ...]]] = {}
        if mb is None or self.replica.get(mb.name) is not mb:
            return out
        for user_id in self.replica.users_with_private_state(mb):
            state = self.replica.private_state(mb, user_id)
            per: dict[int, list[str]] = {}
            for flag, members in state.flags.items():
                for uid in uids:
                    if uid in members:
                        per.setdefault(uid, []).append(flag)
            out[user_id] = {u: tuple(sorted(f)) for u, f in per.items()}
        return out

    async def _recovery_status(self, conn: UpstreamConnection) -> tuple[int, int]:
        """(UIDVALIDITY, UIDNEXT) of the recovery folder, created when missing."""
        for attempt in (1, 2):
            res = await conn.run(lambda tag: cmd.Status(tag, self.folder, ("UIDVALIDITY", "UIDNEXT")))
            if res.ok:
                for s in res.of_type(rsp.StatusResponse):
                    items = dict(s.items)
                    return int(items.get("UIDVALIDITY", 0)), int(items.get("UIDNEXT", 1))
            if attempt == 1:
                created = await conn.run(lambda tag: cmd.Create(tag, self.folder, ()))
                if not created.ok and created.tagged.code != rsp.ALREADYEXISTS:
                    raise OperationError(
                        f"cannot create the recovery folder {self.folder!r} at the mail server "
                        f"({created.tagged.text}); nothing was removed",
                        "CANNOT",
                    )
                log.info("recovery: created the hidden folder %s", self.folder)
                self.sync.request_list()
        raise OperationError(
            f"the recovery folder {self.folder!r} cannot be opened; nothing was removed", "CANNOT"
        )

    async def _find_copies(
        self, conn: UpstreamConnection, items: Sequence[RecoveryItem], copy_from: int
    ) -> None:
        """Copy UIDs by Message-ID among the recovery folder's UIDs from ``copy_from``
        (no COPYUID, or its answer lost); ``conn`` is on the recovery folder."""
        taken = self.store.copy_uids(items[0].copy_uidvalidity) if items else set()
        for item in items:
            if item.copy_uid is not None or not item.message_id:
                continue
            criteria = (
                SearchUid(SequenceSet(((max(copy_from, 1), STAR),))),
                SearchHeader("Message-ID", item.message_id.encode("utf-8")),
            )
            res = await conn.check(lambda tag, c=criteria: cmd.Search(tag, c, uid=True))  # type: ignore[misc]
            found = sorted(
                u for s in res.of_type(rsp.Search) for u in s.ids if u >= copy_from and u not in taken
            )
            if found:
                item.copy_uid = found[0]
                taken.add(found[0])

    async def _originals_present(
        self, pool: UpstreamPool, items: Sequence[RecoveryItem]
    ) -> set[tuple[str, int]]:
        """Which of the items' originals are still in their folders at the hoster."""
        present: set[tuple[str, int]] = set()
        by_folder: dict[tuple[str, int], list[int]] = {}
        for i in items:
            by_folder.setdefault((i.mailbox, i.uidvalidity), []).append(i.uid)
        for (name, uidvalidity), uids in by_folder.items():
            async with pool.connection() as conn:
                res = await conn.select(name)
                if not res.ok or conn.selected_uidvalidity != uidvalidity:
                    continue  # folder deleted or rebuilt: the originals are gone
                present.update((name, u) for u in await _present(conn, uids))
        return present

    async def _drop_copies(self, pool: UpstreamPool, copy_uids: Sequence[int], uidvalidity: int) -> None:
        async with pool.connection(self.folder) as conn:
            if conn.selected_uidvalidity != uidvalidity:
                return
            removal = Removal("expunge", self.folder, SequenceSet.from_ids(copy_uids), flag_first=True)
            await Remover().remove(conn, removal, self.replica.get(self.folder))


async def _present(conn: UpstreamConnection, uids: Sequence[int]) -> set[int]:
    """Of ``uids``, those in ``conn``'s selected folder (UID SEARCH UID set)."""
    if not uids:
        return set()
    res = await conn.check(lambda tag: cmd.Search(tag, (SearchUid(SequenceSet.from_ids(uids)),), uid=True))
    wanted = set(uids)
    return {u for s in res.of_type(rsp.Search) for u in s.ids if u in wanted}


def _headers(raw: bytes) -> dict[str, str]:
    msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    out: dict[str, str] = {}
    for key in ("message-id", "subject", "from", "date"):
        value = msg.get(key)
        if value is not None:
            out[key] = " ".join(str(value).split())
    return out


def _how(removal: Removal) -> str:
    return "DELETE" if removal.kind == "delete-mailbox" else "EXPUNGE"


def _refused(res: CommandResult, removal: Removal) -> OperationError:
    code = res.tagged.code
    name = code.name if isinstance(code, rsp.AtomCode) else "CANNOT"
    what = "the folder was not deleted" if removal.kind == "delete-mailbox" else "nothing was expunged"
    return OperationError(
        f"the mail server refused the recovery copy ({res.tagged.text}); {what} "
        "(free space at the mail server, or shorten [recovery] retention)",
        name,
    )


def settler(hook: RecoveryHook, pool: UpstreamPool) -> Any:
    """The ``MailService.settlers`` entry of recovery intents."""

    async def settle(intent: Intent) -> int:
        return await hook.settle(intent, pool)

    return settle
