"""Folder permissions: the RFC 4314 model, pure and without I/O.

What lives here: the rights letters and their parsing (``lr``, ``+lr``,
``-w``, the empty string), identifiers (a user name, ``$group``, ``anyone``,
``authenticated``, each optionally negative ``-identifier``), ``AclEntry``,
and the one function that decides: ``effective_rights``, which also says
*why* (which entries gave and which took what), for ``imapgate acl rights``.
``AclTable`` is an immutable snapshot of every folder's entries, the groups
and the admins at one ACL version, with per-user precomputed answers so a
LIST of 1,000 folders costs one dict lookup per folder.

Decisions (RFC 4314 leaves them to the server, docs/permissions.md explains
them to admins):

* A negative right wins over every positive one (RFC 4314 §2), whatever
  entry gave the positive one: rights = (union of matching positive entries)
  minus (union of matching negative entries).
* A folder without an ACL of its own uses the configured default
  (``[acl] default``, "lrswipkxte"), as if it had the one entry
  ``authenticated <default>``; that is what GETACL shows for it, and the
  first change to its ACL starts from that entry (``acl_store``), so adding
  one member never locks the rest of the team out by surprise.  Once a
  folder has an ACL of its own it keeps it, even with no entries left (then
  only admins have rights): deleting an entry, a user or a group never
  opens a folder to the whole team.
* Admins have every right on every folder, ``a`` included; no entry, not
  even a negative one, takes any away (they manage the ACLs, and a folder no
  admin can see could not be repaired).
* ``anyone`` is every authenticated team member (the gateway has no
  anonymous logins), so ``anyone`` and ``authenticated`` match the same
  users.  Only an admin may give ``anyone``/``authenticated`` the ``a`` right
  (``check_change``): a member holding ``a`` on one folder must not be able
  to make every colleague an administrator of it.
* Without ``l`` a folder behaves as non-existent (the issue's rule, stricter
  than RFC 4314 §4, which lets ``r`` alone SELECT): ``visible``.
* The obsolete RFC 2086 rights are read as RFC 4314 §2.1.1's first group,
  as Dovecot does (checked in tests/team/test_acl_dovecot.py): ``c`` = ``k x``
  (create and delete folders), ``d`` = ``t e`` (delete messages).  On output
  (MYRIGHTS, ACL) ``c`` is added when any of ``k x`` is present and ``d`` when
  any of ``t e`` is, as §2.1.1 asks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

#: RFC 4314 §2.1 rights in the RFC's order (also the order rights are written in).
LETTERS: Final = "lrswipkxtea"
#: RFC 4314 §2.1.1: the obsolete RFC 2086 rights and what they stand for here.
OBSOLETE: Final[Mapping[str, str]] = {"c": "kx", "d": "te"}
#: The default for a folder without entries (``[acl] default``): everything but ``a``.
DEFAULT_RIGHTS_TEXT: Final = "lrswipkxte"
#: Longest rights string accepted: 13 distinct letters; more is a repetition or garbage.
MAX_RIGHTS_TEXT: Final = 64
#: Identifiers name users or groups; the users table holds names of up to 255 characters.
MAX_IDENTIFIER: Final = 255

_BIT: Final[dict[str, int]] = {letter: 1 << i for i, letter in enumerate(LETTERS)}
#: A user or group name: what users.NAME_RE allows (letters, digits, . _ @ + -).
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")
#: Identifiers that are no user name (lower case; matched in any case).
SPECIAL_IDENTIFIERS: Final = frozenset({"anyone", "authenticated"})


class AclError(ValueError):
    """Invalid rights or identifier, or a change the rules refuse: the message
    is one line saying what is wrong (shown by the CLI, sent in NO/BAD)."""


# --------------------------------------------------------------------------- rights
def _letter_mask(letter: str) -> int:
    bit = _BIT.get(letter)
    if bit is not None:
        return bit
    implied = OBSOLETE.get(letter)
    if implied is None:
        return 0
    mask = 0
    for each in implied:
        mask |= _BIT[each]
    return mask


@dataclass(frozen=True, slots=True)
class Rights:
    """A set of RFC 4314 rights as a bit mask over ``LETTERS``."""

    mask: int = 0

    @classmethod
    def of(cls, letters: str) -> Rights:
        """Rights from letters that are already valid (``parse_rights`` validates)."""
        mask = 0
        for letter in letters:
            mask |= _letter_mask(letter)
        return cls(mask)

    def __contains__(self, letter: object) -> bool:
        return isinstance(letter, str) and bool(self.mask & _letter_mask(letter))

    def __or__(self, other: Rights) -> Rights:
        return Rights(self.mask | other.mask)

    def __and__(self, other: Rights) -> Rights:
        return Rights(self.mask & other.mask)

    def __sub__(self, other: Rights) -> Rights:
        return Rights(self.mask & ~other.mask)

    def __bool__(self) -> bool:
        return self.mask != 0

    def __str__(self) -> str:
        return "".join(letter for letter in LETTERS if self.mask & _BIT[letter])

    def __repr__(self) -> str:
        return f"Rights({str(self)!r})"

    def wire(self) -> str:
        """For MYRIGHTS and ACL responses: with the virtual ``c``/``d`` of RFC 4314 §2.1.1."""
        text = str(self)
        if self.mask & (_BIT["k"] | _BIT["x"]):
            text += "c"
        if self.mask & (_BIT["t"] | _BIT["e"]):
            text += "d"
        return text


NONE: Final = Rights(0)
ALL: Final = Rights.of(LETTERS)
ADMIN: Final = Rights.of("a")


RightsMode = Literal["set", "add", "remove"]


@dataclass(frozen=True, slots=True)
class RightsChange:
    """What a SETACL/``acl set`` rights argument asks: replace, add or remove."""

    mode: RightsMode
    rights: Rights

    def apply(self, current: Rights) -> Rights:
        if self.mode == "add":
            return current | self.rights
        if self.mode == "remove":
            return current - self.rights
        return self.rights


def parse_rights(text: str, *, allow_modifier: bool = True) -> RightsChange:
    """``lr`` (replace), ``+lr`` (add), ``-w`` (remove), ``""`` (nothing).

    Letters are RFC 4314's (``lrswipkxtea``) and the obsolete ``c``/``d``.  An
    unknown letter is an error (RFC 4314 §3.1: a server must not silently
    ignore rights it does not know)."""
    if len(text) > MAX_RIGHTS_TEXT:
        raise AclError(f"rights {text[:20]!r}... longer than {MAX_RIGHTS_TEXT} characters")
    mode: RightsMode = "set"
    letters = text
    if text[:1] in ("+", "-"):
        if not allow_modifier:
            raise AclError(f"rights {text!r}: + or - is not allowed here, give the letters only")
        mode = "add" if text[0] == "+" else "remove"
        letters = text[1:]
        if not letters:
            raise AclError(f"rights {text!r}: {text} needs letters after it (e.g. {text}w)")
    mask = 0
    for letter in letters:
        bit = _letter_mask(letter)
        if not bit:
            raise AclError(
                f"unknown right {letter!r} in {text!r}: rights are the letters {LETTERS} "
                "(RFC 4314; the obsolete c and d are accepted too)"
            )
        mask |= bit
    return RightsChange(mode, Rights(mask))


def rights(text: str) -> Rights:
    """Plain rights letters (no ``+``/``-``), validated: for config and tests."""
    return parse_rights(text, allow_modifier=False).rights


# --------------------------------------------------------------------------- identifiers
class Kind(Enum):
    USER = "user"
    GROUP = "group"
    ANYONE = "anyone"
    AUTHENTICATED = "authenticated"


@dataclass(frozen=True, slots=True)
class Identifier:
    """An RFC 4314 identifier: ``name`` is the user or group name (no ``$``),
    or ``anyone``/``authenticated``; ``negative`` for ``-identifier``."""

    kind: Kind
    name: str
    negative: bool = False

    def __str__(self) -> str:
        sign = "-" if self.negative else ""
        return f"{sign}${self.name}" if self.kind is Kind.GROUP else f"{sign}{self.name}"

    @property
    def positive(self) -> Identifier:
        return Identifier(self.kind, self.name, False)

    def matches(self, user: str, groups: frozenset[str]) -> bool:
        """Whether this identifier (sign ignored) names ``user`` (a member of ``groups``)."""
        if self.kind is Kind.USER:
            return self.name == user
        if self.kind is Kind.GROUP:
            return self.name in groups
        return True  # anyone / authenticated: every team member


def parse_identifier(text: str) -> Identifier:
    """Validate and classify an identifier as IMAP or the CLI spells it."""
    if not text:
        raise AclError("empty identifier: give a user name, $group, anyone or authenticated")
    if len(text) > MAX_IDENTIFIER:
        raise AclError(f"identifier {text[:20]!r}... longer than {MAX_IDENTIFIER} characters")
    negative = text.startswith("-")
    bare = text[1:] if negative else text
    if bare.lower() in SPECIAL_IDENTIFIERS:
        kind = Kind.ANYONE if bare.lower() == "anyone" else Kind.AUTHENTICATED
        return Identifier(kind, bare.lower(), negative)
    if bare.startswith("$"):
        name = bare[1:]
        if not _NAME_RE.match(name):
            raise AclError(
                f"invalid group name in identifier {text!r}: after $ use 1-64 letters, digits "
                "and . _ @ + - (starting with a letter or digit)"
            )
        return Identifier(Kind.GROUP, name, negative)
    if not _NAME_RE.match(bare):
        raise AclError(
            f"invalid identifier {text!r}: use a user name, $group, anyone or authenticated "
            "(with - in front for a negative entry)"
        )
    return Identifier(Kind.USER, bare, negative)


def check_group_name(name: str) -> str:
    """A group name as ``group add`` takes it (without ``$``)."""
    if name.startswith("$"):
        name = name[1:]
    if not _NAME_RE.match(name) or name.lower() in SPECIAL_IDENTIFIERS:
        raise AclError(
            f"invalid group name {name!r}: use 1-64 letters, digits and . _ @ + - "
            "(starting with a letter or digit; not anyone or authenticated)"
        )
    return name


# --------------------------------------------------------------------------- entries
@dataclass(frozen=True, slots=True)
class AclEntry:
    """One entry of a folder's ACL."""

    identifier: Identifier
    rights: Rights

    @classmethod
    def parse(cls, identifier: str, rights_text: str) -> AclEntry:
        return cls(parse_identifier(identifier), rights(rights_text))


def check_change(identifier: Identifier, new: Rights, *, by_admin: bool) -> None:
    """Refuse what only an admin may do: give ``a`` to ``anyone``/``authenticated``.

    (Who may change a folder's ACL at all -- ``a`` on it, or an admin -- is
    the pipeline's rights check.)"""
    if (
        not by_admin
        and not identifier.negative
        and identifier.kind in (Kind.ANYONE, Kind.AUTHENTICATED)
        and "a" in new
    ):
        raise AclError(
            f"only an admin may give {identifier} the a right (it would make every team member "
            "an administrator of the folder)"
        )


# --------------------------------------------------------------------------- decision
Source = Literal["admin", "default", "entries"]


@dataclass(frozen=True, slots=True)
class Effective:
    """Effective rights and where they come from."""

    rights: Rights
    source: Source
    #: Matching positive entries and what each gave.
    gave: tuple[AclEntry, ...] = ()
    #: Matching negative entries and what each took (only rights actually given).
    took: tuple[AclEntry, ...] = ()

    @property
    def visible(self) -> bool:
        return visible(self.rights)

    def explain(self, user: str, folder: str) -> list[str]:
        """Lines for ``imapgate acl rights USER FOLDER``."""
        shown = str(self.rights) or "none"
        lines = [f"{user} on {folder}: {shown}"]
        if self.source == "admin":
            lines.append(f"  {user} is an admin: every right on every folder")
            return lines
        if self.source == "default":
            lines.append(f"  {folder} has no ACL of its own: the default ([acl] default) applies")
        for entry in self.gave:
            lines.append(f"  {entry.identifier} gives {entry.rights or 'nothing'}")
        for entry in self.took:
            lines.append(f"  {entry.identifier} takes away {entry.rights}")
        if self.source == "entries" and not self.gave:
            lines.append(f"  no entry of {folder} names {user}, one of their groups, anyone or authenticated")
        if not visible(self.rights):
            lines.append(f"  without l, {folder} does not exist for {user}")
        return lines


def visible(rights: Rights) -> bool:
    """Without ``l`` a folder behaves as non-existent (same NO as a missing one)."""
    return bool(rights.mask & _BIT["l"])


DEFAULT_IDENTIFIER: Final = Identifier(Kind.AUTHENTICATED, "authenticated")


def default_entries(default: Rights) -> tuple[AclEntry, ...]:
    """What a folder without entries of its own has in effect (and GETACL shows)."""
    return (AclEntry(DEFAULT_IDENTIFIER, default),)


def effective_rights(
    user: str,
    groups_of_user: Iterable[str],
    is_admin: bool,
    entries: Sequence[AclEntry] | None,
    default: Rights,
) -> Effective:
    """The rights ``user`` has on a folder whose ACL is ``entries`` (None: the folder
    has no ACL of its own and ``default`` applies)."""
    if is_admin:
        return Effective(ALL, "admin")
    source: Source = "entries"
    if entries is None:
        entries = default_entries(default)
        source = "default"
    groups = groups_of_user if isinstance(groups_of_user, frozenset) else frozenset(groups_of_user)
    positive = 0
    negative = 0
    gave: list[AclEntry] = []
    negatives: list[AclEntry] = []
    for entry in entries:
        if not entry.identifier.matches(user, groups):
            continue
        if entry.identifier.negative:
            negative |= entry.rights.mask
            negatives.append(entry)
        else:
            positive |= entry.rights.mask
            gave.append(entry)
    took = tuple(
        AclEntry(e.identifier, Rights(e.rights.mask & positive))
        for e in negatives
        if e.rights.mask & positive
    )
    return Effective(Rights(positive & ~negative), source, tuple(gave), took)


# --------------------------------------------------------------------------- snapshot
@dataclass(frozen=True)
class AclTable:
    """Every folder's entries, the groups and the admins at one ``version``.

    Immutable: a change makes a new table (``acl_store.AclStore.load``), and a
    running gateway compares versions to reload.  ``for_user`` answers are
    computed once per user and table."""

    version: int
    #: Folders with an ACL of their own -> its entries (maybe none: admins only).
    entries: Mapping[str, tuple[AclEntry, ...]]
    #: user name -> the groups they are a member of.
    groups_of: Mapping[str, frozenset[str]]
    admins: frozenset[str]
    default: Rights = field(default_factory=lambda: rights(DEFAULT_RIGHTS_TEXT))
    _users: dict[str, UserRights] = field(default_factory=dict, init=False, repr=False, compare=False)

    def folder_entries(self, folder: str) -> tuple[AclEntry, ...] | None:
        """A folder's own ACL (None: it uses the default)."""
        return self.entries.get(folder)

    def shown_entries(self, folder: str) -> tuple[AclEntry, ...]:
        """What GETACL and ``acl get`` show: the own entries, or the default as one entry."""
        own = self.entries.get(folder)
        return default_entries(self.default) if own is None else own

    def for_user(self, user: str) -> UserRights:
        got = self._users.get(user)
        if got is None:
            got = UserRights(self, user)
            self._users[user] = got
        return got

    def rights(self, user: str, folder: str) -> Rights:
        return self.for_user(user).rights(folder)

    def explain(self, user: str, folder: str) -> Effective:
        return effective_rights(
            user, self.groups_of.get(user, frozenset()), user in self.admins,
            self.folder_entries(folder), self.default,
        )


class UserRights:
    """One user's rights on every folder of one ``AclTable``, precomputed.

    Folders without entries share one precomputed value, so ``rights`` is one
    dict lookup and ``visible`` one set lookup, whatever the ACLs hold (LIST
    asks ``visible`` for every folder)."""

    __slots__ = ("_by_folder", "_default", "_default_visible", "_exceptions", "user")

    def __init__(self, table: AclTable, user: str) -> None:
        self.user = user
        groups = table.groups_of.get(user, frozenset())
        admin = user in table.admins
        self._default = effective_rights(user, groups, admin, None, table.default).rights
        self._by_folder: dict[str, Rights] = {
            folder: effective_rights(user, groups, admin, entries, table.default).rights
            for folder, entries in table.entries.items()
        }
        self._default_visible = visible(self._default)
        #: Folders whose visibility differs from that of a folder without entries.
        self._exceptions = frozenset(
            folder for folder, got in self._by_folder.items() if visible(got) != self._default_visible
        )

    def rights(self, folder: str) -> Rights:
        return self._by_folder.get(folder, self._default)

    def visible(self, folder: str) -> bool:
        return (folder in self._exceptions) != self._default_visible

    def visible_names(self, folders: Iterable[str]) -> list[str]:
        """Those of ``folders`` the user may see (``l``), in the given order."""
        exceptions = self._exceptions
        if self._default_visible:
            return [f for f in folders if f not in exceptions]
        return [f for f in folders if f in exceptions]


# --------------------------------------------------------------------------- LISTRIGHTS
def list_rights(identifier: Identifier, *, names_admin: bool) -> tuple[str, tuple[str, ...]]:
    """RFC 4314 §3.7 LISTRIGHTS: (rights always granted, rights grantable one by one).

    Every right is independent here; an admin user always has all of them,
    so for them nothing can be granted or taken.  ``c`` and ``d`` come last,
    as Dovecot lists them, for RFC 2086 clients."""
    if names_admin and identifier.kind is Kind.USER and not identifier.negative:
        return ALL.wire(), ()
    return "", (*LETTERS, *OBSOLETE)
