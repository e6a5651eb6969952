"""The background indexer with fake fetchers on a real replica and store: what it fetches
and in which order, oversized and vanished messages, expunges and resets, lookups while
the index is incomplete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from imapgate.index import indexer as indexer_module
from imapgate.index.indexer import SearchIndex
from imapgate.index.query import Needle, needle_for
from imapgate.index.store import Doc, SqliteIndexStore
from imapgate.index.worker import build_docs
from imapgate.protocol import search as s
from imapgate.replica.events import EventHub
from imapgate.replica.mailbox import MailboxIndex, MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine


def _raw(uid: int) -> bytes:
    return b"From: sender%d@example.com\r\nSubject: Nummer %05d\r\n\r\nText der Nachricht %d\r\n" % (
        uid, uid, uid
    )


class Fakes:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[int]]] = []
        self.gone: set[int] = set()  # the "server" does not return these

    async def headers(self, mb: MailboxIndex, uids: list[int]) -> dict[int, bytes]:
        self.calls.append(("headers", mb.name, list(uids)))
        return {u: _raw(u).split(b"\r\n\r\n")[0] + b"\r\n\r\n" for u in uids if u not in self.gone}

    async def messages(self, mb: MailboxIndex, uids: list[int]) -> dict[int, bytes]:
        self.calls.append(("messages", mb.name, list(uids)))
        return {u: _raw(u) for u in uids if u not in self.gone}


async def _inline(level: int, items: list[tuple[int, bytes | None]]) -> list[Doc]:
    return build_docs(level, items)


def _setup(tmp_path: Path, folders: dict[str, int]) -> tuple[Replica, SearchIndex, Fakes]:
    engine = open_engine(f"sqlite:///{tmp_path / 's.sqlite3'}")
    replica = Replica(engine, EventHub())
    for i, (name, n) in enumerate(folders.items()):
        mb = replica.upsert_mailbox(name, "/", ())
        replica.reset(mb, 100 + i, "initial")
        replica.add_messages(mb, [MessageRecord(u, (), 0, 1.7e9, 0, 200, None) for u in range(1, n + 1)])
        replica.set_sync_state(mb, synced=True)
    fakes = Fakes()
    index = SearchIndex(SqliteIndexStore(engine), replica, fakes.headers, fakes.messages, extract=_inline)
    return replica, index, fakes


async def _until(pred: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_order_headers_first_newest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexer_module, "HEADER_BATCH", 300)
    monkeypatch.setattr(indexer_module, "BODY_BATCH_MAX", 150)
    replica, index, fakes = _setup(tmp_path, {"Archive": 400, "INBOX": 500})
    try:
        await index.start()
        await _until(index.complete)
        kinds = [c[0] for c in fakes.calls]
        # Every folder's header fields before any whole message.
        assert kinds.index("messages") > max(i for i, k in enumerate(kinds) if k == "headers")
        first = fakes.calls[0]
        assert first[1] == "INBOX" and first[2][0] == 500 and first[2] == sorted(first[2], reverse=True)
        assert all(len(c[2]) <= 300 for c in fakes.calls if c[0] == "headers")
        assert all(len(c[2]) <= 150 for c in fakes.calls if c[0] == "messages")
        fetched = sorted(u for c in fakes.calls if c[0] == "messages" and c[1] == "INBOX" for u in c[2])
        assert fetched == list(range(1, 501))  # each message once
        mb = replica.get("INBOX")
        assert mb is not None
        found, uncovered = await index.lookup(mb, _needle("BODY", "Nachricht 123"))
        assert found == {123} and uncovered == []
    finally:
        await index.stop()


def _needle(field: s.TextField, value: str) -> Needle:
    n = needle_for(s.SearchText(field, value.encode()), None)
    assert n is not None
    return n


async def test_incomplete_index_names_the_rest(tmp_path: Path) -> None:
    replica, index, fakes = _setup(tmp_path, {"INBOX": 50})
    mb = replica.get("INBOX")
    assert mb is not None
    # Nothing indexed yet: everything goes to the hoster.
    found, uncovered = await index.lookup(mb, _needle("SUBJECT", "Nummer"))
    assert found == set() and uncovered == mb.uids
    fakes.gone = {7}  # not returned by the server: not marked done, tried again later
    try:
        await index.start()
        await _until(lambda: len(index.covered(mb, 2) or ()) == 49)
        found, uncovered = await index.lookup(mb, _needle("SUBJECT", "Nummer 0000"))
        assert found == set(range(1, 10)) - {7} and uncovered == [7]
    finally:
        await index.stop()


async def test_new_mail_expunge_and_reset(tmp_path: Path) -> None:
    replica, index, fakes = _setup(tmp_path, {"INBOX": 20})
    mb = replica.get("INBOX")
    assert mb is not None
    try:
        await index.start()
        await _until(index.complete)
        replica.add_messages(mb, [MessageRecord(21, (), 0, 1.7e9, 0, 200, None)])
        await _until(lambda: 21 in (index.covered(mb, 2) or ()))
        assert fakes.calls[-1][2] == [21]  # the new message alone, at once
        replica.expunge(mb, [3, 21])
        assert 3 not in (index.covered(mb, 2) or ())
        await _until(lambda: index.store.sizes()["docs"] == 19)
        found, _ = await index.lookup(mb, _needle("BODY", "Nachricht 3"))
        assert 3 not in found
        # A new UIDVALIDITY: the old generation goes, the folder is indexed again.
        replica.reset(mb, 999, "UIDVALIDITY changed upstream")
        assert index.covered(mb, 2) is None
        replica.add_messages(mb, [MessageRecord(u, (), 0, 1.7e9, 0, 200, None) for u in (1, 2)])
        replica.set_sync_state(mb, synced=True)
        index._replan = True
        index._wake.set()
        await _until(lambda: index.complete() and index.store.sizes()["docs"] == 2, timeout=20)
    finally:
        await index.stop()


async def test_oversized_messages_are_left_to_the_server(tmp_path: Path) -> None:
    replica, index, fakes = _setup(tmp_path, {"INBOX": 3})
    mb = replica.get("INBOX")
    assert mb is not None
    mb.records[2].size = indexer_module.MAX_MESSAGE_BYTES + 1
    try:
        await index.start()
        await _until(index.complete)
        assert all(2 not in c[2] for c in fakes.calls if c[0] == "messages")  # never fetched whole
        found, uncovered = await index.lookup(mb, _needle("BODY", "Nachricht"))
        assert found == {1, 3} and uncovered == [2]
    finally:
        await index.stop()


async def test_inactive_index_does_nothing(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 's.sqlite3'}")
    replica = Replica(engine, EventHub())
    mb = replica.upsert_mailbox("INBOX", "/", ())
    replica.reset(mb, 1, "initial")
    replica.add_messages(mb, [MessageRecord(1, (), 0, 1.7e9, 0, 200, None)])
    replica.set_sync_state(mb, synced=True)
    fakes = Fakes()
    index = SearchIndex(SqliteIndexStore(engine), replica, fakes.headers, fakes.messages, extract=_inline,
                        active=lambda: False)
    await index.start()
    await asyncio.sleep(0.3)
    await index.stop()
    assert fakes.calls == []
