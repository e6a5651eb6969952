"""Content of a message the hoster no longer has (expunged by another session there,
not yet known to the gateway): the hoster answers the gateway's UID FETCH with NIL and
``[EXPUNGEISSUED]`` (tagged NO or OK, as Dovecot does).  The client gets the other
messages and one ``NO [EXPUNGEISSUED]``, nothing is cached for the lost one, and no
other upstream refusal is mistaken for it."""

from __future__ import annotations

import re
from pathlib import Path

from imapgate.protocol import commands as cmd
from tests.server.harness import connect, make_gateway, running
from tests.sync.scripted import ScriptedConnection, ScriptedPool

#: The hoster said the message is gone, the replica still has it (the sync comes later):
#: removed at the hoster, now (gateway/departures.py).
LOST = re.compile(rb"f NO \[EXPUNGEISSUED\] 1 of 3 messages is gone: 1 removed at the hoster at \d\d:\d\d")
LOST_ONE = re.compile(
    rb"f NO \[EXPUNGEISSUED\] this message is gone: it was removed at the hoster at \d\d:\d\d"
)


def hoster(expunged_reply: bytes) -> ScriptedConnection:
    """UID 3 is gone at the hoster; the first FETCH naming it gets ``expunged_reply``."""
    told = False

    def script(c: cmd.Command) -> tuple[list[bytes], bytes]:
        nonlocal told
        if isinstance(c, cmd.Noop):
            told = True
            return [b"* 3 EXPUNGE"], b"OK NOOP done"
        assert isinstance(c, cmd.Fetch) and c.uid, c
        uids = list(c.sequence_set.iter(0))
        lines = [b"* %d FETCH (UID %d BODY[TEXT] {5}\r\nbody%d)" % (u, u, u) for u in uids if u != 3]
        if 3 in uids and not told:
            return [*lines, b"* 3 FETCH (UID 3 BODY[TEXT] NIL)"], expunged_reply
        return lines, b"OK done"

    return ScriptedConnection(script)


async def _run(tmp_path: Path, expunged_reply: bytes) -> None:
    gw = make_gateway(tmp_path)
    conn = hoster(expunged_reply)
    gw.service.pool = ScriptedPool(conn)  # type: ignore[assignment]
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        await c.send(b"s SELECT INBOX")
        assert (await c.until_tagged(b"s"))[-1].startswith(b"s OK")
        await c.exchange(
            b"f FETCH 2:4 (BODY.PEEK[TEXT])",
            b'* 2 FETCH (BODY[TEXT] "body2")',
            b'* 4 FETCH (BODY[TEXT] "body4")',
            LOST,
        )
        # Asked once more after a NOOP (the hoster may not have told that session yet).
        assert [type(x).__name__ for x in conn.sent] == ["Fetch", "Noop", "Fetch"]
        inbox = gw.replica.get("INBOX")
        assert inbox is not None
        cached = gw.content.get_many(inbox.id, inbox.uidvalidity, [(u, b"BODY[TEXT]") for u in (2, 3, 4)])
        assert set(cached) == {(2, b"BODY[TEXT]"), (4, b"BODY[TEXT]")}  # no NIL kept for UID 3
        # The others come from the cache now; UID 3 is still lost.
        await c.exchange(b"f FETCH 3 (BODY.PEEK[TEXT])", LOST_ONE)
        await c.exchange(b"g FETCH 3 (FLAGS)", b"* 3 FETCH (FLAGS ())", b"g OK FETCH completed")


async def test_hoster_no_expungeissued(tmp_path: Path) -> None:
    await _run(tmp_path, b"NO [EXPUNGEISSUED] Some of the requested messages no longer exist")


async def test_hoster_ok_expungeissued_with_nil(tmp_path: Path) -> None:
    await _run(tmp_path, b"OK [EXPUNGEISSUED] Some messages were already expunged")


async def test_other_refusals_still_fail_the_fetch(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.service.pool = ScriptedPool(ScriptedConnection(lambda c: ([], b"NO [SERVERBUG] disk on fire")))  # type: ignore[assignment]
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        await c.send(b"s SELECT INBOX")
        await c.until_tagged(b"s")
        await c.exchange(
            b"f FETCH 1 (BODY.PEEK[TEXT])", re.compile(rb"f NO \[SERVERBUG\] cannot fetch message content.*")
        )
