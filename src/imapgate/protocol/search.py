"""Search criteria as a typed tree: RFC 9051 §6.4.4 search-key, plus MODSEQ
(RFC 7162), ``$`` (RFC 5182) and OLDER/YOUNGER (RFC 5032).

Used by SEARCH, SORT and THREAD.  Every node is a frozen dataclass whose
``__bytes__`` writes it back in canonical form; ``read_search_key`` reads one
key from a ``grammar.Reader``.  Search strings stay ``bytes``: their charset
is the command's (``CHARSET UTF-8`` or US-ASCII), and the gateway compares
them with what the message holds, so no decoding guess is made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final, Literal, TypeAlias

from . import grammar, limits
from .grammar import Reader
from .sequence import SequenceSet

TextField: TypeAlias = Literal["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"]
DateWhich: TypeAlias = Literal["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"]
EntryType: TypeAlias = Literal["priv", "shared", "all"]

TEXT_FIELDS: Final[tuple[TextField, ...]] = ("BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO")
DATE_KEYS: Final[tuple[DateWhich, ...]] = ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE")

# Search keys that test one system flag: name -> (flag, present).
_FLAG_KEYS: Final[dict[str, tuple[str, bool]]] = {
    "ANSWERED": ("\\Answered", True),
    "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True),
    "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True),
    "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True),
    "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True),
    "UNSEEN": ("\\Seen", False),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
}
_FLAG_KEY_NAMES: Final[dict[tuple[str, bool], bytes]] = {v: k.encode() for k, v in _FLAG_KEYS.items()}


@dataclass(frozen=True, slots=True)
class SearchAll:
    """``ALL``."""

    def __bytes__(self) -> bytes:
        return b"ALL"


@dataclass(frozen=True, slots=True)
class SearchNew:
    """``NEW``: recent and not seen (not expressible as one flag test)."""

    def __bytes__(self) -> bytes:
        return b"NEW"


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """SEEN/UNSEEN, ANSWERED/UNANSWERED, ..., RECENT/OLD: a system flag set or not."""

    flag: str
    present: bool = True

    def __post_init__(self) -> None:
        if (self.flag, self.present) not in _FLAG_KEY_NAMES:
            raise ValueError(f"no search key tests system flag {self.flag!r}")

    def __bytes__(self) -> bytes:
        return _FLAG_KEY_NAMES[(self.flag, self.present)]


@dataclass(frozen=True, slots=True)
class SearchKeywordKey:
    """``KEYWORD kw`` / ``UNKEYWORD kw``."""

    keyword: str
    present: bool = True

    def __bytes__(self) -> bytes:
        return (b"KEYWORD " if self.present else b"UNKEYWORD ") + self.keyword.encode("ascii")


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """``HEADER field value``; an empty value matches every message with the field."""

    field: str
    value: bytes

    def __bytes__(self) -> bytes:
        field = grammar.bounded_astring(self.field.encode("utf-8"))
        return b"HEADER " + field + b" " + grammar.bounded_astring(self.value)


@dataclass(frozen=True, slots=True)
class SearchText:
    """``BODY``/``TEXT``/``SUBJECT``/``FROM``/``TO``/``CC``/``BCC`` substring search."""

    field: TextField
    value: bytes

    def __bytes__(self) -> bytes:
        return self.field.encode("ascii") + b" " + grammar.bounded_astring(self.value)


@dataclass(frozen=True, slots=True)
class SearchDate:
    """Internal date (BEFORE/ON/SINCE) or Date: header (SENT*) compared by day."""

    which: DateWhich
    date: date

    def __bytes__(self) -> bytes:
        return self.which.encode("ascii") + b" " + grammar.format_date(self.date)


@dataclass(frozen=True, slots=True)
class SearchSize:
    """``LARGER n`` / ``SMALLER n`` (RFC822.SIZE)."""

    larger: bool
    size: int

    def __bytes__(self) -> bytes:
        return (b"LARGER %d" if self.larger else b"SMALLER %d") % self.size


@dataclass(frozen=True, slots=True)
class SearchSequence:
    """A bare sequence set (message numbers), or ``$`` (RFC 5182)."""

    sequence_set: SequenceSet

    def __bytes__(self) -> bytes:
        return bytes(self.sequence_set)


@dataclass(frozen=True, slots=True)
class SearchUid:
    """``UID set``."""

    sequence_set: SequenceSet

    def __bytes__(self) -> bytes:
        return b"UID " + bytes(self.sequence_set)


@dataclass(frozen=True, slots=True)
class SearchModseq:
    """``MODSEQ ["/flags/\\Seen" priv|shared|all] n`` (RFC 7162 §3.1.5)."""

    modseq: int
    entry_name: str | None = None
    entry_type: EntryType | None = None

    def __bytes__(self) -> bytes:
        if self.entry_name is None:
            return b"MODSEQ %d" % self.modseq
        return b"MODSEQ %s %s %d" % (
            grammar.quote(self.entry_name.encode("utf-8")),
            (self.entry_type or "all").encode("ascii"),
            self.modseq,
        )


@dataclass(frozen=True, slots=True)
class SearchAge:
    """``OLDER n`` / ``YOUNGER n`` seconds (RFC 5032 WITHIN)."""

    younger: bool
    seconds: int

    def __bytes__(self) -> bytes:
        return (b"YOUNGER %d" if self.younger else b"OLDER %d") % self.seconds


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey

    def __bytes__(self) -> bytes:
        return b"NOT " + bytes(self.key)


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey

    def __bytes__(self) -> bytes:
        return b"OR " + bytes(self.left) + b" " + bytes(self.right)


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """A parenthesised key list ``(k1 k2 ...)``: all must match."""

    keys: tuple[SearchKey, ...]

    def __bytes__(self) -> bytes:
        return b"(" + b" ".join(bytes(k) for k in self.keys) + b")"


SearchKey: TypeAlias = (
    SearchAll | SearchNew | SearchFlag | SearchKeywordKey | SearchHeader | SearchText | SearchDate
    | SearchSize | SearchSequence | SearchUid | SearchModseq | SearchAge | SearchNot | SearchOr | SearchAnd
)


def criteria_bytes(keys: tuple[SearchKey, ...]) -> bytes:
    """The top-level key list of SEARCH/SORT/THREAD (implicit AND), space-separated."""
    return b" ".join(bytes(k) for k in keys)


# --- reading ---------------------------------------------------------------------
_ENTRY_TYPES: Final[dict[str, EntryType]] = {"PRIV": "priv", "SHARED": "shared", "ALL": "all"}
_SEQ_START: Final = frozenset(b"0123456789*$")


def read_search_key(r: Reader) -> SearchKey:
    """One search-key at the cursor (nesting counted against MAX_NESTING)."""
    c = r.peek()
    if c == 0x28:  # '('
        r.enter()
        r.pos += 1
        keys = [read_search_key(r)]
        while not r.accept(b")"):
            r.sp()
            keys.append(read_search_key(r))
            if len(keys) > limits.MAX_LIST_ITEMS:
                raise r.error(f"more than {limits.MAX_LIST_ITEMS} search keys (MAX_LIST_ITEMS)")
        r.leave()
        return SearchAnd(tuple(keys))
    if c in _SEQ_START:
        return SearchSequence(r.sequence_set("a sequence set"))
    start = r.pos
    name = r.keyword("a search key")
    flag = _FLAG_KEYS.get(name)
    if flag is not None:
        return SearchFlag(*flag)
    if name == "ALL":
        return SearchAll()
    if name == "NEW":
        return SearchNew()
    if name in TEXT_FIELDS:
        r.sp()
        return SearchText(_text_field(name), r.astring(f"a string after {name}"))
    if name in DATE_KEYS:
        r.sp()
        return SearchDate(_date_key(name), r.date())
    if name == "KEYWORD" or name == "UNKEYWORD":
        r.sp()
        return SearchKeywordKey(r.atom("a keyword").decode("ascii"), name == "KEYWORD")
    if name == "HEADER":
        r.sp()
        fstart = r.pos
        field = r.astring("a header field name")
        r.sp()
        value = r.astring("a header value")
        try:
            return SearchHeader(field.decode("utf-8"), value)
        except UnicodeDecodeError:
            r.pos = fstart
            raise r.error("header field name is not UTF-8") from None
    if name == "LARGER" or name == "SMALLER":
        r.sp()
        return SearchSize(name == "LARGER", r.number64("a size"))
    if name == "UID":
        r.sp()
        return SearchUid(r.sequence_set("a UID set"))
    if name == "NOT":
        r.sp()
        r.enter()
        key = read_search_key(r)
        r.leave()
        return SearchNot(key)
    if name == "OR":
        r.sp()
        r.enter()
        left = read_search_key(r)
        r.sp()
        right = read_search_key(r)
        r.leave()
        return SearchOr(left, right)
    if name == "MODSEQ":
        r.sp()
        return _read_modseq(r)
    if name == "OLDER" or name == "YOUNGER":
        r.sp()
        return SearchAge(name == "YOUNGER", r.nz_number("a number of seconds"))
    r.pos = start
    raise r.error(f"unknown search key {name[:40]}")


def read_search_criteria(r: Reader) -> tuple[SearchKey, ...]:
    """``search-key *(SP search-key)`` up to the end of the line."""
    keys = [read_search_key(r)]
    while not r.at_eol():
        r.sp()
        keys.append(read_search_key(r))
        if len(keys) > limits.MAX_LIST_ITEMS:
            raise r.error(f"more than {limits.MAX_LIST_ITEMS} search keys (MAX_LIST_ITEMS)")
    return tuple(keys)


def _read_modseq(r: Reader) -> SearchModseq:
    if r.peek() != 0x22:
        return SearchModseq(r.number64("a mod-sequence"))
    nstart = r.pos
    raw = r.quoted()
    try:
        entry = raw.decode("utf-8")
    except UnicodeDecodeError:
        r.pos = nstart
        raise r.error("MODSEQ entry name is not UTF-8") from None
    r.sp()
    tstart = r.pos
    kind = _ENTRY_TYPES.get(r.keyword("priv, shared or all"))
    if kind is None:
        r.pos = tstart
        raise r.error("MODSEQ entry type must be priv, shared or all")
    r.sp()
    return SearchModseq(r.number64("a mod-sequence"), entry, kind)


def _text_field(name: str) -> TextField:
    for f in TEXT_FIELDS:
        if f == name:
            return f
    raise AssertionError(name)


def _date_key(name: str) -> DateWhich:
    for d in DATE_KEYS:
        if d == name:
            return d
    raise AssertionError(name)
