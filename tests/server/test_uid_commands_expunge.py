"""Messages expunged by another session, as UID commands and sequence-number
commands see them (RFC 9051 §7.5.1, RFC 2180 §4.1).

A UID FETCH/STORE/SEARCH may carry EXPUNGE responses: the session announces
the expunges first and answers OK.  A FETCH by sequence number must not shift
the numbers: the expunged message is served from what the session still has
(RFC 2180 §4.1.1: its flags as the session saw them, content from the cache)
and the answer is OK, as Dovecot answers; only content that is neither cached
nor at the hoster any more gets a tagged NO [EXPUNGEISSUED].
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from imapgate.demo import DovecotServer
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient

from .harness import connect, make_gateway, running

#: The sync saw UID 3 gone at the hoster (``replica.expunge`` without a hook): the
#: departures record says so, with the time (gateway/departures.py).
NO_CONTENT = re.compile(
    rb"g NO \[EXPUNGEISSUED\] 1 of 3 messages is gone: 1 removed at the hoster at \d\d:\d\d"
)


async def test_uid_commands_announce_foreign_expunge_then_ok(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with (
        running(gw) as server,
        connect(server) as bob,
        connect(server) as alice,
        connect(server) as carol,
    ):
        for c, user in ((bob, "bob"), (alice, "alice"), (carol, "alice")):
            await c.login(user)
            await c.send(b"s SELECT INBOX")
            assert (await c.until_tagged(b"s"))[-1].startswith(b"s OK")
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        # What the sync engine does once another session expunged UID 2 upstream.
        gw.replica.expunge(inbox, [2])

        # By sequence number: numbers must not shift; the message is still served.
        await bob.exchange(
            b"f FETCH 2 (UID FLAGS RFC822.SIZE)",
            b"* 2 FETCH (UID 2 FLAGS () RFC822.SIZE 200)",
            b"f OK FETCH completed",
        )
        await bob.exchange(
            b"g FETCH 1:3 (UID)",
            b"* 1 FETCH (UID 1)",
            b"* 2 FETCH (UID 2)",
            b"* 3 FETCH (UID 3)",
            b"g OK FETCH completed",
        )
        # By UID: the expunge is announced first, then the answer, then OK.
        await bob.exchange(
            b"u UID FETCH 1:* (UID FLAGS)",
            b"* 2 EXPUNGE",
            b"* 1 FETCH (UID 1 FLAGS (\\Seen))",
            b"* 2 FETCH (UID 3 FLAGS ())",
            b"* 3 FETCH (UID 4 FLAGS ())",
            b"* 4 FETCH (UID 5 FLAGS ())",
            b"u OK FETCH completed",
        )
        await bob.exchange(b"n NOOP", b"n OK NOOP completed")  # announced once only
        # UID STORE (a private \Seen: needs no upstream) gets the same treatment.
        await alice.exchange(
            b"t UID STORE 4 +FLAGS (\\Seen)",
            b"* 2 EXPUNGE",
            b"* 3 FETCH (UID 4 FLAGS (\\Seen))",
            b"t OK STORE completed",
        )
        # alice's other session: a UID STORE naming the expunged UID itself.  The
        # session showed it until now: the EXPUNGE, then why nothing was stored
        # (issue 12: never OK for a STORE that did nothing because the message is gone).
        await carol.exchange(
            b"t UID STORE 2 +FLAGS (\\Seen)",
            b"* 2 EXPUNGE",
            b"* 3 FETCH (UID 4 FLAGS (\\Seen))",  # alice's change from the other session
            re.compile(
                rb"t NO \[EXPUNGEISSUED\] this message is gone: it was removed at the hoster at \d\d:\d\d"
            ),
        )
        # Told once: the same command again names no message of this session: OK.
        await carol.exchange(b"t2 UID STORE 2 +FLAGS (\\Seen)", b"t2 OK STORE completed")


async def test_sequence_fetch_serves_expunged_message_from_cache_and_no_only_without_it(
    tmp_path: Path,
) -> None:
    gw = make_gateway(tmp_path)
    inbox = gw.replica.get("INBOX")
    assert inbox is not None
    key = b"BODY[HEADER]"  # the cache key of BODY.PEEK[HEADER]
    gw.content.put_many(inbox.id, inbox.uidvalidity, {(u, key): b"Subject: m%d\r\n\r\n" % u for u in (1, 2)})
    async with running(gw) as server, connect(server) as c:
        await c.login("bob")
        await c.send(b"s SELECT INBOX")
        assert (await c.until_tagged(b"s"))[-1].startswith(b"s OK")
        gw.replica.set_private_flags(inbox, gw.users.get("bob").id, {"\\Seen": [2]}, {})  # type: ignore[union-attr]
        gw.replica.expunge(inbox, [2, 3])
        # Cached: served as if nothing happened, flags as bob last saw them.
        await c.exchange(
            b"f FETCH 2 (FLAGS BODY.PEEK[HEADER])",
            b"* 2 FETCH (FLAGS (\\Seen) BODY[HEADER] {15}",
            b"Subject: m2",
            b"",
            b")",
            b"f OK FETCH completed",
        )
        # Not cached, gone at the hoster (the gateway never asks it for an expunged
        # message): the others' data, then NO [EXPUNGEISSUED].
        await c.exchange(
            b"g FETCH 1:3 (BODY.PEEK[HEADER])",
            b"* 1 FETCH (BODY[HEADER] {15}",
            b"Subject: m1",
            b"",
            b")",
            b"* 2 FETCH (BODY[HEADER] {15}",
            b"Subject: m2",
            b"",
            b")",
            NO_CONTENT,
        )
        # Flags of the uncached one are still there: OK.
        await c.exchange(b"h FETCH 3 (FLAGS)", b"* 3 FETCH (FLAGS ())", b"h OK FETCH completed")
        await c.exchange(b"n NOOP", b"* 3 EXPUNGE", b"* 2 EXPUNGE", b"n OK NOOP completed")
        await c.exchange(b"f FETCH 2 (UID)", b"* 2 FETCH (UID 4)", b"f OK FETCH completed")


async def test_uid_fetch_under_qresync_announces_vanished(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("bob")
        await c.exchange(b"e ENABLE QRESYNC", b"* ENABLED QRESYNC", b"e OK ENABLE completed")
        await c.send(b"s SELECT INBOX")
        assert (await c.until_tagged(b"s"))[-1].startswith(b"s OK")
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        gw.replica.expunge(inbox, [2, 4])
        got = await c.exchange(
            b"u UID FETCH 2:4 (FLAGS)",
            b"* VANISHED 2,4",
            re.compile(rb"\* 2 FETCH \(UID 3 FLAGS \(\) MODSEQ \(\d+\)\)"),
            b"u OK FETCH completed",
        )
        assert got[0] == b"* VANISHED 2,4"
        await c.exchange(b"f FETCH 3 (UID)", b"* 3 FETCH (UID 5)", b"f OK FETCH completed")


def test_foreign_expunge_through_gateway_uid_fetch_and_sequence_fetch_ok(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path
) -> None:
    """Session A expunges through the gateway; B, which had the folder open, gets
    EXPUNGE + OK for UID FETCH 1:*, and the message's flags + OK for a sequence FETCH."""
    upstream = fresh_dovecot()
    users = {"alice": "alice-pw", "bob": "bob-pw"}
    with GatewayHarness(upstream_port=upstream.port, data_dir=tmp_path / "gw", users=users) as harness:
        a = RawClient(harness.host, harness.port)
        b = RawClient(harness.host, harness.port)
        try:
            for c, user in ((a, "alice"), (b, "bob")):
                assert c.command(b"L", f"LOGIN {user} {user}-pw".encode())[-1].startswith(b"L OK")
                lines = c.command(b"S", b"SELECT INBOX")
                assert lines[-1].startswith(b"S OK"), lines
            exists = next(int(m.group(1)) for ln in lines if (m := re.match(rb"\* (\d+) EXISTS", ln)))
            assert a.command(b"D", b"UID STORE 3 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"D OK")
            assert a.command(b"X", b"UID EXPUNGE 3")[-1].startswith(b"X OK")

            def gone() -> bool:
                mb = harness.gw.replica.get("INBOX")
                return mb is not None and 3 not in mb.records

            harness.wait_for(gone, what="UID 3 expunged in the replica")
            # Sequence FETCH of the expunged message: no EXPUNGE, its flags as bob
            # saw them (with alice's \Deleted), OK.
            lines = b.command(b"F1", b"FETCH 3 (UID FLAGS)")
            assert lines[-1].startswith(b"F1 OK"), lines
            assert lines[0].startswith(b"* 3 FETCH (UID 3 FLAGS (") and b"\\Deleted" in lines[0], lines
            assert not any(re.match(rb"\* \d+ EXPUNGE", ln) for ln in lines), lines
            # UID FETCH 1:*: the EXPUNGE first, then every remaining message, then OK.
            lines = b.command(b"F2", b"UID FETCH 1:* (FLAGS)")
            assert lines[0] == b"* 3 EXPUNGE\r\n", lines[:3]
            assert lines[-1].startswith(b"F2 OK"), lines[-1]
            fetched = [int(m.group(1)) for ln in lines if (m := re.search(rb"FETCH \(UID (\d+)", ln))]
            assert len(fetched) == exists - 1 and 3 not in fetched, fetched
            lines = b.command(b"F3", b"FETCH 3 (UID)")  # numbers have shifted now
            assert lines[0].startswith(b"* 3 FETCH (UID 4)"), lines
        finally:
            a.sock.close()
            b.sock.close()
