"""How one folder, or the folder list, is brought up to date from upstream.

Per mailbox, the best method the server offers:

* QRESYNC: ``SELECT box (QRESYNC (uidvalidity modseq))`` returns VANISHED and
  changed flags in one round trip;
* CONDSTORE: ``UID FETCH 1:* (FLAGS) (CHANGEDSINCE m)`` plus ``UID SEARCH ALL``
  when the message count says something was expunged;
* neither: ``UID FETCH 1:* (FLAGS)`` and a full comparison.

On a pooled connection that still has the folder selected, a sync is ``NOOP``
+ ``UID FETCH 1:n (FLAGS) (CHANGEDSINCE m VANISHED)`` (+ new messages) instead
of a re-SELECT.  New messages are fetched by UID range in batches (progress is
reported per batch).  A UIDVALIDITY change resets the mailbox in the replica:
stale UIDs are never served.

A mailbox's sync and the replica updates of the gateway's own writes are
serialised by the mailbox lock (held by the caller here); the writes' upstream
commands run outside it.  Flag reports therefore reach the replica out of
order, and each carries the upstream MODSEQ (CONDSTORE) it describes:
``apply_flags`` keeps, per message, the MODSEQ of the flags the replica holds
and drops older reports.

No scheduling, no locks, no tasks here: callers decide when (``scheduler``)
and hold the lock (``engine``).

What the sync finds changed at the hoster (new mail in a folder already
synced, flags, expunges) is told to ``observer`` before the replica takes it;
the observer's hook (the audit journal's "at the hoster" entries) is committed
in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute
from ..protocol.search import SearchAll
from ..protocol.sequence import STAR, SequenceSet
from ..replica.mailbox import MailboxIndex, MessageRecord
from ..replica.replica import Hook, Replica
from ..upstream.connection import UpstreamConnection, UpstreamError, UpstreamUnavailable
from ..upstream.pool import UpstreamPool
from .records import (
    FlagReport,
    changedsince_builder,
    fetch_new_builder,
    new_message_items,
    split_new_messages,
    stored_flags,
    uid_fetch_builder,
)

log = logging.getLogger("imapgate.sync")

#: UIDs per FETCH of new messages: big enough for throughput, small enough for
#: progress reports and bounded memory on a 100,000-message first sync.
FETCH_BATCH = 5000


@dataclass(frozen=True)
class SyncProgress:
    mailbox: str
    done: int
    total: int
    phase: str  # "flags", "new", "done"


ProgressFn = Callable[[SyncProgress], None]


def selectable(mb: MailboxIndex) -> bool:
    return not any(a.upper() in ("\\NOSELECT", "\\NONEXISTENT") for a in mb.attributes)


class SyncObserver(Protocol):
    """Told what the sync is about to record as changed at the hoster; returns the
    hook to commit with it (None: nothing to add)."""

    def arrived(self, mb: MailboxIndex, recs: list[MessageRecord]) -> Hook | None: ...
    def flags_changed(self, mb: MailboxIndex, flags: Mapping[int, tuple[str, ...]]) -> Hook | None: ...
    def expunged(self, mb: MailboxIndex, uids: set[int]) -> Hook | None: ...
    def folder_removed(self, mb: MailboxIndex) -> Hook | None: ...
    def removing(self, name: str) -> bool:
        """A member's DELETE of ``name`` is in flight: its operation drops the
        folder and journals that in one commit, so the sync must leave it alone."""
        ...


class MailboxSync:
    """The sync algorithms for one upstream account's replica."""

    def __init__(
        self,
        pool: UpstreamPool,
        replica: Replica,
        *,
        progress: ProgressFn | None = None,
        request: Callable[[str], None] | None = None,
    ) -> None:
        self.pool = pool
        self.replica = replica
        self.progress = progress
        #: Asks for a later sync of a folder (the scheduler's ``request``), when
        #: an algorithm could not finish now.
        self.request: Callable[[str], None] = request or (lambda name: None)
        #: Per (mailbox id, UIDVALIDITY): upstream MODSEQ of the flags the replica
        #: holds, for messages whose flags changed above the mailbox's synced
        #: HIGHESTMODSEQ (``upstream_modseq``: every other message's flags are at
        #: least that new).  Pruned at every sync.
        self.flag_modseqs: dict[tuple[int, int], dict[int, int]] = {}
        #: Told about changes found at the hoster (the audit journal); None: nobody.
        self.observer: SyncObserver | None = None

    # -- flags, in MODSEQ order ------------------------------------------------------
    def apply_flags(
        self, mb: MailboxIndex, reports: Mapping[int, FlagReport], *, hook: Hook | None = None
    ) -> tuple[int, ...]:
        """Apply flags upstream reported (a sync, a STORE's answer) to the replica;
        returns the UIDs whose flags changed.  A report older than the flags the
        replica holds (a lower MODSEQ) is dropped: writes and syncs run their
        upstream commands concurrently and reach the replica in any order."""
        seen = self.flag_modseqs.setdefault((mb.id, mb.uidvalidity), {})
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
        if hook is None and self.observer is not None:
            hook = self.observer.flags_changed(mb, accepted)  # no hook: found by the sync
        changed = self.replica.set_shared_flags(mb, accepted, hook=hook)
        seen.update(newer)
        for uid in unordered:
            seen.pop(uid, None)
        return changed

    def _expunge_found(self, mb: MailboxIndex, gone: set[int]) -> None:
        """Expunges the sync found at the hoster, told to the observer."""
        hook = self.observer.expunged(mb, gone) if self.observer is not None else None
        self.replica.expunge(mb, gone, hook=hook)

    def _settle_floor(self, mb: MailboxIndex, highest: int) -> None:
        """Every message's flags in the replica are now at least as new as
        upstream's ``highest``: record it, forget the per-message MODSEQs below."""
        self.replica.set_sync_state(mb, upstream_modseq=highest)
        seen = self.flag_modseqs.get((mb.id, mb.uidvalidity))
        if seen:
            floor = mb.upstream_modseq
            for uid in [u for u, m in seen.items() if m <= floor or u not in mb.records]:
                del seen[uid]

    # -- mailbox list ------------------------------------------------------------------
    async def sync_list(self, conn: UpstreamConnection) -> None:
        """Bring the replica's folder list in line with ``LIST "" *`` on ``conn``."""
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
                if self.observer is not None and self.observer.removing(name):
                    # Dropped here, a kill before the member's commit would leave the
                    # folder's end in no journal entry; left alone, that commit drops it,
                    # or (after a kill) the next start's sync finds it gone and records it.
                    continue
                log.info("mailbox %s is gone upstream", name)
                gone = self.replica.get(name)
                hook = None
                if self.observer is not None and gone is not None and gone.synced:
                    hook = self.observer.folder_removed(gone)
                self.replica.drop_mailbox(name, hook=hook)

    # -- one mailbox -------------------------------------------------------------------
    async def sync(self, conn: UpstreamConnection, mb: MailboxIndex, hint: int) -> None:
        """Bring ``mb`` up to date on ``conn`` (caller holds its lock).  ``hint``:
        a HIGHESTMODSEQ announced before this sync began (0: none)."""
        if self._can_resume(conn, mb):
            await self._sync_resumed(conn, mb, hint)
        else:
            await self._sync_selected(conn, mb)

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
            changed = await conn.check(changedsince_builder(known_max, floor))
            answers += changed.untagged
        for r in answers:
            if isinstance(r, rsp.Vanished):
                gone.update(u for u in r.uids.iter(known_max) if u in mb.records)
            elif isinstance(r, rsp.FetchResponse) and r.uid is not None and r.flags is not None:
                reports[r.uid] = (stored_flags(r.flags), r.modseq)
        if gone:
            self._expunge_found(mb, gone)
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
            self.flag_modseqs.pop((mb.id, mb.uidvalidity), None)
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
            self._expunge_found(mb, gone)
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
                self._expunge_found(mb, gone)
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
        items = new_message_items(conn.enabled)
        wanted = set(missing)
        res = await conn.check(uid_fetch_builder(SequenceSet.from_ids(missing), items))
        recs, reports = split_new_messages(res.of_type(rsp.FetchResponse), missing[0])
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
                res = await conn.check(fetch_new_builder(start, uid - 1, new_message_items(conn.enabled)))
        except (UpstreamError, UpstreamUnavailable) as exc:
            log.warning(
                "%s: cannot fetch UIDs %d:%d before recording %d: %s", mb.name, start, uid - 1, uid, exc
            )
            self.request(mb.name)
            return
        recs, reports = split_new_messages(res.of_type(rsp.FetchResponse), start)
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
        # A folder's first fill is no arrival: those messages were there before.
        hook = self.observer.arrived(mb, fresh) if self.observer is not None and mb.synced else None
        self.replica.add_messages(mb, fresh, hook=hook)
        seen = self.flag_modseqs.setdefault((mb.id, mb.uidvalidity), {})
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
        items = new_message_items(conn.enabled)
        for a, b in ranges:
            res = await conn.check(fetch_new_builder(a, b, items))
            recs, reports = split_new_messages(res.of_type(rsp.FetchResponse), start)
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


async def _uids_upstream(conn: UpstreamConnection, largest: int) -> set[int]:
    """Every UID of the selected folder (``UID SEARCH ALL``)."""
    res = await conn.check(lambda tag: cmd.Search(tag, (SearchAll(),), uid=True))
    present: set[int] = set()
    for s in res.of_type(rsp.Search):
        present.update(s.ids)
    for e in res.of_type(rsp.ESearch):
        if e.all is not None:
            present.update(e.all.iter(largest))
    return present
