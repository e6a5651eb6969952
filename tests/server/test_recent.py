"""\\Recent through the gateway (RFC 3501 §2.3.2): a message that arrives while the
gateway runs is recent in exactly one session, the first read-write one that
learns about it; in none after that session ends.  Byte transcripts."""

from __future__ import annotations

from pathlib import Path

from imapgate.gateway.app import Gateway
from imapgate.replica.mailbox import MailboxIndex, MessageRecord
from imapgate.server.view import SelectedView

from .harness import Client, connect, make_gateway, running


def arrive(gw: Gateway, *uids: int) -> MailboxIndex:
    """What the sync engine does when new mail shows up at the hoster."""
    inbox = gw.replica.get("INBOX")
    assert inbox is not None
    gw.replica.add_messages(inbox, [MessageRecord(u, (), 0, 1_700_000_000.0 + u, 60, 100 * u) for u in uids])
    return inbox


async def select(c: Client, command: bytes = b"SELECT INBOX") -> list[bytes]:
    await c.send(b"s " + command)
    lines = await c.until_tagged(b"s")
    assert lines[-1].startswith(b"s OK"), lines
    return lines


async def test_new_mail_is_recent_in_the_first_session_only(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with (
        running(gw) as server,
        connect(server) as alice,
        connect(server) as bob,
        connect(server) as alice2,
    ):
        for c, user in ((alice, "alice"), (bob, "bob"), (alice2, "alice")):
            await c.login(user)
        # Mail that was there when the gateway first synced the folder is not recent.
        assert b"* 0 RECENT" in await select(alice)
        await bob.exchange(
            b"t STATUS INBOX (MESSAGES RECENT)",
            b"* STATUS INBOX (MESSAGES 5 RECENT 0)",
            b"t OK STATUS completed",
        )
        arrive(gw, 6, 7)
        # Nobody has seen them yet: STATUS counts them for whoever opens the folder next.
        await bob.exchange(
            b"t STATUS INBOX (MESSAGES RECENT)",
            b"* STATUS INBOX (MESSAGES 7 RECENT 2)",
            b"t OK STATUS completed",
        )
        # alice's open session learns of them first: they are recent there.
        await alice.exchange(b"n NOOP", b"* 7 EXISTS", b"* 2 RECENT", b"n OK NOOP completed")
        await alice.exchange(
            b"f FETCH 5:7 (FLAGS)",
            b"* 5 FETCH (FLAGS ())",
            b"* 6 FETCH (FLAGS (\\Recent))",
            b"* 7 FETCH (FLAGS (\\Recent))",
            b"f OK FETCH completed",
        )
        await alice.exchange(b"r SEARCH RECENT", b"* SEARCH 6 7", b"r OK SEARCH completed")
        await alice.exchange(b"r SEARCH OLD", b"* SEARCH 1 2 3 4 5", b"r OK SEARCH completed")
        # Reading one keeps it recent (\Recent is not stored); NEW is recent and unseen.
        await alice.exchange(
            b"w STORE 6 +FLAGS (\\Seen)",
            b"* 6 FETCH (UID 6 FLAGS (\\Recent \\Seen))",
            b"w OK STORE completed",
        )
        await alice.exchange(b"r SEARCH NEW", b"* SEARCH 7", b"r OK SEARCH completed")
        await alice.exchange(b"r UID SEARCH RECENT UNSEEN", b"* SEARCH 7", b"r OK SEARCH completed")
        # STATUS in the session that holds them counts its own.
        await alice.exchange(
            b"t STATUS INBOX (RECENT)", b"* STATUS INBOX (RECENT 2)", b"t OK STATUS completed"
        )
        # Every other session: not recent, not counted.
        await bob.exchange(b"t STATUS INBOX (RECENT)", b"* STATUS INBOX (RECENT 0)", b"t OK STATUS completed")
        assert b"* 0 RECENT" in await select(bob)
        await bob.exchange(
            b"f FETCH 6:7 (FLAGS)", b"* 6 FETCH (FLAGS ())", b"* 7 FETCH (FLAGS ())", b"f OK FETCH completed"
        )
        await bob.exchange(b"r SEARCH NEW", b"* SEARCH", b"r OK SEARCH completed")
        assert b"* 0 RECENT" in await select(alice2)  # the same user's other session too
        # An expunge of a recent message lowers the count the client was told.
        arrive(gw, 8)
        await bob.exchange(b"n NOOP", b"* 8 EXISTS", b"* 1 RECENT", b"n OK NOOP completed")
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        gw.replica.expunge(inbox, [7])
        await alice.exchange(b"n NOOP", b"* 7 EXPUNGE", b"* 7 EXISTS", b"* 1 RECENT", b"n OK NOOP completed")
        await alice.exchange(
            b"f FETCH 6:7 (FLAGS)",
            b"* 6 FETCH (FLAGS (\\Recent \\Seen))",
            b"* 7 FETCH (FLAGS ())",
            b"f OK FETCH completed",
        )
    # alice's session ended: what was recent there is recent nowhere afterwards.
    async with running(gw) as server, connect(server) as again:
        await again.login("alice")
        assert b"* 0 RECENT" in await select(again)
        await again.exchange(b"r SEARCH RECENT", b"* SEARCH", b"r OK SEARCH completed")


async def test_examine_shows_unclaimed_recent_without_taking_them(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as looker, connect(server) as owner:
        await looker.login("bob")
        await owner.login("alice")
        arrive(gw, 6)
        # EXAMINE must not cost the message its \Recent (RFC 3501 §6.3.2).
        assert b"* 1 RECENT" in await select(looker, b"EXAMINE INBOX")
        await looker.exchange(b"f FETCH 6 (FLAGS)", b"* 6 FETCH (FLAGS (\\Recent))", b"f OK FETCH completed")
        await looker.exchange(
            b"t STATUS INBOX (RECENT)", b"* STATUS INBOX (RECENT 1)", b"t OK STATUS completed"
        )
        arrive(gw, 7)
        await looker.exchange(b"n NOOP", b"* 7 EXISTS", b"* 2 RECENT", b"n OK NOOP completed")
        lines = await select(owner)
        assert b"* 7 EXISTS" in lines and b"* 2 RECENT" in lines, lines
        # The read-write session took them: a new EXAMINE sees none.
        assert b"* 0 RECENT" in await select(looker, b"EXAMINE INBOX")


async def test_uid_fetch_flags_listing_shows_recent_and_keeps_fast_path_answers(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, messages=200)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        await select(c)
        arrive(gw, 201, 202)
        await c.exchange(b"n NOOP", b"* 202 EXISTS", b"* 2 RECENT", b"n OK NOOP completed")
        await c.send(b"f UID FETCH 1:* (UID FLAGS)")
        lines = await c.until_tagged(b"f")
        assert len(lines) == 203 and lines[-1] == b"f OK FETCH completed"
        assert lines[0] == b"* 1 FETCH (UID 1 FLAGS (\\Seen))"
        assert lines[199] == b"* 200 FETCH (UID 200 FLAGS ())"
        assert lines[200:202] == [
            b"* 201 FETCH (UID 201 FLAGS (\\Recent))",
            b"* 202 FETCH (UID 202 FLAGS (\\Recent))",
        ]


def test_imap4rev2_session_neither_sees_nor_claims_recent(tmp_path: Path) -> None:
    """RFC 9051 dropped \\Recent.  The gateway does not offer IMAP4rev2 yet; a view
    made for such a session (``recent=False``) leaves the messages to others."""
    gw = make_gateway(tmp_path)
    inbox = arrive(gw, 6)
    rev2 = SelectedView(gw.replica, inbox, user_id=1, readonly=False, wake=lambda: None, recent=False)
    assert not rev2.recent and "\\Recent" not in rev2.flags_of(6)
    arrive(gw, 7)
    lines = rev2.flush(allow_expunge=True, condstore=False, qresync=False)
    assert lines == [b"* 7 EXISTS\r\n"]  # no RECENT response either
    rev1 = SelectedView(gw.replica, inbox, user_id=2, readonly=False, wake=lambda: None)
    assert list(rev1.recent) == [6, 7]
    rev2.close()
    rev1.close()
