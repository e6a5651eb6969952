"""Command writer: canonical bytes of the corpus, literal chunking
(synchronizing, LITERAL+, LITERAL-), literal8, UTF-8 names, raw lines."""

from __future__ import annotations

from datetime import date

import pytest

from imapgate.protocol import commands as c
from imapgate.protocol import search as s
from imapgate.protocol.command_parser import parse_command
from imapgate.protocol.command_writer import (
    command_bytes,
    write_authenticate_response,
    write_command,
    write_idle_done,
)
from imapgate.protocol.sequence import SequenceSet

from .command_corpus import CORPUS, Case


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.wire[:40].decode("latin-1"))
def test_corpus_canonical_bytes(case: Case) -> None:
    chunks = write_command(case.command, utf8=case.utf8)
    assert b"".join(chunks) == case.written
    # The canonical form means the same.
    assert parse_command(case.written, utf8=case.utf8) == case.command


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.wire[:40].decode("latin-1"))
def test_corpus_literal_plus_is_one_chunk(case: Case) -> None:
    chunks = write_command(case.command, literal_plus=True, utf8=case.utf8)
    assert len(chunks) == 1
    assert parse_command(chunks[0], utf8=case.utf8) == case.command


def test_synchronizing_literals_split_after_each_header() -> None:
    cmd = c.Login("a1", "fred\r\n", b"pass\x7f\x80word")
    assert write_command(cmd) == [b"a1 LOGIN {6}\r\n", b"fred\r\n {10}\r\n", b"pass\x7f\x80word\r\n"]
    plus = write_command(cmd, literal_plus=True)
    assert plus == [b"a1 LOGIN {6+}\r\nfred\r\n {10+}\r\npass\x7f\x80word\r\n"]


def test_literal_minus_only_small_literals_non_synchronizing() -> None:
    big = b"x" * 5000
    cmd = c.Append("a", "INBOX", (c.AppendMessage(b"small"), c.AppendMessage(big)))
    chunks = write_command(cmd, literal_minus=True)
    assert chunks == [b"a APPEND INBOX {5+}\r\nsmall {5000}\r\n", big + b"\r\n"]


def test_literal_data_and_quoted_strings_are_not_scanned_for_headers() -> None:
    tricky = b"looks like {3}\r\nabc inside"
    cmd = c.Append("a", "INBOX", (c.AppendMessage(tricky),))
    assert write_command(cmd) == [b"a APPEND INBOX {%d}\r\n" % len(tricky), tricky + b"\r\n"]
    quoted = c.Search("b", (s.SearchText("SUBJECT", b"{5}"),))
    assert write_command(quoted) == [b'b SEARCH SUBJECT "{5}"\r\n']


def test_nul_in_append_data_goes_as_literal8() -> None:
    cmd = c.Append("a", "INBOX", (c.AppendMessage(b"a\x00b"),))
    assert write_command(cmd) == [b"a APPEND INBOX ~{3}\r\n", b"a\x00b\r\n"]
    assert write_command(cmd, literal_plus=True) == [b"a APPEND INBOX ~{3+}\r\na\x00b\r\n"]


def test_long_string_goes_as_literal() -> None:
    value = b"y" * 1025
    chunks = write_command(c.Search("a", (s.SearchText("BODY", value),)))
    assert chunks == [b"a SEARCH BODY {1025}\r\n", value + b"\r\n"]


def test_mailbox_encoding() -> None:
    cmd = c.Select("a", "Entwürfe & Co")
    assert command_bytes(cmd) == b'a SELECT "Entw&APw-rfe &- Co"\r\n'
    assert command_bytes(cmd, utf8=True) == b"a SELECT {14}\r\nEntw\xc3\xbcrfe & Co\r\n"
    assert command_bytes(c.Delete("a", "inbox")) == b"a DELETE INBOX\r\n"
    # Patterns keep their case: they are matched, not named.
    assert command_bytes(c.List("a", "", ("inbox*",))) == b'a LIST "" inbox*\r\n'


def test_astring_nil_is_quoted() -> None:
    assert command_bytes(c.Login("a", "NIL", b"nil")) == b'a LOGIN "NIL" "nil"\r\n'


def test_fetch_single_item_bare_but_parenthesised_with_modifiers() -> None:
    flags = parse_command(b"a FETCH 1 (FLAGS)\r\n")
    assert command_bytes(flags) == b"a FETCH 1 FLAGS\r\n"
    assert isinstance(flags, c.Fetch)
    assert command_bytes(c.Fetch("a", SequenceSet.all(), flags.attributes, changedsince=5)) == (
        b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 5)\r\n"
    )


def test_search_key_bytes() -> None:
    key = s.SearchOr(s.SearchNot(s.SearchFlag("\\Seen")), s.SearchAnd((s.SearchDate("ON", date(2024, 2, 29)),
                                                                        s.SearchHeader("X-A", b"b c"))))
    assert bytes(key) == b'OR NOT SEEN (ON 29-Feb-2024 HEADER X-A "b c")'
    with pytest.raises(ValueError):
        s.SearchFlag("\\Foo")


def test_raw_lines() -> None:
    assert write_idle_done() == b"DONE\r\n"
    assert write_authenticate_response(None) == b"*\r\n"
    assert write_authenticate_response(b"\x00u\x00p") == b"AHUAcA==\r\n"
    assert write_authenticate_response(b"") == b"\r\n"
