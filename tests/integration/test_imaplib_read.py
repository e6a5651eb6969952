"""imaplib against the gateway and, as reference, directly against Dovecot — reading.

Login (and a failed login: tagged ``NO [AUTHENTICATIONFAILED]``), CAPABILITY, LIST/LSUB with the
non-ASCII folder ``Büro`` (modified UTF-7), SELECT/EXAMINE answers, FETCH of FLAGS, ENVELOPE,
BODYSTRUCTURE, BODY.PEEK[] and its sections and partials byte for byte as Dovecot sends them,
SEARCH (flags, UIDs, text criteria delegated upstream, OR/NOT) and STATUS with the same results
as Dovecot.  Nothing here changes the upstream mailbox (the session-wide ``dovecot``).
"""

from __future__ import annotations

import imaplib
import re

import pytest

from imapgate.demo import DovecotServer, SampleMessage
from imapgate.protocol import mutf7
from tests.integration.targets import Target
from tests.support.gateway import GatewayHarness
from tests.support.imap import (
    dovecot_login,
    fetch_literals,
    flatten,
    mailbox_names,
    ok,
    quote,
    session,
    uid_flags,
)

pytestmark = pytest.mark.integration

Mailbox = dict[str, list[SampleMessage]]


def test_login_failure_then_success_and_capabilities(ro_target: Target) -> None:
    c = ro_target.client()
    with session(c):
        assert "IMAP4REV1" in c.capabilities
        assert "AUTH=PLAIN" in c.capabilities
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\]"):
            c.login(ro_target.user, "not-the-password")
        assert c.state == "NONAUTH"
        ok(c.login(ro_target.user, ro_target.password))
        caps = ok(c.capability())[0]
        assert isinstance(caps, bytes)
        for cap in (b"IMAP4rev1", b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE", b"ENABLE", b"NAMESPACE"):
            assert cap in caps.split(), (cap, caps)


def test_unknown_user_fails_like_wrong_password(ro_target: Target) -> None:
    with session(ro_target.client()) as c, pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login("mallory", "whatever")


def test_list_and_lsub_with_non_ascii_folder(ro_target: Target, sample_mailbox: Mailbox) -> None:
    with session(ro_target.login()) as c:
        listed = mailbox_names(c)
        names = {mutf7.decode(n.encode()) for n in listed}
        assert names == set(sample_mailbox)
        assert "B&APw-ro" in listed  # "Büro" on the wire in modified UTF-7
        assert "\\sent" in listed["Sent"] and "\\trash" in listed["Trash"]
        assert "\\haschildren" in listed["Projekte"]
        assert "\\hasnochildren" in listed["Projekte/Website-Relaunch"]
        # A pattern with the encoded name finds exactly that folder.
        typ, data = c.list('""', "B&APw-*")
        assert typ == "OK" and len(data) == 1 and isinstance(data[0], bytes) and b"B&APw-ro" in data[0]
        # % does not cross the hierarchy delimiter.
        sub = [d for d in ok(c.list('""', "Projekte/%")) if isinstance(d, bytes)]
        assert len(sub) == 1 and b"Projekte/Website-Relaunch" in sub[0]
        subscribed = mailbox_names(c, "LSUB")
        assert {"B&APw-ro", "Sent", "Projekte/Website-Relaunch"} <= set(subscribed)


def test_select_and_examine_answers(
    ro_target: Target, dovecot: DovecotServer, sample_mailbox: Mailbox
) -> None:
    with session(dovecot_login(dovecot)) as ref:
        st = ok(ref.status("INBOX", "(UIDVALIDITY UIDNEXT)"))[0]
    assert isinstance(st, bytes)
    with session(ro_target.login()) as c:
        typ, data = c.select("INBOX")
        assert typ == "OK" and int(data[0]) == len(sample_mailbox["INBOX"])  # type: ignore[arg-type]
        assert c.untagged_responses.get("READ-WRITE") is not None
        uidvalidity = int(c.untagged_responses["UIDVALIDITY"][-1])
        uidnext = int(c.untagged_responses["UIDNEXT"][-1])
        assert f"UIDVALIDITY {uidvalidity}".encode() in st
        assert f"UIDNEXT {uidnext}".encode() in st and uidnext == len(sample_mailbox["INBOX"]) + 1
        permanent = c.untagged_responses["PERMANENTFLAGS"][-1]
        assert isinstance(permanent, bytes)
        for flag in (b"\\Seen", b"\\Flagged", b"\\Deleted", b"\\Answered", b"\\*"):
            assert flag in permanent.split(b" ") or flag + b")" in permanent or b"(" + flag in permanent
        flags = c.untagged_responses["FLAGS"][-1]
        assert isinstance(flags, bytes) and b"\\Seen" in flags
        typ, data = c.select(quote("B&APw-ro"), readonly=True)
        assert typ == "OK" and int(data[0]) == len(sample_mailbox["Büro"])  # type: ignore[arg-type]
        assert c.untagged_responses.get("READ-ONLY") is not None
        assert c.untagged_responses["PERMANENTFLAGS"][-1] == b"()"
        before = uid_flags(c)
        typ, data = c.store("1:*", "+FLAGS", "(\\Flagged)")
        if ro_target.via_gateway:
            assert typ == "NO" and b"[READ-ONLY]" in data[0], data  # type: ignore[operator]
        # (Dovecot answers OK and ignores the change.)  Either way nothing changed:
        assert uid_flags(c) == before
        typ, data = c.select("NoSuchFolder")
        assert typ == "NO"


FETCH_ITEMS = [
    "FLAGS",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY",
    "RFC822.SIZE",
    "INTERNALDATE",
    "BODY.PEEK[]",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED FROM)]",
    "BODY.PEEK[]<0.100>",
    "BODY.PEEK[TEXT]<50.20>",
]


@pytest.mark.parametrize("folder", ["INBOX", "Rechnungen", "Büro"])
def test_fetch_is_byte_identical_to_dovecot(
    ro_gateway: GatewayHarness, dovecot: DovecotServer, folder: str
) -> None:
    """Every FETCH item of every message, through the gateway, equals Dovecot's own answer."""
    wire = quote(mutf7.encode(folder).decode("ascii"))
    with session(ro_gateway.imaplib_login("alice", "alice-pw")) as gw, session(dovecot_login(dovecot)) as dc:
        ok(gw.select(wire, readonly=True))
        ok(dc.select(wire, readonly=True))
        for item in FETCH_ITEMS:
            got = flatten(ok(gw.fetch("1:*", f"({item})")))
            want = flatten(ok(dc.fetch("1:*", f"({item})")))
            if item == "FLAGS":
                # Same flags; \Recent is the state of one Dovecot session, never the gateway's.
                got, want = got.replace(b" \\Recent", b""), want.replace(b" \\Recent", b"")
                assert _flag_sets(got) == _flag_sets(want)
            elif item == "INTERNALDATE":
                # " 1-Feb-2024" and "01-Feb-2024" are both date-day-fixed: compare the moments.
                assert _dates(got) == _dates(want) and len(_dates(got)) > 0
            elif "<" in item:
                # A short partial may come as a quoted string or as a literal: same bytes.
                assert _section_values(got) == _section_values(want), f"{folder} {item}"
            else:
                assert got == want, f"{folder} {item}: gateway and Dovecot differ"


def _flag_sets(data: bytes) -> list[set[bytes]]:
    return [set(m.split()) for m in re.findall(rb"FLAGS \(([^)]*)\)", data)]


def _section_values(data: bytes) -> list[bytes]:
    out = []
    for m in re.finditer(rb'\]<\d+> (?:"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n)', data):
        if m.group(1) is not None:
            out.append(re.sub(rb"\\(.)", rb"\1", m.group(1)))
        else:
            start = m.end()
            out.append(data[start : start + int(m.group(2))])
    assert out
    return out


def _dates(data: bytes) -> list[tuple[int, ...] | None]:
    return [imaplib.Internaldate2tuple(line) for line in data.split(b"\n")]


def test_fetch_bodies_equal_the_messages_stored(ro_gateway: GatewayHarness, sample_mailbox: Mailbox) -> None:
    with session(ro_gateway.imaplib_login("bob", "bob-pw")) as c:
        ok(c.select("Rechnungen", readonly=True))
        bodies = fetch_literals(ok(c.uid("FETCH", "1:*", "(BODY.PEEK[])")))
        assert [bodies[u] for u in sorted(bodies)] == [m.raw for m in sample_mailbox["Rechnungen"]]
        # A partial fetch past the end is empty, not an error.
        data = ok(c.uid("FETCH", "1", "(BODY.PEEK[]<1000000.10>)"))
        assert b'BODY[]<1000000> ""' in flatten(data) or b"BODY[]<1000000> {0}" in flatten(data)


SEARCHES = [
    "ALL",
    "SEEN",
    "UNSEEN",
    "FLAGGED",
    "ANSWERED",
    "NOT ANSWERED",
    "DELETED",
    "UNDELETED",
    "DRAFT",
    "KEYWORD $Label1",
    "UNKEYWORD $Forwarded",
    "OR FLAGGED UNSEEN",
    "NOT OR SEEN FLAGGED",
    "UID 5:20",
    "UID 30:*",
    "2:9",
    "LARGER 5000",
    "SMALLER 2000",
    "SUBJECT Re:",
    "SUBJECT Rechnung",
    'FROM "kuehne-brandt"',
    "TO info",
    "BODY Angebot",
    "TEXT pdf",
    "NOT SUBJECT Re:",
    "UNSEEN NOT SUBJECT Re:",
    "OR SUBJECT Rechnung FROM agentur",
    'HEADER Message-ID "@"',
    "SENTSINCE 1-Mar-2024",
    "SENTBEFORE 1-Mar-2024",
    "SINCE 15-Feb-2024",
    "BEFORE 15-Feb-2024",
    "ON 14-Feb-2024",
    "SEEN OR LARGER 8000 UID 1:10",
]


@pytest.mark.parametrize("folder", ["INBOX", "Projekte/Website-Relaunch", "Rechnungen"])
def test_search_matches_dovecot(ro_gateway: GatewayHarness, dovecot: DovecotServer, folder: str) -> None:
    """UID SEARCH through the gateway finds what Dovecot finds (alice's first look at the folder:
    her \\Seen equals the upstream one), for flag, UID, size, date and text criteria."""
    with session(ro_gateway.imaplib_login("alice", "alice-pw")) as gw, session(dovecot_login(dovecot)) as dc:
        ok(gw.select(quote(folder), readonly=True))
        ok(dc.select(quote(folder), readonly=True))
        differ = []
        for criteria in SEARCHES:
            got = ok(gw.uid("SEARCH", None, criteria))
            want = ok(dc.uid("SEARCH", None, criteria))
            if got != want:
                differ.append((criteria, got, want))
        assert not differ, differ
        # Non-ASCII text criterion sent as a UTF-8 literal.
        for client in (gw, dc):
            client.literal = "Grüße".encode()  # type: ignore[attr-defined]
        got = ok(gw.uid("SEARCH", "CHARSET", "UTF-8", "BODY"))
        want = ok(dc.uid("SEARCH", "CHARSET", "UTF-8", "BODY"))
        assert got == want


def test_status_matches_dovecot(
    ro_gateway: GatewayHarness, dovecot: DovecotServer, sample_mailbox: Mailbox
) -> None:
    with session(ro_gateway.imaplib_login("carol", "carol-pw")) as gw, session(dovecot_login(dovecot)) as dc:
        for folder in sample_mailbox:
            wire = quote(mutf7.encode(folder).decode("ascii"))
            items = "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"
            got, want = ok(gw.status(wire, items))[0], ok(dc.status(wire, items))[0]
            assert got == want, folder
        typ, _ = gw.status("NoSuchFolder", "(MESSAGES)")
        assert typ == "NO"
