"""SEARCH through the gateway with the index: the same hits as Dovecot directly, from the
index where it covers the folder, from the hoster where it does not (yet), in boolean
combinations with flags and each user's read state; new mail, expunges, restarts."""

from __future__ import annotations

import imaplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo import DovecotServer, SampleMessage
from imapgate.gateway import operations as ops
from imapgate.gateway.errors import OperationError
from imapgate.gateway.mailservice import MailService
from imapgate.gateway.policy import Actor
from imapgate.protocol import search as s
from tests.conftest import SHARED_PASSWORD, SHARED_USER, DovecotFactory
from tests.support.gateway import GatewayHarness
from tests.support.imap import ok
from tests.support.search_corpus import RawSearch, crafted, generated, key_criteria

pytestmark = pytest.mark.integration

FIELDS = ("SUBJECT", "FROM", "TO", "CC", "BCC", "BODY", "TEXT")
STRINGS = ("Grüße", "münchen", "rechnung", "Rechnung_4711.pdf", "doe, john", "Привет", "日本語", "straße",
           "angebot", "example.com", "invoice", "Käse", "Kühne", "<a@b.c>", "MISSING_DOMAIN", "meeting",
           "Lieferung", "needle at the very", "ab", "€100", "naïve", "Österreich")


def _corpus() -> list[bytes]:
    return crafted() + generated(120, seed=11)


def _indexed(gw: GatewayHarness) -> bool:
    index = gw.gw.index
    return index is not None and index.complete()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    from tests.conftest import require_dovecot

    require_dovecot()
    dc = DovecotServer(tmp_path_factory.mktemp("gwsearch"), users={SHARED_USER: SHARED_PASSWORD})
    dc.populate(SHARED_USER, {"INBOX": [SampleMessage(raw) for raw in _corpus()]})
    dc.start()
    try:
        yield dc
    finally:
        dc.close()


@pytest.fixture(scope="module")
def gateway(upstream: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    with GatewayHarness(upstream_port=upstream.port, data_dir=tmp_path_factory.mktemp("gw"),
                        users={"alice": "pw", "bob": "pw"}) as gw:
        gw.wait_for(lambda: _indexed(gw), timeout=120, what="the index to cover INBOX")
        yield gw


class _Counting:
    """Counts the searches the gateway sends upstream."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = MailService._search_upstream

        async def counted(service: MailService, *args: Any, **kwargs: Any) -> set[int]:
            self.calls += 1
            return await original(service, *args, **kwargs)

        monkeypatch.setattr(MailService, "_search_upstream", counted)


def test_same_hits_as_dovecot_from_the_index(
    gateway: GatewayHarness, upstream: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _Counting(monkeypatch)
    gw = RawSearch("127.0.0.1", gateway.port, "alice", "pw")
    dc = RawSearch(upstream.host, upstream.port, SHARED_USER, SHARED_PASSWORD)
    compared = 0
    for value in STRINGS:
        for field in FIELDS:
            crit = key_criteria(field, value)
            assert gw.search(crit) == dc.search(crit), (field, value)
            compared += 1
        crit = key_criteria("HEADER", value, "X-Custom")
        assert gw.search(crit) == dc.search(crit), ("HEADER", value)
    # Only the strings the index refuses (shorter than 3 characters) went upstream.
    assert counting.calls <= len(FIELDS) + 1
    assert compared == len(STRINGS) * len(FIELDS)
    gw.close()
    dc.close()


def test_combinations_with_flags_and_read_state(gateway: GatewayHarness, upstream: DovecotServer) -> None:
    alice = gateway.imaplib_login("alice", "pw")
    ok(alice.select("INBOX"))
    ok(alice.uid("STORE", "1:40", "+FLAGS", "(\\Seen)"))  # alice's own read state
    ok(alice.uid("STORE", "5:9", "+FLAGS", "(\\Flagged)"))  # shared
    dc = RawSearch(upstream.host, upstream.port, SHARED_USER, SHARED_PASSWORD)
    gw = RawSearch("127.0.0.1", gateway.port, "alice", "pw")
    body = dc.search(key_criteria("BODY", "Rechnung"))
    subj = dc.search(key_criteria("SUBJECT", "angebot"))
    assert isinstance(body, set) and isinstance(subj, set)
    all_uids = dc.search(b"ALL")
    assert isinstance(all_uids, set)
    assert gw.search(b"UNSEEN " + key_criteria("BODY", "Rechnung")) == {u for u in body if u > 40}
    assert gw.search(b"SEEN " + key_criteria("BODY", "Rechnung")) == {u for u in body if u <= 40}
    assert gw.search(b"NOT " + key_criteria("BODY", "Rechnung")) == all_uids - body
    assert gw.search(b"OR " + key_criteria("BODY", "Rechnung") + b" " + key_criteria("SUBJECT", "angebot")) \
        == body | subj
    assert gw.search(b"FLAGGED " + key_criteria("SUBJECT", "angebot")) == {u for u in subj if 5 <= u <= 9}
    assert gw.search(b"UID 10:60 " + key_criteria("BODY", "Rechnung")) == {u for u in body if 10 <= u <= 60}
    # bob has read nothing of his own yet: his UNSEEN starts from the hoster's \\Seen (none here).
    bob = RawSearch("127.0.0.1", gateway.port, "bob", "pw")
    assert bob.search(b"UNSEEN " + key_criteria("BODY", "Rechnung")) == body
    # SEARCH by sequence numbers and ESEARCH.
    _, tagged = gw.command(b"SEARCH RETURN (COUNT MIN MAX) CHARSET UTF-8 " + key_criteria("BODY", "Rechnung"))
    assert tagged.split()[1] == b"OK"
    alice.logout()
    for c in (dc, gw, bob):
        c.close()


def test_esearch_and_sequence_numbers(gateway: GatewayHarness, upstream: DovecotServer) -> None:
    gw = RawSearch("127.0.0.1", gateway.port, "alice", "pw")
    dc = RawSearch(upstream.host, upstream.port, SHARED_USER, SHARED_PASSWORD)
    answers: list[list[bytes]] = []
    for client in (gw, dc):
        command = b"SEARCH RETURN (COUNT ALL) CHARSET UTF-8 " + key_criteria("TEXT", "Grüße")
        lines, tagged = client.command(command)
        assert tagged.split()[1] == b"OK"
        answers.append([ln.split(b" ", 3)[-1] for ln in lines if ln.startswith(b"* ESEARCH")])
    assert answers[0] == answers[1] and answers[0], answers
    gw.close()
    dc.close()


def test_charsets(gateway: GatewayHarness, upstream: DovecotServer) -> None:
    gw = RawSearch("127.0.0.1", gateway.port, "alice", "pw")
    dc = RawSearch(upstream.host, upstream.port, SHARED_USER, SHARED_PASSWORD)
    latin = b"BODY {7+}\r\n" + "München".encode("latin-1")
    assert gw.search(latin, charset=b"ISO-8859-1") == dc.search(latin, charset=b"ISO-8859-1") != set()
    unknown = gw.search(b"BODY abc", charset=b"X-NO-SUCH")
    assert isinstance(unknown, bytes) and b"[BADCHARSET" in unknown
    # Not UTF-8 although it says so: the hoster's refusal, not an answer of the index.
    bad = gw.search(b"BODY {4+}\r\n\xff\xfeab")
    assert isinstance(bad, bytes) and b"Invalid search key" in bad
    gw.close()
    dc.close()


def test_partly_indexed_folder_asks_the_hoster_for_the_rest(
    gateway: GatewayHarness, upstream: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = gateway.gw.index
    assert index is not None
    mb = gateway.gw.replica.get("INBOX")
    assert mb is not None
    cov = index.covered(mb, 2)
    assert cov is not None
    hidden = {u for u in mb.uids if u % 3 == 0}

    def hide() -> None:
        cov.difference_update(hidden)  # as if these were not indexed yet

    def restore() -> None:
        cov.update(hidden)

    counting = _Counting(monkeypatch)
    gateway.call_soon(hide)
    try:
        gw = RawSearch("127.0.0.1", gateway.port, "alice", "pw")
        dc = RawSearch(upstream.host, upstream.port, SHARED_USER, SHARED_PASSWORD)
        for value in ("Rechnung", "Grüße", "example.com"):
            for field in ("BODY", "TEXT", "HEADER"):
                crit = key_criteria(field, value, "From")
                assert gw.search(crit) == dc.search(crit), (field, value)
        assert counting.calls == 9  # one UID-set search each, for the uncovered messages
        gw.close()
        dc.close()
    finally:
        gateway.call_soon(restore)


def test_permission_checked_by_the_service(gateway: GatewayHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search sees only what the user may read: the service's own READ check (so every
    front end, the dashboard too, goes through it), not only the IMAP handler's."""
    seen: list[tuple[str, str, str]] = []
    policy = gateway.gw.service.policy

    def authorize(actor: Any, mailbox: str, right: str) -> None:
        seen.append((actor.user, mailbox, right))
        if actor.user == "bob":
            raise OperationError(f"no right {right} on {mailbox}", "NOPERM")

    bob = RawSearch("127.0.0.1", gateway.port, "bob", "pw")  # selected before the refusal starts
    monkeypatch.setattr(policy, "authorize", authorize)
    refused = bob.search(key_criteria("BODY", "Rechnung"))
    assert isinstance(refused, bytes) and refused.startswith(b"NO [NOPERM]"), refused
    bob.close()
    alice = RawSearch("127.0.0.1", gateway.port, "alice", "pw")
    assert alice.search(key_criteria("BODY", "Rechnung"))
    alice.close()
    mb = gateway.gw.replica.get("INBOX")
    assert mb is not None
    key = s.SearchText("BODY", b"Rechnung")
    with pytest.raises(OperationError) as err:
        gateway.call(gateway.gw.service.execute(Actor(99, "bob"), ops.SearchContent(mb, key, None)))
    assert err.value.code == "NOPERM"
    assert ("alice", "INBOX", "r") in seen


def test_new_mail_and_expunge(
    fresh_dovecot: DovecotFactory, tmp_path: Path
) -> None:
    dc = fresh_dovecot(folders={"INBOX": [SampleMessage(raw) for raw in crafted()[:5]]})
    with GatewayHarness(upstream_port=dc.port, data_dir=tmp_path / "gw", users={"alice": "pw"}) as gw:
        gw.wait_for(lambda: _indexed(gw), timeout=60, what="indexing")
        direct = imaplib.IMAP4(dc.host, dc.port)
        ok(direct.login(SHARED_USER, SHARED_PASSWORD))
        ok(direct.append("INBOX", "", None, b"From: new@example.com\r\nSubject: Neuigkeit zzqx\r\n\r\n"
                                              b"frisch eingetroffen\r\n"))
        client = RawSearch("127.0.0.1", gw.port, "alice", "pw")
        deadline = time.monotonic() + 30
        while client.search(key_criteria("BODY", "eingetroffen")) != {6}:
            assert time.monotonic() < deadline, "new mail never found"
            time.sleep(0.2)
        gw.wait_for(lambda: _indexed(gw), timeout=30, what="indexing of the new message")
        index = gw.gw.index
        assert index is not None
        assert index.indexed >= 6
        ok(direct.select("INBOX"))
        ok(direct.uid("STORE", "6", "+FLAGS", "(\\Deleted)"))
        ok(direct.expunge())
        deadline = time.monotonic() + 30
        while client.search(key_criteria("SUBJECT", "zzqx")) != set():
            assert time.monotonic() < deadline, "expunged mail still found"
            time.sleep(0.2)
        gw.wait_for(lambda: index.store.sizes()["docs"] == 5, timeout=30, what="the doc to be deleted")
        client.close()
        direct.logout()


def test_restart_resumes(fresh_dovecot: DovecotFactory, tmp_path: Path) -> None:
    dc = fresh_dovecot(folders={"INBOX": [SampleMessage(raw) for raw in generated(40, seed=5)]})
    data = tmp_path / "gw"
    with GatewayHarness(upstream_port=dc.port, data_dir=data) as gw:
        gw.wait_for(lambda: _indexed(gw), timeout=60, what="indexing")
        index = gw.gw.index
        assert index is not None and index.indexed >= 40
    with GatewayHarness(upstream_port=dc.port, data_dir=data) as gw:
        index = gw.gw.index
        assert index is not None
        gw.wait_for(lambda: _indexed(gw), timeout=60, what="the index loaded")
        time.sleep(0.5)
        assert index.indexed == 0  # nothing fetched again


def test_index_off(fresh_dovecot: DovecotFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dc = fresh_dovecot(folders={"INBOX": [SampleMessage(raw) for raw in crafted()[:3]]})
    counting = _Counting(monkeypatch)
    with GatewayHarness(upstream_port=dc.port, data_dir=tmp_path / "gw", users={"alice": "pw"},
                        search={"index": "off"}) as gw:
        assert gw.gw.index is None
        client = RawSearch("127.0.0.1", gw.port, "alice", "pw")
        assert client.search(key_criteria("BODY", "München")) == {1}
        assert counting.calls == 1
        client.close()
