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
on INBOX), plus a periodic check of every folder as a safety net.  Sync requests
are coalesced per mailbox; a mailbox's sync and the gateway's own writes to it
are serialised by ``mailbox_lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute, Section
from ..protocol.sequence import STAR, SequenceSet
from ..upstream.connection import CommandResult, UpstreamConnection, UpstreamError, UpstreamUnavailable
from ..upstream.pool import UpstreamPool
from .mailbox import MailboxIndex, MessageRecord
from .replica import Replica

log = logging.getLogger("imapgate.sync")

#: UIDs per FETCH of new messages: big enough for throughput, small enough for
#: progress reports and bounded memory on a 100,000-message first sync.
FETCH_BATCH = 5000

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
        self._scheduled: set[str] = set()
        self._list_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self.watch_method = "none"
        self.last_sync: dict[str, float] = {}
        pool.on_unsolicited = self._on_unsolicited

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
        self._watcher = asyncio.create_task(self._watch_loop(), name="sync-watcher")
        self._poller = asyncio.create_task(self._poll_loop(), name="sync-poller")

    async def stop(self) -> None:
        self._stop.set()
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

    def request(self, name: str) -> None:
        """Schedule an incremental sync of ``name`` (coalesced)."""
        if name in self._scheduled or self._stop.is_set():
            return
        self._scheduled.add(name)
        self._spawn(self._run_requested(name))

    def request_list(self) -> None:
        if self._list_scheduled or self._stop.is_set():
            return
        self._list_scheduled = True
        self._spawn(self._run_list())

    # -- mailbox list ------------------------------------------------------------------
    async def sync_list(self) -> None:
        async with self.pool.connection() as conn:
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
            mb = self.replica.get(name)
            if mb is None or not self._selectable(mb):
                return
            async with self.pool.connection() as conn:
                await self._sync_selected(conn, mb)
            self.last_sync[name] = time.time()

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
            self.replica.reset(mb, uidvalidity, "UIDVALIDITY changed upstream")
            reset = True
        flag_changes: dict[int, tuple[str, ...]] = {}
        gone: set[int] = set()
        known_max = mb.uids[-1] if mb.uids else 0
        condstore = "CONDSTORE" in conn.enabled and highest > 0

        if not reset and mb.uids:
            if qresync is not None:
                for v in res.of_type(rsp.Vanished):
                    gone.update(v.uids.iter(known_max))
                for f in res.of_type(rsp.FetchResponse):
                    if f.uid is not None and f.flags is not None:
                        flag_changes[f.uid] = _stored_flags(f.flags)
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
                        flag_changes[f.uid] = _stored_flags(f.flags)
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
                        flag_changes[f.uid] = _stored_flags(f.flags)
                gone = set(mb.records) - present
        if gone:
            self.replica.expunge(mb, gone)
        if flag_changes:
            self.replica.set_shared_flags(mb, flag_changes)

        # New messages: everything above what we know, in UID batches.
        start = (mb.uids[-1] + 1) if mb.uids else 1
        expected_new = max(0, exists - len(mb.uids))
        if expected_new or (uidnext and uidnext > start):
            await self._fetch_new(conn, mb, start, uidnext, expected_new)
        self.replica.set_sync_state(mb, uidnext=uidnext or None, upstream_modseq=highest, synced=True)
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
        from ..protocol.search import SearchAll

        res = await conn.check(lambda tag: cmd.Search(tag, (SearchAll(),), uid=True))
        present: set[int] = set()
        for s in res.of_type(rsp.Search):
            present.update(s.ids)
        for e in res.of_type(rsp.ESearch):
            if e.all is not None:
                present.update(e.all.iter(known_max))
        return {u for u in mb.records if u <= known_max and u not in present}

    async def _fetch_new(
        self, conn: UpstreamConnection, mb: MailboxIndex, start: int, uidnext: int, expected: int
    ) -> None:
        # Without UIDNEXT we fetch start:* once; with it, in batches up to uidnext-1.
        done = 0
        total = expected or max(0, uidnext - start)
        if not uidnext:
            ranges = [(start, STAR)]
        else:
            ranges = [(a, min(a + FETCH_BATCH - 1, uidnext - 1)) for a in range(start, uidnext, FETCH_BATCH)]
            # Anything that arrives while we fetch lands above uidnext-1: catch it too.
            ranges.append((uidnext, STAR))
        for a, b in ranges:
            res = await conn.check(_fetch_new_builder(a, b))
            recs, updates = _split_new_messages(res.of_type(rsp.FetchResponse), start)
            known = {u: f for u, f in updates.items() if u in mb.records}
            if known:
                self.replica.set_shared_flags(mb, known)
            if recs:
                self.replica.add_messages(mb, recs)
                done += len(recs)
                self._report(mb.name, done, max(total, done), "new")

    def _report(self, mailbox: str, done: int, total: int, phase: str) -> None:
        if self.progress is not None:
            self.progress(SyncProgress(mailbox, done, total, phase))

    # -- change detection --------------------------------------------------------------
    def _on_unsolicited(self, conn: UpstreamConnection, resp: rsp.Response) -> None:
        if isinstance(resp, rsp.StatusResponse):
            self.request(resp.mailbox)
        elif isinstance(resp, rsp.ListResponse):
            self.request_list()
        elif (
            isinstance(resp, (rsp.Exists, rsp.Expunge, rsp.Vanished, rsp.FetchResponse))
            and conn.selected is not None
        ):
            self.request(conn.selected)

    async def _watch_loop(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            conn: UpstreamConnection | None = None
            try:
                conn = await self.pool.dedicated("watcher")
                if conn.has("NOTIFY"):
                    self.watch_method = "NOTIFY"
                    await conn.check(_notify_personal)
                else:
                    self.watch_method = "IDLE"
                    res = await conn.select("INBOX")
                    if not res.ok:
                        raise UpstreamError(res)
                delay = 1.0
                while not self._stop.is_set():
                    if conn.has("IDLE"):
                        await conn.idle(self._stop)
                    else:
                        await asyncio.sleep(min(self.poll_interval, 10))
                        await conn.run(lambda tag: cmd.Noop(tag))
                    if not conn.alive:
                        break
            except (UpstreamUnavailable, UpstreamError) as exc:
                log.warning("change watcher: %s; retrying in %.0f s", exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("change watcher failed; retrying in %.0f s", delay)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await self.pool.release_dedicated(conn)
            if not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(60.0, delay * 2)

    async def _poll_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll_interval)
            if self._stop.is_set():
                return
            self.request_list()
            self.replica.reload_seen_modes()
            for name in self.replica.names():
                self.request(name)

    # -- task plumbing -------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_requested(self, name: str) -> None:
        try:
            async with self.mailbox_lock(name):
                self._scheduled.discard(name)
            await self.sync_mailbox(name)
        except (UpstreamUnavailable, UpstreamError) as exc:
            log.warning("sync of %s failed: %s", name, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sync of %s failed", name)
        finally:
            self._scheduled.discard(name)

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


def _fetch_new_builder(a: int, b: int) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(tag, SequenceSet(((a, b),)), NEW_MESSAGE_ITEMS, uid=True)

    return build


_WATCHED_EVENTS = tuple(
    cmd.NotifyEvent(e) for e in ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName")
)


def _notify_personal(tag: str) -> cmd.Command:
    """NOTIFY for every personal folder: STATUS-style events for all of them."""
    return cmd.NotifySet(tag, (cmd.NotifyGroup("PERSONAL", _WATCHED_EVENTS),))


def _stored_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    """Upstream flags as the replica keeps them: without \\Recent, which is the
    state of one upstream session (ours), not of the message."""
    return tuple(f for f in flags if f != "\\Recent")


def _is_new_message_answer(f: rsp.FetchResponse) -> bool:
    """True for an answer to ``NEW_MESSAGE_ITEMS``; False for the unsolicited
    flag updates (another session's STORE) a server mixes into the same answer."""
    return f.uid is not None and b"RFC822.SIZE" in f.items and b"INTERNALDATE" in f.items


def _split_new_messages(
    answers: list[rsp.FetchResponse], start: int
) -> tuple[list[MessageRecord], dict[int, tuple[str, ...]]]:
    """New-message records (UID >= ``start``, one per UID) and the flag updates
    of other UIDs found in the answer to a new-message fetch.

    An unsolicited ``FETCH (UID u FLAGS ...)`` is never a new message: for a UID
    of the batch it only updates the flags (the later line on the wire is the
    newer state); for any other UID it is returned for the caller to apply to a
    known message, or to ignore (a later sync fetches that message properly)."""
    records: dict[int, MessageRecord] = {}
    updates: dict[int, tuple[str, ...]] = {}
    for f in answers:
        uid = f.uid
        if uid is None:
            continue
        if _is_new_message_answer(f):
            rec = _record_from_fetch(f)
            if rec is not None and uid >= start:
                records[uid] = rec
                updates.pop(uid, None)  # this answer's flags are newer
        elif f.flags is not None:
            updates[uid] = _stored_flags(f.flags)
    for uid in [u for u in updates if u in records]:
        records[uid].flags = updates.pop(uid)
    return [records[u] for u in sorted(records)], updates


def _record_from_fetch(f: rsp.FetchResponse) -> MessageRecord | None:
    uid = f.uid
    if uid is None:
        return None
    flags = _stored_flags(f.flags or ())
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
