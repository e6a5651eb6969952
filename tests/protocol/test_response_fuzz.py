"""Fuzz: random and mutated upstream bytes through ``ResponseFramer`` and
``parse_response`` never raise anything but ``CodecError`` subclasses, and
never reach the parser's internal-error safety net."""

from __future__ import annotations

import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from imapgate.protocol.errors import CodecError
from imapgate.protocol.framing import Frame, ResponseFramer
from imapgate.protocol.response_parser import parse_response
from imapgate.protocol.response_writer import write_response

from .test_response_parser import CANONICAL, QUIRKS, THREAD_5256

SEEDS = [wire for wire, _ in CANONICAL] + [wire for wire, _, _ in QUIRKS] + [THREAD_5256]
SPECIAL = b'()[]{}<>"\\ *+~%\r\n0123456789NILnil.:,$-\x00\x80\xff'
TOKENS = [
    b"(",
    b")",
    b"{5}\r\n",
    b"~{3}\r\n",
    b"{0}\r\n",
    b"{99999999999999999999}\r\n",
    b"NIL",
    b'"',
    b"\\",
    b" ",
    b"\r\n",
    b"[",
    b"]",
    b"BODY[",
    b"FETCH",
    b"* ",
    b"MODSEQ (",
    b"(EARLIER) ",
    b"UID ",
    b"4294967296",
    b"9223372036854775808",
    b"0",
    b"&",
    b"&-",
    b"&Jjo",
    b"(TAG ",
    b"CHILDINFO",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = bytes([rng.choice(SPECIAL)])
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 4:
            other = rng.choice(SEEDS)
            start = rng.randrange(len(other))
            buf[pos:pos] = other[start : start + rng.randint(1, 30)]
        elif op == 5:
            buf = buf[:pos]
        else:
            chunk = buf[pos : pos + rng.randint(1, 20)]
            buf[pos:pos] = chunk * rng.randint(2, 40)
    return bytes(buf)


def run(data: bytes, rng: random.Random) -> int:
    """Feed ``data`` in random chunks; parse every frame; return frames parsed."""
    framer = ResponseFramer(max_line=4096, max_literal=4096, max_frame=16384)
    parsed = 0
    i = 0
    while i < len(data):
        n = rng.randint(1, 64)
        framer.feed(data[i : i + n])
        i += n
        while (event := framer.next_event()) is not None:
            if not isinstance(event, Frame):
                assert isinstance(event, CodecError)
                continue
            try:
                resp = parse_response(event.data)
            except CodecError as exc:
                assert not exc.reason.startswith("internal"), (event.data, exc)
                continue
            # anything that parses must write and parse again to the same value
            assert parse_response(write_response(resp)) == resp, event.data
            parsed += 1
    return parsed


def test_mutated_corpus() -> None:
    rng = random.Random(20240917)
    deadline = time.monotonic() + 8.0
    rounds = 0
    while time.monotonic() < deadline and rounds < 60_000:
        rounds += 1
        stream = b"".join(mutate(rng, rng.choice(SEEDS)) for _ in range(rng.randint(1, 4)))
        run(stream, rng)
    assert rounds > 1000


def test_random_bytes() -> None:
    rng = random.Random(7)
    alphabet = SPECIAL + b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for _ in range(3000):
        size = rng.randint(0, 200)
        data = bytes(rng.choice(alphabet) for _ in range(size))
        run(b"* " + data + b"\r\n", rng)
        run(data + b"\r\n", rng)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_hypothesis_binary(data: bytes) -> None:
    for frame in (data, data + b"\r\n", b"* " + data + b"\r\n", b"* 1 FETCH (" + data + b")\r\n"):
        try:
            parse_response(frame)
        except CodecError as exc:
            assert not exc.reason.startswith("internal"), (frame, exc)
