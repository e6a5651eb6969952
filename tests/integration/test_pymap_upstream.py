"""The gateway in front of pymap, a minimal server without CONDSTORE, QRESYNC, NOTIFY, ESEARCH
or SPECIAL-USE: every fallback path (full ``UID FETCH 1:* (FLAGS)`` resync, IDLE on the busiest folder as
the only change watcher, the periodic check) against a server nobody on this team wrote.

Login, LIST, SELECT, FETCH (byte-identical bodies), STORE (checked at pymap), SEARCH, and changes
made directly at pymap reaching a gateway session — in INBOX and, through the periodic check,
in a folder the watcher does not watch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapgate.demo import PymapServer, SampleMessage, generate_mailbox
from tests.integration.test_imaplib_write import APPENDED
from tests.support.gateway import GatewayHarness
from tests.support.imap import (
    RawClient,
    fetch_literals,
    mailbox_names,
    ok,
    quote,
    search_ids,
    session,
    uid_flags,
    upstream_flags,
    upstream_login,
)

pytestmark = pytest.mark.integration

Mailbox = dict[str, list[SampleMessage]]
POLL = 1.0
SEARCHES = ("ALL", "SEEN", "UNSEEN", "ANSWERED", "SUBJECT Re:", "NOT SUBJECT Re:", "OR SEEN FLAGGED")
#: A change at a server without NOTIFY: the periodic check (POLL) plus a sync round.
FALLBACK_LIMIT = 4.0


@pytest.fixture(scope="module")
def small_mailbox() -> Mailbox:
    full = generate_mailbox(seed=3, scale=0.15)
    return {name: msgs for name, msgs in full.items() if name in ("INBOX", "Support", "Büro") and msgs}


@pytest.fixture
def pymap(small_mailbox: Mailbox) -> Iterator[PymapServer]:
    server = PymapServer(user="shared", password="shared-secret", demo_data=False)
    server.start()
    try:
        server.populate(small_mailbox)
        yield server
    finally:
        server.close()


@pytest.fixture
def gw(pymap: PymapServer, tmp_path: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(
        upstream_port=pymap.port,
        data_dir=tmp_path / "gw",
        upstream={"poll_interval": POLL},
        users={"alice": "alice-pw", "bob": "bob-pw"},
    ) as harness:
        yield harness


def test_reading_through_gateway_in_front_of_pymap(
    gw: GatewayHarness, pymap: PymapServer, small_mailbox: Mailbox
) -> None:
    assert not gw.gw.pool.has("CONDSTORE") and not gw.gw.pool.has("NOTIFY")
    with session(gw.imaplib_login("alice", "alice-pw")) as c:
        names = set(mailbox_names(c))
        assert {"INBOX", "Support", "B&APw-ro"} <= names
        typ, data = c.select("Support")
        assert typ == "OK" and int(data[0]) == len(small_mailbox["Support"])  # type: ignore[arg-type]
        bodies = fetch_literals(ok(c.uid("FETCH", "1:*", "(BODY.PEEK[])")))
        assert list(bodies.values()) == [m.raw for m in small_mailbox["Support"]]
        with session(upstream_login(pymap.host, pymap.port)) as direct:
            ok(direct.select("Support", readonly=True))
            for item in ("ENVELOPE", "RFC822.SIZE", "BODYSTRUCTURE"):
                assert ok(c.fetch("1:*", f"({item})")) == ok(direct.fetch("1:*", f"({item})")), item
            # pymap echoes the field list sorted ("FROM SUBJECT"); the gateway must still find
            # the headers (it answers with the list as asked).
            item = "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])"
            got, want = ok(c.fetch("1:*", item)), ok(direct.fetch("1:*", item))
            assert [x[1] for x in got if isinstance(x, tuple)] == [x[1] for x in want if isinstance(x, tuple)]
            assert b"BODY[HEADER.FIELDS (SUBJECT FROM)]" in got[0][0]  # type: ignore[index]
            for criteria in SEARCHES:
                want = ok(direct.uid("SEARCH", None, criteria))
                assert ok(c.uid("SEARCH", None, criteria)) == want, criteria


def test_writing_through_gateway_in_front_of_pymap(gw: GatewayHarness, pymap: PymapServer) -> None:
    with session(gw.imaplib_login("alice", "alice-pw")) as c:
        ok(c.select("INBOX"))
        uids = sorted(uid_flags(c))
        target = uids[1]
        ok(c.uid("STORE", str(target), "+FLAGS", "(\\Flagged)"))
        assert "\\Flagged" in upstream_flags(pymap.host, pymap.port, "INBOX")[target]
        assert target in search_ids(ok(c.uid("SEARCH", None, "FLAGGED")))
        ok(c.uid("STORE", str(target), "-FLAGS", "(\\Flagged)"))
        assert "\\Flagged" not in upstream_flags(pymap.host, pymap.port, "INBOX")[target]
        typ, data = c.append("INBOX", "(\\Answered)", None, APPENDED)
        assert typ == "OK", data
        ok(c.noop())
        new = search_ids(ok(c.uid("SEARCH", None, "HEADER Message-ID append-test")))
        assert len(new) == 1
        assert fetch_literals(ok(c.uid("FETCH", str(new[0]), "(BODY.PEEK[])")))[new[0]] == APPENDED
        ok(c.uid("STORE", str(uids[0]), "+FLAGS.SILENT", "(\\Deleted)"))
        ok(c.expunge())
        assert uids[0] not in upstream_flags(pymap.host, pymap.port, "INBOX")


def test_direct_changes_at_pymap_reach_the_gateway(gw: GatewayHarness, pymap: PymapServer) -> None:
    bob = RawClient(gw.host, gw.port)
    try:
        bob.login("bob", "bob-pw")
        lines = bob.command(b"S1", b"SELECT INBOX")
        exists = next(int(x.split()[1]) for x in lines if x.endswith(b" EXISTS\r\n"))
        bob.idle()
        with session(upstream_login(pymap.host, pymap.port)) as direct:
            ok(direct.select("INBOX"))
            first_uid = sorted(uid_flags(direct))[0]
            start = time.monotonic()
            ok(direct.uid("STORE", str(first_uid), "+FLAGS", "(\\Flagged)"))
            bob.wait_for(rb"^\* 1 FETCH .*\\Flagged", FALLBACK_LIMIT)
            store_time = time.monotonic() - start
            start = time.monotonic()
            ok(direct.append("INBOX", None, None, APPENDED))
            bob.wait_for(rb"^\* %d EXISTS" % (exists + 1), FALLBACK_LIMIT)
            append_time = time.monotonic() - start
            # A folder the watcher does not watch (IDLE is on INBOX, bob's folder): the periodic check.
            support_before = len(uid_flags_of(direct, "Support"))
            start = time.monotonic()
            ok(direct.append("Support", None, None, APPENDED))
        bob.done()
        while True:
            lines = bob.command(b"ST", b"STATUS Support (MESSAGES)")
            if f"MESSAGES {support_before + 1}".encode() in lines[0]:
                break
            assert time.monotonic() - start < FALLBACK_LIMIT, lines
            time.sleep(0.1)
        assert store_time < FALLBACK_LIMIT and append_time < FALLBACK_LIMIT
    finally:
        bob.close()


def test_keyword_the_upstream_cannot_store_is_not_claimed(gw: GatewayHarness, pymap: PymapServer) -> None:
    with session(gw.imaplib_login("alice", "alice-pw")) as c:
        ok(c.select("INBOX"))
        uid = sorted(uid_flags(c))[0]
        # The gateway passes on upstream's PERMANENTFLAGS: no \* here.
        perm = c.untagged_responses.get("OK", [])
        assert not any(b"\\*" in p for p in perm if b"PERMANENTFLAGS" in p), perm
        typ, _ = c.uid("STORE", str(uid), "+FLAGS", "($Todo)")
        upstream = upstream_flags(pymap.host, pymap.port, "INBOX")[uid]
        assert typ == "NO" or "$Todo" in upstream or "$Todo" not in uid_flags(c, str(uid))[uid]


def uid_flags_of(client: object, folder: str) -> dict[int, set[str]]:
    import imaplib

    assert isinstance(client, imaplib.IMAP4)
    ok(client.select(quote(folder), readonly=True))
    try:
        return uid_flags(client)
    finally:
        ok(client.select("INBOX"))


def test_watcher_follows_the_busiest_folder(pymap: PymapServer, tmp_path: Path) -> None:
    """Without NOTIFY the upstream IDLE sits on the folder most sessions have open:
    with the periodic check far away (600 s), a change made at pymap in Support
    reaches bob's IDLE on Support at once, and the watcher goes back to INBOX
    when he leaves."""
    with GatewayHarness(
        upstream_port=pymap.port,
        data_dir=tmp_path / "gw",
        upstream={"poll_interval": 600},
        users={"bob": "bob-pw"},
    ) as gw:
        bob = RawClient(gw.host, gw.port)
        try:
            bob.login("bob", "bob-pw")
            lines = bob.command(b"S1", b"SELECT Support")
            exists = next(int(x.split()[1]) for x in lines if x.endswith(b" EXISTS\r\n"))
            # How soon the watcher moves is not the point (it ends its IDLE and re-SELECTs; on
            # a loaded CI machine that once took more than 5 s); what its move buys is: the
            # change below reaches bob within 2 s.
            deadline = time.monotonic() + 15
            while _watched(gw) != "Support":
                assert time.monotonic() < deadline, "the watcher did not move to Support"
                time.sleep(0.05)
            bob.idle()
            with session(upstream_login(pymap.host, pymap.port)) as direct:
                start = time.monotonic()
                ok(direct.append("Support", None, None, APPENDED))
            bob.wait_for(rb"^\* %d EXISTS" % (exists + 1), 2.0)
            assert time.monotonic() - start < 2.0
            bob.done()
            bob.command(b"C", b"CLOSE")
            deadline = time.monotonic() + 5
            while _watched(gw) != "INBOX":
                assert time.monotonic() < deadline, "the watcher did not go back to INBOX"
                time.sleep(0.05)
        finally:
            bob.close()


def _watched(gw: GatewayHarness) -> str | None:
    """The folder the gateway's upstream IDLE sits on (read across threads: a plain attribute)."""
    conn = gw.gw.sync._watcher_conn
    return conn.selected if conn is not None else None
