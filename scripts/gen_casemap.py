"""Generate ``src/imapgate/index/casemap_data.py``: the search normalizer's tables.

Dovecot compares search strings after ``uni_utf8_to_decomposed_titlecase`` (its
i;unicode-casemap): every character is mapped to its simple titlecase (UnicodeData
field 14), then the titlecased character is replaced by its decomposition, one
level only, canonical or compatibility alike (field 5, tag dropped).  Dovecot's
``unicodemap.pl`` records a decomposition only for characters whose field 14 is
empty (they are titlecased first anyway), so a titlecase character that maps to
itself (U+01C5 ...) keeps its form.  Hangul syllables are decomposed
algorithmically.

This script derives the same tables from Python's ``unicodedata`` and writes them
with the *unstable* code points: characters whose mapping may differ in the
hoster's Dovecot because its tables come from another Unicode version.  Text or a
search string containing one is never answered from the index (the hoster is
asked).  Unstable are:

* code points unassigned in this Unicode version (a newer table may map them);
* characters with a mapping here that were unassigned in Unicode 3.2, or whose
  decomposition changed since 3.2 (an older table lacks or differs);
* characters whose mapping here is missing from Dovecot 2.3.19's tables
  (``KNOWN_DOVECOT_GAPS``: found by locating the ``unicodemap.c`` arrays in
  Debian's ``libdovecot.so.0`` and comparing them entry by entry with these; every
  entry present in both was identical, so the derivation above is Dovecot's).

Run: ``python scripts/gen_casemap.py``
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "imapgate" / "index" / "casemap_data.py"
#: Titlecase characters whose UnicodeData field 14 names themselves (so Dovecot records no
#: decomposition for them); every other non-empty field 14 is a real mapping.
SELF_TITLE = frozenset({0x01C5, 0x01C8, 0x01CB, 0x01F2})
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3

#: Characters mapped here but not in Dovecot 2.3.19.1's tables (Debian bookworm build),
#: found with --dovecot-lib: mappings added to Unicode after the version Dovecot used.
KNOWN_DOVECOT_GAPS = (
    "282 1d8e 2c5f 32ff a794 a7b9 a7bb a7bd a7bf a7c1 a7c3 a7c8 a7ca a7d1 a7d7 a7d9 a7f2-a7f4 a7f6 "
    "ab69 10597-105a1 105a3-105b1 105b3-105b9 105bb-105bc 10781-10785 10787-107b0 107b2-107ba 11938 "
    "16e60-16e7f 1f16c 1fbf0-1fbf9"
)


def simple_titlecase(code: int) -> int | None:
    """Field 14 of UnicodeData (None when empty).  Python has no direct accessor: the
    full titlecase is the simple one when it is one character (where SpecialCasing gives
    several, field 14 is empty)."""
    c = chr(code)
    t = c.title()
    if len(t) == 1 and t != c:
        return ord(t)
    if code in SELF_TITLE:
        return code
    return None


def decomposition(db: object, code: int) -> tuple[int, ...]:
    text: str = db.decomposition(chr(code))  # type: ignore[attr-defined]
    parts = text.split()
    if parts and parts[0].startswith("<"):
        parts = parts[1:]
    return tuple(int(p, 16) for p in parts)


def build() -> tuple[dict[int, tuple[int, ...]], set[int]]:
    """The mapping (code point -> replacement code points, only where it changes) and the
    unstable code points."""
    title: dict[int, int] = {}
    decomp: dict[int, tuple[int, ...]] = {}
    unassigned: set[int] = set()
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        if unicodedata.category(chr(code)) == "Cn":
            unassigned.add(code)
            continue
        t = simple_titlecase(code)
        if t is not None:
            if t != code:
                title[code] = t
            continue
        d = decomposition(unicodedata, code)
        if d:
            decomp[code] = d
    mapping: dict[int, tuple[int, ...]] = {}
    for code in range(0x110000):
        if code in unassigned or 0xD800 <= code <= 0xDFFF:
            continue
        t = title.get(code, code)
        if HANGUL_FIRST <= t <= HANGUL_LAST:
            continue  # algorithmic, see casemap.py
        out = decomp.get(t, (t,))
        if out != (code,):
            mapping[code] = out
    old = unicodedata.ucd_3_2_0
    unstable = set(unassigned)
    for code in list(mapping) + list(decomp):
        c = chr(code)
        if old.category(c) == "Cn" or decomposition(old, code) != decomposition(unicodedata, code):
            unstable.add(code)
    for item in KNOWN_DOVECOT_GAPS.split():
        lo, _, hi = item.partition("-")
        unstable.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    return mapping, unstable


def ranges(codes: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in sorted(codes):
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    mapping, unstable = build()
    entries = " ".join(f"{k:x}:{'.'.join(f'{v:x}' for v in vs)}" for k, vs in sorted(mapping.items()))
    spans = " ".join(f"{a:x}-{b:x}" if a != b else f"{a:x}" for a, b in ranges(unstable))
    lines = [
        '"""Generated by scripts/gen_casemap.py from Unicode '
        f'{unicodedata.unidata_version}: do not edit.',
        "",
        "MAPPING: code point -> replacement code points (titlecase, then one level of",
        "decomposition), as Dovecot's i;unicode-casemap search normalizer; Hangul syllables",
        "are decomposed in casemap.py.  UNSTABLE: code points whose mapping may differ at",
        'the hoster (see the script)."""',
        "",
        f"UNICODE_VERSION = {unicodedata.unidata_version!r}",
        "",
        "MAPPING = (",
    ]
    width = 100
    for i in range(0, len(entries), width):
        lines.append(f"    {entries[i : i + width]!r}")
    lines.append(")")
    lines.append("")
    lines.append("UNSTABLE = (")
    for i in range(0, len(spans), width):
        lines.append(f"    {spans[i : i + width]!r}")
    lines.append(")")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(mapping)} mappings, {len(ranges(unstable))} unstable ranges", file=sys.stderr)


if __name__ == "__main__":
    main()
