"""Byte transcripts of gateway sessions: exact responses, several sessions at
once, per-user CONDSTORE/QRESYNC, and the RFC 2180 expunge rules."""

from __future__ import annotations

import re
from pathlib import Path

from imapgate.gateway.app import Gateway

from .harness import UIDVALIDITY, connect, make_gateway, running


async def test_login_select_fetch_transcript(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.exchange(b"a1 NOOP", b"a1 OK NOOP completed")
        await c.exchange(b"a2 SELECT INBOX", b"a2 BAD [CLIENTBUG] SELECT: log in first")
        await c.exchange(
            b"a3 LOGIN alice wrong",
            b"a3 NO [AUTHENTICATIONFAILED] invalid user name or password",
        )
        await c.exchange(
            b"a4 LOGIN alice alice-pw",
            re.compile(rb"a4 OK \[CAPABILITY IMAP4rev1 .* CONDSTORE QRESYNC .*\] logged in"),
        )
        await c.exchange(
            b"a5 SELECT INBOX",
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Limited",
            b"* 5 EXISTS",
            b"* 0 RECENT",
            b"* OK [UNSEEN 2] First unseen",
            b"* OK [UIDVALIDITY %d] UIDs valid" % UIDVALIDITY,
            b"* OK [UIDNEXT 6] Predicted next UID",
            re.compile(rb"\* OK \[HIGHESTMODSEQ \d+\] Highest"),
            b"a5 OK [READ-WRITE] SELECT completed",
        )
        await c.exchange(
            b"a6 FETCH 1:2 (UID FLAGS RFC822.SIZE INTERNALDATE)",
            b'* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822.SIZE 100 INTERNALDATE "14-Nov-2023 23:13:21 +0100")',
            b'* 2 FETCH (UID 2 FLAGS () RFC822.SIZE 200 INTERNALDATE "14-Nov-2023 23:13:22 +0100")',
            b"a6 OK FETCH completed",
        )
        await c.exchange(
            b"a7 FETCH 9 FLAGS", b"a7 BAD [CLIENTBUG] message number out of range (mailbox has 5)"
        )
        await c.exchange(b"a8 UID FETCH 9:20 FLAGS", b"a8 OK FETCH completed")
        await c.exchange(b"a9 SEARCH UNSEEN", b"* SEARCH 2 3 4 5", b"a9 OK SEARCH completed")
        await c.exchange(b"b1 FROB", b"b1 BAD unknown command FROB")
        await c.exchange(b"b2 LOGOUT", b"* BYE imapgate logging out", b"b2 OK LOGOUT completed")


async def _select(c: object, tag: bytes = b"s") -> None:
    from .harness import Client

    assert isinstance(c, Client)
    await c.send(tag + b" SELECT INBOX")
    got = await c.until_tagged(tag)
    assert got[-1].startswith(tag + b" OK"), got


def _highest(lines: list[bytes]) -> int:
    for line in lines:
        m = re.search(rb"HIGHESTMODSEQ (\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError(lines)


async def test_private_seen_with_condstore_per_user(tmp_path: Path) -> None:
    gw: Gateway = make_gateway(tmp_path)
    async with (
        running(gw) as server,
        connect(server) as alice,
        connect(server) as alice_phone,
        connect(server) as bob,
    ):
        for c, user in ((alice, "alice"), (alice_phone, "alice"), (bob, "bob")):
            await c.login(user)
            await c.exchange(b"e ENABLE CONDSTORE", b"* ENABLED CONDSTORE", b"e OK ENABLE completed")
            await _select(c)
        await alice.send(b"h STATUS INBOX (HIGHESTMODSEQ UNSEEN)")
        before = _highest(await alice.until_tagged(b"h"))
        await bob.send(b"h STATUS INBOX (HIGHESTMODSEQ)")
        bob_before = _highest(await bob.until_tagged(b"h"))

        # alice's phone is idle; alice marks message 3 read on the desktop.
        await alice_phone.send(b"i IDLE")
        assert await alice_phone.line() == b"+ idling"
        got = await alice.exchange(
            b"s1 STORE 3 +FLAGS (\\Seen)",
            re.compile(rb"\* 3 FETCH \(UID 3 FLAGS \(\\Seen\) MODSEQ \((\d+)\)\)"),
            b"s1 OK STORE completed",
        )
        modseq = int(re.findall(rb"MODSEQ \((\d+)\)", got[0])[0])
        assert modseq > before
        # ... the phone sees it at once, with the same modseq ...
        assert await alice_phone.line() == b"* 3 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (%d))" % modseq
        await alice_phone.send(b"DONE")
        assert await alice_phone.line() == b"i OK IDLE terminated"
        # ... bob sees nothing: not on NOOP, not in FLAGS, not in CHANGEDSINCE, not in HIGHESTMODSEQ.
        await bob.exchange(b"n NOOP", b"n OK NOOP completed")
        got = await bob.exchange(
            b"f FETCH 3 (FLAGS)",
            re.compile(rb"\* 3 FETCH \(FLAGS \(\) MODSEQ \((\d+)\)\)"),
            b"f OK FETCH completed",
        )
        # bob's modseq for the message is not alice's private change.
        assert int(re.findall(rb"MODSEQ \((\d+)\)", got[0])[0]) <= bob_before
        await bob.exchange(b"c UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % bob_before, b"c OK FETCH completed")
        await bob.send(b"h STATUS INBOX (HIGHESTMODSEQ UNSEEN)")
        lines = await bob.until_tagged(b"h")
        assert _highest(lines) == bob_before and b"UNSEEN 4" in lines[0]
        await bob.exchange(b"q SEARCH UNSEEN", b"* SEARCH 2 3 4 5", b"q OK SEARCH completed")
        # alice's CHANGEDSINCE finds exactly her change.
        await alice.exchange(
            b"c UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % before,
            b"* 3 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (%d))" % modseq,
            b"c OK FETCH completed",
        )
        await alice.exchange(b"q SEARCH UNSEEN", b"* SEARCH 2 4 5", b"q OK SEARCH completed")
        # UNCHANGEDSINCE below the message's modseq fails for alice only.
        await alice.exchange(
            b"u STORE 3 (UNCHANGEDSINCE %d) -FLAGS (\\Seen)" % before,
            b"u OK [MODIFIED 3] STORE completed",
        )
        await bob.exchange(
            b"u STORE 3 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % bob_before,
            re.compile(rb"\* 3 FETCH \(UID 3 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)"),
            b"u OK STORE completed",
        )
        # Nothing of this went upstream (the upstream is unreachable: it would have failed).
        inbox = gw.replica.get("INBOX")
        assert inbox is not None and inbox.records[3].flags == ()
        await alice.nothing_pending()


async def test_qresync_select_reports_only_own_private_changes(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as alice, connect(server) as bob:
        await alice.login("alice")
        await bob.login("bob")
        await alice.exchange(b"e ENABLE QRESYNC", b"* ENABLED QRESYNC", b"e OK ENABLE completed")
        await alice.send(b"s SELECT INBOX")
        base = _highest(await alice.until_tagged(b"s"))
        await alice.exchange(b"u UNSELECT", b"u OK UNSELECT completed")
        await bob.send(b"s SELECT INBOX")
        await bob.until_tagged(b"s")
        await bob.exchange(b"b STORE 2,4 +FLAGS.SILENT (\\Seen)", b"b OK STORE completed")
        # a message vanished meanwhile (as if expunged at the hoster)
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        gw.replica.expunge(inbox, [5])
        await alice.send(b"s SELECT INBOX (QRESYNC (%d %d))" % (UIDVALIDITY, base))
        got = await alice.until_tagged(b"s")
        assert b"* VANISHED (EARLIER) 5" in got
        assert not any(b"FETCH" in g for g in got), got  # bob's reading is his own
        await bob.exchange(b"n NOOP", b"* 5 EXPUNGE", b"n OK NOOP completed")


async def test_expunge_not_sent_during_fetch_store_search(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        await _select(c)
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        gw.replica.expunge(inbox, [2])
        # Sequence numbers must not shift under a FETCH/SEARCH by sequence number;
        # the expunged message is served as the session knew it (RFC 2180 §4.1.1).
        await c.exchange(
            b"f FETCH 1:2 (UID FLAGS)",
            b"* 1 FETCH (UID 1 FLAGS (\\Seen))",
            b"* 2 FETCH (UID 2 FLAGS ())",
            b"f OK FETCH completed",
        )
        await c.exchange(b"s SEARCH ALL", b"* SEARCH 1 3 4 5", b"s OK SEARCH completed")
        # A UID command may carry it: announced before the command runs (as Dovecot does).
        await c.exchange(b"u UID SEARCH ALL", b"* 2 EXPUNGE", b"* SEARCH 1 3 4 5", b"u OK SEARCH completed")
        await c.exchange(b"f FETCH 2 (UID)", b"* 2 FETCH (UID 3)", b"f OK FETCH completed")


async def test_bad_input_keeps_session(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.send(b"\x00\xff garbage")
        assert (await c.line()).startswith(b"* BAD")
        await c.exchange(b"a1 LOGIN", re.compile(rb"a1 BAD .*"))
        await c.exchange(b"a2 NOOP", b"a2 OK NOOP completed")
        await c.send(b"a3 LOGIN {999999999}")
        assert (await c.line()).startswith(b"a3 BAD [TOOBIG]")
        await c.exchange(b"a4 NOOP", b"a4 OK NOOP completed")


async def test_upstream_down_gives_unavailable(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        await _select(c)
        await c.exchange(
            b"s STORE 1 +FLAGS (\\Flagged)",
            re.compile(rb"s NO \[UNAVAILABLE\] cannot change flags: the mail server is unreachable .*"),
        )
        # Reads from the replica keep working.
        await c.exchange(b"f FETCH 1 (FLAGS)", b"* 1 FETCH (FLAGS (\\Seen))", b"f OK FETCH completed")
