"""RFC 4314 on the wire: SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS parsed byte by
byte (protocol/acl.py), hostile input refused with a clear text, and the ACL,
LISTRIGHTS and MYRIGHTS responses written and parsed back."""

from __future__ import annotations

import pytest

from imapgate.protocol import commands as c
from imapgate.protocol.command_parser import parse_command
from imapgate.protocol.errors import ClientProtocolError
from imapgate.protocol.response_parser import parse_response
from imapgate.protocol.response_writer import write_response
from imapgate.protocol.responses import AclResponse, ListRightsResponse, MyRightsResponse


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"a SETACL Finance $acct lrswi\r\n", c.SetAcl("a", "Finance", "$acct", "lrswi")),
        (b"a SETACL Finance -bob +w\r\n", c.SetAcl("a", "Finance", "-bob", "+w")),
        (b'a SETACL Finance anyone ""\r\n', c.SetAcl("a", "Finance", "anyone", "")),
        (b'a SETACL "Team/Deals" "carol" "-wt"\r\n', c.SetAcl("a", "Team/Deals", "carol", "-wt")),
        (b"a SETACL Finance {5}\r\nalice lr\r\n", c.SetAcl("a", "Finance", "alice", "lr")),
        (b"a setacl inbox bob lrcd\r\n", c.SetAcl("a", "INBOX", "bob", "lrcd")),
        (b"a SETACL &AMQ-rger bob lr\r\n", c.SetAcl("a", "\u00c4rger", "bob", "lr")),   # mUTF-7
        (b"a DELETEACL Finance -$temps\r\n", c.DeleteAcl("a", "Finance", "-$temps")),
        (b"a GETACL Finance\r\n", c.GetAcl("a", "Finance")),
        (b"a LISTRIGHTS Finance authenticated\r\n", c.ListRights("a", "Finance", "authenticated")),
        (b'a MYRIGHTS "Sent Items"\r\n', c.MyRights("a", "Sent Items")),
        (b"a MYRIGHTS INBOX/Sub\r\n", c.MyRights("a", "INBOX/Sub")),
    ],
)
def test_parse(frame: bytes, expected: c.Command) -> None:
    assert parse_command(frame) == expected


def test_utf8_mailbox_names_after_utf8_accept() -> None:
    frame = 'a SETACL "Ärger" bob lr\r\n'.encode()
    assert parse_command(frame, utf8=True) == c.SetAcl("a", "Ärger", "bob", "lr")
    assert parse_command('a MYRIGHTS "Ärger"\r\n'.encode(), utf8=True) == c.MyRights("a", "Ärger")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"a SETACL Finance bob\r\n", "missing arguments: expected SETACL mailbox identifier rights"),
        (b"a SETACL Finance\r\n", "missing arguments: expected SETACL mailbox identifier rights"),
        (b"a SETACL Finance bob lr x\r\n",
         "unexpected extra arguments ' x\\r\\n'; expected SETACL mailbox identifier rights"),
        (b"a SETACL Finance bob lr \r\n", "trailing space after SETACL"),
        (b"a SETACL Finance bob LR\r\n", "SETACL: rights must be an optional + or - and lower-case letters"),
        (b'a SETACL Finance bob "l r"\r\n', "SETACL: rights must be"),
        (b'a SETACL Finance bob "+-w"\r\n', "SETACL: rights must be"),
        (b"a SETACL Finance bob {66}\r\n" + b"l" * 66 + b"\r\n",
         "SETACL: rights longer than 64 bytes (MAX_RIGHTS)"),
        (b"a SETACL Finance {300}\r\n" + b"x" * 300 + b" lr\r\n",
         "SETACL: identifier longer than 255 bytes (MAX_IDENTIFIER)"),
        (b'a SETACL Finance "\xff\xfe" lr\r\n', "SETACL: identifier is not valid UTF-8"),
        (b"a SETACL Finance (bob) lr\r\n", "SETACL: expected an identifier"),
        (b"a DELETEACL Finance\r\n", "missing arguments: expected DELETEACL mailbox identifier"),
        (b"a DELETEACL Finance bob lr\r\n", "unexpected extra arguments ' lr\\r\\n'; expected DELETEACL"),
        (b"a LISTRIGHTS Finance\r\n", "missing arguments: expected LISTRIGHTS mailbox identifier"),
        (b"a GETACL\r\n", "missing arguments: expected GETACL mailbox"),
        (b"a GETACL Finance Other\r\n", "unexpected extra arguments ' Other\\r\\n'; expected GETACL"),
        (b"a MYRIGHTS\r\n", "missing arguments: expected MYRIGHTS mailbox"),
        (b"a UID MYRIGHTS INBOX\r\n", "UID must be followed by one of"),
    ],
)
def test_hostile_input_is_a_client_error_with_a_clear_text(frame: bytes, reason: str) -> None:
    with pytest.raises(ClientProtocolError) as info:
        parse_command(frame)
    assert info.value.reason.startswith(reason), info.value.reason
    assert info.value.tag == "a"
    assert "\n" not in info.value.reason


def test_a_nul_in_a_quoted_identifier_is_refused() -> None:
    with pytest.raises(ClientProtocolError):
        parse_command(b'a SETACL Finance "bo\x00b" lr\r\n')


def test_an_invalid_mutf7_name_is_reported_with_the_command() -> None:
    from imapgate.protocol.errors import InvalidMailboxName

    with pytest.raises(InvalidMailboxName) as info:
        parse_command(b"a MYRIGHTS &Jjo\r\n")
    assert "modified UTF-7" in info.value.reason
    assert info.value.command == c.MyRights("a", "&Jjo")


@pytest.mark.parametrize(
    ("response", "wire"),
    [
        (AclResponse("Finance", (("authenticated", "lrswipkxtecd"), ("$acct", "lrswi"), ("-bob", "w"))),
         b"* ACL Finance authenticated lrswipkxtecd $acct lrswi -bob w\r\n"),
        (AclResponse("Secret", ()), b"* ACL Secret\r\n"),  # an ACL with no entries left
        (AclResponse("Sent Items", (("bob", ""),)), b'* ACL "Sent Items" bob ""\r\n'),
        (AclResponse("\u00c4rger", (("anyone", "lr"),)), b"* ACL &AMQ-rger anyone lr\r\n"),
        (ListRightsResponse("Finance", "bob", "", ("l", "r", "s", "w", "i", "p", "k", "x", "t", "e", "a",
                                                  "c", "d")),
         b'* LISTRIGHTS Finance bob "" l r s w i p k x t e a c d\r\n'),
        (ListRightsResponse("Finance", "root", "lrswipkxteacd"),
         b"* LISTRIGHTS Finance root lrswipkxteacd\r\n"),
        (MyRightsResponse("INBOX", "lrswipkxtecd"), b"* MYRIGHTS INBOX lrswipkxtecd\r\n"),
        (MyRightsResponse("Archive", "lrs"), b"* MYRIGHTS Archive lrs\r\n"),
    ],
)
def test_write_and_parse_responses(
    response: AclResponse | ListRightsResponse | MyRightsResponse, wire: bytes
) -> None:
    assert write_response(response) == wire
    assert parse_response(wire) == response


def test_responses_in_utf8_mode() -> None:
    wire = '* MYRIGHTS "Ärger" lr\r\n'.encode()
    assert write_response(MyRightsResponse("Ärger", "lr"), utf8=True) == wire
    assert parse_response(wire, utf8=True) == MyRightsResponse("Ärger", "lr")
