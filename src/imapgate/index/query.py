"""IMAP search keys as index lookups: which field, which normalized string, and
whether the index may answer at all.

``needle_for`` turns one content key (``SUBJECT``/``FROM``/``TO``/``CC``/``BCC``/
``HEADER``/``BODY``/``TEXT``) with the command's CHARSET into a ``Needle``, or
None when only the hoster can answer it the hoster's way:

* the string does not convert from its charset (Dovecot answers BAD), or the
  charset is one there is no converter for here;
* it is empty (Dovecot's own rules: "field exists"), or holds CR, LF or NUL
  (the index keeps lines apart), or U+FFFD (Dovecot counts replacement
  characters in its own way), or a character whose case mapping depends on the
  Unicode version;
* it is shorter than three characters once normalized (the trigram index
  cannot look it up);
* ``HEADER`` with a field name that is not plain ASCII.

``matches`` decides one message exactly, from its ``Extracted`` fields; the
store uses it to verify candidates where its index is only a filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ..protocol import search as s
from . import charsets
from .casemap import is_stable, normalize
from .extract import Extracted

Field = Literal["subject", "from", "to", "cc", "bcc", "header", "body", "text"]
#: Trigrams: shorter normalized strings cannot be looked up in the index.
MIN_NEEDLE_CHARS: Final = 3
_FORBIDDEN: Final = frozenset("\r\n\0\ufffd")
_FIELD_OF: Final[dict[str, Field]] = {
    "SUBJECT": "subject", "FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc",
    "BODY": "body", "TEXT": "text",
}


@dataclass(frozen=True, slots=True)
class Needle:
    field: Field
    #: The normalized search string.
    text: str
    #: ``HEADER``: the field name, lower-case ASCII.
    header: str = ""

    @property
    def level(self) -> int:
        """The index level a message needs for this needle (1: header fields, 2: all)."""
        return 1 if self.field in ("subject", "from", "to", "cc", "bcc") else 2


def key_text(value: bytes, charset: str | None) -> str | None:
    """The search string as text, or None when it does not convert."""
    name = (charset or "UTF-8").strip()
    low = name.lower()
    if low in ("us-ascii", "ascii", "utf-8", "utf8"):
        # Dovecot reads US-ASCII as UTF-8 too; invalid UTF-8 is its BAD.
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return charsets.convert(name, value, strict=True).decode("utf-8")
    except (charsets.UnknownCharset, UnicodeDecodeError, ValueError):
        return None


def charset_supported(charset: str) -> bool:
    """A search CHARSET the gateway can convert from (the hoster's iconv names where it
    runs on glibc, as Dovecot's; else UTF-8, US-ASCII and a few single-byte ones)."""
    if charset.lower() in ("us-ascii", "ascii", "utf-8", "utf8"):
        return True
    try:
        charsets.convert(charset, b"", strict=True)
    except (charsets.UnknownCharset, ValueError):
        return False
    return True


def needle_for(key: s.SearchKey, charset: str | None) -> Needle | None:
    if isinstance(key, s.SearchText):
        field = _FIELD_OF[key.field]
        header = ""
    elif isinstance(key, s.SearchHeader):
        field = "header"
        if not key.field.isascii() or not key.field or any(c in key.field for c in ": \t\r\n\0"):
            return None
        header = key.field.lower()
    else:
        return None
    text = key_text(key.value, charset)
    if not text or any(c in _FORBIDDEN for c in text) or not is_stable(text):
        return None
    norm = normalize(text)
    if len(norm) < MIN_NEEDLE_CHARS:
        return None
    return Needle(field, norm, header)


def matches(ex: Extracted, needle: Needle) -> bool:
    """Whether the message with fields ``ex`` matches ``needle`` (Dovecot's answer)."""
    t = needle.text
    f = needle.field
    if f == "subject":
        return any(t in v for v in ex.subject)
    if f in ("from", "to", "cc", "bcc"):
        return any(t in v for v in ex.addresses.get(f, ()))
    if f == "header":
        want = needle.header
        return any(t in v for name, v in ex.top_headers if name.lower() == want and name.isascii())
    if f == "body":
        return any(t in v for v in ex.bodies)
    return any(t in v for v in ex.header_lines) or any(t in v for v in ex.bodies)
