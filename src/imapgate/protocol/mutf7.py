"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3, kept by RFC 9051 §5.1).

Printable US-ASCII stands for itself except ``&``, which is written ``&-``;
other characters are UTF-16BE in a modified base64 (``,`` for ``/``, no
padding) between ``&`` and ``-``.
"""

from __future__ import annotations

import base64
import binascii


class MUTF7Error(ValueError):
    """A mailbox name is not valid modified UTF-7."""


def encode(name: str) -> bytes:
    """Encode a Unicode mailbox name to modified UTF-7."""
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            out.extend(b"&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for ch in name:
        code = ord(ch)
        if 0x20 <= code <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


def decode(data: bytes) -> str:
    """Decode a modified UTF-7 mailbox name; raise ``MUTF7Error`` when invalid."""
    if b"&" not in data:
        if any(b < 0x20 or b > 0x7E for b in data):
            raise MUTF7Error("mailbox name has a byte outside printable US-ASCII")
        return data.decode("ascii")
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b == 0x26:  # '&'
            end = data.find(b"-", i + 1)
            if end < 0:
                raise MUTF7Error("unterminated '&' shift sequence in mailbox name")
            chunk = data[i + 1 : end]
            if not chunk:
                out.append("&")
            else:
                b64 = chunk.replace(b",", b"/")
                b64 += b"=" * (-len(b64) % 4)
                try:
                    raw = base64.b64decode(b64, validate=True)
                    if len(raw) % 2:
                        raise MUTF7Error("odd number of UTF-16 bytes in mailbox name")
                    text = raw.decode("utf-16-be")
                except (binascii.Error, UnicodeDecodeError) as exc:
                    raise MUTF7Error(f"bad base64 in mailbox name: {exc}") from None
                if any(0x20 <= ord(c) <= 0x7E for c in text):
                    raise MUTF7Error("printable ASCII must not be base64-encoded")
                out.append(text)
            i = end + 1
        elif 0x20 <= b <= 0x7E:
            j = data.find(b"&", i)
            if j < 0:
                j = n
            piece = data[i:j]
            if any(c < 0x20 or c > 0x7E for c in piece):
                raise MUTF7Error("mailbox name has a byte outside printable US-ASCII")
            out.append(piece.decode("ascii"))
            i = j
        else:
            raise MUTF7Error("mailbox name has a byte outside printable US-ASCII")
    return "".join(out)
