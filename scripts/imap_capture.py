"""Summarise the IMAP traffic in a tshark capture: which commands each client sent, and how
every one of them was answered.

Used by ``scripts/check_clients.py``; also usable alone::

    .venv/bin/python scripts/imap_capture.py cap.pcapng --port 1143 [--transcript out.txt]

Only plaintext IMAP can be read (the demo gateway on 127.0.0.1). Credentials never leave this
module: LOGIN arguments and AUTHENTICATE continuation lines are replaced by ``<redacted>``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?$")
_TAGGED_STATUS = re.compile(rb"^(\S+) (OK|NO|BAD)\b ?(.*)$", re.IGNORECASE)
_UNTAGGED_BAD = re.compile(rb"^\* (NO|BAD|BYE)\b ?(.*)$", re.IGNORECASE)


@dataclass
class Command:
    tag: str
    name: str  # upper case; "UID FETCH" for UID commands
    line: str  # redacted, truncated
    status: str = "(no answer)"
    text: str = ""


@dataclass
class Stream:
    number: int
    client_port: int
    client: str = "unknown"
    commands: list[Command] = field(default_factory=list)
    untagged_problems: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)


@dataclass
class _Raw:
    client_port: int
    data: dict[bool, bytearray] = field(default_factory=lambda: {False: bytearray(), True: bytearray()})
    # (from_server, offset after the segment), in capture order: to interleave the transcript
    order: list[tuple[bool, int]] = field(default_factory=list)


def _read_segments(pcap: str, port: int) -> dict[int, _Raw]:
    """Both directions' bytes per TCP stream.

    Loopback captures have neither loss nor reordering, so concatenating payloads in frame order
    is the byte stream.
    """
    out = subprocess.run(
        [
            "tshark",
            "-r",
            pcap,
            "-Y",
            "tcp.len > 0",
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.payload",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    streams: dict[int, _Raw] = {}
    for row in out.splitlines():
        number, src, dst, payload = row.split("\t")
        from_server = int(src) == port
        raw = streams.setdefault(int(number), _Raw(int(dst) if from_server else int(src)))
        raw.data[from_server].extend(bytes.fromhex(payload.replace(":", "")))
        raw.order.append((from_server, len(raw.data[from_server])))
    return streams


def _lines(data: bytes) -> list[tuple[bytes, int]]:
    """Split into IMAP lines, each with the offset of its end; a literal's bytes are folded into
    the line announcing it."""
    lines: list[tuple[bytes, int]] = []
    pos = 0
    current = b""
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            current += data[pos:]
            pos = len(data)
            break
        line = data[pos:end].rstrip(b"\r")
        pos = end + 1
        literal = _LITERAL.search(line)
        if literal:
            size = int(literal.group(1))
            current += line + b"<literal %d bytes>" % size
            pos += size
            continue
        lines.append((current + line, pos))
        current = b""
    if current:
        lines.append((current, pos))
    return lines


def _position(order: list[tuple[bool, int]], from_server: bool, end: int) -> int:
    """Index of the segment that completed a line: the transcript's sort key."""
    for index, (direction, offset) in enumerate(order):
        if direction == from_server and offset >= end:
            return index
    return len(order)


def _guess_client(stream: Stream, client_lines: list[bytes]) -> str:
    for line in client_lines:
        found = re.search(rb'ID \("name" "([^"]+)"(?: "version" "([^"]+)")?', line, re.IGNORECASE)
        if found:
            version = found.group(2) or b"?"
            return f"{found.group(1).decode()} {version.decode()}"
    tags = [c.tag for c in stream.commands]
    if tags and all(re.fullmatch(r"[a-z]\d{4}", t) for t in tags):
        return "mutt/neomutt (tags a0000)"
    if tags and all(re.fullmatch(r"[A-Z]{4}\d+", t) for t in tags):
        return "python imaplib (the check script)"
    return "unknown"


def _command(line: bytes) -> Command | None:
    parts = line.split(b" ", 3)
    if len(parts) < 2 or parts[0] in (b"*", b"+"):
        return None
    name = parts[1].upper().decode(errors="replace")
    if name == "UID" and len(parts) > 2:
        name = "UID " + parts[2].upper().decode(errors="replace")
    shown = line.decode(errors="replace")
    if name == "LOGIN":
        shown = f"{parts[0].decode()} LOGIN <redacted>"
    elif name == "AUTHENTICATE" and len(parts) > 3:
        shown = f"{parts[0].decode()} AUTHENTICATE {parts[2].decode()} <redacted>"
    return Command(parts[0].decode(errors="replace"), name, shown[:160])


def analyse(pcap: str, port: int) -> list[Stream]:
    result: list[Stream] = []
    for number, raw in sorted(_read_segments(pcap, port).items()):
        stream = Stream(number, raw.client_port)
        client_lines = _lines(bytes(raw.data[False]))
        by_tag: dict[str, Command] = {}
        shown: list[tuple[int, int, str]] = []  # (segment, order within, text)
        authenticating = False
        for line, end in client_lines:
            command = None if authenticating else _command(line)
            if command is None:
                # An AUTHENTICATE response line or IDLE's DONE: never a command.
                text = "<redacted>" if authenticating else line.decode(errors="replace")[:160]
                authenticating = False
            else:
                # Without SASL-IR the credentials follow on the next line.
                authenticating = command.name == "AUTHENTICATE" and not command.line.endswith("<redacted>")
                stream.commands.append(command)
                by_tag[command.tag] = command
                text = command.line
            shown.append((_position(raw.order, False, end), len(shown), f"C: {text}"))
        for line, end in _lines(bytes(raw.data[True])):
            text = line.decode(errors="replace")
            tagged = _TAGGED_STATUS.match(line)
            if tagged and tagged.group(1) not in (b"*", b"+"):
                command = by_tag.get(tagged.group(1).decode(errors="replace"))
                if command is not None:
                    command.status = tagged.group(2).upper().decode()
                    command.text = tagged.group(3).decode(errors="replace")[:160]
            problem = _UNTAGGED_BAD.match(line)
            if problem and problem.group(1).upper() != b"BYE":
                stream.untagged_problems.append(text[:200])
            shown.append((_position(raw.order, True, end), len(shown), f"S: {text[:200]}"))
        stream.transcript = [text for _, _, text in sorted(shown)]
        stream.client = _guess_client(stream, [line for line, _ in client_lines])
        result.append(stream)
    return result


def problems(streams: list[Stream]) -> list[str]:
    """Every tagged NO/BAD, every untagged NO/BAD; a command without answer is only a problem
    if the connection was not simply cut in the middle of an IDLE."""
    found: list[str] = []
    for stream in streams:
        for command in stream.commands:
            if command.status in ("NO", "BAD"):
                found.append(
                    f"stream {stream.number} ({stream.client}): {command.line!r} -> "
                    f"{command.status} {command.text}"
                )
        found.extend(
            f"stream {stream.number} ({stream.client}): untagged {p}" for p in stream.untagged_problems
        )
    return found


def summary(streams: list[Stream]) -> str:
    lines: list[str] = []
    for stream in streams:
        counts = Counter(c.name for c in stream.commands)
        statuses = Counter(c.status for c in stream.commands)
        lines.append(
            f"stream {stream.number} (client port {stream.client_port}): {stream.client}: "
            f"{len(stream.commands)} commands, answers {dict(statuses)}"
        )
        lines.append("    " + ", ".join(f"{name} x{n}" for name, n in sorted(counts.items())))
    all_counts = Counter(c.name for s in streams for c in s.commands)
    lines.append("all streams: " + ", ".join(f"{n} x{c}" for n, c in sorted(all_counts.items())))
    return "\n".join(lines)


def transcript(streams: list[Stream]) -> str:
    parts: list[str] = []
    for stream in streams:
        parts.append(f"===== stream {stream.number}: {stream.client} =====")
        parts.extend(stream.transcript)
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pcap")
    parser.add_argument("--port", type=int, default=1143)
    parser.add_argument("--transcript", help="write the redacted transcript here")
    args = parser.parse_args()
    streams = analyse(args.pcap, args.port)
    print(summary(streams))
    if args.transcript:
        with open(args.transcript, "w", encoding="utf-8") as out:
            out.write(transcript(streams))
    found = problems(streams)
    print("NO/BAD: " + ("none" if not found else "\n  " + "\n  ".join(found)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
