"""The submitted message as the sender check and the reply guard see it.

Pure functions over bytes: the header block is parsed leniently (a hostile or
broken message never raises here — what cannot be read is reported as such),
and the two header fields a submission server adds when a client left them
out (RFC 6409 §8.2, §8.3: ``Date``, ``Message-ID``) are put in front.
"""

from __future__ import annotations

import contextlib
import email.header
import email.utils
import re
import time
import uuid
from dataclasses import dataclass

#: Header bytes looked at, at most: real headers are a few KiB (a long
#: References chain of a busy thread is ~10 KiB); beyond this, fields are ignored.
MAX_HEADER_BYTES = 256 * 1024
#: Message-IDs taken from In-Reply-To and References, at most (the newest ones:
#: References lists the thread oldest first).
MAX_REFERENCES = 100

_MSG_ID = re.compile(rb"<([^<>\s]{1,998})>")
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


@dataclass(frozen=True)
class SubmittedMessage:
    #: Lower-case addr-specs of every address in every ``From`` field.
    from_addresses: tuple[str, ...]
    #: A ``From`` field exists but some address in it cannot be read.
    from_unreadable: bool
    message_id: str | None
    #: Message-IDs (with their ``<>``), in header order.
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    #: Decoded, whitespace collapsed ("" when none).
    subject: str
    has_date: bool

    def candidates(self) -> tuple[str, ...]:
        """Message-IDs that may name the original, in the order to try them:
        In-Reply-To first, then References from the last (the parent) to the first."""
        seen: dict[str, None] = {}
        for mid in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(mid, None)
        return tuple(seen)


def header_block(content: bytes) -> bytes:
    """The header of ``content`` (up to the first empty line), at most ``MAX_HEADER_BYTES``."""
    head = content[:MAX_HEADER_BYTES]
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = head.find(sep)
        if i >= 0:
            head = head[: i + len(sep) // 2]
            break
    return head


def _fields(head: bytes) -> dict[str, list[bytes]]:
    """Field name (lower case) -> raw values, unfolded, in order."""
    out: dict[str, list[bytes]] = {}
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    name: str | None = None
    value: list[bytes] = []

    def flush() -> None:
        if name is not None:
            out.setdefault(name, []).append(b" ".join(v.strip() for v in value))

    for line in lines:
        if line[:1] in (b" ", b"\t") and name is not None:
            value.append(line)
            continue
        flush()
        m = _FIELD.match(line)
        if m:
            name = m.group(1).decode("ascii").lower()
            value = [line[m.end():]]
        else:
            name, value = None, []
    flush()
    return out


def _msg_ids(values: list[bytes]) -> tuple[str, ...]:
    ids = [m.group(0).decode("utf-8", "replace") for v in values for m in _MSG_ID.finditer(v)]
    return tuple(ids)


def _decode(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    # A broken encoded word leaves the raw text.
    with contextlib.suppress(Exception):
        text = str(email.header.make_header(email.header.decode_header(text)))
    return " ".join(text.split())


def _addresses(values: list[bytes]) -> tuple[tuple[str, ...], bool]:
    found: list[str] = []
    unreadable = False
    for raw in values:
        text = raw.decode("utf-8", "replace")
        try:
            pairs = email.utils.getaddresses([text])
        except Exception:  # hostile input: unreadable, never a crash
            unreadable = True
            continue
        if not pairs:
            unreadable = True
        for _name, addr in pairs:
            addr = addr.strip().lower()
            local, at, domain = addr.rpartition("@")
            if not at or not local or not domain or any(c.isspace() for c in addr):
                unreadable = True
            else:
                found.append(addr)
    return tuple(found), unreadable


def parse(content: bytes) -> SubmittedMessage:
    fields = _fields(header_block(content))
    from_addresses, unreadable = _addresses(fields.get("from", []))
    ids = _msg_ids(fields.get("message-id", []))
    subjects = fields.get("subject", [])
    return SubmittedMessage(
        from_addresses=from_addresses,
        from_unreadable=unreadable,
        message_id=ids[0] if ids else None,
        in_reply_to=_msg_ids(fields.get("in-reply-to", []))[:MAX_REFERENCES],
        references=_msg_ids(fields.get("references", []))[-MAX_REFERENCES:],
        subject=_decode(subjects[0]) if subjects else "",
        has_date="date" in fields,
    )


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def complete(content: bytes, msg: SubmittedMessage, domain: str) -> tuple[bytes, SubmittedMessage]:
    """``content`` with ``Message-ID`` and ``Date`` added in front when missing."""
    added = b""
    if msg.message_id is None:
        mid = new_message_id(domain)
        added += b"Message-ID: " + mid.encode("ascii") + b"\r\n"
        msg = SubmittedMessage(**{**msg.__dict__, "message_id": mid})
    if not msg.has_date:
        added += b"Date: " + email.utils.formatdate(time.time(), localtime=True).encode("ascii") + b"\r\n"
        msg = SubmittedMessage(**{**msg.__dict__, "has_date": True})
    return added + content, msg
