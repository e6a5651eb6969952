"""The folder hierarchy as LIST and LSUB show it to one user (RFC 3501 §6.3.8
and §6.3.9, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE).

Pure functions over the names the user may see, their attributes and the
user's subscribed names: which names a pattern lists and with which
attributes.  Two kinds of names exist beyond the replica's folders:

* implicit parents: ``a/b`` when only ``a/b/c`` exists (hosters differ in
  whether they list such levels).  ``%`` lists them, as ``\\Noselect
  \\HasChildren`` in a basic LIST and ``\\NonExistent \\HasChildren`` in an
  extended one, as Dovecot does;
* subscribed names without a folder (deleted since): ``\\NonExistent`` under
  ``LIST (SUBSCRIBED)``, attribute-less in LSUB, as Dovecot does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

#: RFC 5258 selection options (plus RFC 6154 SPECIAL-USE) the gateway knows.
SELECTION_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
#: RFC 5258 / RFC 5819 / RFC 6154 return options.
RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
SPECIAL_USE = frozenset(
    {"\\ALL", "\\ARCHIVE", "\\DRAFTS", "\\FLAGGED", "\\JUNK", "\\SENT", "\\TRASH", "\\IMPORTANT"}
)
#: Attributes recomputed here rather than taken from the hoster.
_COMPUTED = frozenset({"\\HASCHILDREN", "\\HASNOCHILDREN", "\\SUBSCRIBED", "\\NONEXISTENT"})


def pattern_regex(reference: str, pattern: str, delimiter: str) -> re.Pattern[str]:
    """LIST pattern (with its reference) as a regex: ``*`` any, ``%`` any but the delimiter."""
    full = pattern if pattern.startswith(delimiter) or not reference else reference + pattern
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(delimiter)}]*")
        else:
            out.append(re.escape(ch))
    rx = "".join(out)
    # INBOX is case-insensitive (RFC 9051 §5.1).
    if full[:5].upper() == "INBOX" and full[:5] != "INBOX":
        rx = "(?i:INBOX)" + rx[5:] if len(full) >= 5 else rx
    return re.compile(rx + r"\Z", re.DOTALL)


def selection_error(selection: Iterable[str], returns: Iterable[str]) -> str | None:
    """Why a LIST's options are invalid (a BAD), or None (RFC 5258 §3, §6)."""
    sel = {o.upper() for o in selection}
    ret = {o.upper() for o in returns}
    unknown = sorted(sel - SELECTION_OPTIONS)
    if unknown:
        return f"unknown LIST selection option {unknown[0]}"
    if "RECURSIVEMATCH" in sel and not sel - {"RECURSIVEMATCH", "REMOTE"}:
        return "RECURSIVEMATCH must be used with another selection option (RFC 5258 §3)"
    unknown = sorted(ret - RETURN_OPTIONS)
    if unknown:
        return f"unknown LIST return option {unknown[0]}"
    return None


@dataclass(frozen=True)
class Entry:
    """One line of a LIST/LSUB answer."""

    name: str
    attributes: tuple[str, ...]
    exists: bool
    childinfo: tuple[str, ...] | None = None


class Hierarchy:
    """The folders one user may see, with the implicit levels between them."""

    def __init__(self, folders: Mapping[str, tuple[str, ...]], delimiter: str) -> None:
        #: name -> the hoster's attributes, for every folder that exists.
        self.folders = dict(folders)
        self.delimiter = delimiter
        self._with_children: set[str] = set()
        for name in self.folders:
            for parent in self.ancestors(name):
                self._with_children.add(parent)
        #: Levels that only hold other folders and do not exist themselves.
        self.implicit = self._with_children - self.folders.keys()

    def ancestors(self, name: str) -> list[str]:
        """``a`` and ``a/b`` for ``a/b/c``."""
        parts = name.split(self.delimiter) if self.delimiter else [name]
        return [self.delimiter.join(parts[:i]) for i in range(1, len(parts))]

    def has_children(self, name: str) -> bool:
        return name in self._with_children

    def attributes(self, name: str, *, extended: bool, subscribed: bool | None) -> tuple[str, ...]:
        """A name's LIST attributes; ``subscribed`` None: not asked for."""
        attrs: list[str]
        if name in self.folders:
            attrs = [a for a in self.folders[name] if a.upper() not in _COMPUTED]
            attrs.append("\\HasChildren" if self.has_children(name) else "\\HasNoChildren")
        elif extended:
            attrs = ["\\NonExistent"]
            if self.has_children(name):
                attrs.append("\\HasChildren")
        else:
            attrs = ["\\Noselect", "\\HasChildren"]
        if subscribed:
            attrs.append("\\Subscribed")
        return tuple(attrs)

    def _parents_outside(self, names: Iterable[str], matches: re.Pattern[str]) -> set[str]:
        """Ancestors of those of ``names`` the pattern does not match: levels
        ``%`` stops at, which are listed for what lies below them."""
        out: set[str] = set()
        for n in names:
            if not matches.match(n):
                out.update(self.ancestors(n))
        return out

    def select(
        self,
        patterns: Iterable[re.Pattern[str]],
        *,
        selection: Iterable[str],
        returns: Iterable[str],
        extended: bool,
        subscribed: AbstractSet[str],
    ) -> list[Entry]:
        """The LIST answer, in order (options already checked with ``selection_error``)."""
        sel = {o.upper() for o in selection}
        ret = {o.upper() for o in returns}
        show_subscribed = "SUBSCRIBED" in sel or "SUBSCRIBED" in ret
        rxs = list(patterns)

        def matches(name: str) -> bool:
            return any(rx.match(name) for rx in rxs)

        def special(name: str) -> bool:
            return any(a.upper() in SPECIAL_USE for a in self.folders.get(name, ()))

        if "SUBSCRIBED" in sel:
            base = {n for n in subscribed if "SPECIAL-USE" not in sel or special(n)}
        elif "SPECIAL-USE" in sel:
            base = {n for n in self.folders if special(n)}
        else:
            base = set(self.folders) | self.implicit
        listed = {n for n in base if matches(n)}
        childinfo: set[str] = set()
        if "RECURSIVEMATCH" in sel and "SUBSCRIBED" in sel:
            # Parents of subscribed folders say so (CHILDINFO), and a parent the
            # pattern matches is listed for a subscribed descendant it does not.
            for n in base:
                childinfo.update(self.ancestors(n))
            for rx in rxs:
                listed.update(p for p in self._parents_outside(base, rx) if rx.match(p))
        out = []
        for name in _ordered(listed):
            is_sub = name in subscribed
            out.append(
                Entry(
                    name,
                    self.attributes(name, extended=extended, subscribed=is_sub if show_subscribed else None),
                    name in self.folders,
                    ("SUBSCRIBED",) if name in childinfo else None,
                )
            )
        return out

    def lsub(self, pattern: re.Pattern[str], subscribed: AbstractSet[str]) -> list[Entry]:
        """The LSUB answer: subscribed names (existing or not) the pattern
        matches, and as ``\\Noselect`` each unsubscribed level it matches that
        has a subscribed descendant it does not match (RFC 3501 §6.3.9)."""
        listed = {n for n in subscribed if pattern.match(n)}
        parents = {p for p in self._parents_outside(subscribed, pattern) if pattern.match(p)}
        out = []
        for name in _ordered(listed | parents):
            if name in listed:
                attrs = self.attributes(name, extended=False, subscribed=None) if name in self.folders else ()
                out.append(Entry(name, attrs, name in self.folders))
            else:
                out.append(Entry(name, ("\\Noselect",), name in self.folders))
        return out


def _ordered(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda n: (n != "INBOX", n))
