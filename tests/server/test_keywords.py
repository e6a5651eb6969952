"""Keywords are announced before use (RFC 3501 §7.2.6): SELECT/EXAMINE list every
keyword in use, and a FETCH carrying a keyword the session was not told about
comes after an untagged FLAGS and OK [PERMANENTFLAGS] listing it — in flag
updates, in FETCH and STORE answers, in every session with the folder open."""

from __future__ import annotations

from pathlib import Path

from imapgate.gateway.app import Gateway
from imapgate.replica.mailbox import MessageRecord

from .harness import Client, connect, make_gateway, running

SYSTEM = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"


def flags_lines(keywords: bytes, *, readonly: bool = False) -> tuple[bytes, bytes]:
    flags = SYSTEM + (b" " + keywords if keywords else b"")
    permanent = b"" if readonly else flags + b" \\*"
    return b"* FLAGS (" + flags + b")", b"* OK [PERMANENTFLAGS (" + permanent + b")] Limited"


def set_shared(gw: Gateway, uid: int, *flags: str) -> None:
    """A colleague's change (or one at the hoster), as the replica records it."""
    inbox = gw.replica.get("INBOX")
    assert inbox is not None
    gw.replica.set_shared_flags(inbox, {uid: flags})


async def select(c: Client, command: bytes = b"SELECT INBOX") -> list[bytes]:
    await c.send(b"s " + command)
    lines = await c.until_tagged(b"s")
    assert lines[-1].startswith(b"s OK"), lines
    return lines


async def test_select_lists_keywords_in_use_and_new_ones_come_first(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    set_shared(gw, 2, "$Label1")
    async with running(gw) as server, connect(server) as alice, connect(server) as bob:
        await alice.login("alice")
        await bob.login("bob")
        lines = await select(alice)
        assert lines[:2] == list(flags_lines(b"$Label1")), lines
        assert (await select(bob, b"EXAMINE INBOX"))[:2] == list(flags_lines(b"$Label1", readonly=True))
        # A colleague sets a new keyword: FLAGS and PERMANENTFLAGS before the FETCH.
        set_shared(gw, 3, "$Todo")
        await alice.exchange(
            b"n NOOP",
            *flags_lines(b"$Label1 $Todo"),
            b"* 3 FETCH (UID 3 FLAGS ($Todo))",
            b"n OK NOOP completed",
        )
        # Announced once: the next change with it needs no new FLAGS.
        set_shared(gw, 4, "$Todo")
        await alice.exchange(b"n NOOP", b"* 4 FETCH (UID 4 FLAGS ($Todo))", b"n OK NOOP completed")
        # The EXAMINE session, in IDLE, gets the same order (read-only: PERMANENTFLAGS ()).
        await bob.send(b"i IDLE")
        assert await bob.line() == b"+ idling"
        for want in (*flags_lines(b"$Label1 $Todo", readonly=True), b"* 3 FETCH (UID 3 FLAGS ($Todo))"):
            assert await bob.line() == want
        assert await bob.line() == b"* 4 FETCH (UID 4 FLAGS ($Todo))"
        await bob.send(b"DONE")
        assert await bob.line() == b"i OK IDLE terminated"


async def test_fetch_announces_keyword_of_a_new_message_first(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        assert (await select(c))[:1] == [flags_lines(b"")[0]]
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        gw.replica.add_messages(inbox, [MessageRecord(6, ("$Urgent",), 0, 1_700_000_006.0, 60, 600)])
        # EXISTS carries no flags: nothing to announce yet.
        await c.exchange(b"n NOOP", b"* 6 EXISTS", b"* 1 RECENT", b"n OK NOOP completed")
        # The flag listing (fast path) announces before its first line ...
        await c.send(b"f UID FETCH 5:* (UID FLAGS)")
        assert await c.until_tagged(b"f") == [
            *flags_lines(b"$Urgent"),
            b"* 5 FETCH (UID 5 FLAGS ())",
            b"* 6 FETCH (UID 6 FLAGS ($Urgent \\Recent))",
            b"f OK FETCH completed",
        ]
        # ... and a FETCH with other items (the per-message path) as well.
        set_shared(gw, 1, "\\Seen", "Work")
        set_shared(gw, 1, "\\Seen")  # gone again before this session was told
        set_shared(gw, 2, "Work")
        await c.exchange(
            b"f FETCH 2 (FLAGS RFC822.SIZE)",
            *flags_lines(b"$Urgent Work"),
            b"* 2 FETCH (FLAGS (Work) RFC822.SIZE 200)",
            # the flag updates at the command's end: announced already
            b"* 1 FETCH (UID 1 FLAGS (\\Seen))",
            b"* 2 FETCH (UID 2 FLAGS (Work))",
            b"f OK FETCH completed",
        )


async def test_client_stored_keyword_is_announced_in_every_session(tmp_path: Path) -> None:
    # $Mine is a private keyword: the client can STORE it without a hoster.
    gw = make_gateway(tmp_path, private_flags=("$Mine",))
    async with (
        running(gw) as server,
        connect(server) as alice,
        connect(server) as phone,
        connect(server) as bob,
    ):
        for c, user in ((alice, "alice"), (phone, "alice"), (bob, "bob")):
            await c.login(user)
            await select(c)
        await alice.exchange(
            b"s STORE 2 +FLAGS ($Mine)",
            *flags_lines(b"$Mine"),
            b"* 2 FETCH (UID 2 FLAGS ($Mine))",
            b"s OK STORE completed",
        )
        await phone.exchange(
            b"n NOOP", *flags_lines(b"$Mine"), b"* 2 FETCH (UID 2 FLAGS ($Mine))", b"n OK NOOP completed"
        )
        # bob never sees alice's private keyword on any message: nothing to announce.
        await bob.exchange(b"n NOOP", b"n OK NOOP completed")
        await bob.exchange(b"f FETCH 2 (FLAGS)", b"* 2 FETCH (FLAGS ())", b"f OK FETCH completed")
        # A new session of alice lists it at SELECT.
        async with connect(server) as later:
            await later.login("alice")
            assert (await select(later))[:2] == list(flags_lines(b"$Mine"))
