"""Several team members at once, and changes made directly at the hoster.

* alice's STORE reaches bob's IDLE session within a second; APPEND by carol gives bob's IDLE
  session EXISTS;
* alice's EXPUNGE reaches bob as ``* n EXPUNGE`` only when RFC 9051 allows it: not in the
  answer to his FETCH/STORE/SEARCH by sequence number, but at his next NOOP;
* private ``\\Seen``: alice reads a mail (BODY[] without PEEK): it is seen for her only; bob
  still sees it unseen, upstream ``\\Seen`` does not change and bob's IDLE hears nothing;
* STORE, APPEND and EXPUNGE made by another client directly at Dovecot reach a gateway IDLE
  session within 2 seconds (NOTIFY/IDLE watcher), and a folder that is not selected (STATUS).
"""

from __future__ import annotations

import re
import time

import pytest

from imapgate.demo import DovecotServer
from tests.integration.test_imaplib_write import APPENDED
from tests.support.gateway import GatewayHarness
from tests.support.imap import (
    RawClient,
    dovecot_login,
    ok,
    search_ids,
    session,
    uid_flags,
    upstream_flags,
)

pytestmark = pytest.mark.integration

PUSH_LIMIT = 1.0  # seconds: a gateway user's change reaches other idle sessions at once
UPSTREAM_LIMIT = 2.0  # seconds: a change made directly at the hoster


def _raw(gw: GatewayHarness, user: str, mailbox: bytes) -> RawClient:
    raw = RawClient(gw.host, gw.port)
    raw.login(user, f"{user}-pw")
    lines = raw.command(b"S1", b"SELECT " + mailbox)
    assert lines[-1].startswith(b"S1 OK"), lines
    return raw


def _wait_expunged(gw: GatewayHarness, mailbox: str, uid: int) -> None:
    def gone() -> bool:
        mb = gw.gw.replica.get(mailbox)
        return mb is not None and uid not in mb.records

    gw.wait_for(gone, what=f"UID {uid} expunged from {mailbox} in the replica")


def test_flag_change_reaches_other_users_idle_session(gateway: GatewayHarness) -> None:
    bob = _raw(gateway, "bob", b"INBOX")
    try:
        bob.idle()
        with session(gateway.imaplib_login("alice", "alice-pw")) as alice:
            ok(alice.select("INBOX"))
            start = time.monotonic()
            ok(alice.uid("STORE", "5", "+FLAGS.SILENT", "(\\Flagged)"))
            lines, _ = bob.wait_for(rb"^\* 5 FETCH .*\\Flagged", PUSH_LIMIT)
            elapsed = time.monotonic() - start
            assert elapsed < PUSH_LIMIT, elapsed
            assert b"UID 5" in lines[-1]
            # ... and back.
            start = time.monotonic()
            ok(alice.uid("STORE", "5", "-FLAGS.SILENT", "(\\Flagged)"))
            lines, _ = bob.wait_for(rb"^\* 5 FETCH ", PUSH_LIMIT)
            assert b"\\Flagged" not in lines[-1] and time.monotonic() - start < PUSH_LIMIT
        bob.done()
    finally:
        bob.close()


def test_append_gives_exists_to_other_users_idle_session(gateway: GatewayHarness) -> None:
    bob = _raw(gateway, "bob", b"B&APw-ro")
    try:
        bob.idle()
        with session(gateway.imaplib_login("carol", "carol-pw")) as carol:
            start = time.monotonic()
            ok(carol.append("B&APw-ro", "(\\Flagged)", None, APPENDED))
            bob.wait_for(rb"^\* 21 EXISTS", PUSH_LIMIT)
            assert time.monotonic() - start < PUSH_LIMIT
        lines = bob.done()
        assert not any(b"EXPUNGE" in line for line in lines)
        lines = bob.command(b"F1", b"UID FETCH 21 (FLAGS)")
        assert lines[0].startswith(b"* 21 FETCH") and b"\\Flagged" in lines[0], lines
    finally:
        bob.close()


def test_expunge_is_not_sent_during_fetch_but_at_noop(gateway: GatewayHarness) -> None:
    bob = _raw(gateway, "bob", b"INBOX")
    try:
        with session(gateway.imaplib_login("alice", "alice-pw")) as alice:
            ok(alice.select("INBOX"))
            ok(alice.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)"))
            ok(alice.expunge())
        _wait_expunged(gateway, "INBOX", 3)
        # FETCH by sequence number: no EXPUNGE in its answer; the expunged message is still
        # served as bob knew it (RFC 2180 §4.1.1), and the answer is OK, as Dovecot's.
        lines = bob.command(b"F1", b"FETCH 1:5 (UID FLAGS)")
        assert lines[-1].startswith(b"F1 OK"), lines
        assert not any(re.match(rb"^\* \d+ EXPUNGE", line) for line in lines), lines
        fetched = [int(m.group(1)) for line in lines if (m := re.match(rb"^\* \d+ FETCH \(UID (\d+)", line))]
        assert fetched == [1, 2, 3, 4, 5], lines
        # STORE and SEARCH by sequence number: still no EXPUNGE.
        lines = bob.command(b"S2", b"SEARCH ALL")
        assert not any(b"EXPUNGE" in line for line in lines), lines
        found = [int(x) for x in lines[0].split()[2:]]
        assert found == [n for n in range(1, 74) if n != 3], lines[0]  # bob's numbering, 3 is gone
        lines = bob.command(b"S3", b"STORE 1 +FLAGS.SILENT (\\Answered)")
        assert not any(b"EXPUNGE" in line for line in lines), lines
        # NOOP: now it comes, and the numbers shift.
        lines = bob.command(b"N1", b"NOOP")
        assert b"* 3 EXPUNGE\r\n" in lines, lines
        lines = bob.command(b"F4", b"UID FETCH 1:5 (FLAGS)")  # by UID: just the ones that exist
        assert lines[-1].startswith(b"F4 OK") and len(lines) == 5, lines
        lines = bob.command(b"F2", b"FETCH 3 (UID)")
        assert lines[0].startswith(b"* 3 FETCH (UID 4)"), lines
        lines = bob.command(b"F3", b"FETCH 73 (UID)")
        assert lines[-1].startswith(b"F3 BAD"), lines  # only 72 messages now
    finally:
        bob.close()


def test_fetch_of_message_expunged_elsewhere_serves_cached_content(gateway: GatewayHarness) -> None:
    bob = _raw(gateway, "bob", b"INBOX")
    try:
        before = bob.command(b"F0", b"FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert before[-1].startswith(b"F0 OK"), before
        with session(gateway.imaplib_login("alice", "alice-pw")) as alice:
            ok(alice.select("INBOX"))
            ok(alice.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)"))
            ok(alice.expunge())
        _wait_expunged(gateway, "INBOX", 3)
        # RFC 2180 §4.1.1: gone at the hoster, but the gateway still has its flags (bob's view)
        # and, cached, its content: served, OK.
        lines = bob.command(b"F1", b"FETCH 3 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert lines[-1].startswith(b"F1 OK"), lines
        assert lines[0].startswith(b"* 3 FETCH (UID 3 FLAGS (") and b"\\Deleted" in lines[0], lines
        assert lines[1:-1] == before[1:-1], (lines, before)
        assert not any(b"EXPUNGE\r\n" in line for line in lines), lines
        # Content never cached cannot be had from the hoster any more: that alone is a NO.
        lines = bob.command(b"F2", b"FETCH 3 (BODY.PEEK[TEXT])")
        assert lines[-1].startswith(b"F2 NO [EXPUNGEISSUED]"), lines
    finally:
        bob.close()


def test_expunge_reaches_idle_session_at_once(gateway: GatewayHarness) -> None:
    bob = _raw(gateway, "bob", b"INBOX")
    try:
        bob.idle()
        with session(gateway.imaplib_login("alice", "alice-pw")) as alice:
            ok(alice.select("INBOX"))
            ok(alice.uid("STORE", "8", "+FLAGS.SILENT", "(\\Deleted)"))
            start = time.monotonic()
            ok(alice.expunge())
            bob.wait_for(rb"^\* 8 EXPUNGE", PUSH_LIMIT)
            assert time.monotonic() - start < PUSH_LIMIT
        bob.done()
    finally:
        bob.close()


def test_private_seen_per_user(gateway: GatewayHarness) -> None:
    up = gateway.config.upstream
    with session(gateway.imaplib_login("alice", "alice-pw")) as alice, session(
        gateway.imaplib_login("bob", "bob-pw")
    ) as bob_c:
        ok(alice.select("INBOX"))
        ok(bob_c.select("INBOX"))
        unseen = search_ids(ok(alice.uid("SEARCH", None, "UNSEEN")))
        assert unseen and unseen == search_ids(ok(bob_c.uid("SEARCH", None, "UNSEEN")))
        uid = unseen[0]
        alice_status = ok(alice.status("INBOX", "(UNSEEN)"))[0]
        bob_idle = _raw(gateway, "bob", b"INBOX")
        try:
            bob_idle.idle()
            # alice reads it (BODY[] without PEEK): \Seen for her, in the same answer.
            data = ok(alice.uid("FETCH", str(uid), "(BODY[])"))
            assert b"\\Seen" in b" ".join(x[0] if isinstance(x, tuple) else x for x in data)  # type: ignore[misc]
            assert "\\Seen" in uid_flags(alice, str(uid))[uid]
            # bob's idle session hears nothing of alice's private read state.
            assert not any(b"FETCH" in line for line in bob_idle.read_for(0.5))
            bob_idle.done()
        finally:
            bob_idle.close()
        assert "\\Seen" not in uid_flags(bob_c, str(uid))[uid]
        assert uid in search_ids(ok(bob_c.uid("SEARCH", None, "UNSEEN")))
        assert uid not in search_ids(ok(alice.uid("SEARCH", None, "UNSEEN")))
        assert "\\Seen" not in upstream_flags(up.host, up.port, "INBOX", str(uid))[uid]
        after = ok(alice.status("INBOX", "(UNSEEN)"))[0]
        assert isinstance(alice_status, bytes) and isinstance(after, bytes)
        n_before = int(re.search(rb"UNSEEN (\d+)", alice_status).group(1))  # type: ignore[union-attr]
        assert f"UNSEEN {n_before - 1}".encode() in after
        assert f"UNSEEN {n_before}".encode() in ok(bob_c.status("INBOX", "(UNSEEN)"))[0]  # type: ignore[operator]
        # bob marks it read explicitly: his own \Seen, upstream still untouched.
        ok(bob_c.uid("STORE", str(uid), "+FLAGS", "(\\Seen)"))
        assert "\\Seen" not in upstream_flags(up.host, up.port, "INBOX", str(uid))[uid]
        # carol never looked: she still sees it unseen.
    with session(gateway.imaplib_login("carol", "carol-pw")) as carol:
        ok(carol.select("INBOX", readonly=True))
        assert "\\Seen" not in uid_flags(carol, str(uid))[uid]
    # alice's read state survives a new session.
    with session(gateway.imaplib_login("alice", "alice-pw")) as alice:
        ok(alice.select("INBOX", readonly=True))
        assert "\\Seen" in uid_flags(alice, str(uid))[uid]


def test_upstream_changes_reach_idle_session(gateway: GatewayHarness, upstream: DovecotServer) -> None:
    bob = _raw(gateway, "bob", b"INBOX")
    timings: dict[str, float] = {}
    try:
        bob.idle()
        with session(dovecot_login(upstream)) as direct:
            ok(direct.select("INBOX"))
            start = time.monotonic()
            ok(direct.uid("STORE", "6", "+FLAGS.SILENT", "(\\Flagged $Todo)"))
            lines, _ = bob.wait_for(rb"^\* 6 FETCH .*\$Todo", UPSTREAM_LIMIT)
            timings["store"] = time.monotonic() - start
            assert b"\\Flagged" in lines[-1]

            start = time.monotonic()
            ok(direct.append("INBOX", None, None, APPENDED))
            bob.wait_for(rb"^\* 74 EXISTS", UPSTREAM_LIMIT)
            timings["append"] = time.monotonic() - start

            ok(direct.uid("STORE", "7", "+FLAGS.SILENT", "(\\Deleted)"))
            start = time.monotonic()
            ok(direct.expunge())
            bob.wait_for(rb"^\* 7 EXPUNGE", UPSTREAM_LIMIT)
            timings["expunge"] = time.monotonic() - start

            # A folder nobody has selected: STATUS shows the new message.
            start = time.monotonic()
            ok(direct.append("Support", None, None, APPENDED))
        bob.done()
        lines: list[bytes] = []
        while time.monotonic() - start < UPSTREAM_LIMIT:
            lines = bob.command(b"ST", b"STATUS Support (MESSAGES)")
            if b"MESSAGES 53" in lines[0]:
                break
            time.sleep(0.05)
        timings["status"] = time.monotonic() - start
        assert b"MESSAGES 53" in lines[0], lines
        lines = bob.command(b"F1", b"UID FETCH 74 (BODY.PEEK[])")
        assert APPENDED in b"".join(lines)
    finally:
        bob.close()
    assert all(t < UPSTREAM_LIMIT for t in timings.values()), timings
