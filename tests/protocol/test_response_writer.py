"""Response writer: byte-exact output, quoting rules, the FETCH hot-path helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from imapgate.protocol.response_parser import parse_response
from imapgate.protocol.response_writer import (
    encode_flags,
    fetch_flags_line,
    fetch_flags_lines,
    fetch_item,
    fetch_raw_line,
    resp_text,
    section_item,
    write_mailbox,
    write_response,
)
from imapgate.protocol.responses import (
    ALERT,
    AclResponse,
    AtomCode,
    BadCharsetCode,
    ContinuationRequest,
    FetchResponse,
    IdResponse,
    ListResponse,
    Namespace,
    NamespaceDescriptor,
    RawItem,
    Response,
    StatusResponse,
    TaggedResponse,
    UntaggedStatus,
    canonical_item_name,
)


def roundtrip(resp: Response, *, utf8: bool = False) -> bytes:
    wire = write_response(resp, utf8=utf8)
    assert parse_response(wire, utf8=utf8) == resp
    return wire


def test_section_quoting_rules() -> None:
    def body(content: bytes | None, key: bytes = b"BODY[]") -> bytes:
        return roundtrip(FetchResponse(1, {key: content}))

    assert body(b"plain text") == b'* 1 FETCH (BODY[] "plain text")\r\n'
    assert body(b'say "hi" \\ bye') == b'* 1 FETCH (BODY[] "say \\"hi\\" \\\\ bye")\r\n'
    assert body(b"") == b'* 1 FETCH (BODY[] "")\r\n'
    assert body(None) == b"* 1 FETCH (BODY[] NIL)\r\n"
    assert body(b"a\r\nb") == b"* 1 FETCH (BODY[] {4}\r\na\r\nb)\r\n"
    assert body(b"caf\xc3\xa9") == b"* 1 FETCH (BODY[] {5}\r\ncaf\xc3\xa9)\r\n"
    assert body(b"x" * 1024) == b'* 1 FETCH (BODY[] "' + b"x" * 1024 + b'")\r\n'
    assert body(b"x" * 1025) == b"* 1 FETCH (BODY[] {1025}\r\n" + b"x" * 1025 + b")\r\n"
    # NUL: literal8 only where BINARY allows it
    assert body(b"a\x00b", b"BINARY[1]") == b"* 1 FETCH (BINARY[1] ~{3}\r\na\x00b)\r\n"
    assert body(b"ab", b"BINARY[1]") == b'* 1 FETCH (BINARY[1] "ab")\r\n'
    assert body(b"a\x00b") == b"* 1 FETCH (BODY[] {3}\r\na\x00b)\r\n"


def test_fetch_value_kinds() -> None:
    date = datetime(2024, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=1)))
    resp = FetchResponse(
        7,
        {
            b"UID": 9,
            b"FLAGS": ("\\Seen", "$Junk"),
            b"MODSEQ": 12345678901,
            b"RFC822.SIZE": 44,
            b"INTERNALDATE": date,
            b"ENVELOPE": RawItem(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
            b"BINARY.SIZE[1]": 5,
        },
    )
    assert roundtrip(resp) == (
        b"* 7 FETCH (UID 9 FLAGS (\\Seen $Junk) MODSEQ (12345678901) RFC822.SIZE 44 INTERNALDATE"
        b' " 3-Feb-2024 04:05:06 +0100" ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)'
        b" BINARY.SIZE[1] 5)\r\n"
    )
    with pytest.raises(TypeError):
        write_response(FetchResponse(1, {b"X": 1.5}))  # type: ignore[dict-item]


def test_fetch_flags_line_matches_general_writer() -> None:
    flags = encode_flags(["\\Seen", "$Label1"])
    assert flags == b"\\Seen $Label1"
    line = fetch_flags_line(123, 456, flags, 789)
    assert line == b"* 123 FETCH (UID 456 FLAGS (\\Seen $Label1) MODSEQ (789))\r\n"
    assert line == write_response(
        FetchResponse(123, {b"UID": 456, b"FLAGS": ("\\Seen", "$Label1"), b"MODSEQ": 789})
    )
    assert fetch_flags_line(1, 2, b"") == b"* 1 FETCH (UID 2 FLAGS ())\r\n"
    bulk = fetch_flags_lines([1, 2], [10, 11], [flags, b""], [5, 6])
    assert bulk == fetch_flags_line(1, 10, flags, 5) + fetch_flags_line(2, 11, b"", 6)
    assert fetch_flags_lines([1], [10], [b""]) == fetch_flags_line(1, 10, b"")
    with pytest.raises(ValueError):
        fetch_flags_lines([1, 2], [10], [b""])


def test_fetch_with_cached_verbatim_items() -> None:
    envelope = b'("d" "s" NIL NIL NIL NIL NIL NIL NIL "<m@x>")'
    structure = b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 3 1 NIL NIL NIL NIL)'
    line = fetch_raw_line(
        5,
        [
            b"UID 8",
            b"ENVELOPE " + envelope,
            b"BODYSTRUCTURE " + structure,
            section_item(b"BODY[]", b"Hi\r\n"),
        ],
    )
    assert line == (
        b"* 5 FETCH (UID 8 ENVELOPE "
        + envelope
        + b" BODYSTRUCTURE "
        + structure
        + b" BODY[] {4}\r\nHi\r\n)\r\n"
    )
    assert parse_response(line) == FetchResponse(
        5,
        {
            b"UID": 8,
            b"ENVELOPE": RawItem(envelope),
            b"BODYSTRUCTURE": RawItem(structure),
            b"BODY[]": b"Hi\r\n",
        },
    )
    assert fetch_item(b"MODSEQ", 4) == b"MODSEQ (4)"
    assert fetch_item(b"FLAGS", ()) == b"FLAGS ()"


def test_status_text_cannot_inject_lines() -> None:
    wire = write_response(TaggedResponse("a1", "NO", None, "bad\r\n* 1 EXISTS\x00"))
    assert wire == b"a1 NO bad  * 1 EXISTS \r\n"
    assert (
        write_response(UntaggedStatus("OK", AtomCode("X-FOO", b"a]b\r\n"), "t"))
        == b"* OK [X-FOO a b  ] t\r\n"
    )


def test_status_forms() -> None:
    assert roundtrip(TaggedResponse("A1", "OK", None, "done")) == b"A1 OK done\r\n"
    assert roundtrip(TaggedResponse("A1", "OK")) == b"A1 OK \r\n"
    assert roundtrip(UntaggedStatus("BYE", ALERT, "going")) == b"* BYE [ALERT] going\r\n"
    assert (
        roundtrip(UntaggedStatus("OK", BadCharsetCode(("UTF-8", "KOI8 R")), "x"))
        == b'* OK [BADCHARSET (UTF-8 "KOI8 R")] x\r\n'
    )
    assert roundtrip(TaggedResponse("A1", "OK", None, "caf\udce9 café")) == "A1 OK caf\udce9 café\r\n".encode(
        "utf-8", "surrogateescape"
    )


def test_continuation_with_data() -> None:
    cont = ContinuationRequest.with_data(b"\x00user\x00pass")
    assert write_response(cont) == b"+ AHVzZXIAcGFzcw==\r\n"
    parsed = parse_response(write_response(cont))
    assert isinstance(parsed, ContinuationRequest)
    assert parsed.data == b"\x00user\x00pass"
    assert ContinuationRequest("").data == b""
    with pytest.raises(ValueError):
        _ = ContinuationRequest("not base64!").data


def test_mailbox_encoding() -> None:
    assert write_mailbox("INBOX") == b"INBOX"
    assert write_mailbox("inbox") == b"INBOX"
    assert write_mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert write_mailbox("Entwürfe", utf8=True) == '"Entwürfe"'.encode()
    assert write_mailbox("a b") == b'"a b"'
    assert write_mailbox("a&b") == b"a&-b"
    assert write_mailbox("") == b'""'
    assert write_mailbox("NIL") == b'"NIL"'
    assert write_mailbox("50%") == b'"50%"'
    assert (
        roundtrip(ListResponse((), "/", "Entwürfe/日本"), utf8=True)
        == '* LIST () "/" "Entwürfe/日本"\r\n'.encode()
    )
    assert roundtrip(ListResponse((), "/", "Entwürfe")) == b'* LIST () "/" Entw&APw-rfe\r\n'
    assert roundtrip(StatusResponse("Entwürfe", {"MESSAGES": 1})) == b"* STATUS Entw&APw-rfe (MESSAGES 1)\r\n"
    assert roundtrip(AclResponse("a b", (("anyone", "lr"),))) == b'* ACL "a b" anyone lr\r\n'


def test_namespace_and_id() -> None:
    ns = Namespace((NamespaceDescriptor("", "/"),), None, (NamespaceDescriptor("Öffentlich/", "/"),))
    assert roundtrip(ns) == b'* NAMESPACE (("" "/")) NIL (("&ANY-ffentlich/" "/"))\r\n'
    assert roundtrip(IdResponse({"name": "imapgate", "x": None})) == b'* ID ("name" "imapgate" "x" NIL)\r\n'


def test_resp_text_helper_and_type_error() -> None:
    assert resp_text(None, "x") == b"x"
    with pytest.raises(TypeError):
        write_response("nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (b"body.peek[header.fields (Subject  From)]<0.100>", b"BODY[HEADER.FIELDS (SUBJECT FROM)]<0>"),
        (b"BODY[]", b"BODY[]"),
        (b"binary.peek[1]", b"BINARY[1]"),
        (b"uid", b"UID"),
        (b"BODY[1.2]<5>", b"BODY[1.2]<5>"),
    ],
)
def test_canonical_item_name(name: bytes, key: bytes) -> None:
    assert canonical_item_name(name) == key


def test_naive_internaldate_is_utc() -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5)
    wire = write_response(FetchResponse(1, {b"INTERNALDATE": naive}))
    assert wire == b'* 1 FETCH (INTERNALDATE " 2-Jan-2024 03:04:05 +0000")\r\n'
    assert parse_response(wire) == FetchResponse(1, {b"INTERNALDATE": naive.replace(tzinfo=UTC)})
