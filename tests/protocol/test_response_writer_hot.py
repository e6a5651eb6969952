"""Response writer: the hot-path forms the IMAP server sends through
(``flags_body``, FETCH item pieces, column-wise flag lines, EXISTS/EXPUNGE/
VANISHED/SEARCH lines, the session's status lines).  Each must be
byte-identical to ``write_response`` of the typed value and parse back to it."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from imapgate.protocol import response_writer as rw
from imapgate.protocol.response_parser import parse_response
from imapgate.protocol.responses import (
    CANNOT,
    CLIENTBUG,
    UNAVAILABLE,
    AtomCode,
    ContinuationRequest,
    Exists,
    Expunge,
    FetchResponse,
    FetchValue,
    RawItem,
    Recent,
    Response,
    Search,
    TaggedResponse,
    UntaggedStatus,
    Vanished,
)
from imapgate.protocol.sequence import SequenceSet


def same(wire: bytes, resp: Response) -> None:
    """``wire`` is what the general writer makes of ``resp``, and parses back to it."""
    assert wire == rw.write_response(resp)
    assert parse_response(wire) == resp


def test_flags_body_is_cached_and_matches_encode_flags() -> None:
    flags = ("\\Answered", "\\Seen", "$Label1")
    body = rw.flags_body(flags)
    assert body == b"\\Answered \\Seen $Label1" == rw.encode_flags(flags)
    assert rw.flags_body(flags) is body  # one bytes object per combination
    assert rw.flags_body(()) == b""


def test_flags_body_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rw, "_FLAGS_BODY", {})
    monkeypatch.setattr(rw, "_FLAGS_BODY_MAX", 3)
    for i in range(10):
        assert rw.flags_body((f"$K{i}",)) == b"$K%d" % i
        assert len(rw._FLAGS_BODY) <= 3


def test_fetch_item_pieces_match_the_general_writer() -> None:
    when = datetime(2024, 9, 10, 9, 14, 5, tzinfo=timezone(timedelta(hours=2)))
    envelope = b'("d" "s" NIL NIL NIL NIL NIL NIL NIL "<m@x>")'
    pieces: list[tuple[bytes, bytes, FetchValue]] = [
        (rw.uid_item(4_294_967_295), b"UID", 4_294_967_295),
        (rw.flags_item(rw.flags_body(("\\Seen", "$Junk"))), b"FLAGS", ("\\Seen", "$Junk")),
        (rw.modseq_item(12_345_678_901), b"MODSEQ", 12_345_678_901),
        (rw.internaldate_item(when), b"INTERNALDATE", when),
        (rw.size_item(0), b"RFC822.SIZE", 0),
        (rw.verbatim_item(b"ENVELOPE", envelope), b"ENVELOPE", RawItem(envelope)),
        (rw.verbatim_item(b"BODYSTRUCTURE", None), b"BODYSTRUCTURE", RawItem(b"NIL")),
        (rw.binary_size_item(b"BINARY.SIZE[1]", b"512"), b"BINARY.SIZE[1]", 512),
        (rw.binary_size_item(b"BINARY.SIZE[2]", None), b"BINARY.SIZE[2]", 0),
        (rw.section_item(b"BINARY[1]", b"a\x00b"), b"BINARY[1]", b"a\x00b"),
        (rw.section_item(b"BODY[]<0>", b"Hi\r\n"), b"BODY[]<0>", b"Hi\r\n"),
    ]
    for wire, key, value in pieces:
        assert wire == rw.fetch_item(key, value), key
    assert rw.flags_item(rw.flags_body(())) == rw.fetch_item(b"FLAGS", ()) == b"FLAGS ()"
    line = rw.fetch_raw_line(9, [wire for wire, _, _ in pieces])
    same(line, FetchResponse(9, {key: value for _, key, value in pieces}))


@pytest.mark.parametrize("columns", list(itertools.product((False, True), repeat=3)))
def test_fetch_flags_lines_every_column_combination(columns: tuple[bool, bool, bool]) -> None:
    want_uid, want_flags, want_modseq = columns
    seqs = [1, 2, 3]
    uids = [10, 11, 4_000_000_000]
    combos = [("\\Seen",), (), ("\\Flagged", "$Label1")]
    modseqs = [5, 1, 9_000_000_000]
    wire = rw.fetch_flags_lines(
        seqs,
        uids if want_uid else None,
        [rw.flags_body(f) for f in combos] if want_flags else None,
        modseqs if want_modseq else None,
    )
    expected = []
    for i, seq in enumerate(seqs):
        items: dict[bytes, FetchValue] = {}
        if want_uid:
            items[b"UID"] = uids[i]
        if want_flags:
            items[b"FLAGS"] = combos[i]
        if want_modseq:
            items[b"MODSEQ"] = modseqs[i]
        expected.append(FetchResponse(seq, items))
    assert wire == b"".join(rw.write_response(r) for r in expected)
    if want_uid or want_flags or want_modseq:  # "FETCH ()" is no valid response
        lines = wire.split(b"\r\n")[:-1]
        assert [parse_response(line + b"\r\n") for line in lines] == expected
    assert rw.fetch_flags_lines([], [] if want_uid else None, [] if want_flags else None,
                                [] if want_modseq else None) == b""


def test_fetch_flags_lines_columns_must_match() -> None:
    with pytest.raises(ValueError):
        rw.fetch_flags_lines([1, 2], [10], [b""])
    with pytest.raises(ValueError):
        rw.fetch_flags_lines([1, 2], None, None, [3])


def test_fetch_modseq_line() -> None:
    wire = rw.fetch_modseq_line(3, 7, 42)
    assert wire == b"* 3 FETCH (UID 7 MODSEQ (42))\r\n"
    same(wire, FetchResponse(3, {b"UID": 7, b"MODSEQ": 42}))


def test_mailbox_size_lines() -> None:
    same(rw.exists_line(0), Exists(0))
    same(rw.exists_line(100_000), Exists(100_000))
    same(rw.recent_line(2), Recent(2))
    same(rw.expunge_line(17), Expunge(17))
    assert rw.expunge_line(17) == b"* 17 EXPUNGE\r\n"


def test_vanished_lines() -> None:
    uids = SequenceSet.from_ids([1, 2, 3, 9])
    assert rw.vanished_line(uids) == b"* VANISHED 1:3,9\r\n"
    same(rw.vanished_line(uids), Vanished(uids))
    assert rw.vanished_line(uids, earlier=True) == b"* VANISHED (EARLIER) 1:3,9\r\n"
    same(rw.vanished_line(uids, earlier=True), Vanished(uids, earlier=True))


def test_search_lines() -> None:
    ids = list(range(1, 1001))
    assert rw.number_list(ids) == b" ".join(b"%d" % i for i in ids)
    assert rw.number_list([]) == b""
    same(rw.search_line(ids), Search(tuple(ids)))
    same(rw.search_line([4, 2], 77), Search((4, 2), 77))
    assert rw.search_line([]) == b"* SEARCH\r\n"
    same(rw.search_line([]), Search(()))
    assert rw.search_line([], 5) == b"* SEARCH (MODSEQ 5)\r\n"
    assert rw.search_line_joined(rw.number_list(ids)) == rw.search_line(ids)
    assert rw.search_line_joined(b"") == b"* SEARCH\r\n"


def test_session_status_lines() -> None:
    """The exact lines the session driver sends for errors, refusals and BYE."""
    assert rw.write_response(TaggedResponse("a1", "BAD", CANNOT, "FOO is not supported by this server")) == (
        b"a1 BAD [CANNOT] FOO is not supported by this server\r\n"
    )
    assert rw.write_response(TaggedResponse("a2", "BAD", CLIENTBUG, "FETCH: log in first")) == (
        b"a2 BAD [CLIENTBUG] FETCH: log in first\r\n"
    )
    assert rw.write_response(TaggedResponse("a3", "NO", AtomCode("TOOBIG"), "")) == b"a3 NO [TOOBIG] \r\n"
    assert rw.write_response(TaggedResponse("a4", "NO", None, "")) == b"a4 NO \r\n"
    assert rw.write_response(UntaggedStatus("BAD", None, "line too long")) == b"* BAD line too long\r\n"
    same(rw.write_response(UntaggedStatus("BYE", None, "Autologout; idle for too long")),
         UntaggedStatus("BYE", None, "Autologout; idle for too long"))
    assert rw.write_response(UntaggedStatus("BYE", UNAVAILABLE, "Too many connections; try again later")) == (
        b"* BYE [UNAVAILABLE] Too many connections; try again later\r\n"
    )
    # An admin's reason with a code in its text is written as given.
    assert rw.write_response(UntaggedStatus("BYE", None, "[UNAVAILABLE] account removed")) == (
        b"* BYE [UNAVAILABLE] account removed\r\n"
    )
    assert rw.write_response(ContinuationRequest()) == b"+ \r\n"
    assert rw.write_response(ContinuationRequest("idling")) == b"+ idling\r\n"
    assert rw.write_response(ContinuationRequest("Ready for literal data")) == b"+ Ready for literal data\r\n"


def test_status_text_never_fails_to_encode() -> None:
    # Escaped bytes from a wire go out as those bytes; any other lone surrogate
    # (never from a wire) becomes '?' instead of failing the error report.
    assert rw.write_response(TaggedResponse("a", "NO", None, "x\udce9")) == b"a NO x\xe9\r\n"
    assert rw.write_response(TaggedResponse("a", "NO", None, "x\ud800 y\r\n")) == b"a NO x? y  \r\n"
