"""Byte transcripts of what the loser of a race sees (issue 12, conflicts without
claims): a colleague moved or deleted a message this session still shows.

The replica is changed the way the write path changes it (``replica.expunge``
with the departure in the same transaction), so these need no upstream: the
refusals are decided before upstream would be asked, and \\Seen is private.
"""

from __future__ import annotations

import re
from pathlib import Path

from imapgate.gateway.app import Gateway
from imapgate.replica.mailbox import MailboxIndex

from .harness import Client, connect, make_gateway, running

AT = rb" at \d\d:\d\d"


def _inbox(gw: Gateway) -> MailboxIndex:
    mb = gw.replica.get("INBOX")
    assert mb is not None
    return mb


def _moved(gw: Gateway, uids: list[int], user: str = "alice", dest: str = "Archive") -> None:
    """What ``user``'s MOVE through the gateway leaves behind: the expunge, with its departure."""
    mb = _inbox(gw)
    gw.replica.expunge(
        mb, uids, hook=gw.replica.departures.writer(mb.id, mb.uidvalidity, uids, "moved", user, dest)
    )


def _deleted(gw: Gateway, uids: list[int], user: str = "alice") -> None:
    mb = _inbox(gw)
    gw.replica.expunge(
        mb, uids, hook=gw.replica.departures.writer(mb.id, mb.uidvalidity, uids, "deleted", user)
    )


async def _select(c: Client, user: str) -> None:
    await c.login(user)
    await c.send(b"s SELECT INBOX")
    assert (await c.until_tagged(b"s"))[-1].startswith(b"s OK")


async def test_uid_commands_on_a_moved_message_get_expunge_and_who_moved_it(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as bob:
        await _select(bob, "bob")
        _moved(gw, [2])
        # UID MOVE: nothing moved, the EXPUNGE, then why (never "OK MOVE completed").
        await bob.exchange(
            b"m UID MOVE 2 Archive",
            b"* 2 EXPUNGE",
            re.compile(rb"m NO \[EXPUNGEISSUED\] alice moved this message to Archive" + AT),
        )
        _moved(gw, [3], "carol", "Done")
        await bob.exchange(
            b"c UID COPY 3 Archive",
            b"* 2 EXPUNGE",
            re.compile(rb"c NO \[EXPUNGEISSUED\] carol moved this message to Done" + AT),
        )
        _deleted(gw, [4])
        await bob.exchange(
            b"f UID FETCH 4 (BODY.PEEK[HEADER])",
            b"* 2 EXPUNGE",
            re.compile(rb"f NO \[EXPUNGEISSUED\] this message is gone: alice deleted it" + AT),
        )
        # Told once: the UID names no message of this session any more (RFC 9051: OK).
        await bob.exchange(b"g UID FETCH 4 (BODY.PEEK[HEADER])", b"g OK FETCH completed")
        await bob.exchange(b"x UID EXPUNGE 4", b"x OK EXPUNGE completed")


async def test_uid_expunge_of_a_moved_message_is_refused(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as bob:
        await _select(bob, "bob")
        _moved(gw, [5], "alice", "Trash")
        await bob.exchange(
            b"x UID EXPUNGE 5",
            b"* 5 EXPUNGE",
            re.compile(rb"x NO \[EXPUNGEISSUED\] alice moved this message to Trash" + AT),
        )


async def test_store_by_sequence_number_is_refused_without_shifting_numbers(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as bob:
        await _select(bob, "bob")
        _moved(gw, [2])
        # No EXPUNGE during STORE by number (RFC 9051 §7.5.1): only the NO.
        await bob.exchange(
            b"t STORE 2 +FLAGS (\\Seen)",
            re.compile(rb"t NO \[EXPUNGEISSUED\] alice moved this message to Archive" + AT),
        )
        await bob.exchange(b"n NOOP", b"* 2 EXPUNGE", b"n OK NOOP completed")


async def test_partly_gone_store_does_the_rest_and_warns(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as bob:
        await _select(bob, "bob")
        _moved(gw, [2])
        _deleted(gw, [3], "carol")
        await bob.exchange(
            b"t UID STORE 2:4 +FLAGS (\\Seen)",
            b"* 3 EXPUNGE",
            b"* 2 EXPUNGE",
            b"* 2 FETCH (UID 4 FLAGS (\\Seen))",
            re.compile(
                rb"\* NO \[EXPUNGEISSUED\] 2 of 3 messages are gone: "
                rb"alice moved 1 to Archive" + AT + rb", carol deleted 1" + AT
            ),
            b"t OK STORE completed",
        )


async def test_sequence_fetch_of_gone_uncached_content_names_who(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as bob:
        await _select(bob, "bob")
        _moved(gw, [2])
        await bob.exchange(
            b"f FETCH 2 (BODY.PEEK[HEADER])",
            re.compile(rb"f NO \[EXPUNGEISSUED\] alice moved this message to Archive" + AT),
        )


async def test_unchangedsince_modified_across_users_and_private_seen(tmp_path: Path) -> None:
    """RFC 7162: a colleague's shared change after my modseq answers [MODIFIED]; a
    colleague's private \\Seen does not (it is not a change of my view)."""
    gw = make_gateway(tmp_path)
    mb = _inbox(gw)
    async with running(gw) as server, connect(server) as alice, connect(server) as bob:
        for c, user in ((alice, "alice"), (bob, "bob")):
            await c.login(user)
            await c.exchange(b"e ENABLE CONDSTORE", b"* ENABLED CONDSTORE", b"e OK ENABLE completed")
            await c.send(b"s SELECT INBOX")
            assert (await c.until_tagged(b"s"))[-1].startswith(b"s OK")
        got = await alice.exchange(
            b"f UID FETCH 2:3 (MODSEQ)",
            re.compile(rb"\* 2 FETCH \(UID 2 MODSEQ \((\d+)\)\)"),
            re.compile(rb"\* 3 FETCH \(UID 3 MODSEQ \((\d+)\)\)"),
            b"f OK FETCH completed",
        )
        before = max(int(m.group(1)) for g in got[:2] if (m := re.search(rb"MODSEQ \((\d+)\)", g)))
        # bob's private \Seen on 3; a shared change of 2 (bob's \Flagged as the write path
        # records it after the hoster took it).
        await bob.exchange(
            b"t UID STORE 3 +FLAGS.SILENT (\\Seen)",
            re.compile(rb"\* 3 FETCH \(UID 3 MODSEQ \(\d+\)\)"),
            b"t OK STORE completed",
        )
        gw.replica.set_shared_flags(mb, {2: ("\\Flagged",)})
        await alice.exchange(
            b"u UID STORE 2:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Seen)" % before,
            # 3 stored (bob's private \Seen is no change of alice's view) ...
            re.compile(rb"\* 3 FETCH \(UID 3 MODSEQ \(\d+\)\)"),
            # ... 2 not: the colleague's change, flushed, and named in MODIFIED.
            re.compile(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)"),
            b"u OK [MODIFIED 2] STORE completed",
        )
