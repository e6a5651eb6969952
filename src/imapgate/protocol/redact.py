"""IMAP traffic as log lines that are safe to keep (sans-IO).

Protocol debug logging (``-v``, logger ``imapgate.wire``) shows what crossed
the wire, but a log must never hold a password nor mail.  So:

- a literal's contents are never shown, only its size: ``{1234 bytes}``
  (message bodies, and any literal that could carry a password — LOGIN
  accepts its arguments as literals);
- a LOGIN or AUTHENTICATE command shows its tag and name only: its arguments
  are credentials, whatever form they take (quoted, atoms, literals, SASL-IR),
  and a malformed one is hidden too (the words are looked for in the first
  three tokens, so even ``LOGIN user pass`` without a tag is masked);
- a frame shows at most ``MAX_LINES`` lines (a FETCH of a big folder would be
  one line per message) and each line at most ``MAX_LINE_CHARS``.

The responses a client's SASL exchange consists of (the lines after an
AUTHENTICATE continuation) are not passed here at all by the callers.
"""

from __future__ import annotations

import re
from typing import Final

MAX_LINES: Final = 50
MAX_LINE_CHARS: Final = 1000
HIDDEN: Final = "<credentials hidden>"

_LITERAL_TAIL: Final = re.compile(rb"~?\{(\d{1,20})\+?\}\Z")
_SECRET_VERBS: Final = frozenset({"LOGIN", "AUTHENTICATE"})
_STATUS: Final = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _mask(text: str) -> str:
    words = text.split(" ", 3)
    if len(words) > 1 and words[1].upper() in _STATUS:
        return text  # a status response ("a1 OK LOGIN completed"), not a command
    for i, word in enumerate(words[:3]):
        if word.upper() in _SECRET_VERBS:
            return " ".join([*words[: i + 1], HIDDEN])
    return text


def _clean(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    text = _mask(text)
    if len(text) > MAX_LINE_CHARS:
        text = f"{text[:MAX_LINE_CHARS]}... ({len(raw)} bytes)"
    return text


def wire_lines(data: bytes, *, max_lines: int = MAX_LINES) -> list[str]:
    """``data`` (commands or responses, complete or not) as log-safe lines."""
    lines: list[str] = []
    parts: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if len(lines) >= max_lines:
            rest = data[pos:]
            more = rest.count(b"\n") + (not rest.endswith(b"\n"))
            lines.append(f"... {more} more lines ({len(rest)} bytes)")
            return lines
        eol = data.find(b"\r\n", pos)
        line = data[pos:] if eol < 0 else data[pos:eol]
        pos = end if eol < 0 else eol + 2
        m = _LITERAL_TAIL.search(line) if eol >= 0 else None
        if m is not None:
            size = int(m.group(1))
            parts.append(line[: m.start()] + b"{%d bytes}" % size)
            pos = min(end, pos + size)
            if pos < end:
                continue  # the command or response goes on after the literal
        else:
            parts.append(line)
        lines.append(_clean(b"".join(parts)))
        parts = []
    if parts:
        lines.append(_clean(b"".join(parts)))
    return lines
