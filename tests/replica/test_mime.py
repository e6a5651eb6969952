"""Unit tests of ``replica/mime.py``: sections, ENVELOPE and BODYSTRUCTURE from a
whole message (expected bytes as Dovecot answers them; the comparison with a
live Dovecot is ``test_mime_dovecot.py``), and hostile input."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from imapgate.replica import mime

MSG = (
    b'From: "Doe, Jane" <jane@example.org>\r\nTo: team: a@x.test, b@x.test;\r\n'
    b"Subject: Hello\r\n  world\r\nMessage-ID: <m1@example.org>\r\n"
    b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n"
    b"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
    b"--b1--\r\n"
)


def test_sections() -> None:
    assert mime.derive(MSG, b"BODY[HEADER]") == MSG[: MSG.index(b"\r\n\r\n") + 4]
    assert mime.derive(MSG, b"BODY[TEXT]") == MSG[MSG.index(b"\r\n\r\n") + 4 :]
    assert mime.derive(MSG, b"BODY[HEADER.FIELDS (SUBJECT X-NONE)]") == b"Subject: Hello\r\n  world\r\n\r\n"
    assert mime.derive(MSG, b"BODY[1]") == b"hi"
    assert mime.derive(MSG, b"BODY[1.MIME]") == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert mime.derive(MSG, b"BODY[2]") == b"Subject: inner\r\n\r\ninner body"
    assert mime.derive(MSG, b"BODY[2.HEADER]") == b"Subject: inner\r\n\r\n"
    assert mime.derive(MSG, b"BODY[2.TEXT]") == b"inner body"
    assert mime.derive(MSG, b"BODY[2.1]") == b"inner body"
    assert mime.derive(MSG, b"BODY[3]") == b""  # no such part: empty, as Dovecot answers
    assert mime.derive(MSG, b"BODY[]") == MSG
    assert mime.derive(MSG, b"BINARY[1]") is None  # not derived here


def test_envelope() -> None:
    assert mime.derive(MSG, b"ENVELOPE") == (
        b'(NIL {12}\r\nHello  world (("Doe, Jane" NIL "jane" "example.org")) '
        b'(("Doe, Jane" NIL "jane" "example.org")) (("Doe, Jane" NIL "jane" "example.org")) '
        b'((NIL NIL "team" NIL)(NIL NIL "a" "x.test")(NIL NIL "b" "x.test")(NIL NIL NIL NIL)) '
        b'NIL NIL NIL "<m1@example.org>")'
    )


def test_bodystructure() -> None:
    assert mime.derive(MSG, b"BODYSTRUCTURE") == (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 2 0 NIL NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 28 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "b1") NIL NIL NIL)'
    )


def test_rfc2231_continuations_are_joined() -> None:
    ctype = b"application/pdf; name*0*=utf-8''%C3%9C; name*1*=ber.pdf; x=1"
    assert mime.parse_content_type(ctype) == (
        b"application",
        b"pdf",
        [(b"x", b"1"), (b"name*", b"utf-8''%C3%9Cber.pdf")],
    )


def test_hostile_nesting_is_bounded() -> None:
    deep = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%05d\r\n\r\n--b%05d\r\n" % (i, i) for i in range(5000)
    )
    start = time.monotonic()
    out = mime.derive(deep + b"\r\nend\r\n", b"BODYSTRUCTURE")
    assert out is not None and len(out) - len(out.lstrip(b"(")) <= mime.MAX_PART_DEPTH + 2
    many = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\n\r\n" * 50_000
    out = mime.derive(many, b"BODYSTRUCTURE")
    assert out is not None and out.count(b'"text"') <= mime.MAX_PARTS
    assert time.monotonic() - start < 20


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=2000),
    st.sampled_from(
        [b"ENVELOPE", b"BODYSTRUCTURE", b"BODY[1.2.MIME]", b"BODY[HEADER.FIELDS (FROM)]", b"BODY[2.TEXT]"]
    ),
)
def test_any_input_derives_without_error(data: bytes, name: bytes) -> None:
    prefix = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n"
    for message in (data, prefix + data):
        out = mime.derive(message, name)
        assert out is not None
