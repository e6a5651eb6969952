"""Content cache: immutable message items (bodies, sections, ENVELOPE,
BODYSTRUCTURE) keyed by (mailbox, UIDVALIDITY, UID, item name).

An item of a message never changes while its UIDVALIDITY holds, so cached
items are served forever; the cache is bounded by ``max_bytes`` and evicts the
least recently used items.  Small structural items (ENVELOPE, BODYSTRUCTURE,
header fields) are also kept in an in-memory LRU, since mail clients ask for
them on every folder open.

Where the cache lives: in the SQLite store's own file (one node), or beside a
PostgreSQL store in each node's local file (``store.engine.open_local_engine``).
There no foreign key ties an item to its folder, so ``CachePurger`` does what
the ``ON DELETE CASCADE`` does in the store: the items of a folder the replica
no longer has (deleted here, on another node, or while this node was down) or
of an old UIDVALIDITY are deleted, at start and after each ``MailboxReset``.
Mailbox ids on PostgreSQL never repeat, so such items would never be served;
the purge only gives their space back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update

from ..store.schema import content
from .events import EventHub, MailboxReset, ReplicaEvent

log = logging.getLogger("imapgate.content")

#: Items up to this size also live in the in-memory LRU.
MEMORY_ITEM_MAX = 16 * 1024
#: Total size of the in-memory LRU: 1,000 messages' ENVELOPE+BODYSTRUCTURE are ~2 MB.
MEMORY_MAX_BYTES = 64 * 1024 * 1024
#: Eviction runs when the store holds this much more than max_bytes, so it is
#: not triggered by every insert.
EVICT_SLACK = 0.1

Key = tuple[int, int, int, bytes]  # mailbox_id, uidvalidity, uid, item name
_MISSING = object()
#: ``highest`` of a purge that leaves no mailbox id alone.
_NO_BOUND = 1 << 62


class ContentCache:
    def __init__(self, engine: Engine, max_bytes: int) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self._mem: OrderedDict[Key, bytes | None] = OrderedDict()
        self._mem_bytes = 0
        self._stored_bytes: int | None = None
        self.hits = 0
        self.misses = 0

    def peek(self, mailbox_id: int, uidvalidity: int, uid: int, item: bytes) -> bytes | None:
        """The item if it is in memory now (no store read; None when not there):
        for callers that only want it when it costs nothing (the audit journal's
        subjects)."""
        v = self._mem.get((mailbox_id, uidvalidity, uid, item))
        return v if isinstance(v, bytes) else None

    def get_many(
        self, mailbox_id: int, uidvalidity: int, keys: Iterable[tuple[int, bytes]]
    ) -> dict[tuple[int, bytes], bytes | None]:
        """Cached items among ``keys`` ((uid, item) pairs); missing ones are absent."""
        found: dict[tuple[int, bytes], bytes | None] = {}
        wanted: list[tuple[int, bytes]] = []
        for uid, item in keys:
            k = (mailbox_id, uidvalidity, uid, item)
            v = self._mem.get(k, _MISSING)
            if v is _MISSING:
                wanted.append((uid, item))
            else:
                self._mem.move_to_end(k)
                found[(uid, item)] = v  # type: ignore[assignment]
        if wanted:
            by_uid: dict[int, list[bytes]] = {}
            for uid, item in wanted:
                by_uid.setdefault(uid, []).append(item)
            uids = sorted(by_uid)
            with self.engine.connect() as conn:
                for i in range(0, len(uids), 500):
                    chunk = uids[i : i + 500]
                    rows = conn.execute(
                        select(content.c.uid, content.c.item, content.c.data).where(
                            content.c.mailbox_id == mailbox_id,
                            content.c.uidvalidity == uidvalidity,
                            content.c.uid.in_(chunk),
                        )
                    )
                    for r in rows:
                        item_b = r.item.encode("utf-8")
                        if item_b in by_uid.get(r.uid, ()):
                            found[(r.uid, item_b)] = r.data
                            self._remember((mailbox_id, uidvalidity, r.uid, item_b), r.data)
            hit_keys = [(uid, item) for uid, item in wanted if (uid, item) in found]
            if hit_keys:
                self._touch(mailbox_id, uidvalidity, hit_keys)
        missed = sum(1 for key in wanted if key not in found)
        self.misses += missed
        self.hits += len(found)
        return found

    def put_many(
        self, mailbox_id: int, uidvalidity: int, items: dict[tuple[int, bytes], bytes | None]
    ) -> None:
        if not items:
            return
        now = time.time()
        rows = [
            {
                "mailbox_id": mailbox_id,
                "uidvalidity": uidvalidity,
                "uid": uid,
                "item": item.decode("utf-8"),
                "data": data,
                "size": len(data or b""),
                "last_used": now,
            }
            for (uid, item), data in items.items()
        ]
        with self.engine.begin() as conn:
            # Another session may have cached the same item meanwhile: replace.
            for i in range(0, len(rows), 500):
                chunk = rows[i : i + 500]
                conn.execute(
                    delete(content).where(
                        or_(
                            *(
                                and_(
                                    content.c.mailbox_id == r["mailbox_id"],
                                    content.c.uidvalidity == r["uidvalidity"],
                                    content.c.uid == r["uid"],
                                    content.c.item == r["item"],
                                )
                                for r in chunk
                            )
                        )
                    )
                )
                conn.execute(insert(content), chunk)
        for (uid, item), data in items.items():
            self._remember((mailbox_id, uidvalidity, uid, item), data)
        if self._stored_bytes is None:
            self._stored_bytes = self.stored_bytes()
        else:
            self._stored_bytes += sum(len(data or b"") for data in items.values())
        if self._stored_bytes > self.max_bytes * (1 + EVICT_SLACK):
            self.evict()

    def stored_bytes(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(content.c.size), 0))).scalar_one())

    def evict(self) -> int:
        """Drop least recently used items until the store holds at most max_bytes."""
        total = self.stored_bytes()
        freed = 0
        with self.engine.begin() as conn:
            while total - freed > self.max_bytes:
                rows = conn.execute(
                    select(
                        content.c.mailbox_id,
                        content.c.uidvalidity,
                        content.c.uid,
                        content.c.item,
                        content.c.size,
                    )
                    .order_by(content.c.last_used)
                    .limit(500)
                ).all()
                if not rows:
                    break
                for r in rows:
                    conn.execute(
                        delete(content).where(
                            content.c.mailbox_id == r.mailbox_id,
                            content.c.uidvalidity == r.uidvalidity,
                            content.c.uid == r.uid,
                            content.c.item == r.item,
                        )
                    )
                    self._forget((r.mailbox_id, r.uidvalidity, r.uid, r.item.encode("utf-8")))
                    freed += r.size
                    if total - freed <= self.max_bytes:
                        break
        self._stored_bytes = total - freed
        return freed

    def drop_mailbox(self, mailbox_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(content).where(content.c.mailbox_id == mailbox_id))
        for k in [k for k in self._mem if k[0] == mailbox_id]:
            self._forget(k)
        self._stored_bytes = None

    def purge_stale(self, live: Mapping[int, int], highest: int | None = None) -> int:
        """Delete the stored items of folders not in ``live`` (mailbox id -> its
        UIDVALIDITY now) or of another UIDVALIDITY; how many rows went.  Runs in a
        worker thread: it touches the store only (``forget_stale`` does the memory).
        Mailbox ids above ``highest`` (default: the highest of ``live``) are left
        alone: a folder created after the snapshot was taken (ids only grow)."""
        highest = max(live, default=0) if highest is None else highest
        with self.engine.connect() as conn:
            present = conn.execute(select(content.c.mailbox_id, content.c.uidvalidity).distinct()).all()
        stale = [(mid, uv) for mid, uv in present if mid <= highest and (mid not in live or live[mid] != uv)]
        removed = 0
        for mid, uv in stale:
            with self.engine.begin() as conn:
                removed += int(
                    conn.execute(
                        delete(content).where(content.c.mailbox_id == mid, content.c.uidvalidity == uv)
                    ).rowcount
                )
        if stale:
            self._stored_bytes = None
        return removed

    def forget_stale(self, live: Mapping[int, int], highest: int | None = None) -> None:
        """The memory side of ``purge_stale`` (in the event loop's thread)."""
        highest = max(live, default=0) if highest is None else highest
        for k in [k for k in self._mem if k[0] <= highest and live.get(k[0]) != k[1]]:
            self._forget(k)

    # -- memory LRU --------------------------------------------------------------------
    def _remember(self, key: Key, data: bytes | None) -> None:
        size = len(data or b"")
        if size > MEMORY_ITEM_MAX:
            return
        if key in self._mem:
            self._mem.move_to_end(key)
            return
        self._mem[key] = data
        self._mem_bytes += size + 64
        while self._mem_bytes > MEMORY_MAX_BYTES and self._mem:
            _, old = self._mem.popitem(last=False)
            self._mem_bytes -= len(old or b"") + 64

    def _forget(self, key: Key) -> None:
        old = self._mem.pop(key, _MISSING)
        if old is not _MISSING:
            self._mem_bytes -= len(old or b"") + 64  # type: ignore[arg-type]

    def _touch(self, mailbox_id: int, uidvalidity: int, keys: list[tuple[int, bytes]]) -> None:
        # LRU bookkeeping in the store is coarse (per message, not per item) and
        # best effort: one UPDATE for a batch.
        uids = sorted({uid for uid, _ in keys})
        now = time.time()
        with self.engine.begin() as conn:
            for i in range(0, len(uids), 500):
                conn.execute(
                    update(content)
                    .where(
                        content.c.mailbox_id == mailbox_id,
                        content.c.uidvalidity == uidvalidity,
                        content.c.uid.in_(uids[i : i + 500]),
                    )
                    .values(last_used=now)
                )


class CachePurger:
    """Keeps a node-local cache free of folders the replica no longer has (see the
    module text): a purge at ``start`` and after every ``MailboxReset`` (one at a
    time; events during a purge make one more)."""

    def __init__(self, cache: ContentCache, hub: EventHub, live: Callable[[], Mapping[int, int]]) -> None:
        self.cache = cache
        self.hub = hub
        #: The replica's folders now: mailbox id -> UIDVALIDITY.
        self.live = live
        self._task: asyncio.Task[None] | None = None
        self._again = False
        #: Rows deleted so far (tests, the log).
        self.purged = 0
        #: The highest mailbox id this node has known of (its folders, the resets it was
        #: told of): a deleted folder can be the newest one.
        self._highest = 0
        #: The first purge (at start, before any client is served) has no such bound: a
        #: folder deleted while the node was down may have been the newest.
        self._first = True

    def start(self) -> None:
        self.hub.subscribe(None, self._on_event)
        self.schedule()

    async def stop(self) -> None:
        self.hub.unsubscribe(None, self._on_event)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    def _on_event(self, event: ReplicaEvent) -> None:
        if isinstance(event, MailboxReset):
            self._highest = max(self._highest, event.mailbox_id)
            self.schedule()

    def schedule(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="content-purge")

    async def wait(self) -> None:
        """Until no purge is running (tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        while True:
            self._again = False
            live = dict(self.live())
            self._highest = highest = max(self._highest, max(live, default=0))
            if self._first:
                self._first, highest = False, _NO_BOUND
            self.cache.forget_stale(live, highest)
            try:
                n = await asyncio.to_thread(self.cache.purge_stale, live, highest)
            except Exception as exc:  # a cache: the next reset or start tries again
                log.warning("content cache: purging deleted folders failed (%s)", exc)
                return
            if n:
                self.purged += n
                log.info("content cache: %d items of deleted or reset folders removed", n)
            if not self._again:
                return
