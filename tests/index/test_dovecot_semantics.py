"""The index reads messages as Dovecot's search does: hit sets compared with a real Dovecot.

For every search string of the corpus and every content key, Dovecot's ``UID SEARCH``
answer must equal the answer computed from ``extract`` + ``matches`` on the messages
the extraction is certain about; keys the index refuses (``needle_for`` is None) are
left to the hoster by design and counted, so the test also proves they are few.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imapgate.demo import DovecotServer, SampleMessage
from imapgate.index.extract import Extracted, extract
from imapgate.index.query import matches, needle_for
from imapgate.protocol import search as s
from tests.conftest import SHARED_PASSWORD, SHARED_USER
from tests.support.search_corpus import RawSearch, crafted, generated, key_criteria, search_strings

pytestmark = pytest.mark.integration

FIELDS = ("SUBJECT", "FROM", "TO", "CC", "BCC", "BODY", "TEXT")
HEADERS = ("Subject", "From", "X-Custom", "Message-ID", "X-Folded", "Content-Type")


@pytest.fixture(scope="module")
def corpus(sample_mailbox: dict[str, list[SampleMessage]]) -> list[bytes]:
    sample = [m.raw for folder in sample_mailbox.values() for m in folder][:150]
    return crafted() + generated(150, seed=3) + sample


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, corpus: list[bytes]) -> Iterator[RawSearch]:
    from tests.conftest import require_dovecot

    require_dovecot()
    dc = DovecotServer(tmp_path_factory.mktemp("semantics"), users={SHARED_USER: SHARED_PASSWORD})
    dc.populate(SHARED_USER, {"INBOX": [SampleMessage(raw) for raw in corpus]})
    dc.start()
    client = RawSearch(dc.host, dc.port, SHARED_USER, SHARED_PASSWORD)
    try:
        yield client
    finally:
        client.close()
        dc.close()


def _compare(
    upstream: RawSearch, corpus: list[bytes], keys: list[tuple[s.SearchKey, str, str]], min_hits: int
) -> tuple[int, int]:
    extracted: dict[int, Extracted] = {uid: extract(raw) for uid, raw in enumerate(corpus, 1)}
    certain = {uid for uid, ex in extracted.items() if ex.certain}
    columns = {uid: extracted[uid].columns() for uid in certain}
    compared = refused = hits = 0
    mismatches = []
    for key, field, header in keys:
        needle = needle_for(key, "UTF-8")
        if needle is None:
            refused += 1
            continue
        value = key.value.decode()
        got = upstream.search(key_criteria(field, value, header))
        assert isinstance(got, set), (field, value, got)
        if needle.field == "header":
            expected = {uid for uid in certain if matches(extracted[uid], needle)}
        else:
            # The index's own representation: the columns, lines joined.
            cols = ("headers", "body") if needle.field == "text" else (needle.field,)
            expected = {uid for uid, c in columns.items() if any(needle.text in c[n] for n in cols)}
        compared += 1
        hits += bool(expected)
        if got & certain != expected:
            only_dovecot, only_index = sorted((got & certain) - expected), sorted(expected - got)
            mismatches.append((field, header, value, only_dovecot, only_index))
    assert not mismatches, "\n".join(
        f"{f} {h} {v!r}: dovecot only {a}, index only {b}" for f, h, v, a, b in mismatches[:30]
    )
    # Most strings come from the messages: a comparison of empty answers would prove nothing.
    assert hits >= min_hits, (hits, compared)
    return compared, refused


def test_text_keys_match_dovecot(upstream: RawSearch, corpus: list[bytes]) -> None:
    keys: list[tuple[s.SearchKey, str, str]] = []
    for value in search_strings(corpus, per_message=2):
        for field in FIELDS:
            keys.append((s.SearchText(field, value.encode()), field, ""))  # type: ignore[arg-type]
    compared, refused = _compare(upstream, corpus, keys, min_hits=1000)
    assert compared > 3000 and refused < compared / 10, (compared, refused)


def test_header_keys_match_dovecot(upstream: RawSearch, corpus: list[bytes]) -> None:
    keys: list[tuple[s.SearchKey, str, str]] = []
    for value in search_strings(corpus, per_message=1):
        for header in HEADERS:
            keys.append((s.SearchHeader(header, value.encode()), "HEADER", header))
    compared, _ = _compare(upstream, corpus, keys, min_hits=150)
    assert compared > 1000


def test_most_messages_are_certain(corpus: list[bytes]) -> None:
    doubtful = [(i, ex.reason) for i, raw in enumerate(corpus, 1) if not (ex := extract(raw)).certain]
    assert len(doubtful) <= len(corpus) // 50, doubtful
