"""The search index in the store: what is indexed, and the lookups.

``IndexStore`` is the interface; ``SqliteIndexStore`` implements it with two
FTS5 tables using the trigram tokenizer (``case_sensitive 1``: the text is
already normalized the way Dovecot compares, so a phrase query is an exact
substring test).  Beside a PostgreSQL store each node keeps its index in
its own SQLite file (``store.engine.open_local_engine``), so this one
implementation serves both (see docs/architecture.md, "Search index").

Layout (all rows of one folder generation share ``gen``; a generation is one
(mailbox, UIDVALIDITY) as indexed with one extractor version, so a rebuilt or
re-numbered folder starts a new one and the old is purged in the background):

* ``search_folders``: one row per generation (state ``current``/``retired``),
  with the indexer's progress (bytes fetched, rate) for ``imapgate index status``;
* ``search_docs``: one row per indexed message, rowid ``gen << 32 | uid``:
  level (1 = header fields, 2 = whole message), whether the index is certain
  about it, and the indexed texts compressed (contentless FTS tables need them
  to delete a row; HEADER lookups verify candidates with them), with a
  dictionary per generation taken from its first messages (small messages of
  one folder share most of their text: several times smaller than alone);
* ``search_fts_<column>``: one contentless FTS5 table per column (subject,
  from, to, cc, bcc, headers of all parts, body text), rowid as above.  One
  table each, not columns of one: a column filter makes FTS5 read every
  column's positions (BODY of 100,000 messages: 140 ms instead of 18 ms).

Every method is synchronous (callers run it in a worker thread) and opens its
own short transaction.
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final, Protocol

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from ..store.schema import search_docs, search_folders
from .query import Needle

#: Bumped when extraction changes what is indexed: every folder is then re-indexed.
EXTRACT_VERSION: Final = 1
UID_BITS: Final = 32
#: Columns indexed from the header fields (level 1) and from whole messages (level 2 adds).
LEVEL1_COLUMNS: Final = ("subject", "from", "to", "cc", "bcc")
LEVEL2_COLUMNS: Final = ("headers", "body")
#: The FTS table(s) each needle field is looked up in.
_TABLES: Final = {
    "subject": ("subject",),
    "from": ("from",),
    "to": ("to",),
    "cc": ("cc",),
    "bcc": ("bcc",),
    "body": ("body",),
    "text": ("headers", "body"),
    "header": ("headers",),
}
#: Bytes of the compression dictionary of a generation (zlib's window).
ZDICT_BYTES: Final = 32 * 1024


@dataclass
class Doc:
    """One message as the indexer hands it to the store."""

    uid: int
    level: int
    certain: bool
    #: Bytes fetched for it (the message, or its header fields).
    size: int = 0
    #: Column texts (extract.Extracted.columns()), only when certain.
    columns: dict[str, str] = field(default_factory=dict)
    #: Top-level headers (name, searchable value), level 2 only.
    top_headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Folder:
    gen: int
    mailbox_id: int
    uidvalidity: int
    state: str
    version: int
    fetched_bytes: int = 0
    rate: float = 0.0
    updated: float = 0.0


@dataclass
class Coverage:
    """UIDs of one generation by what the index holds for them."""

    headers: set[int] = field(default_factory=set)  # level >= 1, certain
    full: set[int] = field(default_factory=set)  # level 2, certain
    headers_done: set[int] = field(default_factory=set)  # level >= 1, certain or not
    full_done: set[int] = field(default_factory=set)  # level 2, certain or not


class IndexStore(Protocol):
    def folders(self) -> list[Folder]: ...
    def current(self, mailbox_id: int, uidvalidity: int) -> Folder: ...
    def retire(self, mailbox_id: int | None = None) -> int: ...
    def coverage(self, gen: int) -> Coverage: ...
    def write(self, gen: int, docs: list[Doc], fetched_bytes: int, rate: float) -> None: ...
    def delete(self, gen: int, uids: list[int]) -> int: ...
    def purge(self, gen: int, limit: int) -> int: ...
    def search(self, gen: int, needle: Needle) -> set[int]: ...
    def sizes(self) -> dict[str, int]: ...


def rowid(gen: int, uid: int) -> int:
    return (gen << UID_BITS) | uid


def _json(doc: Doc) -> bytes:
    return json.dumps([doc.columns, doc.top_headers], ensure_ascii=False).encode("utf-8")


def _pack(raw: bytes, zdict: bytes | None) -> bytes:
    """b"\x01" + raw deflate with the generation's dictionary, or b"\x00" + zlib."""
    if zdict is None:
        return b"\x00" + zlib.compress(raw, 6)
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    return b"\x01" + c.compress(raw) + c.flush()


def _unpack(data: bytes | None, zdict: bytes | None) -> tuple[dict[str, str], list[tuple[str, str]]]:
    if not data:
        return {}, []
    if data[0] == 1:
        assert zdict is not None
        d = zlib.decompressobj(-15, zdict)
        raw = d.decompress(data[1:]) + d.flush()
    else:
        raw = zlib.decompress(data[1:])
    cols, hdrs = json.loads(raw.decode("utf-8"))
    return cols, [(n, v) for n, v in hdrs]


def _phrase(needle: str) -> str:
    """An FTS5 phrase: the string quoted, inner quotes doubled."""
    return '"' + needle.replace('"', '""') + '"'


def _folder(r: Any) -> Folder:
    return Folder(r.id, r.mailbox_id, r.uidvalidity, r.state, r.version, r.fetched_bytes, r.rate, r.updated)


class SqliteIndexStore:
    """``IndexStore`` on SQLite FTS5 (trigram tokenizer, SQLite >= 3.34)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Compression dictionaries by generation.
        self._zdicts: dict[int, bytes] = {}

    def _zdict(self, conn: Connection, gen: int) -> bytes | None:
        """The dictionary of ``gen``; only a found one is remembered (a reader must not
        remember "none yet" while the writer's first transaction is still open)."""
        zdict = self._zdicts.get(gen)
        if zdict is None:
            zdict = conn.execute(select(search_folders.c.zdict).where(search_folders.c.id == gen)).scalar()
            if zdict is not None:
                self._zdicts[gen] = zdict
        return zdict

    # -- generations ----------------------------------------------------------------
    def folders(self) -> list[Folder]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(search_folders).order_by(search_folders.c.id)).all()
        return [_folder(r) for r in rows]

    def current(self, mailbox_id: int, uidvalidity: int) -> Folder:
        """The current generation of (mailbox, UIDVALIDITY), made when there is none;
        any other current one of the mailbox (old UIDVALIDITY, old version) is retired."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(search_folders).where(
                    search_folders.c.mailbox_id == mailbox_id, search_folders.c.state == "current"
                )
            ).all()
            for r in rows:
                if r.uidvalidity == uidvalidity and r.version == EXTRACT_VERSION:
                    return _folder(r)
            if rows:
                conn.execute(
                    update(search_folders)
                    .where(search_folders.c.id.in_([r.id for r in rows]))
                    .values(state="retired")
                )
            key = conn.execute(
                insert(search_folders).values(
                    mailbox_id=mailbox_id,
                    uidvalidity=uidvalidity,
                    state="current",
                    version=EXTRACT_VERSION,
                    fetched_bytes=0,
                    rate=0.0,
                    updated=time.time(),
                )
            ).inserted_primary_key
            assert key is not None
            return Folder(int(key[0]), mailbox_id, uidvalidity, "current", EXTRACT_VERSION)

    def retire(self, mailbox_id: int | None = None) -> int:
        """Retire the current generation of one mailbox (None: of all): ``index rebuild``.
        The running gateway starts new ones and purges these."""
        with self.engine.begin() as conn:
            q = update(search_folders).where(search_folders.c.state == "current")
            if mailbox_id is not None:
                q = q.where(search_folders.c.mailbox_id == mailbox_id)
            return int(conn.execute(q.values(state="retired")).rowcount)

    # -- coverage ---------------------------------------------------------------------
    def coverage(self, gen: int) -> Coverage:
        lo, hi = rowid(gen, 0), rowid(gen + 1, 0)
        cov = Coverage()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(search_docs.c.uid, search_docs.c.level, search_docs.c.certain).where(
                    search_docs.c.id >= lo, search_docs.c.id < hi
                )
            )
            for uid, level, certain in rows:
                cov.headers_done.add(uid)
                if certain:
                    cov.headers.add(uid)
                if level >= 2:
                    cov.full_done.add(uid)
                    if certain:
                        cov.full.add(uid)
        return cov

    # -- writing ----------------------------------------------------------------------
    def write(self, gen: int, docs: list[Doc], fetched_bytes: int, rate: float) -> None:
        """Insert or replace ``docs`` of generation ``gen``, in one transaction."""
        if not docs:
            return
        with self.engine.begin() as conn:
            ids = [rowid(gen, d.uid) for d in docs]
            self._remove(conn, gen, ids)
            raws = {d.uid: _json(d) for d in docs if d.certain}
            zdict = self._zdict(conn, gen)
            values: dict[str, Any] = {
                "fetched_bytes": search_folders.c.fetched_bytes + fetched_bytes,
                "rate": rate,
                "updated": time.time(),
            }
            if zdict is None and any(d.level >= 2 and d.certain for d in docs):
                # The generation's dictionary: the text of its first whole messages.
                zdict = b"".join(raws[d.uid] for d in docs if d.certain and d.level >= 2)[-ZDICT_BYTES:]
                values["zdict"] = zdict
                self._zdicts[gen] = zdict
            rows: dict[str, list[tuple[int, str]]] = {c: [] for c in (*LEVEL1_COLUMNS, *LEVEL2_COLUMNS)}
            doc_rows = []
            for d, rid in zip(docs, ids, strict=True):
                data = _pack(raws[d.uid], zdict if d.level >= 2 else None) if d.certain else b""
                doc_rows.append(
                    {
                        "id": rid,
                        "gen": gen,
                        "uid": d.uid,
                        "level": d.level,
                        "certain": d.certain,
                        "size": d.size,
                        "text_bytes": sum(len(v) for v in d.columns.values()),
                        "data": data,
                    }
                )
                if d.certain:
                    for col in LEVEL1_COLUMNS + (LEVEL2_COLUMNS if d.level >= 2 else ()):
                        if d.columns[col]:
                            rows[col].append((rid, d.columns[col]))
            conn.execute(insert(search_docs), doc_rows)
            with _cursor(conn) as cur:
                for col, items in rows.items():
                    if items:
                        cur.executemany(f"INSERT INTO search_fts_{col}(rowid, t) VALUES (?,?)", items)
            conn.execute(update(search_folders).where(search_folders.c.id == gen).values(**values))

    def _remove(self, conn: Connection, gen: int, ids: list[int]) -> int:
        """Delete docs ``ids`` of ``gen`` and their FTS entries (contentless FTS5 needs
        the indexed values to delete a row: they are in the doc)."""
        removed = 0
        zdict = self._zdict(conn, gen)
        for chunk in _chunks(ids, 500):
            rows = conn.execute(
                select(
                    search_docs.c.id, search_docs.c.level, search_docs.c.certain, search_docs.c.data
                ).where(search_docs.c.id.in_(chunk))
            ).all()
            if not rows:
                continue
            deletes: dict[str, list[tuple[str, int, str]]] = {}
            for rid, level, certain, data in rows:
                if not certain:
                    continue
                cols, _ = _unpack(data, zdict)
                for col in LEVEL1_COLUMNS + (LEVEL2_COLUMNS if level >= 2 else ()):
                    if cols.get(col):
                        deletes.setdefault(col, []).append(("delete", rid, cols[col]))
            with _cursor(conn) as cur:
                for col, items in deletes.items():
                    cur.executemany(
                        f"INSERT INTO search_fts_{col}(search_fts_{col}, rowid, t) VALUES (?,?,?)", items
                    )
            conn.execute(delete(search_docs).where(search_docs.c.id.in_([r[0] for r in rows])))
            removed += len(rows)
        return removed

    def delete(self, gen: int, uids: list[int]) -> int:
        """Drop expunged messages."""
        if not uids:
            return 0
        with self.engine.begin() as conn:
            return self._remove(conn, gen, [rowid(gen, u) for u in uids])

    def purge(self, gen: int, limit: int) -> int:
        """Delete up to ``limit`` docs of a retired generation; when none is left, the
        generation itself.  Returns how many docs went (0: the generation is gone)."""
        lo, hi = rowid(gen, 0), rowid(gen + 1, 0)
        with self.engine.begin() as conn:
            ids = list(
                conn.execute(
                    select(search_docs.c.id).where(search_docs.c.id >= lo, search_docs.c.id < hi).limit(limit)
                ).scalars()
            )
            if ids:
                return self._remove(conn, gen, ids)
            conn.execute(delete(search_folders).where(search_folders.c.id == gen))
            self._zdicts.pop(gen, None)
            return 0

    # -- lookups ----------------------------------------------------------------------
    def search(self, gen: int, needle: Needle) -> set[int]:
        """UIDs of generation ``gen`` whose indexed text matches ``needle`` (only certain
        docs are in the FTS tables)."""
        phrase = _phrase(needle.text)
        found: set[int] = set()
        with self.engine.connect() as conn:
            with _cursor(conn) as cur:
                for col in _TABLES[needle.field]:
                    # The generation as a computed filter, not a rowid range: FTS5 reads the
                    # same doclists either way and is slower with a range.
                    cur.execute(
                        f"SELECT rowid & {_UID_MASK} FROM search_fts_{col} "
                        f"WHERE search_fts_{col} MATCH ? AND (rowid >> {UID_BITS}) = ?",
                        (phrase, gen),
                    )
                    found.update(chain.from_iterable(cur))
            if needle.field != "header":
                return found
            return self._verify_header(conn, gen, sorted(found), needle) if found else set()

    def _verify_header(self, conn: Connection, gen: int, uids: list[int], needle: Needle) -> set[int]:
        """The candidates whose named top-level header holds the string."""
        out: set[int] = set()
        zdict = self._zdict(conn, gen)
        for chunk in _chunks([rowid(gen, u) for u in uids], 500):
            for rid, data in conn.execute(
                select(search_docs.c.id, search_docs.c.data).where(search_docs.c.id.in_(chunk))
            ):
                _, hdrs = _unpack(data, zdict)
                if any(needle.text in v for n, v in hdrs if n.lower() == needle.header and n.isascii()):
                    out.add(rid & _UID_MASK)
        return out

    # -- size ---------------------------------------------------------------------------
    def sizes(self) -> dict[str, int]:
        """Bytes on disk of the index (FTS tables and docs, from SQLite's ``dbstat``
        where compiled in, else summed lengths), the text indexed and the number of docs."""
        with self.engine.connect() as conn:
            docs, text_bytes = conn.execute(
                select(func.count(), func.coalesce(func.sum(search_docs.c.text_bytes), 0))
            ).one()
            with _cursor(conn) as cur:
                try:
                    cur.execute(
                        "SELECT name, sum(pgsize) FROM dbstat WHERE name LIKE 'search\\_%' ESCAPE '\\' "
                        "OR name LIKE 'sqlite_autoindex_search\\_%' ESCAPE '\\' GROUP BY name"
                    )
                    pages = dict(cur.fetchall())
                    fts = sum(v for k, v in pages.items() if k.startswith("search_fts_"))
                    stored = sum(v for k, v in pages.items() if not k.startswith("search_fts_"))
                except Exception:  # no dbstat: what the rows hold
                    fts = 0
                    for col in (*LEVEL1_COLUMNS, *LEVEL2_COLUMNS):
                        cur.execute(f"SELECT coalesce(sum(length(block)), 0) FROM search_fts_{col}_data")
                        fts += int(cur.fetchone()[0])
                    cur.execute("SELECT coalesce(sum(length(data)), 0) + count(*) * 40 FROM search_docs")
                    stored = int(cur.fetchone()[0])
        return {
            "fts_bytes": int(fts),
            "doc_bytes": int(stored),
            "docs": int(docs),
            "text_bytes": int(text_bytes),
        }


_UID_MASK: Final = (1 << UID_BITS) - 1


def _chunks(items: list[int], n: int) -> list[list[int]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


@contextlib.contextmanager
def _cursor(conn: Connection) -> Iterator[Any]:
    """A DB-API cursor of ``conn``'s connection (FTS5 statements with executemany)."""
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        yield cur
    finally:
        cur.close()
