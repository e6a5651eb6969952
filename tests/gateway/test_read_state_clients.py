"""Personal read state with real clients in front of Dovecot: alice (imaplib)
and bob (imapclient) share a mailbox; carol syncs it with mbsync.  Every path
of issue #4 with the expected result for both users and for upstream."""

from __future__ import annotations

import imaplib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient

from imapgate.demo.dovecot import DovecotServer
from imapgate.demo.sample_mail import SampleMessage
from tests.support.gateway import GatewayHarness

pytestmark = pytest.mark.integration

TEAM = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
INBOX_FLAGS: list[tuple[str, ...]] = [("\\Seen", "\\Answered"), (), (), ("\\Seen",), ("\\Flagged",), ()]


def msg(n: int, folder: str) -> bytes:
    return (
        f"From: Kunde {n} <k{n}@example.org>\r\nTo: info@example.com\r\nSubject: {folder} {n}\r\n"
        f"Date: Mon, 6 Jan 2025 10:0{n % 10}:00 +0100\r\nMessage-ID: <{folder}-{n}@example.org>\r\n"
        f"\r\nHallo, Nachricht {n}.\r\n"
    ).encode()


def mailbox() -> dict[str, list[SampleMessage]]:
    when = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    return {
        "INBOX": [SampleMessage(msg(i + 1, "inbox"), f, when) for i, f in enumerate(INBOX_FLAGS)],
        "Support": [SampleMessage(msg(i + 1, "support"), (), when) for i in range(3)],
        "Archive": [],
    }


@pytest.fixture
def upstream(fresh_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    return fresh_dovecot(folders=mailbox())


@pytest.fixture
def gw(upstream: DovecotServer, tmp_path: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(
        upstream_port=upstream.port,
        data_dir=tmp_path / "gw",
        users=TEAM,
        folders={"seen": {"Support": "shared"}},
    ) as harness:
        yield harness


def direct(dc: DovecotServer) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", dc.port)
    m.login("shared", "shared-secret")
    return m


def flags_of(m: imaplib.IMAP4, uid: int) -> set[str]:
    typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
    assert typ == "OK" and data, data
    # imaplib also hands back FETCH responses pushed earlier (other users' changes):
    # pick the one for this UID.
    for item in data:
        raw = item if isinstance(item, bytes) else item[0] if isinstance(item, tuple) else b""
        if re.search(rb"UID %d\b" % uid, raw):
            found = re.search(rb"FLAGS \(([^)]*)\)", raw)
            assert found, raw
            return set(found.group(1).decode().split())
    raise AssertionError(f"no FETCH for UID {uid} in {data!r}")


def upstream_flags(dc: DovecotServer, folder: str, uid: int) -> set[str]:
    m = direct(dc)
    try:
        m.select(folder, readonly=True)
        return flags_of(m, uid) - {"\\Recent"}
    finally:
        m.logout()


def test_reading_is_personal_on_every_path(gw: GatewayHarness, upstream: DovecotServer) -> None:
    alice = gw.imaplib_login("alice", TEAM["alice"])
    bob = IMAPClient("127.0.0.1", port=gw.port, ssl=False)
    bob.login("bob", TEAM["bob"])

    # SELECT's first-unseen and STATUS UNSEEN start from upstream's read state.
    typ, _ = alice.select("INBOX")
    assert typ == "OK" and alice.untagged_responses.get("UNSEEN") == [b"2"]
    bob.select_folder("INBOX")
    assert bob.search(["UNSEEN"]) == [2, 3, 5, 6]

    # alice reads message 2 (BODY[] without PEEK): \Seen comes back in the same FETCH.
    typ, data = alice.uid("FETCH", "2", "(BODY[])")
    assert typ == "OK" and b"\\Seen" in b" ".join(x if isinstance(x, bytes) else x[0] for x in data)
    assert "\\Seen" in flags_of(alice, 2)
    assert b"\\Seen" not in bob.get_flags([2])[2]
    assert "\\Seen" not in upstream_flags(upstream, "INBOX", 2)

    # SEARCH in boolean combinations, per user.
    assert alice.uid("SEARCH", "UNSEEN")[1] == [b"3 5 6"]
    assert alice.uid("SEARCH", "OR", "SEEN", "FLAGGED")[1] == [b"1 2 4 5"]
    assert alice.uid("SEARCH", "NOT", "SEEN", "NOT", "FLAGGED")[1] == [b"3 6"]
    assert bob.search(["OR", "SEEN", "FLAGGED"]) == [1, 4, 5]
    assert bob.search(["NEW"]) == [] and bob.search(["OLD"]) == [1, 2, 3, 4, 5, 6]
    assert alice.status("INBOX", "(UNSEEN)")[1] == [b"INBOX (UNSEEN 3)"]
    assert bob.folder_status("INBOX", ["UNSEEN"])[b"UNSEEN"] == 4

    # STORE FLAGS (replace) by bob on message 1 (upstream \Seen \Answered): the shared
    # \Answered goes, \Flagged comes, upstream \Seen (not bob's to change) stays;
    # bob's own \Seen is gone for bob only.
    bob.set_flags([1], [b"\\Flagged"])
    assert upstream_flags(upstream, "INBOX", 1) == {"\\Seen", "\\Flagged"}
    assert set(bob.get_flags([1])[1]) == {b"\\Flagged"}
    assert flags_of(alice, 1) == {"\\Seen", "\\Flagged"}

    # -FLAGS \Seen by alice is private; +FLAGS \Seen by bob too.
    alice.uid("STORE", "4", "-FLAGS", "(\\Seen)")
    bob.add_flags([3], [b"\\Seen"])
    assert "\\Seen" not in flags_of(alice, 4) and b"\\Seen" in bob.get_flags([4])[4]
    assert "\\Seen" not in flags_of(alice, 3) and b"\\Seen" in bob.get_flags([3])[3]
    assert upstream_flags(upstream, "INBOX", 4) == {"\\Seen"}
    assert upstream_flags(upstream, "INBOX", 3) == set()

    # APPEND with \Seen (a sent copy): read for alice, unread for bob, not \Seen upstream.
    typ, data = alice.append("INBOX", "(\\Seen)", None, msg(7, "sent"))
    assert typ == "OK"
    new_uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
    alice.noop()
    assert "\\Seen" in flags_of(alice, new_uid)
    bob.noop()
    assert b"\\Seen" not in bob.get_flags([new_uid])[new_uid]
    assert "\\Seen" not in upstream_flags(upstream, "INBOX", new_uid)

    # MOVE by alice of message 2 (read by alice only) to Archive: still read for alice,
    # still unread for bob, under the new UID.
    typ, data = alice.uid("MOVE", "2", "Archive")
    assert typ == "OK"
    alice.select("Archive")
    moved = [int(u) for u in alice.uid("SEARCH", "ALL")[1][0].split()]
    assert len(moved) == 1
    assert "\\Seen" in flags_of(alice, moved[0])
    bob.select_folder("Archive")
    assert bob.search(["UNSEEN"]) == moved
    assert "\\Seen" not in upstream_flags(upstream, "Archive", moved[0])
    alice.logout()
    bob.logout()


def test_shared_folder_and_upstream_changes(gw: GatewayHarness, upstream: DovecotServer) -> None:
    alice = gw.imaplib_login("alice", TEAM["alice"])
    bob = gw.imaplib_login("bob", TEAM["bob"])
    # Both have looked at INBOX once: their private read state starts here.
    alice.select("INBOX")
    bob.select("INBOX")
    # Support is configured shared: alice's reading is everyone's, and goes upstream.
    alice.select("Support")
    alice.uid("FETCH", "1", "(BODY[])")
    gw.wait_for(lambda: "\\Seen" in upstream_flags(upstream, "Support", 1), what="\\Seen upstream")
    bob.select("Support")
    assert "\\Seen" in flags_of(bob, 1)

    # Webmail marks INBOX 3 read and Support 2 read directly at the hoster.
    m = direct(upstream)
    m.select("INBOX")
    m.uid("STORE", "3", "+FLAGS", "(\\Seen)")
    m.select("Support")
    m.uid("STORE", "2", "+FLAGS", "(\\Seen)")
    m.logout()
    gw.call(gw.gw.sync.sync_mailbox("INBOX"))
    gw.call(gw.gw.sync.sync_mailbox("Support"))
    # Shared folder: visible to all.  Private folder: recorded, but not anyone's read state.
    assert "\\Seen" in flags_of(bob, 2)
    bob.select("INBOX")
    alice.select("INBOX")
    assert "\\Seen" not in flags_of(bob, 3) and "\\Seen" not in flags_of(alice, 3)
    inbox = gw.gw.replica.get("INBOX")
    assert inbox is not None and "\\Seen" in inbox.records[3].flags
    alice.logout()
    bob.logout()


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) not installed")
def test_mbsync_user_keeps_own_read_state(gw: GatewayHarness, tmp_path: Path) -> None:
    maildir = tmp_path / "carol-mail"
    maildir.mkdir()
    conf = tmp_path / "mbsyncrc"
    conf.write_text(
        f"""IMAPAccount gw
Host 127.0.0.1
Port {gw.port}
User carol
Pass {TEAM["carol"]}
SSLType None
AuthMechs LOGIN

IMAPStore gw-remote
Account gw

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX

Channel inbox
Far :gw-remote:INBOX
Near :local:INBOX
Create Near
Sync Pull
SyncState *
"""
    )

    def mbsync() -> None:
        out = subprocess.run(
            ["mbsync", "-c", str(conf), "inbox"], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr

    def seen_count() -> int:
        files = list((maildir / "INBOX" / "cur").iterdir()) + list((maildir / "INBOX" / "new").iterdir())
        assert len(files) == 6
        return sum(1 for f in files if re.search(r":2,[A-Z]*S", f.name))

    mbsync()
    assert seen_count() == 2  # carol starts from upstream's read state (1 and 4)
    alice = gw.imaplib_login("alice", TEAM["alice"])
    alice.select("INBOX")
    alice.uid("STORE", "2,3,5,6", "+FLAGS", "(\\Seen)")  # alice reads everything
    alice.logout()
    mbsync()
    assert seen_count() == 2  # ... carol's mail is still unread for carol


def test_neomutt_old_mark_is_private(gw: GatewayHarness, upstream: DovecotServer) -> None:
    """neomutt marks every message it listed but you did not open as ``Old`` (its
    per-user "seen in the index" mark) when it leaves a folder: ``UID STORE n
    +FLAGS.SILENT (Old)``, as in its imap_sync_message_for_copy.  That is alice's
    mark only: bob does not see it, and the hoster never receives it (issue 9)."""
    alice = gw.imaplib_login("alice", TEAM["alice"])
    bob = gw.imaplib_login("bob", TEAM["bob"])
    alice.select("INBOX")
    bob.select("INBOX")
    assert alice.uid("STORE", "2,3", "+FLAGS.SILENT", "(Old)")[0] == "OK"
    # another spelling of the same keyword is the same private flag
    assert alice.uid("STORE", "5", "+FLAGS", "(old)")[0] == "OK"
    assert {u: "Old" in flags_of(alice, u) for u in (2, 3, 5, 6)} == {2: True, 3: True, 5: True, 6: False}
    assert all("Old" not in flags_of(bob, u) and "old" not in flags_of(bob, u) for u in (2, 3, 5))
    assert alice.uid("SEARCH", "KEYWORD", "Old")[1] == [b"2 3 5"]
    assert bob.uid("SEARCH", "KEYWORD", "Old")[1] == [b""]
    for u in (2, 3, 5):
        assert not {f.casefold() for f in upstream_flags(upstream, "INBOX", u)} & {"old"}
    # a shared keyword still goes to the hoster and to everybody
    assert alice.uid("STORE", "6", "+FLAGS", "($Forwarded)")[0] == "OK"
    assert "$Forwarded" in upstream_flags(upstream, "INBOX", 6)
    assert "$Forwarded" in flags_of(bob, 6)
    # the mark survives a new session and removing it is private too
    alice.logout()
    alice = gw.imaplib_login("alice", TEAM["alice"])
    alice.select("INBOX")
    assert "Old" in flags_of(alice, 3)
    assert alice.uid("STORE", "3", "-FLAGS", "(Old)")[0] == "OK"
    assert "Old" not in flags_of(alice, 3) and "Old" in flags_of(alice, 2)
    alice.logout()
    bob.logout()
