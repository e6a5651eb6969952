"""Log-safe lines of IMAP traffic: no credentials, no literal contents."""

from __future__ import annotations

import base64

import pytest

from imapgate.protocol.redact import HIDDEN, wire_lines

SECRET = "Pa55-w0rd-Zq"


@pytest.mark.parametrize(
    "data",
    [
        b'a1 LOGIN alice "%s"\r\n' % SECRET.encode(),
        b"a1 LOGIN alice %s\r\n" % SECRET.encode(),
        b"a1 login {5}\r\nalice {%d}\r\n%s\r\n" % (len(SECRET), SECRET.encode()),
        b"a1 LOGIN {5+}\r\nalice {%d+}\r\n%s\r\n" % (len(SECRET), SECRET.encode()),
        b"a1 AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice\0" + SECRET.encode()) + b"\r\n",
        b"LOGIN alice %s\r\n" % SECRET.encode(),  # no tag: still masked
        b"a1 LOGIN alice %s" % SECRET.encode(),  # no line end yet
        b'G00001 LOGIN "shared" "%s"\r\n' % SECRET.encode(),  # the gateway's own, upstream
    ],
)
def test_credentials_never_appear(data: bytes) -> None:
    text = "\n".join(wire_lines(data))
    assert SECRET not in text
    assert base64.b64encode(b"\0alice\0" + SECRET.encode()).decode() not in text
    assert HIDDEN in text
    assert text.split()[0] in ("a1", "G00001", "LOGIN")


def test_literals_show_only_their_size() -> None:
    body = b"From: a@example.com\r\nSubject: private\r\n\r\nSecret body text\r\n"
    resp = b"* 1 FETCH (UID 7 BODY[] {%d}\r\n%s FLAGS (\\Seen))\r\n* 2 EXISTS\r\n" % (len(body), body)
    expected = f"* 1 FETCH (UID 7 BODY[] {{{len(body)} bytes}} FLAGS (\\Seen))"
    assert wire_lines(resp) == [expected, "* 2 EXISTS"]
    append = b"a5 APPEND INBOX (\\Seen) {%d}\r\n%s\r\n" % (len(body), body)
    assert wire_lines(append) == [f"a5 APPEND INBOX (\\Seen) {{{len(body)} bytes}}"]


def test_status_responses_are_not_masked() -> None:
    assert wire_lines(b"a1 OK [CAPABILITY IMAP4rev1] LOGIN completed\r\n") == [
        "a1 OK [CAPABILITY IMAP4rev1] LOGIN completed"
    ]


def test_bounded_output() -> None:
    many = b"".join(b"* %d FETCH (UID %d FLAGS ())\r\n" % (i, i) for i in range(1, 1001))
    out = wire_lines(many)
    assert len(out) == 51 and out[-1].startswith("... 950 more lines (")
    long = b"a1 SEARCH " + b"X" * 5000 + b"\r\n"
    assert len(wire_lines(long)[0]) < 1100


def test_control_characters_escaped() -> None:
    assert wire_lines(b"a1 NOOP\x00\x1b[31m\r\n") == ["a1 NOOP\\x00\\x1b[31m"]
