"""Every RFC 4314 right × every IMAP command, through the real IMAP server
with two users (issue 11).

For each command (row) and each right letter: bob gets every right on the
row's folder (``bob lrswipkxtea``) and then loses that one letter by a
negative entry (``-bob <letter>``, negatives win); alice keeps the default.
The command must be refused exactly when the row needs the letter: ``NO
[NOPERM]`` with a readable text, or -- for ``l`` -- the answer a missing
folder gets (``NONEXISTENT``, ``TRYCREATE`` for a destination), so nothing
about the folder leaks.  Allowed commands may still fail for other reasons
(the harness has no upstream: ``UNAVAILABLE``), but never by the policy.

Commands of the selected state are sent after a SELECT made with every right,
so each row also shows that a session losing a right is refused on its next
command there (the table is reloaded when its version moves).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from imapgate.gateway.app import Gateway
from imapgate.team.acl import LETTERS
from tests.server.harness import Client, connect, make_gateway, running

MESSAGE = b"From: a@example.org\r\nSubject: matrix\r\n\r\nhello\r\n"


@dataclass(frozen=True)
class Row:
    line: bytes
    #: The folder whose rights the row takes away, and the letters the line needs there.
    folder: str
    needs: str
    selected: bool = False
    #: The code for a folder without l ("NONEXISTENT"; a destination: "TRYCREATE").
    hidden: str = "NONEXISTENT"


ROWS = [
    Row(b"SELECT INBOX", "INBOX", "lr"),
    Row(b"EXAMINE INBOX", "INBOX", "lr"),
    Row(b"STATUS INBOX (MESSAGES UNSEEN)", "INBOX", "lr"),
    Row(b"MYRIGHTS INBOX", "INBOX", "l"),
    Row(b"SUBSCRIBE INBOX", "INBOX", "l"),
    Row(b"GETACL INBOX", "INBOX", "la"),
    Row(b"LISTRIGHTS INBOX alice", "INBOX", "la"),
    Row(b"SETACL INBOX alice lr", "INBOX", "la"),
    Row(b"DELETEACL INBOX alice", "INBOX", "la"),
    Row(b"APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE, "INBOX", "li", hidden="TRYCREATE"),
    Row(b"CREATE Top", "INBOX", "lk"),
    Row(b"CREATE Archive/Sub", "Archive", "lk"),
    Row(b"DELETE Archive", "Archive", "lx"),
    Row(b"RENAME Archive Old", "Archive", "lx"),
    Row(b"FETCH 1:* (FLAGS)", "INBOX", "lr", selected=True),
    Row(b"SEARCH ALL", "INBOX", "lr", selected=True),
    Row(b"NOOP", "INBOX", "lr", selected=True),
    Row(b"STORE 2 +FLAGS (\\Seen)", "INBOX", "lrs", selected=True),
    Row(b"STORE 2 +FLAGS (\\Deleted)", "INBOX", "lrt", selected=True),
    Row(b"STORE 2 +FLAGS ($Label)", "INBOX", "lrw", selected=True),
    Row(b"STORE 2 FLAGS (\\Seen)", "INBOX", "lrsw", selected=True),
    Row(b"EXPUNGE", "INBOX", "lre", selected=True),
    Row(b"COPY 1 Archive", "INBOX", "lr", selected=True),
    Row(b"COPY 1 Archive", "Archive", "li", selected=True, hidden="TRYCREATE"),
    Row(b"MOVE 1 Archive", "INBOX", "lrte", selected=True),
    Row(b"MOVE 1 Archive", "Archive", "li", selected=True, hidden="TRYCREATE"),
]


def _set(gw: Gateway, folder: str, identifier: str, rights: str) -> None:
    source = gw.service.acl
    assert source is not None
    source.store.set_entry(folder, identifier, rights, default=source.default)
    source.refresh()


def _reset(gw: Gateway) -> None:
    source = gw.service.acl
    assert source is not None
    for folder in ("INBOX", "Archive"):
        source.store.reset(folder)
    source.refresh()


async def _run(c: Client, tag: bytes, line: bytes) -> bytes:
    await c.send(tag + b" " + line)
    return (await c.until_tagged(tag))[-1]


async def test_every_right_against_every_command(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.users.add("carol", "carol-pw")  # an identifier SETACL may name besides the two users
    report: list[str] = []
    async with running(gw) as server:
        for row in ROWS:
            for letter in LETTERS:
                _reset(gw)
                _set(gw, row.folder, "bob", LETTERS)
                async with connect(server) as bob, connect(server) as alice:
                    await bob.login("bob")
                    await alice.login("alice")
                    if row.selected:
                        got = await _run(bob, b"s", b"SELECT INBOX")
                        assert got.startswith(b"s OK"), got
                    _set(gw, row.folder, "-bob", letter)
                    tagged = await _run(bob, b"t", row.line)
                    refused = re.match(rb"t NO \[(NOPERM|NONEXISTENT|TRYCREATE)\] (.*)", tagged)
                    what = f"{row.line[:30]!r} without {letter} on {row.folder}"
                    if letter in row.needs:
                        code = row.hidden if letter == "l" else "NOPERM"
                        if refused is None or refused.group(1).decode() != code:
                            report.append(f"{what}: want NO [{code}], got {tagged!r}")
                        elif letter == "l" and refused.group(2) != b"mailbox '%s' does not exist" % (
                            row.folder.encode()
                        ):
                            report.append(f"{what}: not the missing folder's text: {tagged!r}")
                    elif refused is not None:
                        report.append(f"{what}: refused although not needed: {tagged!r}")
                    # The other user keeps the default: the folder is still there for her.
                    mine = await _run(alice, b"m", b"MYRIGHTS " + row.folder.encode())
                    if not mine.startswith(b"m OK"):
                        report.append(f"{what}: alice affected: {mine!r}")
    assert not report, "\n".join(report)


async def test_list_shows_only_folders_with_l_and_status_needs_r(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as bob:
        await bob.login("bob")
        _set(gw, "Archive", "-bob", "l")
        await bob.exchange(b'a LIST "" "*"', b'* LIST (\\HasNoChildren) "/" INBOX', b"a OK LIST completed")
        await bob.exchange(b"b SELECT Archive", b"b NO [NONEXISTENT] mailbox 'Archive' does not exist")
        await bob.exchange(b"c SELECT Nowhere", b"c NO [NONEXISTENT] mailbox 'Nowhere' does not exist")
        _reset(gw)
        _set(gw, "INBOX", "-bob", "r")
        got = await bob.exchange(
            b'd LIST "" "*" RETURN (STATUS (MESSAGES))',
            b'* LIST (\\HasNoChildren) "/" INBOX',
            re.compile(rb'\* LIST \(.*\) "/" Archive'),
            re.compile(rb"\* STATUS Archive .*"),
            b"d OK LIST completed",
        )
        assert not any(b"STATUS INBOX" in g for g in got)


async def test_refusals_say_what_is_allowed(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as bob:
        await bob.login("bob")
        _set(gw, "INBOX", "bob", "lrs")
        _set(gw, "INBOX", "authenticated", "")
        await bob.send(b"a SELECT INBOX")
        got = await bob.until_tagged(b"a")
        # Without w nor t: only \Seen can be changed (s keeps the folder READ-WRITE).
        assert any(re.fullmatch(rb"\* OK \[PERMANENTFLAGS \(\\Seen\)\] .*", g) for g in got), got
        assert got[-1] == b"a OK [READ-WRITE] SELECT completed", got
        await bob.exchange(
            b"b STORE 1 +FLAGS ($Label)",
            b"b NO [NOPERM] you may read but not change messages in INBOX",
        )
        # STORE per flag: the flags the user may set are set, the others left out.
        got = await bob.exchange(
            b"c STORE 2 +FLAGS ($Label \\Seen)",
            re.compile(rb"\* 2 FETCH \((UID 2 )?FLAGS \(\\Seen\)\)"),
            b"c OK STORE completed",
        )
        await bob.exchange(b"d MYRIGHTS INBOX", b"* MYRIGHTS INBOX lrs", b"d OK MYRIGHTS completed")
        # Without any of s w i t e: SELECT is READ-ONLY and nothing is permanent.
        _set(gw, "INBOX", "bob", "lr")
        await bob.send(b"e SELECT INBOX")
        got = await bob.until_tagged(b"e")
        assert b"* OK [PERMANENTFLAGS ()] Limited" in got, got
        assert got[-1] == b"e OK [READ-ONLY] SELECT completed", got


async def test_acl_commands_over_imap(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as alice, connect(server) as bob:
        await alice.login("alice")
        await bob.login("bob")
        # Without a: refused, and bob cannot widen his own rights.
        await bob.exchange(
            b"a SETACL INBOX bob +a", b"a NO [NOPERM] you may read but not change who may use INBOX"
        )
        _set(gw, "INBOX", "alice", "lrswipkxtea")
        await alice.exchange(
            b"b GETACL INBOX",
            b"* ACL INBOX authenticated lrswipkxtecd alice lrswipkxteacd",
            b"b OK GETACL completed",
        )
        await alice.exchange(b"c SETACL INBOX bob lr", b"c OK SETACL completed")
        await alice.exchange(b"d SETACL INBOX -bob w", b"d OK SETACL completed")
        # Only an admin may give anyone the a right.
        await alice.exchange(
            b"e SETACL INBOX anyone +a",
            re.compile(rb"e NO \[NOPERM\] only an admin may give anyone the a right.*"),
        )
        await alice.exchange(b"f SETACL INBOX bob lr!", re.compile(rb"f BAD .*"))
        await alice.exchange(b"g SETACL INBOX bob lrq", re.compile(rb"g BAD .*unknown right 'q'.*"))
        await alice.exchange(
            b"h SETACL INBOX nosuchuser lr", re.compile(rb"h NO \[CANNOT\] no user 'nosuchuser'")
        )
        await alice.exchange(
            b"i LISTRIGHTS INBOX bob",
            b'* LISTRIGHTS INBOX bob "" l r s w i p k x t e a c d',
            b"i OK LISTRIGHTS completed",
        )
        await alice.exchange(b"j DELETEACL INBOX -bob", b"j OK DELETEACL completed")
        await bob.exchange(b"k MYRIGHTS INBOX", b"* MYRIGHTS INBOX lrswipkxtecd", b"k OK MYRIGHTS completed")
        entries = gw.journal.recent(10)
        kinds = [e.command for e in entries if e.result == "OK"]
        assert kinds.count("SETACL") == 2 and kinds.count("DELETEACL") == 1, kinds
        # bob's SETACL without a is journaled as a refusal (the audit journal, issue 13).
        refused = [e for e in entries if e.action_word == "refused"]
        assert [(e.command, e.user, e.mailbox) for e in refused] == [("SETACL", "bob", "INBOX")], entries


@pytest.mark.parametrize("caps_line", [b"CAPABILITY"])
async def test_capabilities_name_acl(tmp_path: Path, caps_line: bytes) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        got = await c.exchange(
            b"a " + caps_line, re.compile(rb"\* CAPABILITY .*"), b"a OK CAPABILITY completed"
        )
        assert b" ACL " in got[0] and b" RIGHTS=texk" in got[0], got


async def test_imapclient_acl_methods(tmp_path: Path) -> None:
    """imapclient's ACL methods (getacl, setacl; 4.1 has no others, so deleteacl and
    myrights go through its imaplib connection, LISTRIGHTS as a raw command)."""
    import asyncio
    import imaplib

    from imapclient import IMAPClient

    imaplib.Commands.setdefault("LISTRIGHTS", ("AUTH", "SELECTED"))  # imaplib does not know it

    gw = make_gateway(tmp_path)
    _set(gw, "INBOX", "alice", "lrswipkxtea")
    async with running(gw) as server:
        host, port, _ = server.addresses[0]

        def client_side() -> dict[str, object]:
            with IMAPClient(host, port=port, ssl=False) as client:
                client.login("alice", "alice-pw")
                imap = client._imap
                out: dict[str, object] = {"caps": client.capabilities()}
                client.setacl("INBOX", "bob", "lr")
                out["getacl"] = client.getacl("INBOX")
                out["myrights"] = imap.myrights("INBOX")
                typ, _ = imap._simple_command("LISTRIGHTS", "INBOX", "bob")
                out["listrights"] = (typ, imap._untagged_response(typ, [None], "LISTRIGHTS")[1])
                out["deleteacl"] = imap.deleteacl("INBOX", "bob")[0]
                out["after"] = client.getacl("INBOX")
                return out

        got = await asyncio.to_thread(client_side)
    assert b"ACL" in got["caps"]  # type: ignore[operator]
    assert (b"bob", b"lr") in got["getacl"], got  # type: ignore[operator]
    assert (b"bob", b"lr") not in got["after"], got  # type: ignore[operator]
    assert got["myrights"] == ("OK", [b"INBOX lrswipkxteacd"]), got
    assert got["listrights"] == ("OK", [b'INBOX bob "" l r s w i p k x t e a c d']), got
    assert got["deleteacl"] == "OK", got
