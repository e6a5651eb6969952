"""Fuzz: random bytes and mutated valid commands, through ``CommandFramer`` and
``parse_command`` (and straight into ``parse_command``), never raise anything
but ``CodecError`` subclasses."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapgate.protocol.command_parser import parse_authenticate_response, parse_command, parse_idle_done
from imapgate.protocol.errors import ClientProtocolError, CodecError
from imapgate.protocol.framing import CommandFramer, Frame

from .command_corpus import CORPUS

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [case.wire for case in CORPUS]
# Bytes that matter to the grammar, so mutations hit interesting paths.
SPECIAL = st.sampled_from(
    [
        b" ",
        b"(",
        b")",
        b"[",
        b"]",
        b"<",
        b">",
        b'"',
        b"\\",
        b"{",
        b"}",
        b"~",
        b"+",
        b"\r\n",
        b"{5}\r\n",
        b"{0}\r\n",
        b"~{3+}\r\n",
        b"*",
        b"$",
        b":",
        b",",
        b".",
        b"0",
        b"\x00",
        b"\xff",
        b"&",
        b"-",
        b"NIL",
        b"UID ",
        b"NOT ",
        b"OR ",
    ]
)


def run_stream(data: bytes, *, utf8: bool = False) -> None:
    framer = CommandFramer(literal_plus=True, max_line=4096, max_literal=4096, max_frame=16384)
    framer.feed(data)
    while (ev := framer.next_event()) is not None:
        if isinstance(ev, Frame):
            try:
                parse_command(ev.data, utf8=utf8)
            except CodecError as exc:
                assert isinstance(exc, ClientProtocolError)
                assert exc.reason


def parse_direct(frame: bytes, utf8: bool) -> None:
    try:
        parse_command(frame, utf8=utf8)
    except CodecError as exc:
        assert isinstance(exc, ClientProtocolError)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate", "swapcase"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "insert":
            data[i:i] = draw(SPECIAL | st.binary(min_size=1, max_size=4))
        elif op == "replace":
            data[i : i + 1] = draw(SPECIAL | st.binary(min_size=1, max_size=1))
        elif op == "duplicate":
            j = draw(st.integers(i, len(data)))
            data[j:j] = data[i:j]
        elif op == "truncate":
            del data[i:]
        else:
            data[i : i + 8] = bytes(data[i : i + 8]).swapcase()
    return bytes(data)


@SETTINGS
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes(data: bytes, utf8: bool) -> None:
    run_stream(data + b"\r\n", utf8=utf8)
    parse_direct(data, utf8)
    parse_idle_done(data)
    with contextlib.suppress(CodecError):
        parse_authenticate_response(data)


@SETTINGS
@given(st.lists(SPECIAL | st.binary(max_size=6), max_size=30).map(b"".join), st.booleans())
def test_token_soup(data: bytes, utf8: bool) -> None:
    run_stream(b"a1 " + data + b"\r\n", utf8=utf8)
    parse_direct(b"a1 " + data + b"\r\n", utf8)


@SETTINGS
@given(mutated(), st.booleans())
def test_mutated_commands(data: bytes, utf8: bool) -> None:
    run_stream(data + b"\r\nz NOOP\r\n", utf8=utf8)
    parse_direct(data, utf8)
