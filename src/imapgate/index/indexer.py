"""The search index at run time: lookups, and the background indexer that fills it.

``SearchIndex`` keeps, per folder, which messages the index covers (in memory;
the store is the truth and is read at start, so indexing resumes where it
stopped).  ``lookup`` answers a needle from the index for the covered messages
and names the others, which the caller asks the hoster about.

The indexer is one task:

1. header fields first (``BODY.PEEK[HEADER.FIELDS (SUBJECT FROM TO CC BCC)]``,
   cheap): SUBJECT/FROM/TO/CC/BCC become local within a minute or so;
2. then whole messages (``BODY.PEEK[]``), in batches bounded in bytes.

Newest messages first in each folder; folders that sessions have open first,
then INBOX, then the rest.  New mail (replica events) goes before the backlog;
expunged messages and reset or deleted folders are dropped from the index.
Fetching is done by the coroutines the gateway hands in (they take at most one
pooled connection and only when no client waits); extraction runs in a worker
process; store writes in a worker thread, in small transactions.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import multiprocessing
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from ..replica.events import MailboxListChanged, MailboxReset, MessagesAdded, MessagesExpunged, ReplicaEvent
from ..replica.mailbox import MailboxIndex
from ..replica.replica import Replica
from .query import Needle
from .store import Coverage, Doc, IndexStore
from .worker import build_docs

log = logging.getLogger("imapgate.index")

#: Fetch ``uids`` of a folder: uid -> content (missing: gone upstream).
FetchFn = Callable[[MailboxIndex, list[int]], Awaitable[dict[int, bytes]]]
#: Turn (uid, content) pairs into docs at a level (a worker process by default).
ExtractFn = Callable[[int, list[tuple[int, bytes | None]]], Awaitable[list[Doc]]]

#: Messages per header-fields fetch (about 300 bytes each).
HEADER_BATCH: Final = 1000
#: Whole messages per fetch: bounded in bytes (memory, and how long a client that
#: arrives meanwhile waits for the connection) and in number.
BODY_BATCH_BYTES: Final = 2 * 1024 * 1024
BODY_BATCH_MAX: Final = 200
#: Larger messages are not fetched for the index: the hoster answers for them.
MAX_MESSAGE_BYTES: Final = 32 * 1024 * 1024
#: Docs per store transaction: short, so replica writes never wait long for the lock.
WRITE_CHUNK: Final = 50
#: Docs of a retired generation deleted per step.
PURGE_BATCH: Final = 500
#: Seconds between checks for work nobody announced (``index rebuild`` from the CLI).
RECHECK_SECONDS: Final = 30.0
#: Back-off after a failed fetch (doubling up to the maximum).
RETRY_START: Final = 5.0
RETRY_MAX: Final = 120.0
#: Folders at least this big get progress lines every 10 %.
PROGRESS_MIN: Final = 5000
#: A folder that appears while the gateway runs is indexed after this many seconds:
#: clients that reorganise folders create, fill, rename and delete them within seconds,
#: and the indexer's SELECT of a folder being deleted only costs a connection.
NEW_FOLDER_DELAY: Final = 10.0


@dataclass
class _Folder:
    mailbox_id: int
    gen: int
    uidvalidity: int
    cov: Coverage
    #: Per level: every UID >= cursor was looked at (None: start at the top).
    cursor: dict[int, int | None] = field(default_factory=lambda: {1: None, 2: None})
    #: Per level: UIDs announced by events (or to retry), taken before the backlog.
    extra: dict[int, set[int]] = field(default_factory=lambda: {1: set(), 2: set()})
    #: Expunged UIDs still to delete from the store.
    gone: set[int] = field(default_factory=set)
    #: Per level: UIDs the server did not return when asked: tried again at the next plan.
    missing: dict[int, set[int]] = field(default_factory=lambda: {1: set(), 2: set()})
    reported: dict[int, int] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    fetched: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0})
    #: Not indexed before this (monotonic) time.
    not_before: float = 0.0


class SearchIndex:
    def __init__(
        self,
        store: IndexStore,
        replica: Replica,
        fetch_headers: FetchFn,
        fetch_messages: FetchFn,
        *,
        extract: ExtractFn | None = None,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        #: Whether the index answers (and so is worth filling) now.
        self.active = active
        self.replica = replica
        self.fetch_headers = fetch_headers
        self.fetch_messages = fetch_messages
        self._extract = extract
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._folders: dict[int, _Folder] = {}
        self._retired: list[int] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._replan = True
        self._planned_once = False
        #: "every folder indexed" was logged (again after a rebuild or a big new folder).
        self._announced = False
        self._last_check = 0.0
        self._rate: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)
        #: Counters for tests and the log.
        self.indexed = 0
        self.batches = 0

    # -- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self._extract is None:
            try:
                ctx = multiprocessing.get_context("spawn")
                self._executor = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx)
            except (OSError, ValueError) as exc:  # no processes here: threads then
                log.warning("index: no worker process (%s); extracting in a thread", exc)
        self.replica.hub.subscribe(None, self._on_event)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="search-indexer")

    async def stop(self) -> None:
        self._stopping = True
        self.replica.hub.unsubscribe(None, self._on_event)
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- lookups ------------------------------------------------------------------------
    def covered(self, mb: MailboxIndex, level: int) -> set[int] | None:
        """UIDs of ``mb`` the index answers for at ``level`` (None: none yet)."""
        st = self._folders.get(mb.id)
        if st is None or st.uidvalidity != mb.uidvalidity or not mb.uidvalidity:
            return None
        return st.cov.headers if level == 1 else st.cov.full

    async def lookup(self, mb: MailboxIndex, needle: Needle) -> tuple[set[int], list[int]]:
        """(UIDs matching ``needle`` among those the index covers, UIDs it does not
        cover: the caller asks the hoster about those)."""
        cov = self.covered(mb, needle.level)
        if not cov:
            return set(), list(mb.uids)
        st = self._folders[mb.id]
        uncovered = [] if len(cov) >= mb.exists else [u for u in mb.uids if u not in cov]
        found = await asyncio.to_thread(self.store.search, st.gen, needle)
        if uncovered or st.gone or len(found) > len(cov):
            found &= cov
        # else: every hit is a covered message (the index holds only certain documents,
        # and nothing expunged awaits deletion), so the 30,000-element intersection of a
        # broad search is skipped.
        return found, uncovered

    def complete(self) -> bool:
        """Every synced folder is indexed (whole messages), nothing announced is pending."""
        for mb in list(self.replica.by_id.values()):
            if not mb.uidvalidity or not mb.synced or not _selectable(mb):
                continue
            st = self._folders.get(mb.id)
            if st is None or st.uidvalidity != mb.uidvalidity or len(st.cov.full_done) < mb.exists:
                return False
            if any(st.extra.values()):
                return False
        return True

    def progress(self) -> list[tuple[str, int, int, int]]:
        """(folder, messages, header fields indexed, whole messages indexed) per folder."""
        out = []
        for st in self._folders.values():
            mb = self.replica.by_id.get(st.mailbox_id)
            if mb is not None:
                out.append((mb.name, mb.exists, len(st.cov.headers_done), len(st.cov.full_done)))
        return sorted(out)

    # -- events (called synchronously by the replica) -------------------------------------
    def _on_event(self, event: ReplicaEvent) -> None:
        if isinstance(event, MessagesAdded):
            st = self._folders.get(event.mailbox_id)
            if st is not None:
                for extra in st.extra.values():
                    extra.update(event.uids)
            else:
                self._replan = True
        elif isinstance(event, MessagesExpunged):
            st = self._folders.get(event.mailbox_id)
            if st is not None:
                for s in (st.cov.headers, st.cov.full, st.cov.headers_done, st.cov.full_done):
                    s.difference_update(event.uids)
                for extra in st.extra.values():
                    extra.difference_update(event.uids)
                st.gone.update(event.uids)
        elif isinstance(event, MailboxReset):
            self._folders.pop(event.mailbox_id, None)
            self._replan = True
        elif isinstance(event, MailboxListChanged):
            self._replan = True
        else:
            return
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = RETRY_START
        while not self._stopping:
            # Cleared before the step looks for work: an event during it is not lost.
            self._wake.clear()
            try:
                busy = await self._step()
                delay = RETRY_START
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("index: %s; retrying in %.0f s", exc or type(exc).__name__, delay)
                log.debug("index step failed", exc_info=True)
                await self._sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                continue
            if not busy:
                await self._sleep(RECHECK_SECONDS)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _step(self) -> bool:
        """One unit of work; False when there was none."""
        if not self.active():
            return False
        now = time.monotonic()
        if self._replan or now - self._last_check >= RECHECK_SECONDS:
            self._replan = False
            self._last_check = now
            await self._plan()
        for st in list(self._folders.values()):
            if st.gone:
                uids = sorted(st.gone)
                await asyncio.to_thread(self.store.delete, st.gen, uids)
                # Cleared only now: until their documents are gone, lookups still
                # intersect hits with the coverage (``lookup``).
                st.gone.difference_update(uids)
        work = self._next_batch()
        if work is not None:
            await self._index(*work)
            return True
        if self._retired:
            gen = self._retired[0]
            if await asyncio.to_thread(self.store.purge, gen, PURGE_BATCH) == 0:
                self._retired.pop(0)
            return True
        waiting = [st.not_before for st in self._folders.values() if st.not_before > now]
        if waiting:
            await self._sleep(min(waiting) - now)
            return True
        return False

    async def _plan(self) -> None:
        """Bring the folder states in line with the replica and the store: a folder per
        synced mailbox, at its current generation; generations no longer current
        (UIDVALIDITY changed, folder deleted, ``index rebuild``) are purged."""
        for state in self._folders.values():
            for level, missing in state.missing.items():
                state.extra[level].update(missing)
                missing.clear()
        folders = await asyncio.to_thread(self.store.folders)
        current = {f.gen for f in folders if f.state == "current"}
        live: set[int] = set()
        for mb in list(self.replica.by_id.values()):
            if not mb.uidvalidity or not mb.synced or not _selectable(mb):
                continue
            live.add(mb.id)
            st = self._folders.get(mb.id)
            if st is not None and st.uidvalidity == mb.uidvalidity and st.gen in current:
                continue
            gen = await asyncio.to_thread(self.store.current, mb.id, mb.uidvalidity)
            cov = await asyncio.to_thread(self.store.coverage, gen.gen)
            if self.replica.by_id.get(mb.id) is not mb or mb.uidvalidity != gen.uidvalidity:
                continue  # changed meanwhile: the next plan sees it
            records = mb.records
            for s in (cov.headers, cov.full, cov.headers_done, cov.full_done):
                stale = [u for u in s if u not in records]
                s.difference_update(stale)
            st = _Folder(mb.id, gen.gen, gen.uidvalidity, cov)
            if mb.exists - len(cov.full_done) >= PROGRESS_MIN:
                self._announced = False
            if self._planned_once and not cov.headers_done:
                st.not_before = time.monotonic() + NEW_FOLDER_DELAY
            self._folders[mb.id] = st
            current.add(gen.gen)
            if len(cov.full_done) < mb.exists and (not self._planned_once or mb.exists >= PROGRESS_MIN):
                log.info(
                    "index: %s: %d of %d messages indexed, %d with header fields",
                    mb.name, len(cov.full_done), mb.exists, len(cov.headers_done),
                )
        for mid in [m for m in self._folders if m not in live]:
            del self._folders[mid]
        gone = [f for f in folders if f.state == "current" and f.mailbox_id not in live
                and f.mailbox_id not in self.replica.by_id]
        for f in gone:
            await asyncio.to_thread(self.store.retire, f.mailbox_id)
        folders = await asyncio.to_thread(self.store.folders)
        self._retired = [f.gen for f in folders if f.state == "retired"]
        self._planned_once = True

    def _order(self) -> list[_Folder]:
        watched = self.replica.hub.watched_mailboxes()

        def key(st: _Folder) -> tuple[int, int, str]:
            mb = self.replica.by_id.get(st.mailbox_id)
            name = mb.name if mb is not None else ""
            return (-watched.get(st.mailbox_id, 0), 0 if name == "INBOX" else 1, name)

        return sorted(self._folders.values(), key=key)

    def _next_batch(self) -> tuple[_Folder, MailboxIndex, int, list[int]] | None:
        order = self._order()
        now = time.monotonic()
        for level in (1, 2):
            for st in order:
                mb = self.replica.by_id.get(st.mailbox_id)
                if mb is None or mb.uidvalidity != st.uidvalidity or st.not_before > now:
                    continue
                uids = self._take(st, mb, level)
                if uids:
                    return st, mb, level, uids
        return None

    def _take(self, st: _Folder, mb: MailboxIndex, level: int) -> list[int]:
        done = st.cov.headers_done if level == 1 else st.cov.full_done
        records = mb.records
        out: list[int] = []
        size = 0

        def full() -> bool:
            if level == 1:
                return len(out) >= HEADER_BATCH
            return len(out) >= BODY_BATCH_MAX or size >= BODY_BATCH_BYTES

        taken: set[int] = set()
        extra = st.extra[level]
        for u in sorted(extra, reverse=True):
            if full():
                break
            extra.discard(u)
            rec = records.get(u)
            if rec is not None and u not in done:
                out.append(u)
                taken.add(u)
                size += rec.size
        uids = mb.uids
        cursor = st.cursor[level]
        i = len(uids) if cursor is None else bisect_left(uids, cursor)
        while i > 0 and not full():
            i -= 1
            u = uids[i]
            st.cursor[level] = u
            if u not in done and u not in taken:
                out.append(u)
                rec = records.get(u)
                size += rec.size if rec is not None else 0
        return out

    async def _index(self, st: _Folder, mb: MailboxIndex, level: int, uids: list[int]) -> None:
        st.started.setdefault(level, time.monotonic())
        records = mb.records
        big = [u for u in uids if level == 2 and records[u].size > MAX_MESSAGE_BYTES]
        wanted = [u for u in uids if u not in big]
        fetch = self.fetch_headers if level == 1 else self.fetch_messages
        try:
            got = await fetch(mb, wanted) if wanted else {}
        except BaseException:
            st.cursor[level] = None  # look at these again
            st.extra[level].update(uids)
            raise
        items: list[tuple[int, bytes | None]] = [(u, got.get(u)) for u in wanted if u in got]
        items += [(u, None) for u in big]
        docs = await self._build(level, items)
        fetched = sum(len(v) for v in got.values())
        st.fetched[level] += fetched
        for i in range(0, len(docs), WRITE_CHUNK):
            chunk = docs[i : i + WRITE_CHUNK]
            if self._folders.get(mb.id) is not st or mb.uidvalidity != st.uidvalidity:
                return  # reset meanwhile: this generation is retired
            self._rate.append((time.monotonic(), len(chunk)))
            await asyncio.to_thread(self.store.write, st.gen, chunk, fetched if i == 0 else 0, self.rate())
            if self._folders.get(mb.id) is not st:
                return
            for d in chunk:
                if d.uid not in mb.records:
                    st.gone.add(d.uid)  # expunged while being indexed
                    continue
                st.cov.headers_done.add(d.uid)
                if d.certain:
                    st.cov.headers.add(d.uid)
                if level >= 2:
                    st.cov.full_done.add(d.uid)
                    if d.certain:
                        st.cov.full.add(d.uid)
        self.indexed += len(docs)
        self.batches += 1
        # Asked but not answered (expunged meanwhile, or not announced yet): look again later.
        missing = [u for u in wanted if u not in got and u in mb.records]
        if missing:
            st.missing[level].update(missing)
            log.debug("index: %s: %d messages not returned by the server", mb.name, len(missing))
        self._report(st, mb, level)

    async def _build(self, level: int, items: list[tuple[int, bytes | None]]) -> list[Doc]:
        if self._extract is not None:
            return await self._extract(level, items)
        if self._executor is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, build_docs, level, items)
        return await asyncio.to_thread(build_docs, level, items)

    def rate(self) -> float:
        """Messages per second indexed over the last minute or so."""
        if len(self._rate) < 2:
            return 0.0
        span = self._rate[-1][0] - self._rate[0][0]
        n = sum(c for _, c in list(self._rate)[1:])
        return n / span if span > 0 else 0.0

    def _report(self, st: _Folder, mb: MailboxIndex, level: int) -> None:
        """Progress lines like the sync's: every 10 % of a big folder, its end, and one line
        when every folder is done."""
        done = len(st.cov.headers_done if level == 1 else st.cov.full_done)
        total = mb.exists
        what = "header fields" if level == 1 else "messages"
        if done >= total:
            if st.reported.get(level) != 100:
                st.reported[level] = 100
                took = time.monotonic() - st.started.get(level, time.monotonic())
                uncertain = done - len(st.cov.headers if level == 1 else st.cov.full)
                log.log(
                    logging.INFO if total >= PROGRESS_MIN else logging.DEBUG,
                    "index: %s: %s of %d messages indexed in %.1f s (%.1f MB fetched%s)",
                    mb.name, what, total, took, st.fetched[level] / 1e6,
                    f"; {uncertain} left to the server" if uncertain else "",
                )
                if level == 2 and self.complete() and not self._announced:
                    self._announced = True
                    n = sum(len(f.cov.full_done) for f in self._folders.values())
                    log.info("index: every folder indexed (%d messages); searches are answered locally", n)
            return
        if total >= PROGRESS_MIN:
            step = done * 10 // max(total, 1)
            if st.reported.get(level, -1) < step:
                st.reported[level] = step
                rate = self.rate()
                eta = f", about {(total - done) / rate / 60:.0f} min left" if rate > 0 else ""
                log.info("index: %s: %s %d/%d (%d%%)%s", mb.name, what, done, total, step * 10, eta)


def _selectable(mb: MailboxIndex) -> bool:
    return not any(a.upper() in ("\\NOSELECT", "\\NONEXISTENT") for a in mb.attributes)
