"""Frame assembly: whole, byte by byte, with trailing data; limits."""

from __future__ import annotations

from imapgate.protocol import limits
from imapgate.protocol.errors import ClientProtocolError, UpstreamProtocolError
from imapgate.protocol.framing import CommandFramer, Frame, NeedContinuation, ResponseFramer


def drain(framer: CommandFramer | ResponseFramer) -> list[object]:
    out: list[object] = []
    while (ev := framer.next_event()) is not None:
        out.append(ev)
    return out


def feed_bytewise(framer: CommandFramer | ResponseFramer, data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
        out.extend(drain(framer))
    return out


STREAM = (
    b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n"
    b"a2 SELECT INBOX\r\n"
    b"a3 APPEND INBOX (\\Seen) {11}\r\nHello\r\nWorld\r\n"
)


def test_whole_stream() -> None:
    f = CommandFramer()
    f.feed(STREAM)
    events = drain(f)
    frames = [e for e in events if isinstance(e, Frame)]
    assert [fr.data for fr in frames] == [
        b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
        b"a2 SELECT INBOX\r\n",
        b"a3 APPEND INBOX (\\Seen) {11}\r\nHello\r\nWorld\r\n",
    ]
    # Literal bytes already present: a continuation is still announced for
    # synchronizing literals; the driver may skip sending it when data is there.
    assert sum(isinstance(e, NeedContinuation) for e in events) == 2


def test_byte_by_byte_same_frames() -> None:
    f = CommandFramer()
    events = feed_bytewise(f, STREAM)
    frames = [e.data for e in events if isinstance(e, Frame)]
    assert b"".join(frames) == STREAM
    assert [e for e in events if isinstance(e, NeedContinuation)] == [
        NeedContinuation(5), NeedContinuation(11)
    ]


def test_trailing_partial_data_waits() -> None:
    f = CommandFramer()
    f.feed(b"a1 NOOP\r\na2 NO")
    assert f.next_event() == Frame(b"a1 NOOP\r\n")
    assert f.next_event() is None
    f.feed(b"OP\r\n")
    assert f.next_event() == Frame(b"a2 NOOP\r\n")


def test_overlong_line_reported_once_and_resyncs() -> None:
    f = CommandFramer(max_line=100)
    f.feed(b"t9 " + b"x" * 500)
    err = f.next_event()
    assert isinstance(err, ClientProtocolError) and err.tag == "t9" and err.code == "TOOBIG"
    f.feed(b"y" * 5000)
    assert f.next_event() is None
    assert f.buffered <= 1  # memory stays bounded while discarding
    f.feed(b"\r\nt10 NOOP\r\n")
    assert f.next_event() == Frame(b"t10 NOOP\r\n")


def test_sync_literal_too_large_resets_without_reading_data() -> None:
    f = CommandFramer()
    f.feed(b"a1 LOGIN {%d}\r\n" % (limits.MAX_COMMAND_LITERAL + 1))
    err = f.next_event()
    assert isinstance(err, ClientProtocolError) and err.tag == "a1"
    f.feed(b"a2 NOOP\r\n")
    assert f.next_event() == Frame(b"a2 NOOP\r\n")


def test_append_gets_the_larger_literal_limit() -> None:
    f = CommandFramer()
    f.feed(b"a1 APPEND INBOX {%d}\r\n" % (limits.MAX_COMMAND_LITERAL * 2))
    assert f.next_event() == NeedContinuation(limits.MAX_COMMAND_LITERAL * 2)


def test_nonsync_literal_over_limit_is_discarded() -> None:
    f = CommandFramer(literal_plus=False)
    f.feed(b"a1 LOGIN {5000+}\r\n" + b"z" * 5000 + b" x\r\na2 NOOP\r\n")
    err = f.next_event()
    assert isinstance(err, ClientProtocolError) and "LITERAL-" in err.reason
    assert f.next_event() == Frame(b"a2 NOOP\r\n")


def test_raw_line_mode_ignores_literal_syntax() -> None:
    f = CommandFramer()
    f.raw_line()
    f.feed(b"abc{5}\r\n")
    assert f.next_event() == Frame(b"abc{5}\r\n")


def test_response_framer_big_literal_in_chunks() -> None:
    f = ResponseFramer()
    body = b"x" * 100_000
    wire = b"* 1 FETCH (BODY[] {100000}\r\n" + body + b")\r\n* 2 EXISTS\r\n"
    frames = []
    for i in range(0, len(wire), 4096):
        f.feed(wire[i : i + 4096])
        frames.extend(drain(f))
    assert frames == [Frame(wire[: -len(b"* 2 EXISTS\r\n")]), Frame(b"* 2 EXISTS\r\n")]


def test_response_framer_error_type_is_upstream() -> None:
    f = ResponseFramer(max_line=10)
    f.feed(b"* " + b"a" * 20)
    assert isinstance(f.next_event(), UpstreamProtocolError)


def test_empty_literal_continues_the_same_frame() -> None:
    f = CommandFramer()
    f.feed(b"a APPEND INBOX {0}\r\n\r\nb NOOP\r\n")
    events = drain(f)
    frames = [e for e in events if isinstance(e, Frame)]
    assert frames == [Frame(b"a APPEND INBOX {0}\r\n\r\n"), Frame(b"b NOOP\r\n")]
