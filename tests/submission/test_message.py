"""Reading a submitted message's header: leniently, never raising, in the guard's order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imapgate.submission.message import MAX_HEADER_BYTES, complete, header_block, parse


def test_fields() -> None:
    m = parse(
        b"From: \"Info, Team\" <Info@Example.com>\r\nTo: a@b\r\n"
        b"Subject: =?utf-8?q?Re=3A_Lieferung_f=C3=BCr?=\r\n"
        b" Sie\r\nMessage-ID: <r1@example.com>\r\nIn-Reply-To: <m3@c>\r\n"
        b"References: <m1@c>\r\n <m2@c> <m3@c>\r\nDate: Thu, 12 Mar 2026 10:40:00 +0100\r\n\r\n"
        b"Body: <not@header>\r\n"
    )
    assert m.from_addresses == ("info@example.com",) and not m.from_unreadable
    assert m.message_id == "<r1@example.com>"
    assert m.in_reply_to == ("<m3@c>",) and m.references == ("<m1@c>", "<m2@c>", "<m3@c>")
    assert m.candidates() == ("<m3@c>", "<m2@c>", "<m1@c>")
    assert m.subject == "Re: Lieferung für Sie" and m.has_date


def test_several_from_fields_and_addresses_all_count() -> None:
    m = parse(b"From: a@x.test, b@y.test\r\nFrom: c@z.test\r\n\r\n")
    assert m.from_addresses == ("a@x.test", "b@y.test", "c@z.test")


def test_unreadable_from() -> None:
    for head in (b"From: nobody\r\n\r\n", b"From: <>\r\n\r\n", b"From: \"a\" <b c@d>\r\n\r\n"):
        m = parse(head)
        assert m.from_unreadable or not m.from_addresses, head


def test_no_header_and_lf_only() -> None:
    assert parse(b"").from_addresses == ()
    m = parse(b"From: a@b.test\nSubject: lf\n\nbody\n")
    assert m.from_addresses == ("a@b.test",) and m.subject == "lf"


def test_header_block_is_bounded() -> None:
    big = b"X-Pad: " + b"a" * (2 * MAX_HEADER_BYTES) + b"\r\n\r\n"
    assert len(header_block(big)) == MAX_HEADER_BYTES


def test_complete_adds_message_id_and_date_once() -> None:
    content = b"From: a@b.test\r\n\r\nx\r\n"
    out, m = complete(content, parse(content), "example.com")
    assert out.startswith(b"Message-ID: <") and b"@example.com>\r\nDate: " in out
    assert m.message_id is not None and m.message_id.endswith("@example.com>") and m.has_date
    again, m2 = complete(out, parse(out), "example.com")
    assert again == out and m2.message_id == m.message_id


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_parse(data: bytes) -> None:
    m = parse(data)
    complete(data, m, "example.com")
    m.candidates()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    b"From: ", b"In-Reply-To: ", b"References: ", b"Subject: ", b"Message-ID: ", b"<", b">", b"@",
    b"=?utf-8?b?", b"?=", b"\r\n", b" ", b"\t", b"\x00", b"\xff", b",", b'"', b"a",
]), max_size=200))
def test_header_shaped_noise_parses(parts: list[bytes]) -> None:
    data = b"".join(parts)
    parse(data).candidates()
