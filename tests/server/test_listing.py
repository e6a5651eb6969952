"""LIST, LSUB and subscriptions as a client sees them: RFC 5258 LIST-EXTENDED
option checks, implicit parents, subscribed names without a folder, CHILDINFO,
RFC 3501 §6.3.9 LSUB parents, and mailbox names that are not valid modified
UTF-7.  Byte transcripts (the folders are put into the replica directly, as
the sync engine would after LIST at the hoster)."""

from __future__ import annotations

import re
from pathlib import Path

from imapgate.gateway.app import Gateway

from .harness import Client, connect, make_gateway, running


def folders(tmp_path: Path) -> Gateway:
    gw = make_gateway(tmp_path)  # INBOX, Archive (\Archive)
    for name in ("A", "A/B", "X/Y/Z"):  # X and X/Y are no folders at the hoster
        gw.replica.upsert_mailbox(name, "/", ())
    return gw


async def lines(c: Client, command: bytes) -> list[bytes]:
    await c.send(b"t " + command)
    got = await c.until_tagged(b"t")
    assert got[-1].startswith(b"t OK"), got
    return got[:-1]


async def test_list_extended_options_are_checked(tmp_path: Path) -> None:
    gw = folders(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        for command, why in (
            (b'LIST (RECURSIVEMATCH) "" %', b"RECURSIVEMATCH must be used with another selection option"),
            (
                b'LIST (REMOTE RECURSIVEMATCH) "" %',
                b"RECURSIVEMATCH must be used with another selection option",
            ),
            (b'LIST (FOO) "" %', b"unknown LIST selection option FOO"),
            (b'LIST "" % RETURN (FOO)', b"unknown LIST return option FOO"),
        ):
            await c.exchange(b"b " + command, re.compile(rb"b BAD \[CLIENTBUG\] " + re.escape(why) + rb".*"))
        # Empty option lists are fine (and make the LIST an extended one).
        assert await lines(c, b'LIST () "" % RETURN ()') == [
            b'* LIST (\\HasNoChildren) "/" INBOX',
            b'* LIST (\\HasChildren) "/" A',
            b'* LIST (\\Archive \\HasNoChildren) "/" Archive',
            b'* LIST (\\NonExistent \\HasChildren) "/" X',
        ]


async def test_implicit_parents(tmp_path: Path) -> None:
    gw = folders(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        # Basic LIST: a level that only holds folders is \Noselect (RFC 3501 §6.3.8) ...
        assert await lines(c, b'LIST "" X/%') == [b'* LIST (\\Noselect \\HasChildren) "/" X/Y']
        assert await lines(c, b'LIST "" X/Y/%') == [b'* LIST (\\HasNoChildren) "/" X/Y/Z']
        # ... and \NonExistent in an extended LIST (RFC 5258), as Dovecot answers.
        assert await lines(c, b'LIST "" X/% RETURN (CHILDREN)') == [
            b'* LIST (\\NonExistent \\HasChildren) "/" X/Y'
        ]
        # Implicit levels cannot be opened; STATUS is not given for them.
        assert await lines(c, b'LIST "" X* RETURN (STATUS (MESSAGES))') == [
            b'* LIST (\\NonExistent \\HasChildren) "/" X',
            b'* LIST (\\NonExistent \\HasChildren) "/" X/Y',
            b'* LIST (\\HasNoChildren) "/" X/Y/Z',
            b"* STATUS X/Y/Z (MESSAGES 0)",
        ]


async def test_subscriptions_lsub_and_list_subscribed(tmp_path: Path) -> None:
    gw = folders(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        # Team default: every folder counts as subscribed until unsubscribed.
        for name in (b"INBOX", b"A", b"Archive"):
            await c.exchange(b"u UNSUBSCRIBE " + name, b"u OK UNSUBSCRIBE completed")
        # Subscribing a name that is no folder is refused, as Dovecot does ...
        await c.exchange(b"u SUBSCRIBE Nowhere", b"u NO [NONEXISTENT] mailbox 'Nowhere' does not exist")
        # LSUB %: X is not subscribed, X/Y/Z is: X is listed \Noselect (RFC 3501 §6.3.9);
        # A is not subscribed, A/B is.
        assert await lines(c, b'LSUB "" %') == [b'* LSUB (\\Noselect) "/" A', b'* LSUB (\\Noselect) "/" X']
        assert await lines(c, b'LSUB "" X/%') == [b'* LSUB (\\Noselect) "/" X/Y']
        assert await lines(c, b'LSUB "" *') == [
            b'* LSUB (\\HasNoChildren) "/" A/B',
            b'* LSUB (\\HasNoChildren) "/" X/Y/Z',
        ]
        # RECURSIVEMATCH: parents of subscribed folders say so.
        assert await lines(c, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" %') == [
            b'* LIST (\\HasChildren) "/" A ("CHILDINFO" ("SUBSCRIBED"))',
            b'* LIST (\\NonExistent \\HasChildren) "/" X ("CHILDINFO" ("SUBSCRIBED"))',
        ]
        await c.exchange(b"u SUBSCRIBE A", b"u OK SUBSCRIBE completed")
        assert await lines(c, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" *') == [
            b'* LIST (\\HasChildren \\Subscribed) "/" A ("CHILDINFO" ("SUBSCRIBED"))',
            b'* LIST (\\HasNoChildren \\Subscribed) "/" A/B',
            b'* LIST (\\HasNoChildren \\Subscribed) "/" X/Y/Z',
        ]
        # A folder subscribed explicitly and then deleted (here: at the hoster) stays
        # subscribed (RFC 3501 §6.3.6), listed as \NonExistent; a folder subscribed
        # only by the team default just goes.
        await c.exchange(b"u SUBSCRIBE X/Y/Z", b"u OK SUBSCRIBE completed")
        gw.replica.drop_mailbox("X/Y/Z")
        gw.replica.drop_mailbox("A/B")
        assert await lines(c, b'LIST (SUBSCRIBED) "" *') == [
            b'* LIST (\\HasNoChildren \\Subscribed) "/" A',
            b'* LIST (\\NonExistent \\Subscribed) "/" X/Y/Z',
        ]
        assert await lines(c, b'LSUB "" *') == [b'* LSUB (\\HasNoChildren) "/" A', b'* LSUB () "/" X/Y/Z']
        assert await lines(c, b'LIST "" % RETURN (SUBSCRIBED)') == [
            b'* LIST (\\HasNoChildren) "/" INBOX',
            b'* LIST (\\HasNoChildren \\Subscribed) "/" A',
            b'* LIST (\\Archive \\HasNoChildren) "/" Archive',
        ]
        await c.exchange(b"u UNSUBSCRIBE X/Y/Z", b"u OK UNSUBSCRIBE completed")
        assert await lines(c, b'LSUB "" *') == [b'* LSUB (\\HasNoChildren) "/" A']
    # Decisions are per user: bob still has everything subscribed by default.
    async with running(gw) as server, connect(server) as bob:
        await bob.login("bob")
        assert len(await lines(bob, b'LSUB "" *')) == 3  # INBOX, A, Archive


async def test_invalid_modified_utf7_names_get_no(tmp_path: Path) -> None:
    gw = folders(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        why = b"mailbox name is not valid modified UTF-7 ("
        for command in (
            b'SELECT "&Jjo"',
            b'EXAMINE "&AGE-"',
            b'STATUS "&Jjo" (MESSAGES)',
            b"SUBSCRIBE &Jjo",
            b"DELETE &Jjo",
            b"APPEND &Jjo {1+}\r\nx",
        ):
            await c.exchange(b"n " + command, re.compile(rb"n NO \[NONEXISTENT\] " + re.escape(why) + rb".*"))
        await c.exchange(b"n CREATE &Jjo", re.compile(rb"n NO \[CANNOT\] " + re.escape(why) + rb".*"))
        await c.exchange(b'n LIST "" &Jjo', b"n OK LIST completed")
        await c.exchange(b'n LSUB "" &Jjo*', b"n OK LSUB completed")
        # Not a protocol error: the session goes on, even after many of them.
        for _ in range(25):
            await c.exchange(b'n SELECT "&Jjo"', re.compile(rb"n NO .*"))
        await c.exchange(
            b"n SELECT INBOX", *([re.compile(rb"\* .*")] * 8), b"n OK [READ-WRITE] SELECT completed"
        )
        # After a failed SELECT nothing is selected.
        await c.exchange(b'n SELECT "&Jjo"', re.compile(rb"n NO .*"))
        await c.exchange(b"n FETCH 1 FLAGS", b"n BAD [CLIENTBUG] FETCH: select a mailbox first")
        # Syntax errors still win over the name: BAD.
        await c.exchange(b'n SELECT "&Jjo" junk', re.compile(rb"n BAD .*"))
    async with running(gw) as server, connect(server) as c:
        # Before login, the state check comes first.
        await c.exchange(b'n SELECT "&Jjo"', b"n BAD [CLIENTBUG] SELECT: log in first")
