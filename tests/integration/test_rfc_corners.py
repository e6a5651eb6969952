"""The RFC corners real clients hit, run with the same commands directly against Dovecot
(the reference, as the shared account) and through the gateway (as alice), with the same
assertions: \\Recent (RFC 3501 §2.3.2), keywords announced before use (§7.2.6), FETCH of a
message another session expunged (RFC 2180 §4.1), mailbox names that are not modified
UTF-7, LIST-EXTENDED (RFC 5258) and LSUB (RFC 3501 §6.3.9), CONDSTORE enabled implicitly
and SEARCH RETURN (MIN/MAX) MODSEQ (RFC 7162 §3.1).

Several sessions of one login stand for colleagues: through the gateway they are alice's
sessions, directly they are the shared account's — the protocol rules are per session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.integration.targets import Target
from tests.support.imap import RawClient

pytestmark = pytest.mark.integration

FOLDER = b"Gate-Test"
MESSAGE = b"From: a@example.org\r\nSubject: corner %d\r\nMessage-ID: <corner.%d@example.org>\r\n\r\nhello\r\n"


class Session:
    """One raw session on the target: commands in, (untagged lines, tagged line) out."""

    def __init__(self, t: Target) -> None:
        self.t = t
        self.raw = RawClient(t.host, t.port)
        self.n = 0
        self.raw.login(t.user, t.password)

    def run(self, text: bytes) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = b"c%d" % self.n
        lines = [ln.rstrip(b"\r\n") for ln in self.raw.command(tag, text)]
        return lines[:-1], lines[-1][len(tag) + 1 :]

    def ok(self, text: bytes) -> list[bytes]:
        untagged, status = self.run(text)
        assert status.startswith(b"OK"), (self.t.name, text, untagged, status)
        return untagged

    def append(self, n: int, folder: bytes = FOLDER) -> None:
        data = MESSAGE % (n, n)
        self.ok(b"APPEND %s {%d+}\r\n%s" % (folder, len(data), data))


@contextmanager
def sessions(t: Target, count: int) -> Iterator[list[Session]]:
    opened = [Session(t) for _ in range(count)]
    try:
        yield opened
    finally:
        for s in opened:
            s.raw.close()


def recent_count(lines: list[bytes]) -> int | None:
    found = [int(m.group(1)) for ln in lines if (m := re.fullmatch(rb"\* (\d+) RECENT", ln))]
    return found[-1] if found else None


def search_ids(lines: list[bytes]) -> list[int]:
    (line,) = [ln for ln in lines if ln.startswith(b"* SEARCH")]
    return [int(x) for x in line.split()[2:] if x.isdigit()]


def flags_of(lines: list[bytes]) -> dict[int, set[bytes]]:
    out = {}
    for ln in lines:
        m = re.match(rb"\* (\d+) FETCH \(.*FLAGS \(([^)]*)\)", ln)
        if m:
            out[int(m.group(1))] = set(m.group(2).split())
    return out


def flags_response(line: bytes) -> set[bytes] | None:
    m = re.fullmatch(rb"\* FLAGS \(([^)]*)\)", line)
    return set(m.group(1).split()) if m else None


def list_entries(lines: list[bytes]) -> dict[bytes, tuple[set[bytes], bytes]]:
    """name -> (attributes, extended data) of LIST/LSUB lines."""
    out = {}
    for ln in lines:
        m = re.fullmatch(rb'\* (?:LIST|LSUB) \(([^)]*)\) "/" ("?)([^" ]+)\2(.*)', ln)
        assert m, ln
        out[m.group(3)] = ({a.lower() for a in m.group(1).split()}, m.group(4).strip())
    return out


def test_recent_belongs_to_the_first_session(rw_target: Target) -> None:
    with sessions(rw_target, 3) as (a, b, c):
        c.ok(b"CREATE " + FOLDER)
        c.append(1)
        c.append(2)
        # Not seen by any session yet: counted by STATUS for whoever opens the folder.
        assert c.ok(b"STATUS %s (MESSAGES RECENT)" % FOLDER) == [
            b"* STATUS %s (MESSAGES 2 RECENT 2)" % FOLDER
        ]
        assert recent_count(a.ok(b"SELECT " + FOLDER)) == 2
        assert flags_of(a.ok(b"FETCH 1:* (FLAGS)")) == {1: {b"\\Recent"}, 2: {b"\\Recent"}}
        assert search_ids(a.ok(b"SEARCH NEW")) == [1, 2]
        assert search_ids(a.ok(b"SEARCH OLD")) == []
        # The second session to open it gets none of them.
        assert recent_count(b.ok(b"SELECT " + FOLDER)) == 0
        assert flags_of(b.ok(b"FETCH 1:* (FLAGS)")) == {1: set(), 2: set()}
        assert search_ids(b.ok(b"SEARCH RECENT")) == []
        # A message appended by a session that has the folder open is recent there.
        b.append(3)
        assert search_ids(b.ok(b"SEARCH RECENT")) == [3]
        lines = a.ok(b"NOOP")
        assert b"* 3 EXISTS" in lines and recent_count(lines) in (None, 2), lines
        assert search_ids(a.ok(b"SEARCH RECENT")) == [1, 2]
        # Reading keeps it recent; NEW is recent and unseen.
        a.ok(b"STORE 1 +FLAGS (\\Seen)")
        assert search_ids(a.ok(b"SEARCH NEW")) == [2]
        # The session ended: its messages are recent nowhere afterwards.
        a.ok(b"LOGOUT")
    with sessions(rw_target, 1) as (d,):
        assert recent_count(d.ok(b"SELECT " + FOLDER)) == 0
        assert search_ids(d.ok(b"SEARCH RECENT")) == []


def test_examine_does_not_take_recent(rw_target: Target) -> None:
    with sessions(rw_target, 2) as (a, b):
        a.ok(b"CREATE " + FOLDER)
        a.append(1)
        assert recent_count(a.ok(b"EXAMINE " + FOLDER)) == 1
        assert flags_of(a.ok(b"FETCH 1 (FLAGS)")) == {1: {b"\\Recent"}}
        assert recent_count(b.ok(b"SELECT " + FOLDER)) == 1
        assert recent_count(a.ok(b"EXAMINE " + FOLDER)) == 0


def test_new_keywords_are_announced_before_use(rw_target: Target) -> None:
    with sessions(rw_target, 3) as (a, b, c):
        a.ok(b"CREATE " + FOLDER)
        a.append(1)
        a.append(2)
        a.ok(b"SELECT " + FOLDER)
        a.ok(b"STORE 1 +FLAGS ($Known)")
        b.ok(b"SELECT " + FOLDER)
        # A colleague's new keyword: FLAGS listing it comes before the FETCH carrying it.
        a.ok(b"STORE 2 +FLAGS ($Colleague)")
        lines = b.ok(b"NOOP")
        fetch = next(i for i, ln in enumerate(lines) if b"$Colleague" in ln and b"FETCH" in ln)
        announced = [i for i, ln in enumerate(lines) if (f := flags_response(ln)) and b"$Colleague" in f]
        assert announced and announced[0] < fetch, lines
        # The client's own new keyword: announced before its STORE answer.
        lines = b.ok(b"STORE 1 +FLAGS ($Mine)")
        fetch = next(i for i, ln in enumerate(lines) if b"$Mine" in ln and b"FETCH" in ln)
        announced = [i for i, ln in enumerate(lines) if (f := flags_response(ln)) and b"$Mine" in f]
        assert announced and announced[0] < fetch, lines
        assert any(b"PERMANENTFLAGS" in ln and b"$Mine" in ln for ln in lines[:fetch]), lines
        # SELECT lists every keyword in use.
        flags = next(f for ln in c.ok(b"SELECT " + FOLDER) if (f := flags_response(ln)) is not None)
        assert {b"$Known", b"$Colleague", b"$Mine"} <= flags


@pytest.mark.parametrize("folder", [b"INBOX", b"Support"])
def test_select_lists_every_keyword_in_use(rw_target: Target, folder: bytes) -> None:
    """The sample mailbox's own keywords (set at the hoster before the gateway started)."""
    with sessions(rw_target, 1) as (a,):
        lines = a.ok(b"SELECT " + folder)
        flags = next(f for ln in lines if (f := flags_response(ln)) is not None)
        used = {
            f for fl in flags_of(a.ok(b"FETCH 1:* (FLAGS)")).values() for f in fl if not f.startswith(b"\\")
        }
        assert used and used <= flags, (used, flags)


def test_fetch_of_message_expunged_elsewhere_answers_ok(rw_target: Target) -> None:
    with sessions(rw_target, 2) as (a, b):
        a.ok(b"CREATE " + FOLDER)
        for n in (1, 2, 3):
            a.append(n)
        a.ok(b"SELECT " + FOLDER)
        b.ok(b"SELECT " + FOLDER)
        b.ok(b"FETCH 1:* (BODY.PEEK[HEADER])")
        a.ok(b"STORE 2 +FLAGS.SILENT (\\Deleted)")
        a.ok(b"EXPUNGE")
        # b was not told yet: its message 2 still answers, with the flags b knew plus \Deleted.
        untagged, status = b.run(b"FETCH 2 (UID FLAGS)")
        assert status.startswith(b"OK"), (untagged, status)
        assert not any(ln.endswith(b"EXPUNGE") for ln in untagged), untagged
        assert b"\\Deleted" in flags_of(untagged)[2]
        untagged, status = b.run(b"FETCH 1:3 (UID BODY.PEEK[HEADER])")
        assert status.startswith(b"OK"), (untagged, status)
        # The numbers shift only when the expunge may be told.
        lines = b.ok(b"NOOP")
        assert b"* 2 EXPUNGE" in lines, lines
        assert b.ok(b"FETCH 2 (UID)")[0].startswith(b"* 2 FETCH (UID 3")


def test_names_that_are_not_modified_utf7_get_no(rw_target: Target) -> None:
    with sessions(rw_target, 1) as (a,):
        for command in (b'SELECT "&Jjo"', b'STATUS "&Jjo" (MESSAGES)', b'CREATE "&Jjo"', b'SUBSCRIBE "&Jjo"'):
            _, status = a.run(command)
            assert status.startswith(b"NO"), (command, status)
        assert a.ok(b'LIST "" "&Jjo"') == []
        assert a.ok(b"NOOP") == []  # the session goes on


def test_list_extended_and_lsub_corners(rw_target: Target) -> None:
    with sessions(rw_target, 1) as (a,):
        for command in (
            b'LIST (RECURSIVEMATCH) "" %',
            b'LIST (REMOTE RECURSIVEMATCH) "" %',
            b'LIST (FOO) "" %',
            b'LIST () "" % RETURN (FOO)',
        ):
            _, status = a.run(command)
            assert status.startswith(b"BAD"), (command, status)
        a.ok(b"CREATE X/Y/Z")
        # CREATE does not subscribe.
        assert b"X/Y/Z" not in list_entries(a.ok(b'LSUB "" *'))
        assert b"X/Y/Z" not in list_entries(a.ok(b'LIST (SUBSCRIBED) "" *'))
        # Implicit parents under %: \Noselect in a basic LIST, \NonExistent in an extended one.
        basic = list_entries(a.ok(b'LIST "" X/%'))
        assert set(basic) == {b"X/Y"} and {b"\\noselect", b"\\haschildren"} <= basic[b"X/Y"][0], basic
        ext = list_entries(a.ok(b'LIST "" X/% RETURN (CHILDREN)'))
        assert set(ext) == {b"X/Y"} and ext[b"X/Y"][0] >= {b"\\nonexistent", b"\\haschildren"}, ext
        a.ok(b"SUBSCRIBE X/Y/Z")
        # LSUB %: the unsubscribed parent of a subscribed folder is \Noselect.
        lsub = list_entries(a.ok(b'LSUB "" X/%'))
        assert set(lsub) == {b"X/Y"} and b"\\noselect" in lsub[b"X/Y"][0], lsub
        # RECURSIVEMATCH: CHILDINFO for the parent of a subscribed folder.
        rec = list_entries(a.ok(b'LIST (SUBSCRIBED RECURSIVEMATCH) "" X/%'))
        assert set(rec) == {b"X/Y"} and rec[b"X/Y"][1].replace(b'"', b"") == b"(CHILDINFO (SUBSCRIBED))", rec
        assert b"\\nonexistent" in rec[b"X/Y"][0], rec
        # A subscribed folder that is deleted stays subscribed, as \NonExistent.
        a.ok(b"DELETE X/Y/Z")
        sub = list_entries(a.ok(b'LIST (SUBSCRIBED) "" X/*'))
        assert set(sub) == {b"X/Y/Z"} and sub[b"X/Y/Z"][0] >= {b"\\subscribed", b"\\nonexistent"}, sub


def test_condstore_enabled_by_first_modseq_fetch(rw_target: Target) -> None:
    with sessions(rw_target, 1) as (a,):
        a.ok(b"CREATE " + FOLDER)
        for n in (1, 2, 3):
            a.append(n)
        a.ok(b"SELECT " + FOLDER)
        a.ok(b"STORE 2 +FLAGS (\\Flagged)")
        lines = a.ok(b"FETCH 1:3 (MODSEQ)")
        assert re.fullmatch(rb"\* OK \[HIGHESTMODSEQ \d+\].*", lines[0]), lines
        modseq = {
            int(m.group(1)): int(m.group(2))
            for ln in lines
            if (m := re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", ln))
        }
        assert not any(b"HIGHESTMODSEQ" in ln for ln in a.ok(b"FETCH 1 (MODSEQ)"))
        since = min(modseq.values())
        for options, pick in ((b"MIN", min), (b"MAX", max)):
            (line,) = a.ok(b"SEARCH RETURN (%s) MODSEQ %d" % (options, since))
            m = re.search(rb"(?:MIN|MAX) (\d+) MODSEQ (\d+)", line)
            assert m, line
            seq = int(m.group(1))
            assert seq == pick(modseq) and int(m.group(2)) == modseq[seq], (line, modseq)
