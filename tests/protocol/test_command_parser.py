"""Command parser: the RFC example corpus (whole, byte by byte through the
framer, and followed by another command), error reasons and tags, raw-line
helpers, credentials masked, and speed on long UID sets."""

from __future__ import annotations

import time

import pytest

from imapgate.protocol import commands as c
from imapgate.protocol import limits
from imapgate.protocol import search as s
from imapgate.protocol.command_parser import parse_authenticate_response, parse_command, parse_idle_done
from imapgate.protocol.errors import ClientProtocolError, InvalidMailboxName
from imapgate.protocol.fetch_items import FetchAttribute, Section
from imapgate.protocol.framing import CommandFramer, Frame
from imapgate.protocol.sequence import SequenceSet

from .command_corpus import CORPUS, Case


def frames_of(data: bytes, *, bytewise: bool) -> list[bytes]:
    framer = CommandFramer()
    out: list[bytes] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        framer.feed(chunk)
        while (ev := framer.next_event()) is not None:
            assert not isinstance(ev, ClientProtocolError), ev
            if isinstance(ev, Frame):
                out.append(ev.data)
    return out


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.wire[:40].decode("latin-1"))
def test_corpus_whole(case: Case) -> None:
    assert parse_command(case.wire, utf8=case.utf8) == case.command


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.wire[:40].decode("latin-1"))
def test_corpus_bytewise_with_trailing_command(case: Case) -> None:
    frames = frames_of(case.wire + b"z9 NOOP\r\n", bytewise=True)
    assert frames == [case.wire, b"z9 NOOP\r\n"]
    assert parse_command(frames[0], utf8=case.utf8) == case.command
    assert parse_command(frames[1]) == c.Noop("z9")


def test_corpus_stream_in_one_chunk() -> None:
    stream = b"".join(case.wire for case in CORPUS if not case.utf8)
    frames = frames_of(stream, bytewise=False)
    assert [parse_command(f) for f in frames] == [case.command for case in CORPUS if not case.utf8]


# --- error reasons and tags ---------------------------------------------------------
@pytest.mark.parametrize(
    ("wire", "tag", "reason"),
    [
        (b"a1 FOO bar\r\n", "a1", "unknown command FOO"),
        (b"a2 LOGIN alice\r\n", "a2", "missing arguments: expected LOGIN userid password"),
        (b"a3 NOOP \r\n", "a3", "trailing space after NOOP (not allowed by RFC 9051)"),
        (b"a4 NOOP now\r\n", "a4", "NOOP takes no arguments, found ' now\\r\\n'"),
        (b"a5 SELECT INBOX \r\n", "a5", "trailing space after SELECT (not allowed by RFC 9051)"),
        (b"a6 FETCH 1 (FLAGS FOO)\r\n", "a6", "FETCH: unknown fetch attribute FOO"),
        (b"a7 UID NOOP\r\n", "a7",
         "UID must be followed by one of COPY, EXPUNGE, FETCH, MOVE, SEARCH, SORT, STORE, THREAD"),
        (b"a8 SEARCH FOO\r\n", "a8", "SEARCH: unknown search key FOO"),
        (b"a9 STATUS INBOX (MESSAGES BOGUS)\r\n", "a9", "unknown STATUS item BOGUS"),
        (b"b1 FETCH 1 (FLAGS) (VANISHED)\r\n", "b1",
         "VANISHED requires UID FETCH with CHANGEDSINCE (RFC 7162 §3.2.6)"),
        (b"b2 FETCH 0 FLAGS\r\n", "b2", "FETCH: a sequence set: 0 is not a valid message number"),
        (b"b3 SEARCH UNSEEN \r\n", "b3", "trailing space after SEARCH (not allowed by RFC 9051)"),
        (b"b4 STORE 1 FLAGZ (\\Seen)\r\n", "b4",
         "STORE: expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT), found 'FLAGZ (\\\\Seen)\\r\\n'"),
        (b"b5 SELECT INBOX (FOO)\r\n", "b5", "unsupported SELECT parameter FOO"),
        (b"b6 SELECT &Jjo extra\r\n", "b6",
         "expected '(' to open SELECT parameters, found 'extra\\r\\n'"),
        (b"b7 LOGIN a b c\r\n", "b7",
         "unexpected extra arguments ' c\\r\\n'; expected LOGIN userid password"),
        (b"b8\r\n", "b8", "expected a space and a command name after the tag"),
        (b"b9 \r\n", "b9", "trailing space after the tag (not allowed by RFC 9051)"),
        (b"c1 APPEND INBOX hello\r\n", "c1",
         "APPEND: expected the message as a literal {n}, found 'hello\\r\\n'"),
        (b"c2 AUTHENTICATE PLAIN !!\r\n", "c2",
         "AUTHENTICATE: expected a base64 initial response, found '!!\\r\\n'"),
        (b"c3 NOTIFY SET (NOWHERE NONE)\r\n", "c3", "unknown NOTIFY mailbox filter NOWHERE"),
        (b"c4 FETCH 1 BODY[0]\r\n", "c4", "FETCH: invalid section part number 0"),
        (b"c5 FETCH 1 BODY[MIME]\r\n", "c5", "FETCH: MIME section requires a part number"),
        (b"c6 UID EXPUNGE\r\n", "c6", "missing arguments: expected UID EXPUNGE uid-set"),
        (b"c7 EXPUNGE 1:5\r\n", "c7", "EXPUNGE takes no arguments, found ' 1:5\\r\\n'"),
        (b"c8 UID FETCH 1 (FLAGS FOO)\r\n", "c8", "UID FETCH: unknown fetch attribute FOO"),
        (b'c9 LSUB "" % x\r\n', "c9",
         "unexpected extra arguments ' x\\r\\n'; expected LSUB reference pattern"),
        (b'd1 LIST "" % %\r\n', "d1", "LIST: expected RETURN, found '%\\r\\n'"),
    ],
)
def test_error_reason_and_tag(wire: bytes, tag: str, reason: str) -> None:
    with pytest.raises(ClientProtocolError) as info:
        parse_command(wire)
    assert info.value.tag == tag
    assert info.value.reason == reason
    assert info.value.position is not None


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        (b"a SELECT &Jjo\r\n", "Select"),
        (b'a STATUS "&AGE-" (MESSAGES)\r\n', "Status"),
        (b"a CREATE &Jjo\r\n", "Create"),
        (b"a RENAME INBOX/x &Jjo\r\n", "Rename"),
        (b'a LIST "" &Jjo\r\n', "List"),
        (b"a UID COPY 1:* &Jjo\r\n", "Copy"),
        (b"a APPEND &Jjo {1+}\r\nx\r\n", "Append"),
    ],
)
def test_invalid_modified_utf7_name_is_reported_after_a_complete_parse(wire: bytes, kind: str) -> None:
    """A name no mailbox can have is not a syntax error: the command is parsed in full
    and handed back with the error, so the server can answer NO (as Dovecot does)."""
    with pytest.raises(InvalidMailboxName) as info:
        parse_command(wire)
    assert info.value.tag == "a"
    assert info.value.reason.startswith("mailbox name is not valid modified UTF-7 (")
    assert type(info.value.command).__name__ == kind
    assert isinstance(info.value, ClientProtocolError)  # still a client error for older callers


def test_no_tag_means_untagged_error() -> None:
    with pytest.raises(ClientProtocolError) as info:
        parse_command(b"* NOOP\r\n")
    assert info.value.tag is None
    assert info.value.reason.startswith("expected a tag")


def test_error_position_points_at_the_problem() -> None:
    with pytest.raises(ClientProtocolError) as info:
        parse_command(b"a1 FETCH 1 (FLAGS FOO)\r\n")
    assert info.value.position == len(b"a1 FETCH 1 (FLAGS ")


def test_nesting_limit() -> None:
    deep = b"a1 SEARCH " + b"NOT " * (limits.MAX_NESTING + 1) + b"ALL\r\n"
    with pytest.raises(ClientProtocolError) as info:
        parse_command(deep)
    assert "MAX_NESTING" in info.value.reason and info.value.tag == "a1"
    depth = limits.MAX_NESTING + 1
    parens = b"a1 SEARCH " + b"(" * depth + b"ALL" + b")" * depth + b"\r\n"
    with pytest.raises(ClientProtocolError):
        parse_command(parens)
    ok = b"a1 SEARCH " + b"NOT " * (limits.MAX_NESTING - 1) + b"ALL\r\n"
    assert isinstance(parse_command(ok), c.Search)


def test_nul_in_plain_literal_rejected_but_allowed_in_literal8() -> None:
    with pytest.raises(ClientProtocolError):
        parse_command(b"a1 LOGIN {3}\r\na\x00b x\r\n")
    cmd = parse_command(b"a1 APPEND INBOX ~{3}\r\na\x00b\r\n")
    assert isinstance(cmd, c.Append) and cmd.messages[0].data == b"a\x00b"


def test_empty_literal() -> None:
    # Parsed whole only: CommandFramer ends the frame right after a ``{0}`` header.
    cmd = parse_command(b"a APPEND INBOX {0}\r\n\r\n")
    assert cmd == c.Append("a", "INBOX", (c.AppendMessage(b""),))


# --- liberal acceptance --------------------------------------------------------------
def test_lower_case_everything() -> None:
    cmd = parse_command(b"x uid store 5 +flags.silent (\\seen \\DELETED)\r\n")
    assert cmd == c.Store("x", SequenceSet.single(5), "add", ("\\Seen", "\\Deleted"), True, True)


def test_inbox_any_case() -> None:
    assert parse_command(b"a COPY 1 iNbOx\r\n") == c.Copy("a", SequenceSet.single(1), "INBOX")
    assert parse_command(b'a STATUS "inbox" (UNSEEN)\r\n') == c.Status("a", "INBOX", ("UNSEEN",))


def test_eight_bit_quoted_search_string() -> None:
    cmd = parse_command('a UID SEARCH CHARSET UTF-8 FROM "Jürgen"\r\n'.encode())
    assert cmd == c.Search("a", (s.SearchText("FROM", "Jürgen".encode()),), True, "UTF-8")


def test_utf8_mailbox_only_when_enabled() -> None:
    wire = 'a CREATE "Entwürfe"\r\n'.encode()
    assert parse_command(wire, utf8=True) == c.Create("a", "Entwürfe")
    with pytest.raises(ClientProtocolError):
        parse_command(wire)


# --- fetch attribute names --------------------------------------------------------------
def test_response_names() -> None:
    cmd = parse_command(
        b"a FETCH 1 (BODY.PEEK[1.HEADER.FIELDS (date From)]<0.100> BINARY.PEEK[2]<5.10> RFC822 UID BODY[]"
        b" BINARY.SIZE[3])\r\n"
    )
    assert isinstance(cmd, c.Fetch)
    assert [a.response_name() for a in cmd.attributes] == [
        b"BODY[1.HEADER.FIELDS (DATE FROM)]<0>", b"BINARY[2]<5>", b"RFC822", b"UID", b"BODY[]",
        b"BINARY.SIZE[3]",
    ]
    assert [a.sets_seen for a in cmd.attributes] == [False, False, True, False, True, False]


def test_fetch_attribute_bytes_and_seen() -> None:
    a = FetchAttribute("BODY", Section((1, 2), "TEXT"), (0, 512), peek=True)
    assert bytes(a) == b"BODY.PEEK[1.2.TEXT]<0.512>"
    assert not a.sets_seen
    assert FetchAttribute("RFC822.TEXT").sets_seen
    assert not FetchAttribute("RFC822.HEADER").sets_seen
    assert not FetchAttribute("BODY").sets_seen


# --- raw lines ---------------------------------------------------------------------------
def test_idle_done() -> None:
    assert parse_idle_done(b"DONE\r\n")
    assert parse_idle_done(b"done\r\n")
    assert not parse_idle_done(b"a1 NOOP\r\n")
    assert not parse_idle_done(b"DONE \r\n")


def test_authenticate_response() -> None:
    assert parse_authenticate_response(b"*\r\n") is None
    assert parse_authenticate_response(b"\r\n") == b""
    assert parse_authenticate_response(b"AGFsaWNlAHNlY3JldA==\r\n") == b"\x00alice\x00secret"
    with pytest.raises(ClientProtocolError):
        parse_authenticate_response(b"not base64!\r\n")
    with pytest.raises(ClientProtocolError):
        parse_authenticate_response(b"AGFsaWNlAHNlY3JldA=\r\n")


# --- credentials ---------------------------------------------------------------------------
def test_credentials_are_masked() -> None:
    login = parse_command(b'a LOGIN alice "s3cr3t-pw"\r\n')
    auth = parse_command(b"a AUTHENTICATE PLAIN AGFsaWNlAHMzY3IzdC1wdw==\r\n")
    for cmd in (login, auth):
        assert "s3cr3t" not in repr(cmd) and "s3cr3t" not in str(cmd)
        assert "AGFsaWNl" not in repr(cmd)
        assert "<hidden>" in repr(cmd)
    assert "alice" in repr(login)


def test_append_repr_shows_size_not_content() -> None:
    cmd = parse_command(b"a APPEND INBOX {11}\r\nSecret mail\r\n")
    assert "Secret" not in repr(cmd) and "<11 bytes>" in repr(cmd)


# --- speed ---------------------------------------------------------------------------------
def test_long_uid_set_is_fast() -> None:
    uid_set = b",".join(b"%d" % (2 * i + 1) for i in range(50_000))
    frame = b"a UID FETCH " + uid_set + b" (FLAGS)\r\n"
    store = b"b UID STORE " + uid_set + b" +FLAGS.SILENT (\\Seen)\r\n"
    start = time.perf_counter()
    fetch_cmd = parse_command(frame)
    store_cmd = parse_command(store)
    elapsed = time.perf_counter() - start
    assert isinstance(fetch_cmd, c.Fetch) and len(fetch_cmd.sequence_set.ranges) == 50_000
    assert isinstance(store_cmd, c.Store)
    assert elapsed < 0.5, elapsed


def test_too_many_ranges_rejected() -> None:
    uid_set = b",".join(b"%d" % (2 * i + 1) for i in range(limits.MAX_LIST_ITEMS + 1))
    with pytest.raises(ClientProtocolError) as info:
        parse_command(b"a UID FETCH " + uid_set + b" (FLAGS)\r\n")
    assert "MAX_LIST_ITEMS" in info.value.reason
