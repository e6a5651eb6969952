"""Virtual folders (gateway/virtual.py) through the real server code: listed,
selectable read-only with their own UIDVALIDITY and the provider's UIDs, content
read from the source folder, every write refused, COPY/MOVE out of them handed
to the provider.  No upstream: the replica and content cache are filled directly."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from imapgate.gateway.operations import CopyResult
from imapgate.gateway.policy import Actor
from imapgate.gateway.virtual import VirtualMessage
from tests.server.harness import connect, make_gateway, running

BODY = b"Subject: hello\r\n\r\nvirtual body\r\n"


class Picks:
    """Shows INBOX UIDs 2 and 4 as UIDs 7 and 9, to alice only."""

    name = "Picked"

    def __init__(self) -> None:
        self.copied: list[tuple[str, list[int], str, bool]] = []

    def uidvalidity(self, actor: Actor) -> int:
        return 4242

    def messages(self, actor: Actor) -> Sequence[VirtualMessage]:
        if actor.user != "alice":
            return []
        return [VirtualMessage(9, "INBOX", 4), VirtualMessage(7, "INBOX", 2, ("\\Flagged",))]

    async def copy_out(
        self, actor: Actor, messages: Sequence[VirtualMessage], dest: str, move: bool
    ) -> CopyResult:
        self.copied.append((actor.user, [m.uid for m in messages], dest, move))
        return CopyResult(1, [], [])


def _gateway(tmp_path: Path) -> tuple[Picks, object]:
    gw = make_gateway(tmp_path)
    picks = Picks()
    gw.service.virtual.register(picks)
    inbox = gw.replica.get("INBOX")
    assert inbox is not None
    gw.content.put_many(inbox.id, inbox.uidvalidity, {(2, b"BODY[]"): BODY})
    return picks, gw


async def test_listed_selected_read_only_and_served(tmp_path: Path) -> None:
    picks, gw = _gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:  # type: ignore[arg-type]
        await c.login("alice")
        await c.send(b'l LIST "" "*"')
        listed = await c.until_tagged(b"l")
        assert b'* LIST (\\HasNoChildren) "/" Picked' in listed
        await c.send(b's LSUB "" "*"')
        assert b'* LSUB (\\HasNoChildren) "/" Picked' in await c.until_tagged(b"s")
        await c.exchange(b"t STATUS Picked (MESSAGES UIDNEXT UIDVALIDITY)",
                         b"* STATUS Picked (MESSAGES 2 UIDNEXT 10 UIDVALIDITY 4242)",
                         b"t OK STATUS completed")  # fmt: skip
        await c.send(b"x SELECT Picked")
        got = await c.until_tagged(b"x")
        assert b"* 2 EXISTS" in got and b"* OK [UIDVALIDITY 4242] UIDs valid" in got
        assert got[-1] == b"x OK [READ-ONLY] SELECT completed"
        await c.exchange(b"f UID FETCH 1:* (UID FLAGS)",
                         b"* 1 FETCH (UID 7 FLAGS (\\Flagged))",
                         b"* 2 FETCH (UID 9 FLAGS ())",
                         b"f OK FETCH completed")  # fmt: skip
        await c.exchange(b"b UID FETCH 7 (BODY[])",
                         b"* 1 FETCH (UID 7 BODY[] {%d}" % len(BODY),
                         b"Subject: hello", b"", b"virtual body", b")",
                         b"b OK FETCH completed")  # fmt: skip
        await c.exchange(b"q UID SEARCH FLAGGED", b"* SEARCH 7", b"q OK SEARCH completed")
        # Writes are refused with a reason; nothing reaches the source.
        await c.exchange(b"w STORE 1 +FLAGS (\\Seen)",
                         b"w NO [READ-ONLY] Picked is a read-only virtual folder")  # fmt: skip
        await c.exchange(b"e EXPUNGE", b"e NO [READ-ONLY] Picked is a read-only virtual folder")
        await c.exchange(
            b"a APPEND Picked {3+}\r\nabc",
            re.compile(rb"a NO \[CANNOT\] Picked is a read-only virtual folder: APPEND .*"),
        )
        # COPY out: the provider decides (here: records it).
        await c.exchange(b"c UID COPY 7:9 Archive", b"c OK COPY completed")
        assert picks.copied == [("alice", [7, 9], "Archive", False)]
        # COPY into it (from itself): refused.
        await c.exchange(b"i UID COPY 7 Picked", re.compile(rb"i NO \[CANNOT\] .*"))
        # MOVE out: the messages leave the folder for this session.
        await c.send(b"m UID MOVE 9 Archive")
        moved = await c.until_tagged(b"m")
        assert moved[-2:] == [b"* 2 EXPUNGE", b"m OK MOVE completed"], moved
        assert picks.copied[-1] == ("alice", [9], "Archive", True)
        # The folder itself cannot be changed (DELETE also closes it here, as for any folder).
        await c.exchange(b"d DELETE Picked", re.compile(rb"d NO \[CANNOT\] Picked is a read-only virtual.*"))
        await c.exchange(b"r RENAME Picked Other", re.compile(rb"r NO \[CANNOT\] .*"))
        await c.exchange(b"k CREATE Picked", re.compile(rb"k NO \[(CANNOT|ALREADYEXISTS)\] .*"))


async def test_empty_for_other_users_and_inbox_unchanged(tmp_path: Path) -> None:
    _picks, gw = _gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:  # type: ignore[arg-type]
        await c.login("bob")
        await c.exchange(
            b"t STATUS Picked (MESSAGES)", b"* STATUS Picked (MESSAGES 0)", b"t OK STATUS completed"
        )
        await c.exchange(
            b"t STATUS INBOX (MESSAGES)", b"* STATUS INBOX (MESSAGES 5)", b"t OK STATUS completed"
        )


async def test_hidden_folder_is_never_listed_nor_named(tmp_path: Path) -> None:
    _picks, gw = _gateway(tmp_path)
    gw.replica.upsert_mailbox(".recovery", "/", ())  # type: ignore[attr-defined]
    gw.service.virtual.hide(".recovery")  # type: ignore[attr-defined]
    async with running(gw) as server, connect(server) as c:  # type: ignore[arg-type]
        await c.login("alice")
        await c.send(b'l LIST "" "*"')
        assert not any(b".recovery" in line for line in await c.until_tagged(b"l"))
        await c.exchange(b"s SELECT .recovery", re.compile(rb"s NO \[NONEXISTENT\] .*"))
        await c.exchange(b"t STATUS .recovery (MESSAGES)", re.compile(rb"t NO \[NONEXISTENT\] .*"))
        await c.send(b"x SELECT INBOX")
        assert (await c.until_tagged(b"x"))[-1].startswith(b"x OK")
        await c.exchange(b"c UID COPY 1 .recovery", re.compile(rb"c NO \[TRYCREATE\] .*"))
