"""CONDSTORE enabled implicitly (RFC 7162 §3.1): the first CONDSTORE enabling
command while a mailbox is selected reports HIGHESTMODSEQ first; and the MODSEQ
of SEARCH RETURN (MIN)/(MAX) is that of the message returned (§3.1.5)."""

from __future__ import annotations

import re
from pathlib import Path

from imapgate.gateway.app import Gateway
from imapgate.replica.mailbox import MailboxIndex

from .harness import Client, connect, make_gateway, running


async def selected(c: Client, user: str = "alice") -> None:
    await c.login(user)
    await c.send(b"s SELECT INBOX")
    assert (await c.until_tagged(b"s"))[-1].startswith(b"s OK")


def inbox(gw: Gateway) -> MailboxIndex:
    mb = gw.replica.get("INBOX")
    assert mb is not None
    return mb


async def test_first_enabling_command_reports_highestmodseq(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    highest = inbox(gw).modseq
    commands = (
        (b"FETCH 1 (MODSEQ)", b"* 1 FETCH (MODSEQ (%d))" % highest),
        (b"UID FETCH 1 (FLAGS) (CHANGEDSINCE 1)", b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (%d))" % highest),
        (b"SEARCH MODSEQ 1", b"* SEARCH 1 2 3 4 5 (MODSEQ %d)" % highest),
        (b"ENABLE CONDSTORE", b"* ENABLED CONDSTORE"),
    )
    async with running(gw) as server:
        for command, answer in commands:
            async with connect(server) as c:
                await selected(c)
                tag = command.split(b" ")[0].lower()[:1] + b"1"
                got = await c.exchange(
                    tag + b" " + command,
                    b"* OK [HIGHESTMODSEQ %d] Highest" % highest,
                    answer,
                    re.compile(tag + rb" OK .*"),
                )
                assert got
                # Only the first time.
                again = await c.exchange(tag + b" " + command, *([re.compile(rb".*")] * 2))
                assert not any(b"HIGHESTMODSEQ" in line for line in again), again
        # STORE with UNCHANGEDSINCE (a private \Seen here, no hoster needed).
        async with connect(server) as c:
            await selected(c)
            await c.exchange(
                b"u STORE 2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % highest,
                b"* OK [HIGHESTMODSEQ %d] Highest" % highest,
                re.compile(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)"),
                b"u OK STORE completed",
            )
        # Without a mailbox selected there is nothing to report.
        async with connect(server) as c:
            await c.login("bob")
            await c.exchange(b"e ENABLE CONDSTORE", b"* ENABLED CONDSTORE", b"e OK ENABLE completed")


async def test_search_return_min_max_report_that_messages_modseq(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    mb = inbox(gw)
    gw.replica.set_shared_flags(mb, {2: ("\\Flagged",)})
    gw.replica.set_shared_flags(mb, {4: ("\\Flagged",)})
    m2, m4 = mb.records[2].modseq, mb.records[4].modseq
    assert m2 < m4
    async with running(gw) as server, connect(server) as c:
        await selected(c)
        await c.exchange(
            b"e ENABLE CONDSTORE",
            re.compile(rb"\* OK \[HIGHESTMODSEQ \d+\] Highest"),
            b"* ENABLED CONDSTORE",
            b"e OK ENABLE completed",
        )
        for options, want in (
            (b"MIN", b"MIN 2 MODSEQ %d" % m2),
            (b"MAX", b"MAX 4 MODSEQ %d" % m4),
            (b"MIN MAX", b"MIN 2 MAX 4 MODSEQ %d" % m4),
            (b"COUNT", b"COUNT 2 MODSEQ %d" % m4),
            (b"MIN COUNT", b"MIN 2 COUNT 2 MODSEQ %d" % m4),
            (b"ALL", b"ALL 2,4 MODSEQ %d" % m4),
        ):
            await c.exchange(
                b"q SEARCH RETURN (%s) MODSEQ %d" % (options, m2),
                b'* ESEARCH (TAG "q") ' + want,
                b"q OK SEARCH completed",
            )
        await c.exchange(
            b"q UID SEARCH RETURN (MIN) MODSEQ %d" % m2,
            b'* ESEARCH (TAG "q") UID MIN 2 MODSEQ %d' % m2,
            b"q OK SEARCH completed",
        )
        await c.exchange(
            b"q SEARCH MODSEQ %d" % m2, b"* SEARCH 2 4 (MODSEQ %d)" % m4, b"q OK SEARCH completed"
        )
