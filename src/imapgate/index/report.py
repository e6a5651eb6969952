"""What the search index holds, for ``imapgate index status`` and ``imapgate check``.

Read from the store, so it works beside a running gateway (or without one); the
indexer records its progress there (bytes fetched, messages per second).  The
folders and their message counts come from the store (``engine``), the index
from ``index_engine``: the store itself on SQLite (None, the default), the
node's local file beside a PostgreSQL store, or ``NO_INDEX`` when the node has
none yet (every folder at 0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import Engine, func, select

from ..store.schema import mailboxes, messages, search_docs, search_folders
from .store import SqliteIndexStore

#: The indexer writes its progress at least this often while it works: older figures
#: mean no gateway is indexing now (no ETA then).
LIVE_SECONDS: Final = 120.0
#: ``index_engine`` of a node without a local index file yet.
NO_INDEX: Final = False

IndexEngine = Engine | Literal[False] | None


@dataclass
class FolderReport:
    name: str
    messages: int
    #: Messages whose header fields (SUBJECT, FROM, TO, CC, BCC) are indexed.
    headers: int
    #: Messages indexed whole.
    indexed: int
    #: Of those, left to the server (the index cannot answer for them the server's way).
    uncertain: int
    fetched_bytes: int
    rate: float
    updated: float

    @property
    def eta_seconds(self) -> float | None:
        if self.indexed >= self.messages or self.rate <= 0 or time.time() - self.updated > LIVE_SECONDS:
            return None
        return (self.messages - self.indexed) / self.rate


def folder_reports(engine: Engine, index_engine: IndexEngine = None) -> list[FolderReport]:
    """Per folder of the store: its messages, and what the index holds of them."""
    with engine.connect() as conn:
        names = {r.id: (r.name, r.uidvalidity) for r in conn.execute(select(mailboxes))}
        per_mailbox = select(messages.c.mailbox_id, func.count()).group_by(messages.c.mailbox_id)
        counts: dict[int, int] = {mid: n for mid, n in conn.execute(per_mailbox)}
    gens, docs = _index_rows(engine if index_engine is None else index_engine)
    out = []
    for mid, (name, uidvalidity) in sorted(names.items(), key=lambda kv: kv[1][0]):
        g = gens.get(mid)
        d = docs.get(g.id, {}) if g is not None and g.uidvalidity == uidvalidity else {}
        full = d.get((2, True), 0) + d.get((2, False), 0)
        out.append(
            FolderReport(
                name=name,
                messages=counts.get(mid, 0),
                headers=full + d.get((1, True), 0) + d.get((1, False), 0),
                indexed=full,
                uncertain=d.get((2, False), 0),
                fetched_bytes=g.fetched_bytes if g is not None else 0,
                rate=g.rate if g is not None else 0.0,
                updated=g.updated if g is not None else 0.0,
            )
        )
    return out


def _index_rows(
    engine: Engine | Literal[False],
) -> tuple[dict[int, Any], dict[int, dict[tuple[int, bool], int]]]:
    """The current generation per mailbox id, and per generation docs by (level, certain)."""
    gens: dict[int, Any] = {}
    docs: dict[int, dict[tuple[int, bool], int]] = {}
    if engine is False:
        return gens, docs
    with engine.connect() as conn:
        gens = {
            r.mailbox_id: r
            for r in conn.execute(select(search_folders).where(search_folders.c.state == "current"))
        }
        for gen, level, certain, n in conn.execute(
            select(search_docs.c.gen, search_docs.c.level, search_docs.c.certain, func.count()).group_by(
                search_docs.c.gen, search_docs.c.level, search_docs.c.certain
            )
        ):
            docs.setdefault(gen, {})[(level, bool(certain))] = n
    return gens, docs


def index_sizes(engine: Engine | Literal[False]) -> dict[str, int]:
    """Bytes on disk (``fts_bytes``, ``doc_bytes``), docs, characters indexed."""
    if engine is False:
        return {"fts_bytes": 0, "doc_bytes": 0, "docs": 0, "text_bytes": 0}
    return SqliteIndexStore(engine).sizes()


def index_report(engine: Engine, index_engine: IndexEngine = None) -> list[str]:
    """A few lines on the index for ``imapgate check``: its size on disk and coverage."""
    idx = engine if index_engine is None else index_engine
    reports = folder_reports(engine, idx)
    sizes = index_sizes(idx)
    total = sum(r.messages for r in reports)
    indexed = sum(min(r.indexed, r.messages) for r in reports)
    on_disk = sizes["fts_bytes"] + sizes["doc_bytes"]
    per = f", {on_disk / indexed * 100_000 / 1e6:.0f} MB per 100,000 messages" if indexed else ""
    pct = f"{indexed * 100 // total}%" if total else "-"
    return [
        f"search index: {on_disk / 1e6:.1f} MB on disk{per}",
        f"search index: {indexed} of {total} messages indexed ({pct})",
    ]


def rebuild(engine: Engine, folder: str | None, index_engine: IndexEngine = None) -> int:
    """Retire the current index of ``folder`` (None: every folder): a running gateway
    re-indexes it within half a minute, else the next one started.  Returns how many
    folders were retired; raises KeyError for an unknown folder (the folder is looked
    up in the store, its index in ``index_engine``)."""
    mid: int | None = None
    if folder is not None:
        with engine.connect() as conn:
            found = conn.execute(select(mailboxes.c.id).where(mailboxes.c.name == folder)).scalar()
        if found is None:
            raise KeyError(folder)
        mid = int(found)
    idx = engine if index_engine is None else index_engine
    if idx is False:
        return 0  # nothing indexed on this node yet
    return SqliteIndexStore(idx).retire(mid)
