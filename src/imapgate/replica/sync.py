"""The sync engine: keeps the replica equal to the upstream mailbox.

Per mailbox, the best method the server offers:

* QRESYNC: ``SELECT box (QRESYNC (uidvalidity modseq))`` returns VANISHED and
  changed flags in one round trip;
* CONDSTORE: ``UID FETCH 1:* (FLAGS) (CHANGEDSINCE m)`` plus ``UID SEARCH ALL``
  when the message count says something was expunged;
* neither: ``UID FETCH 1:* (FLAGS)`` and a full comparison.

New messages are fetched by UID range in batches (progress is reported per
batch).  A UIDVALIDITY change resets the mailbox in the replica: stale UIDs are
never served.

Change detection: one dedicated connection with NOTIFY for all folders (or IDLE
on the folder most sessions have open, the other open folders checked every
``ACTIVE_POLL_SECONDS``), plus a periodic check of every folder as a safety net.  Sync requests
are debounced and coalesced per mailbox, and skipped when the notification's
HIGHESTMODSEQ shows nothing the replica does not have.  On a pooled connection
that still has the folder selected, a sync is ``NOOP`` + ``UID FETCH 1:n (FLAGS)
(CHANGEDSINCE m VANISHED)`` (+ new messages) instead of a re-SELECT.

A mailbox's sync and the replica updates of the gateway's own writes are
serialised by ``mailbox_lock``; the writes' upstream commands run outside it.
Flag reports therefore reach the replica out of order, and each carries the
upstream MODSEQ (CONDSTORE) it describes: ``apply_flags`` keeps, per message,
the MODSEQ of the flags the replica holds and drops older reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute, Section
from ..protocol.sequence import STAR, SequenceSet
from ..upstream.connection import (
    CommandResult,
    UpstreamConnection,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..upstream.pool import UpstreamPool
from .mailbox import MailboxIndex, MessageRecord
from .replica import Hook, Replica

log = logging.getLogger("imapgate.sync")

#: UIDs per FETCH of new messages: big enough for throughput, small enough for
#: progress reports and bounded memory on a 100,000-message first sync.
FETCH_BATCH = 5000
#: Seconds a requested sync waits, so that a burst of notifications (a busy
#: team writing) gives one sync instead of one per change.
DEBOUNCE = 0.05
#: Without NOTIFY the watcher IDLEs on one folder (the one most sessions have
#: open); the other folders that sessions have open are checked this often
#: (seconds), the rest every ``poll_interval``.
ACTIVE_POLL_SECONDS = 10.0

#: Flags upstream reported for a message, and the MODSEQ they are at (None: the
#: server gives none, the report is taken as the newest).
FlagReport = tuple[tuple[str, ...], int | None]

MESSAGE_ID_FIELD = FetchAttribute("BODY", Section((), "HEADER.FIELDS", ("MESSAGE-ID",)), peek=True)
NEW_MESSAGE_ITEMS = (
    FetchAttribute("UID"),
    FetchAttribute("FLAGS"),
    FetchAttribute("INTERNALDATE"),
    FetchAttribute("RFC822.SIZE"),
    MESSAGE_ID_FIELD,
)
_MESSAGE_ID_RE = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>|[^\r\n]+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class SyncProgress:
    mailbox: str
    done: int
    total: int
    phase: str  # "flags", "new", "done"


ProgressFn = Callable[[SyncProgress], None]


class SyncEngine:
    def __init__(
        self,
        pool: UpstreamPool,
        replica: Replica,
        *,
        poll_interval: float = 60.0,
        progress: ProgressFn | None = None,
    ) -> None:
        self.pool = pool
        self.replica = replica
        self.poll_interval = poll_interval
        self.progress = progress
        self._locks: dict[str, asyncio.Lock] = {}
        self._list_lock = asyncio.Lock()
        self._scheduled: set[str] = set()
        self._list_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self.watch_method = "none"
        self.last_sync: dict[str, float] = {}
        #: Per (mailbox id, UIDVALIDITY): upstream MODSEQ of the flags the replica
        #: holds, for messages whose flags changed above the mailbox's synced
        #: HIGHESTMODSEQ (``upstream_modseq``: every other message's flags are at
        #: least that new).  Pruned at every sync.
        self._flag_modseqs: dict[tuple[int, int], dict[int, int]] = {}
        #: Highest HIGHESTMODSEQ announced for a mailbox since its last sync began.
        self._hints: dict[str, int] = {}
        #: Mailboxes with a sync request that says nothing about what changed.
        self._blind: set[str] = set()
        #: True while the watcher's NOTIFY covers every personal folder: changes
        #: seen on pooled connections (often the gateway's own writes) are then
        #: reported by NOTIFY too and need no sync request of their own.
        self._notify_active = False
        self._watcher_conn: UpstreamConnection | None = None
        #: Ends the watcher's IDLE: on stop, or (IDLE fallback) when another
        #: folder became the busiest and should be watched instead.
        self._idle_wake = asyncio.Event()
        pool.on_unsolicited = self._on_unsolicited
        replica.hub.add_interest_listener(self._interest_changed)

    # -- public ---------------------------------------------------------------------
    def mailbox_lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def initial_sync(self) -> None:
        """List every folder and bring each up to date (start-up, ``imapgate sync``)."""
        await self.sync_list()
        for name in self.replica.names():
            mb = self.replica.get(name)
            if mb is not None and self._selectable(mb):
                await self.sync_mailbox(name)

    def start(self) -> None:
        """Start the change watcher and the periodic check."""
        self._stop.clear()
        self.pool.start()
        if self._hoster_down not in self.pool.on_down:
            self.pool.on_down.append(self._hoster_down)
        self._watcher = asyncio.create_task(self._watch_loop(), name="sync-watcher")
        self._poller = asyncio.create_task(self._poll_loop(), name="sync-poller")

    async def stop(self) -> None:
        self._stop.set()
        self._idle_wake.set()
        if self._watcher is not None:
            # Let the watcher end its IDLE with DONE and log out cleanly.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._watcher), 3)
        for t in [self._watcher, self._poller, *self._tasks]:
            if t is not None:
                t.cancel()
        for t in [self._watcher, self._poller, *self._tasks]:
            if t is not None:
                with contextlib.suppress(BaseException):
                    await t

    def request(self, name: str, *, status: rsp.StatusResponse | None = None) -> None:
        """Schedule an incremental sync of ``name`` (debounced, coalesced).

        ``status``: the notification that asked for it; a sync is skipped when its
        HIGHESTMODSEQ is not above what the replica holds."""
        if self._stop.is_set():
            return
        highest = status.items.get("HIGHESTMODSEQ") if status is not None else None
        if highest is None or status is None or self._status_disagrees(name, status):
            self._blind.add(name)
        else:
            self._hints[name] = max(self._hints.get(name, 0), highest)
        if name in self._scheduled:
            return
        self._scheduled.add(name)
        self._spawn(self._run_requested(name))

    def _status_disagrees(self, name: str, status: rsp.StatusResponse) -> bool:
        """True when STATUS shows what HIGHESTMODSEQ alone might not: another
        UIDVALIDITY, more mail than the replica has."""
        mb = self.replica.get(name)
        if mb is None or not mb.synced:
            return True
        items = status.items
        return (
            items.get("UIDVALIDITY", mb.uidvalidity) != mb.uidvalidity
            or items.get("UIDNEXT", 0) > mb.uidnext
            or items.get("MESSAGES", mb.exists) != mb.exists
        )

    def apply_flags(
        self, mb: MailboxIndex, reports: Mapping[int, FlagReport], *, hook: Hook | None = None
    ) -> tuple[int, ...]:
        """Apply flags upstream reported (a sync, a STORE's answer) to the replica;
        returns the UIDs whose flags changed.  A report older than the flags the
        replica holds (a lower MODSEQ) is dropped: writes and syncs run their
        upstream commands concurrently and reach the replica in any order."""
        seen = self._flag_modseqs.setdefault((mb.id, mb.uidvalidity), {})
        floor = mb.upstream_modseq
        accepted: dict[int, tuple[str, ...]] = {}
        newer: dict[int, int] = {}
        unordered: list[int] = []
        for uid, (flags, modseq) in reports.items():
            if uid not in mb.records:
                continue
            if modseq is None:
                unordered.append(uid)  # the next report with a MODSEQ wins over it
            elif modseq <= seen.get(uid, floor):
                continue
            else:
                newer[uid] = modseq
            accepted[uid] = flags
        changed = self.replica.set_shared_flags(mb, accepted, hook=hook)
        seen.update(newer)
        for uid in unordered:
            seen.pop(uid, None)
        return changed

    def _settle_floor(self, mb: MailboxIndex, highest: int) -> None:
        """Every message's flags in the replica are now at least as new as
        upstream's ``highest``: record it, forget the per-message MODSEQs below."""
        self.replica.set_sync_state(mb, upstream_modseq=highest)
        seen = self._flag_modseqs.get((mb.id, mb.uidvalidity))
        if seen:
            floor = mb.upstream_modseq
            for uid in [u for u, m in seen.items() if m <= floor or u not in mb.records]:
                del seen[uid]

    def request_list(self) -> None:
        if self._list_scheduled or self._stop.is_set():
            return
        self._list_scheduled = True
        self._spawn(self._run_list())

    # -- mailbox list ------------------------------------------------------------------
    @property
    def list_lock(self) -> asyncio.Lock:
        """Held while a folder list is fetched and applied: one at a time, so a LIST
        answered before a folder was created is never applied after one that has it."""
        return self._list_lock

    async def sync_list(self, conn: UpstreamConnection | None = None) -> None:
        """Bring the replica's folder list in line with ``LIST "" *``.  ``conn``: list on
        this connection, under ``list_lock`` held by the caller (the connection that just
        created, renamed or deleted a folder: a session always sees its own change)."""
        if conn is not None:
            await self._sync_list(conn)
            return
        async with self._list_lock, self.pool.connection() as c:
            await self._sync_list(c)

    async def _sync_list(self, conn: UpstreamConnection) -> None:
        special = conn.has("SPECIAL-USE")
        res = await conn.check(
            lambda tag: cmd.List(tag, "", ("*",), return_options=("SPECIAL-USE",) if special else None)
        )
        seen: set[str] = set()
        for item in res.of_type(rsp.ListResponse):
            if isinstance(item, rsp.LsubResponse):
                continue
            if any(f.upper() == "\\NONEXISTENT" for f in item.flags):
                continue
            seen.add(item.name)
            self.replica.upsert_mailbox(item.name, item.delimiter, tuple(item.flags))
        for name in self.replica.names():
            if name not in seen:
                log.info("mailbox %s is gone upstream", name)
                self.replica.drop_mailbox(name)

    # -- one mailbox -------------------------------------------------------------------
    @staticmethod
    def _selectable(mb: MailboxIndex) -> bool:
        return not any(a.upper() in ("\\NOSELECT", "\\NONEXISTENT") for a in mb.attributes)

    async def sync_mailbox(self, name: str) -> None:
        async with self.mailbox_lock(name):
            await self._sync_locked(name)

    async def _sync_locked(self, name: str) -> None:
        # What was announced up to now is what this sync covers; requests that
        # arrive from here on schedule the next one.
        self._scheduled.discard(name)
        self._blind.discard(name)
        hint = self._hints.pop(name, 0)
        mb = self.replica.get(name)
        if mb is None or not self._selectable(mb):
            return
        async with self.pool.connection(prefer=name) as conn:
            if self._can_resume(conn, mb):
                await self._sync_resumed(conn, mb, hint)
            else:
                await self._sync_selected(conn, mb)
        self.last_sync[name] = time.time()

    @staticmethod
    def _can_resume(conn: UpstreamConnection, mb: MailboxIndex) -> bool:
        """The connection has the folder selected and the replica knows where it
        stands: changes since then need no re-SELECT (Dovecot's SELECT of a big
        folder costs far more than the few FETCHes)."""
        return (
            "QRESYNC" in conn.enabled
            and conn.selected == mb.name
            and bool(mb.uidvalidity)
            and conn.selected_uidvalidity == mb.uidvalidity
            and mb.synced
            and mb.upstream_modseq > 0
        )

    async def _sync_resumed(self, conn: UpstreamConnection, mb: MailboxIndex, hint: int) -> None:
        """Incremental sync on a connection that has ``mb`` selected (QRESYNC).

        NOOP makes the session announce what others changed (VANISHED, EXISTS,
        FETCH); ``UID FETCH 1:n (FLAGS) (CHANGEDSINCE m VANISHED)`` reports every
        flag change and expunge since the replica's ``upstream_modseq`` m, also
        those this connection's earlier commands were told about; new messages
        are fetched when the session counts more than the replica holds.

        The new floor is the highest MODSEQ in the NOOP's answer, or ``hint`` (a
        HIGHESTMODSEQ announced before this sync began): everything up to either
        was committed before the NOOP, so this sync saw it.  Not the MODSEQs of
        the CHANGEDSINCE answer: an expunge committed between the NOOP and it
        is in neither answer (Dovecot announces no expunge during a FETCH)."""
        floor = mb.upstream_modseq
        known_max = mb.uids[-1] if mb.uids else 0
        noop = await conn.check(lambda tag: cmd.Noop(tag))
        gone: set[int] = set()
        reports: dict[int, FlagReport] = {}
        highest = max([floor, hint] + [f.modseq or 0 for f in noop.of_type(rsp.FetchResponse)])
        answers = list(noop.untagged)
        if known_max:
            changed = await conn.check(_changedsince_builder(known_max, floor))
            answers += changed.untagged
        for r in answers:
            if isinstance(r, rsp.Vanished):
                gone.update(u for u in r.uids.iter(known_max) if u in mb.records)
            elif isinstance(r, rsp.FetchResponse) and r.uid is not None and r.flags is not None:
                reports[r.uid] = (stored_flags(r.flags), r.modseq)
        if gone:
            self.replica.expunge(mb, gone)
        if reports:
            self.apply_flags(mb, reports)
        if conn.exists > len(mb.uids):
            # (Their MODSEQs do not raise the floor: flag changes committed between
            # the CHANGEDSINCE and this fetch were not seen.)
            start = (mb.uids[-1] + 1) if mb.uids else 1
            await self._fetch_new(conn, mb, start, 0, conn.exists - len(mb.uids), highest)
            await self._fill_gaps(conn, mb, highest)
        elif conn.exists < len(mb.uids):
            # The session sees fewer messages than the replica holds after the
            # expunges it reported: something was missed; a re-SELECT settles it.
            log.info("%s: %d upstream vs %d here after resync; re-selecting", mb.name, conn.exists, mb.exists)
            await self._sync_selected(conn, mb)
            return
        self._settle_floor(mb, highest)
        self._report(mb.name, len(mb.uids), len(mb.uids), "done")

    async def _sync_selected(self, conn: UpstreamConnection, mb: MailboxIndex) -> None:
        qresync = None
        if "QRESYNC" in conn.enabled and mb.uidvalidity and mb.upstream_modseq and mb.synced:
            qresync = cmd.QresyncParameters(mb.uidvalidity, mb.upstream_modseq)
        res = await conn.select(mb.name, qresync=qresync)
        if not res.ok:
            raise UpstreamError(res)
        uv = res.code_of_type(rsp.UidValidityCode)
        uidvalidity = uv.value if uv else 0
        hms = res.code_of_type(rsp.HighestModseqCode)
        highest = hms.value if hms else 0
        un = res.code_of_type(rsp.UidNextCode)
        uidnext = un.value if un else 0
        pf = res.code_of_type(rsp.PermanentFlagsCode)
        if pf is not None:
            mb.permanent_flags = pf.flags
        exists_list = res.of_type(rsp.Exists)
        exists = exists_list[-1].count if exists_list else 0

        reset = False
        saved_private: dict[int, dict[str, set[str]]] = {}
        if uidvalidity != mb.uidvalidity:
            if mb.uidvalidity:
                log.warning(
                    "%s: UIDVALIDITY changed %d -> %d: rebuilding", mb.name, mb.uidvalidity, uidvalidity
                )
                saved_private = self.replica.private_by_message_id(mb)
            self._flag_modseqs.pop((mb.id, mb.uidvalidity), None)
            self.replica.reset(mb, uidvalidity, "UIDVALIDITY changed upstream")
            reset = True
        flag_changes: dict[int, FlagReport] = {}
        gone: set[int] = set()
        known_max = mb.uids[-1] if mb.uids else 0
        condstore = "CONDSTORE" in conn.enabled and highest > 0

        if not reset and mb.uids:
            if qresync is not None:
                for v in res.of_type(rsp.Vanished):
                    gone.update(v.uids.iter(known_max))
                for f in res.of_type(rsp.FetchResponse):
                    if f.uid is not None and f.flags is not None:
                        flag_changes[f.uid] = (stored_flags(f.flags), f.modseq)
            elif condstore and mb.upstream_modseq and mb.synced:
                changed = await conn.check(
                    lambda tag: cmd.Fetch(
                        tag,
                        SequenceSet(((1, known_max),)),
                        (FetchAttribute("UID"), FetchAttribute("FLAGS")),
                        uid=True,
                        changedsince=mb.upstream_modseq,
                    )
                )
                for f in changed.of_type(rsp.FetchResponse):
                    if f.uid is not None and f.flags is not None:
                        flag_changes[f.uid] = (stored_flags(f.flags), f.modseq)
                if exists != len(mb.uids):
                    gone = await self._vanished_by_search(conn, mb, known_max)
            else:
                # No CONDSTORE: one full flag scan finds changes and expunges.
                self._report(mb.name, 0, len(mb.uids), "flags")
                full = await conn.check(
                    lambda tag: cmd.Fetch(
                        tag,
                        SequenceSet(((1, known_max),)),
                        (FetchAttribute("UID"), FetchAttribute("FLAGS")),
                        uid=True,
                    )
                )
                present: set[int] = set()
                for f in full.of_type(rsp.FetchResponse):
                    if f.uid is not None and f.flags is not None:
                        present.add(f.uid)
                        flag_changes[f.uid] = (stored_flags(f.flags), f.modseq)
                gone = set(mb.records) - present
        if gone:
            self.replica.expunge(mb, gone)
        if flag_changes:
            self.apply_flags(mb, flag_changes)

        # New messages: everything above what we know, in UID batches.
        start = (mb.uids[-1] + 1) if mb.uids else 1
        expected_new = max(0, exists - len(mb.uids))
        if expected_new or (uidnext and uidnext > start):
            await self._fetch_new(conn, mb, start, uidnext, expected_new, highest)
            await self._fill_gaps(conn, mb, highest)
        self.replica.set_sync_state(mb, uidnext=uidnext or None, synced=True)
        self._settle_floor(mb, highest)
        if saved_private:
            restored = self.replica.reattach_private(mb, saved_private)
            log.info("%s: re-attached %d private flag states by Message-ID", mb.name, restored)
        # With CONDSTORE but not QRESYNC, a count mismatch after adding means
        # expunges happened that we could not see yet.
        if exists and len(mb.uids) > exists:
            gone = await self._vanished_by_search(conn, mb, mb.uids[-1])
            if gone:
                self.replica.expunge(mb, gone)
        self._report(mb.name, len(mb.uids), len(mb.uids), "done")

    async def _vanished_by_search(
        self, conn: UpstreamConnection, mb: MailboxIndex, known_max: int
    ) -> set[int]:
        present = await _uids_upstream(conn, known_max)
        return {u for u in mb.records if u <= known_max and u not in present}

    async def _fill_gaps(self, conn: UpstreamConnection, mb: MailboxIndex, floor: int) -> None:
        """Fetch messages upstream holds below the replica's highest UID but the replica
        never recorded.  New messages are fetched above the highest known UID, and the
        gateway records its own APPEND/COPY results (APPENDUID/COPYUID) at once: when a
        lower UID's record never came (the process died in between, or that command's
        answer was lost), only the count tells.  Costs nothing when the counts agree."""
        if not mb.uids or conn.exists <= len(mb.uids):
            return
        known_max = mb.uids[-1]
        missing = sorted(
            u for u in await _uids_upstream(conn, known_max) if u < known_max and u not in mb.records
        )
        if not missing:
            return
        log.info(
            "%s: %d message(s) below UID %d were never recorded; fetching them",
            mb.name,
            len(missing),
            known_max,
        )
        items = _new_message_items(conn)
        wanted = set(missing)
        res = await conn.check(_uid_fetch_builder(SequenceSet.from_ids(missing), items))
        recs, reports = _split_new_messages(res.of_type(rsp.FetchResponse), missing[0])
        self._record_new(mb, [r for r in recs if r.uid in wanted], reports, floor)

    async def fill_below(self, mb: MailboxIndex, uid: int) -> None:
        """Record every message upstream holds with a UID in [replica UIDNEXT, ``uid``)
        before the gateway records its own APPEND/COPY result ``uid``.

        Caller holds ``mailbox_lock(mb.name)``.  Sessions learn new messages in
        UID order and never below the highest they know (IMAP cannot number a
        message in between), so two APPENDs that finish out of order must not
        leave the lower one to a later sync: it would stay invisible to open
        sessions.  No upstream command when nothing can be missing (the usual
        case: ``uid`` is the replica's UIDNEXT)."""
        start = mb.uidnext
        if not start or uid <= start:
            return
        try:
            async with self.pool.connection(mb.name, need_uid=uid - 1) as conn:
                if conn.selected_uidvalidity and conn.selected_uidvalidity != mb.uidvalidity:
                    return  # rebuilt: the sync that saw it fetches everything
                res = await conn.check(_fetch_new_builder(start, uid - 1, _new_message_items(conn)))
        except (UpstreamError, UpstreamUnavailable) as exc:
            log.warning(
                "%s: cannot fetch UIDs %d:%d before recording %d: %s", mb.name, start, uid - 1, uid, exc
            )
            self.request(mb.name)
            return
        recs, reports = _split_new_messages(res.of_type(rsp.FetchResponse), start)
        self._record_new(mb, [r for r in recs if r.uid < uid], reports, mb.upstream_modseq)

    def _record_new(
        self, mb: MailboxIndex, recs: list[MessageRecord], reports: Mapping[int, FlagReport], floor: int
    ) -> list[MessageRecord]:
        """Add the records not in the replica yet; remember the upstream MODSEQ of
        their flags where it is above ``floor`` (see ``apply_flags``).  Returns
        the records added."""
        fresh = [r for r in recs if r.uid not in mb.records]
        if not fresh:
            return fresh
        self.replica.add_messages(mb, fresh)
        seen = self._flag_modseqs.setdefault((mb.id, mb.uidvalidity), {})
        for r in fresh:
            m = reports.get(r.uid, ((), None))[1]
            if m is not None and m > floor:
                seen[r.uid] = m
        return fresh

    async def _fetch_new(
        self, conn: UpstreamConnection, mb: MailboxIndex, start: int, uidnext: int, expected: int, floor: int
    ) -> None:
        """Fetch the messages from UID ``start`` on.  ``floor``: the HIGHESTMODSEQ
        this sync settles on (new messages' MODSEQs up to it need no record)."""
        # Without UIDNEXT we fetch start:* once; with it, in batches up to uidnext-1.
        done = 0
        total = expected or max(0, uidnext - start)
        if not uidnext:
            ranges = [(start, STAR)]
        else:
            ranges = [(a, min(a + FETCH_BATCH - 1, uidnext - 1)) for a in range(start, uidnext, FETCH_BATCH)]
            # Anything that arrives while we fetch lands above uidnext-1: catch it too.
            ranges.append((uidnext, STAR))
        items = _new_message_items(conn)
        for a, b in ranges:
            res = await conn.check(_fetch_new_builder(a, b, items))
            recs, reports = _split_new_messages(res.of_type(rsp.FetchResponse), start)
            fresh = self._record_new(mb, recs, reports, floor)
            if fresh:
                done += len(fresh)
                self._report(mb.name, done, max(total, done), "new")
            # Everything else is a flag report: other messages' updates, and
            # messages the gateway's own APPEND/COPY added meanwhile.
            added = {r.uid for r in fresh}
            others = {u: f for u, f in reports.items() if u not in added and u in mb.records}
            if others:
                self.apply_flags(mb, others)

    def _report(self, mailbox: str, done: int, total: int, phase: str) -> None:
        if self.progress is not None:
            self.progress(SyncProgress(mailbox, done, total, phase))

    # -- change detection --------------------------------------------------------------
    def _on_unsolicited(self, conn: UpstreamConnection, resp: rsp.Response) -> None:
        if isinstance(resp, rsp.StatusResponse):
            self.request(resp.mailbox, status=resp)
        elif isinstance(resp, rsp.ListResponse):
            self.request_list()
        elif (
            isinstance(resp, (rsp.Exists, rsp.Expunge, rsp.Vanished, rsp.FetchResponse))
            and conn.selected is not None
        ):
            if self._notify_active and conn is not self._watcher_conn:
                # NOTIFY reports this change too (with its HIGHESTMODSEQ); on a
                # pooled connection it is mostly the gateway's own write coming back.
                return
            self.request(conn.selected)

    async def _watch_loop(self) -> None:
        delay = 1.0
        watched_before = False
        while not self._stop.is_set():
            conn: UpstreamConnection | None = None
            try:
                conn = await self.pool.dedicated("watcher")
                self._watcher_conn = conn
                if conn.has("NOTIFY"):
                    self.watch_method = "NOTIFY"
                    await conn.check(_notify_personal)
                    self._notify_active = True
                else:
                    self.watch_method = "IDLE"
                    await self._watch_select(conn, self.busiest_folder())
                if watched_before:
                    # Changes made while nobody watched were announced to no one.
                    for name in self.replica.names():
                        self.request(name)
                watched_before = True
                delay = 1.0
                while not self._stop.is_set():
                    if conn.has("IDLE"):
                        self._idle_wake.clear()
                        if self._stop.is_set():
                            break
                        await conn.idle(self._idle_wake)
                        target = self.busiest_folder()
                        if not self._notify_active and not self._stop.is_set() and target != conn.selected:
                            await self._watch_select(conn, target)
                            # What changed there while nobody watched it.
                            self.request(target)
                    else:
                        await asyncio.sleep(min(self.poll_interval, 10))
                        await conn.run(lambda tag: cmd.Noop(tag))
                    if not conn.alive:
                        break
            except (UpstreamUnavailable, UpstreamError) as exc:
                if isinstance(exc, UpstreamTimeout):
                    self.pool.mark_down(str(exc))
                log.warning("change watcher: %s; retrying in %.0f s", exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("change watcher failed; retrying in %.0f s", delay)
            finally:
                self._notify_active = False
                self._watcher_conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await self.pool.release_dedicated(conn)
            if not self._stop.is_set():
                await self._retry_pause(delay)
                delay = min(60.0, delay * 2)

    async def _retry_pause(self, delay: float) -> None:
        """Wait ``delay`` before the watcher tries again, but no longer than until
        the pool has a working connection again when the hoster was down (changes
        made meanwhile must reach IDLE clients within a second of its return)."""
        stop = asyncio.ensure_future(self._stop.wait())
        waits: set[asyncio.Future[Any]] = {stop}
        if self.pool.down:
            waits.add(asyncio.ensure_future(self.pool.wait_up(delay)))
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _hoster_down(self, why: str) -> None:
        """The pool found the hoster not answering: the watcher's connection is as
        dead (an IDLE on it would wait for nothing), so drop it; the watcher
        reconnects as soon as the hoster answers."""
        conn = self._watcher_conn
        if conn is not None and conn.alive:
            self._spawn(conn.close(f"hoster not answering ({why})"))

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.poll_interval
        while not self._stop.is_set():
            tick = min(self.poll_interval, ACTIVE_POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), tick)
            if self._stop.is_set():
                return
            if loop.time() >= next_full:
                next_full = loop.time() + self.poll_interval
                self.request_list()
                self.replica.reload_seen_modes()
                for name in self.replica.names():
                    self.request(name)
            elif not self._notify_active:
                # Folders in use but not watched by IDLE: checked more often.
                watched = self._watcher_conn.selected if self._watcher_conn is not None else None
                for name in self._folders_in_use():
                    if name != watched:
                        self.request(name)

    # -- which folder to watch without NOTIFY ------------------------------------------
    def _folders_in_use(self) -> dict[str, int]:
        """Folder name -> number of gateway sessions that have it open."""
        counts = self.replica.hub.watched_mailboxes()
        return {mb.name: counts[mb.id] for mb in self.replica.by_name.values() if mb.id in counts}

    def busiest_folder(self) -> str:
        """The folder the IDLE watcher should sit on: the one most sessions have
        open (INBOX when none, or on a tie with INBOX)."""
        in_use = self._folders_in_use()
        best = "INBOX"
        for name, n in sorted(in_use.items()):
            if n > in_use.get(best, 0):
                best = name
        return best

    def _interest_changed(self, mailbox_id: int) -> None:
        conn = self._watcher_conn
        if self.watch_method != "IDLE" or self._notify_active or conn is None:
            return
        if self.busiest_folder() != conn.selected:
            self._idle_wake.set()

    async def _watch_select(self, conn: UpstreamConnection, name: str) -> None:
        res = await conn.select(name)
        if not res.ok and name != "INBOX":
            log.warning("change watcher: cannot watch %s (%s); watching INBOX", name, res.tagged.text)
            res = await conn.select("INBOX")
        if not res.ok:
            raise UpstreamError(res)

    # -- task plumbing -------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_requested(self, name: str) -> None:
        began = False
        try:
            await asyncio.sleep(DEBOUNCE)
            async with self.mailbox_lock(name):
                began = True  # from here the request is consumed (no await before)
                if self._nothing_new(name):
                    self._scheduled.discard(name)
                    self._hints.pop(name, None)
                    return
                await self._sync_locked(name)
        except (UpstreamUnavailable, UpstreamError) as exc:
            log.warning("sync of %s failed: %s", name, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sync of %s failed", name)
        finally:
            if not began:
                # Cancelled before it began: the request must not block later ones.
                self._scheduled.discard(name)

    def _nothing_new(self, name: str) -> bool:
        """Every request since the last sync came with a HIGHESTMODSEQ the
        replica already has (a notification repeated, or for changes seen)."""
        mb = self.replica.get(name)
        return (
            mb is not None
            and mb.synced
            and name not in self._blind
            and 0 < self._hints.get(name, 0) <= mb.upstream_modseq
        )

    async def _run_list(self) -> None:
        try:
            self._list_scheduled = False
            await self.sync_list()
            for name in self.replica.names():
                mb = self.replica.get(name)
                if mb is not None and not mb.synced and self._selectable(mb):
                    self.request(name)
        except (UpstreamUnavailable, UpstreamError) as exc:
            log.warning("folder list sync failed: %s", exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("folder list sync failed")


async def _uids_upstream(conn: UpstreamConnection, largest: int) -> set[int]:
    """Every UID of the selected folder (``UID SEARCH ALL``)."""
    from ..protocol.search import SearchAll

    res = await conn.check(lambda tag: cmd.Search(tag, (SearchAll(),), uid=True))
    present: set[int] = set()
    for s in res.of_type(rsp.Search):
        present.update(s.ids)
    for e in res.of_type(rsp.ESearch):
        if e.all is not None:
            present.update(e.all.iter(largest))
    return present


def _new_message_items(conn: UpstreamConnection) -> tuple[FetchAttribute, ...]:
    """What a new-message fetch asks for on ``conn`` (MODSEQ too under CONDSTORE)."""
    return NEW_MESSAGE_ITEMS + ((FetchAttribute("MODSEQ"),) if "CONDSTORE" in conn.enabled else ())


def _uid_fetch_builder(uids: SequenceSet, items: tuple[FetchAttribute, ...]) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(tag, uids, items, uid=True)

    return build


def _fetch_new_builder(a: int, b: int, items: tuple[FetchAttribute, ...]) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(tag, SequenceSet(((a, b),)), items, uid=True)

    return build


def _changedsince_builder(known_max: int, since: int) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(
            tag,
            SequenceSet(((1, known_max),)),
            (FetchAttribute("UID"), FetchAttribute("FLAGS")),
            uid=True,
            changedsince=since,
            vanished=True,
        )

    return build


_WATCHED_EVENTS = tuple(
    cmd.NotifyEvent(e) for e in ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName")
)


def _notify_personal(tag: str) -> cmd.Command:
    """NOTIFY for every personal folder: STATUS-style events for all of them."""
    return cmd.NotifySet(tag, (cmd.NotifyGroup("PERSONAL", _WATCHED_EVENTS),))


def stored_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    """Upstream flags as the replica keeps them: without \\Recent, which is the
    state of one upstream session (ours), not of the message."""
    return tuple(f for f in flags if f != "\\Recent")


def _is_new_message_answer(f: rsp.FetchResponse) -> bool:
    """True for an answer to ``NEW_MESSAGE_ITEMS``; False for the unsolicited
    flag updates (another session's STORE) a server mixes into the same answer."""
    return f.uid is not None and b"RFC822.SIZE" in f.items and b"INTERNALDATE" in f.items


def _split_new_messages(
    answers: list[rsp.FetchResponse], start: int
) -> tuple[list[MessageRecord], dict[int, FlagReport]]:
    """New-message records (UID >= ``start``, one per UID) found in the answer
    to a new-message fetch, and the latest flags reported per UID (records and
    any other UID).

    An unsolicited ``FETCH (UID u FLAGS ...)`` is never a new message: for a UID
    of the batch it only updates the flags (the later line on the wire is the
    newer state); for any other UID it is a flag report for the caller to apply
    to a known message, or to ignore (a later sync fetches that message)."""
    records: dict[int, MessageRecord] = {}
    reports: dict[int, FlagReport] = {}
    for f in answers:
        uid = f.uid
        if uid is None:
            continue
        if _is_new_message_answer(f) and uid >= start:
            rec = _record_from_fetch(f)
            if rec is not None:
                records[uid] = rec
        if f.flags is not None:
            reports[uid] = (stored_flags(f.flags), f.modseq)
    for uid, rec in records.items():
        if uid in reports:
            rec.flags = reports[uid][0]
    return [records[u] for u in sorted(records)], reports


def _record_from_fetch(f: rsp.FetchResponse) -> MessageRecord | None:
    uid = f.uid
    if uid is None:
        return None
    flags = stored_flags(f.flags or ())
    size = f.items.get(b"RFC822.SIZE")
    date = f.items.get(b"INTERNALDATE")
    ts = 0.0
    tz = 0
    if hasattr(date, "timestamp") and hasattr(date, "utcoffset"):
        ts = date.timestamp()  # type: ignore[union-attr]
        off = date.utcoffset()  # type: ignore[union-attr]
        tz = int(off.total_seconds() // 60) if off is not None else 0
    header = f.items.get(MESSAGE_ID_FIELD.response_name())
    message_id = None
    if isinstance(header, bytes):
        m = _MESSAGE_ID_RE.search(header)
        if m:
            message_id = m.group(1).strip().decode("utf-8", "replace")
    return MessageRecord(
        uid=uid,
        flags=tuple(flags),
        modseq=0,
        internal_date=ts,
        tz_offset=tz,
        size=size if isinstance(size, int) else 0,
        message_id=message_id,
    )


__all__ = ["CommandResult", "SyncEngine", "SyncProgress"]
