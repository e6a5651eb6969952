"""Turning fetched messages into index documents: pure, run in a worker process.

Extraction is CPU work in Python (MIME parsing, decoding, case mapping): done in
the gateway's event loop it would delay every client while a batch is read.  The
indexer sends batches to one worker process (``ProcessPoolExecutor`` with one
worker: the other core stays with the gateway), or runs ``build_docs`` inline in
tests.
"""

from __future__ import annotations

from typing import Final

from .extract import extract, extract_headers
from .store import Doc

#: A message whose searchable text is longer than this is not indexed (the hoster
#: answers for it): a 20 MB log attached as text/plain would cost ~100 MB of index.
MAX_TEXT_CHARS: Final = 2 * 1024 * 1024


def build_docs(level: int, items: list[tuple[int, bytes | None]]) -> list[Doc]:
    """Docs for (uid, content) pairs: ``level`` 1 from header fields, 2 from whole
    messages.  Content None: not fetched (too big, or gone): an uncertain doc, so the
    indexer does not try again and searches ask the hoster about it."""
    docs: list[Doc] = []
    for uid, raw in items:
        if raw is None:
            docs.append(Doc(uid, level, False))
            continue
        ex = extract(raw) if level >= 2 else extract_headers(raw)
        columns = ex.columns()
        certain = ex.certain and sum(len(v) for v in columns.values()) <= MAX_TEXT_CHARS
        docs.append(
            Doc(uid, level, certain, len(raw), columns if certain else {}, ex.top_headers if certain else [])
        )
    return docs
