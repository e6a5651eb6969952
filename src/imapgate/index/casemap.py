"""The search normalizer: Dovecot's ``uni_utf8_to_decomposed_titlecase``.

Dovecot (without a full-text plugin, as most hosters run it) compares a search
string with message text after mapping both through this function: each
character to its simple titlecase, then one level of (canonical or
compatibility) decomposition; Hangul syllables into their jamo.  So ``ü`` and
``Ü`` both become ``U`` + U+0308 and match each other, ``ß`` stays ``ß``, ``ﬀ``
becomes ``ff`` (lower case: decompositions are not titlecased again), and a
diacritic is never stripped (``Muller`` does not find ``Müller``, ``Mu`` does).

The tables are generated (``scripts/gen_casemap.py`` -> ``casemap_data.py``)
and checked against Dovecot's own in ``tests/index``.  ``is_stable`` tells
whether a text contains only characters whose mapping is the same in every
Dovecot the gateway may sit in front of; the index answers nothing else.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Final

from . import casemap_data

_HANGUL_FIRST: Final = 0xAC00
_HANGUL_LAST: Final = 0xD7A3
_REPLACEMENT: Final = "\ufffd"


def _table() -> dict[int, str]:
    table: dict[int, str] = {}
    for entry in casemap_data.MAPPING.split():
        key, _, values = entry.partition(":")
        table[int(key, 16)] = "".join(chr(int(v, 16)) for v in values.split("."))
    # Hangul syllables: L V [T] jamo (Unicode ch. 3.12), as Dovecot does it.
    for code in range(_HANGUL_FIRST, _HANGUL_LAST + 1):
        s = code - _HANGUL_FIRST
        lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
        table[code] = chr(lead) + chr(vowel) + (chr(trail) if trail != 0x11A7 else "")
    return table


def _unstable_spans() -> tuple[list[int], list[int]]:
    starts: list[int] = []
    ends: list[int] = []
    for span in casemap_data.UNSTABLE.split():
        lo, _, hi = span.partition("-")
        starts.append(int(lo, 16))
        ends.append(int(hi or lo, 16))
    return starts, ends


_TABLE: Final = _table()
_UNSTABLE_STARTS, _UNSTABLE_ENDS = _unstable_spans()
_FFFD_RUN: Final = re.compile("\ufffd{2,}")


def normalize(text: str) -> str:
    """``text`` as Dovecot's search sees it (titlecased, decomposed one level)."""
    return text.translate(_TABLE)


def is_stable(text: str) -> bool:
    """True when no character of ``text`` may be mapped differently by another
    Dovecot version (unassigned here, or assigned/changed since Unicode 3.2, or
    missing from Dovecot 2.3's tables)."""
    if text.isascii():
        return True
    for ch in set(text):
        code = ord(ch)
        i = bisect_right(_UNSTABLE_STARTS, code) - 1
        if i >= 0 and code <= _UNSTABLE_ENDS[i]:
            return False
    return True


def decode_utf8(data: bytes) -> str:
    """UTF-8 as Dovecot reads it: every invalid sequence becomes U+FFFD, a run of
    them one (Dovecot adds no second replacement character in a row)."""
    text = data.decode("utf-8", "replace")
    if _REPLACEMENT in text:
        text = _FFFD_RUN.sub(_REPLACEMENT, text)
    return text
