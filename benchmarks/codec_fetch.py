"""FETCH throughput of the response codec: parse (direct and through
``ResponseFramer``) and write, for flag-sync lines and for lines with a
realistic ENVELOPE + BODYSTRUCTURE; imapclient's parser on the same lines for
comparison when it is importable.

Run: ``.venv/bin/python benchmarks/codec_fetch.py [--lines N] [--repeat R]``.
Every figure is the best of R runs (the least disturbed by other load).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections.abc import Callable

from imapgate.protocol.framing import Frame, ResponseFramer
from imapgate.protocol.response_parser import parse_response
from imapgate.protocol.response_writer import (
    encode_flags,
    fetch_flags_line,
    fetch_flags_lines,
    fetch_raw_line,
    write_response,
)
from imapgate.protocol.responses import FetchResponse, RawItem

FLAG_SETS = [b"\\Seen", b"\\Seen $Label1", b"", b"\\Seen \\Flagged", b"\\Answered \\Seen NonJunk"]

ENVELOPE = (
    b'("Tue, 10 Sep 2024 09:14:03 +0200" "=?UTF-8?Q?Angebot_f=C3=BCr_Q4_/_Rahmenvertrag?=" '
    b'(("Erika Mustermann" NIL "erika.mustermann" "example-lieferant.de")) '
    b'(("Erika Mustermann" NIL "erika.mustermann" "example-lieferant.de")) '
    b'(("Vertrieb" NIL "vertrieb" "example-lieferant.de")) '
    b'(("Info Team" NIL "info" "company.example")) '
    b'(("Max Muster" NIL "max" "company.example")("Anna Beispiel" NIL "anna" "company.example")) NIL '
    b'"<CAHx7f2=ab12cd34@mail.example-lieferant.de>" "<20240910071403.1234567@mail.example-lieferant.de>")'
)
BODYSTRUCTURE = (
    b'((("TEXT" "PLAIN" ("CHARSET" "UTF-8" "FORMAT" "flowed") NIL NIL "QUOTED-PRINTABLE" 2311 61 NIL NIL NIL '
    b'NIL)("TEXT" "HTML" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" 9843 201 NIL NIL NIL NIL) '
    b'"ALTERNATIVE" ("BOUNDARY" "000000000000b1c2d3e4f5a6b7c8") NIL NIL NIL)("APPLICATION" "PDF" '
    b'("NAME" "Angebot_Q4_2024.pdf") NIL NIL "BASE64" 184322 NIL ("ATTACHMENT" ("FILENAME" '
    b'"Angebot_Q4_2024.pdf")) NIL NIL)("IMAGE" "PNG" ("NAME" "logo.png") "<logo@x>" NIL "BASE64" 8840 NIL '
    b'("INLINE" ("FILENAME" "logo.png")) NIL NIL) "MIXED" ("BOUNDARY" "000000000000a1b2c3d4e5f6a7b8") NIL '
    b'("DE") NIL)'
)


def simple_lines(n: int) -> list[bytes]:
    return [
        b"* %d FETCH (UID %d FLAGS (%s) MODSEQ (%d))\r\n" % (i, i + 1000, FLAG_SETS[i % 5], 7_000_000 + i)
        for i in range(1, n + 1)
    ]


def rich_lines(n: int) -> list[bytes]:
    return [
        b'* %d FETCH (UID %d RFC822.SIZE %d FLAGS (%s) INTERNALDATE "10-Sep-2024 09:14:05 +0200" ENVELOPE %s '
        b"BODYSTRUCTURE %s)\r\n" % (i, i + 1000, 200_000 + i, FLAG_SETS[i % 5], ENVELOPE, BODYSTRUCTURE)
        for i in range(1, n + 1)
    ]


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def parse_direct(lines: list[bytes]) -> None:
    for line in lines:
        parse_response(line)


def parse_framed(buf: bytes) -> int:
    framer = ResponseFramer()
    framer.feed(buf)
    n = 0
    while (event := framer.next_event()) is not None:
        assert isinstance(event, Frame)
        parse_response(event.data)
        n += 1
    return n


def frame_only(buf: bytes) -> int:
    framer = ResponseFramer()
    framer.feed(buf)
    n = 0
    while framer.next_event() is not None:
        n += 1
    return n


def machine() -> str:
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()} ({platform.machine()})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n: int = args.lines
    rep: int = args.repeat
    print(f"machine: {machine()}")
    print(f"{n} lines, best of {rep}\n")

    def report(label: str, count: int, seconds: float) -> None:
        print(f"{label:<58} {count / seconds:>12,.0f} lines/s  ({seconds * 1000:8.1f} ms)")

    simple = simple_lines(n)
    simple_buf = b"".join(simple)
    print(f"-- UID/FLAGS/MODSEQ lines (~{len(simple_buf) // n} bytes each)")
    report("parse_response, line by line", n, best(rep, lambda: parse_direct(simple)))
    report("ResponseFramer + parse_response, one big buffer", n, best(rep, lambda: parse_framed(simple_buf)))
    report("ResponseFramer alone (framing cost)", n, best(rep, lambda: frame_only(simple_buf)))

    seqs = list(range(1, n + 1))
    uids = [i + 1000 for i in seqs]
    flags = [FLAG_SETS[i % 5] for i in seqs]
    modseqs = [7_000_000 + i for i in seqs]
    report("write fetch_flags_lines (bulk, one buffer)", n,
           best(rep, lambda: fetch_flags_lines(seqs, uids, flags, modseqs)))
    report("write fetch_flags_line, one call per line", n, best(rep, lambda: [
        fetch_flags_line(s, u, f, m) for s, u, f, m in zip(seqs, uids, flags, modseqs, strict=True)]))
    objects = [parse_response(line) for line in simple]
    report("write_response(FetchResponse), general writer", n,
           best(rep, lambda: [write_response(o) for o in objects]))
    assert b"".join(write_response(o) for o in objects) == simple_buf
    assert fetch_flags_lines(seqs, uids, flags, modseqs) == simple_buf

    rn = max(n // 10, 1)
    rich = rich_lines(rn)
    rich_buf = b"".join(rich)
    size = len(rich_buf) // rn
    print(f"\n-- UID/RFC822.SIZE/FLAGS/INTERNALDATE/ENVELOPE/BODYSTRUCTURE lines (~{size} bytes each)")
    report("parse_response, line by line", rn, best(rep, lambda: parse_direct(rich)))
    report("ResponseFramer + parse_response, one big buffer", rn, best(rep, lambda: parse_framed(rich_buf)))
    rich_objects = [parse_response(line) for line in rich]
    for o in rich_objects:
        assert isinstance(o, FetchResponse) and isinstance(o.items[b"ENVELOPE"], RawItem)
    report("write_response(FetchResponse), general writer", rn,
           best(rep, lambda: [write_response(o) for o in rich_objects]))
    assert b"".join(write_response(o) for o in rich_objects) == rich_buf
    flag_bytes = {f: encode_flags(f.decode().split()) for f in FLAG_SETS}
    env_item = b"ENVELOPE " + ENVELOPE
    bs_item = b"BODYSTRUCTURE " + BODYSTRUCTURE
    date_item = b'INTERNALDATE "10-Sep-2024 09:14:05 +0200"'

    def cached() -> list[bytes]:
        return [
            fetch_raw_line(i, [b"UID %d RFC822.SIZE %d FLAGS (%s)" % (i + 1000, 200_000 + i,
                                                                      flag_bytes[FLAG_SETS[i % 5]]),
                               date_item, env_item, bs_item])
            for i in range(1, rn + 1)
        ]

    report("write fetch_raw_line from cached items", rn, best(rep, cached))
    assert b"".join(cached()) == rich_buf

    try:
        from imapclient.response_parser import parse_fetch_response  # type: ignore[import-untyped]
    except ImportError:
        print("\nimapclient not importable: no comparison")
        return
    # imaplib hands imapclient the data after "* " with the FETCH keyword removed.
    ic_simple = [line[2:-2].replace(b" FETCH ", b" ", 1) for line in simple]
    ic_rich = [line[2:-2].replace(b" FETCH ", b" ", 1) for line in rich]
    print("\n-- imapclient.response_parser.parse_fetch_response, same lines")
    report("UID/FLAGS/MODSEQ lines", n, best(min(rep, 3), lambda: parse_fetch_response(ic_simple)))
    report("ENVELOPE + BODYSTRUCTURE lines", rn, best(min(rep, 3), lambda: parse_fetch_response(ic_rich)))


if __name__ == "__main__":
    main()
