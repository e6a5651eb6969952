"""The content cache in a node-local file (replica/content.py ``CachePurger``): no foreign key
ties its items to their folders, so the purger does what ``ON DELETE CASCADE`` does in the
store -- a folder deleted or renumbered (UIDVALIDITY) loses its items, at once through the
replica's ``MailboxReset`` and at start for folders that went while the node was down."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import Engine, select

from imapgate.replica.content import CachePurger, ContentCache
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine, open_local_engine
from imapgate.store.schema import content

ITEMS = {(1, b"BODY[]"): b"one", (2, b"BODY[]"): b"two", (2, b"ENVELOPE"): b"env"}


def _rows(engine: Engine) -> dict[int, set[int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(content.c.mailbox_id, content.c.uidvalidity)).all()
    out: dict[int, set[int]] = {}
    for mid, uv in rows:
        out.setdefault(mid, set()).add(uv)
    return out


def _replica(tmp_path: Path) -> Replica:
    replica = Replica(open_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}"))
    for name, uv in (("INBOX", 10), ("Old", 20), ("Reset", 30)):
        mb = replica.upsert_mailbox(name, "/", ())
        replica.reset(mb, uv, "initial")
        replica.add_messages(mb, [MessageRecord(u, (), 0, 1.7e9, 10, 10) for u in (1, 2)])
    return replica


def _live(replica: Replica) -> dict[int, int]:
    return {mb.id: mb.uidvalidity for mb in replica.by_id.values()}


def test_deleted_and_reset_folders_are_purged(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    local = open_local_engine(tmp_path / "node")
    cache = ContentCache(local, 1 << 20)
    ids = {name: replica.by_name[name].id for name in ("INBOX", "Old", "Reset")}
    for name, uv in (("INBOX", 10), ("Old", 20), ("Reset", 30)):
        cache.put_many(ids[name], uv, ITEMS)

    async def scenario() -> CachePurger:
        purger = CachePurger(cache, replica.hub, lambda: _live(replica))
        purger.start()
        await purger.wait()
        assert purger.purged == 0  # every item belongs to a folder the replica has
        replica.drop_mailbox("Old")
        await purger.wait()
        assert ids["Old"] not in _rows(local)
        reset = replica.get("Reset")
        assert reset is not None
        replica.reset(reset, 31, "UIDVALIDITY changed")
        await purger.wait()
        await purger.stop()
        return purger

    purger = asyncio.run(scenario())
    assert _rows(local) == {ids["INBOX"]: {10}}
    assert purger.purged == 2 * len(ITEMS)
    # Nothing of the purged folders is served from memory either.
    assert cache.get_many(ids["Old"], 20, ITEMS) == {}
    assert cache.get_many(ids["Reset"], 30, ITEMS) == {}
    assert cache.get_many(ids["INBOX"], 10, ITEMS) == ITEMS
    assert cache.stored_bytes() == sum(len(v) for v in ITEMS.values())
    local.dispose()


def test_start_purges_folders_gone_while_the_node_was_down(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    local = open_local_engine(tmp_path / "node")
    cache = ContentCache(local, 1 << 20)
    gone_id = max(replica.by_id) + 1000  # deleted by another node: not in this replica
    cache.put_many(replica.by_name["INBOX"].id, 10, ITEMS)
    cache.put_many(replica.by_name["INBOX"].id, 9, ITEMS)  # an old UIDVALIDITY
    # A folder id above every id the replica knows is a folder created after the snapshot:
    # left alone (mailbox ids only grow).
    cache.put_many(gone_id, 1, ITEMS)
    live = _live(replica)
    removed = cache.purge_stale(live)
    assert removed == len(ITEMS)
    assert _rows(local) == {replica.by_name["INBOX"].id: {10}, gone_id: {1}}
    del live[replica.by_name["INBOX"].id]
    live[gone_id + 1] = 1
    assert cache.purge_stale(live) == 2 * len(ITEMS)
    assert _rows(local) == {}
    local.dispose()


def test_first_purge_has_no_bound(tmp_path: Path) -> None:
    """At start (no client served yet) a folder deleted while the node was down goes even
    when it was the newest one."""
    replica = _replica(tmp_path)
    local = open_local_engine(tmp_path / "node")
    cache = ContentCache(local, 1 << 20)
    newest = max(replica.by_id) + 1
    cache.put_many(newest, 1, ITEMS)
    cache.put_many(replica.by_name["INBOX"].id, 10, ITEMS)

    async def scenario() -> None:
        purger = CachePurger(cache, replica.hub, lambda: _live(replica))
        purger.start()
        await purger.wait()
        await purger.stop()

    asyncio.run(scenario())
    assert _rows(local) == {replica.by_name["INBOX"].id: {10}}
    local.dispose()
