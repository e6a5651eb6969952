"""The one rights table: operation -> the RFC 4314 rights it needs, on which folder.

``required(op)`` is the only place that decides which letters an operation
needs; ``Service.execute`` asks the policy for exactly these before anything
else happens.  RFC 4314 §4 is the source, with these readings:

- STORE needs ``r`` (the flags it answers with are a read) plus, per flag
  (§4, "STORE"): ``\\Seen`` -> ``s``, ``\\Deleted`` -> ``t``, any other flag or
  keyword -> ``w``.  Adding or removing flags (``+FLAGS``/``-FLAGS``) changes
  the flags the user may change and leaves out the others; it is refused only
  when none of the asked flags may be changed (§4: "STORE operation SHOULD NOT
  fail if the user has rights to modify at least one flag").  A replace
  (FLAGS) needs ``w`` and the letters of every flag it names, all or nothing,
  because it may clear flags the client did not name.  ``\\Recent`` is never
  stored (session state) and asks nothing of its own.
- The implicit ``\\Seen`` of a body fetch needs ``s``; without it the flag is
  simply not set (§4, "FETCH"), so the need is marked ``skip_if_denied``.
- COPY: ``r`` on the source, ``i`` on the destination.  MOVE (RFC 6851 §3.3):
  ``r``, ``t`` and ``e`` on the source, ``i`` on the destination.
- EXPUNGE ``e``; APPEND ``i``; CREATE ``k`` on the parent (INBOX for a
  top-level name, the folder whose entries a new top-level folder inherits);
  DELETE ``x``; RENAME ``x`` on the old name and ``k`` on the new name's parent.
- A destination (COPY, MOVE, APPEND) the user may not see is answered as a
  missing one there: ``TRYCREATE`` (``Need.missing``).
- Reads: SELECT/EXAMINE, opening a folder elsewhere, FETCH, SEARCH -> ``r``;
  STATUS -> ``l`` and ``r`` (a folder one cannot see must not tell its counts);
  LIST/LSUB -> ``l`` on each folder listed, a filter rather than a refusal.
- SUBSCRIBE ``l`` (Dovecot's reading: a folder one may not see cannot be
  subscribed to, so a typo or a probe is caught); UNSUBSCRIBE needs nothing (it
  only removes the actor's own decision and reveals nothing).
- Switching a folder's read-state mode changes it for the whole team: ``a``.
- An internal note on a message (the dashboard; kept in the gateway, never
  upstream): ``l`` and ``r``, as reading the message.
- MYRIGHTS needs ``l`` (RFC 4314 §4: "any of the rights"; here a folder
  without ``l`` does not exist, so ``l`` is what "any" comes to).  GETACL,
  LISTRIGHTS, SETACL and DELETEACL need ``a`` (§4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import operations as ops

# RFC 4314 §2.1 rights, named for readability at the call sites.
LOOKUP = "l"
READ = "r"
SEEN = "s"
WRITE = "w"
INSERT = "i"
POST = "p"
CREATE = "k"
DELETE_MAILBOX = "x"
DELETE_MESSAGES = "t"
EXPUNGE = "e"
ADMIN = "a"

ALL_RIGHTS = "lrswipkxtea"


@dataclass(frozen=True)
class Need:
    """``rights`` (every letter of it) on ``mailbox``.

    ``mailbox`` None: on each folder the operation lists; the folders lacking
    the rights are left out instead of the operation being refused.
    ``skip_if_denied``: without the rights the operation does nothing and is
    not an error."""

    mailbox: str | None
    rights: str
    skip_if_denied: bool = False
    #: The response code for a folder the user may not see (it is answered as
    #: missing): a destination says TRYCREATE, as for a folder that is not there.
    missing: str | None = None
    #: STORE +FLAGS/-FLAGS: the flags that need ``rights``; denied, they are left
    #: out of the operation instead of refusing it (unless no flag is left).
    flags: tuple[str, ...] = ()


def parent_of(name: str, delimiter: str = "/") -> str:
    """The folder whose ``k`` right governs creating ``name``: INBOX at the top
    level, whose entries a new top-level folder starts with (``acl_store``)."""
    if delimiter and delimiter in name:
        return name.rsplit(delimiter, 1)[0]
    return "INBOX"


def flag_right(flag: str) -> str:
    """The letter changing ``flag`` needs ("" for ``\\Recent``, never stored)."""
    low = flag.lower()
    if low == "\\recent":
        return ""
    if low == "\\seen":
        return SEEN
    if low == "\\deleted":
        return DELETE_MESSAGES
    return WRITE


def flag_rights(mode: ops.StoreMode, flags: tuple[str, ...] | list[str] | frozenset[str] | set[str]) -> str:
    """The letters STORE ``mode flags`` needs besides ``r`` (RFC 4314 §4), sorted."""
    needed = {flag_right(flag) for flag in flags} - {""}
    if mode == "set":
        needed.add(WRITE)
    return "".join(sorted(needed))


def required(op: ops.Operation[Any], delimiter: str = "/") -> tuple[Need, ...]:
    """The rights ``op`` needs, in the order they are asked.  ``delimiter``: the
    hierarchy delimiter, for the parent of a new name."""
    if isinstance(op, ops.StoreFlags):
        name = op.mailbox.name
        if op.mode == "set":
            return (Need(name, READ + flag_rights(op.mode, list(op.flags))),)
        by_right: dict[str, list[str]] = {}
        for flag in op.flags:
            right = flag_right(flag)
            if right:
                by_right.setdefault(right, []).append(flag)
        return (Need(name, READ), *(Need(name, r, flags=tuple(f)) for r, f in sorted(by_right.items())))
    if isinstance(op, (ops.ReadMessages, ops.FetchContent, ops.ExplainGone, ops.SearchContent)):
        return (Need(op.mailbox.name, READ),)
    if isinstance(op, ops.AddNote):
        # Whoever may read the message may write the team a note on it: it changes
        # nothing of the mail (never upstream), so no flag right is asked.
        return (Need(op.mailbox.name, LOOKUP + READ),)
    if isinstance(op, ops.MarkSeen):
        return (Need(op.mailbox.name, SEEN, skip_if_denied=True),)
    if isinstance(op, ops.Expunge):
        return (Need(op.mailbox.name, EXPUNGE),)
    if isinstance(op, ops.Copy):
        return (Need(op.mailbox.name, READ), Need(op.dest, INSERT, missing="TRYCREATE"))
    if isinstance(op, ops.Move):
        return (
            Need(op.mailbox.name, READ + DELETE_MESSAGES + EXPUNGE),
            Need(op.dest, INSERT, missing="TRYCREATE"),
        )
    if isinstance(op, ops.Append):
        return (Need(op.mailbox, INSERT, missing="TRYCREATE"),)
    if isinstance(op, ops.Create):
        return (Need(parent_of(op.mailbox, delimiter), CREATE),)
    if isinstance(op, ops.Delete):
        return (Need(op.mailbox, DELETE_MAILBOX),)
    if isinstance(op, ops.Rename):
        return (Need(op.mailbox, DELETE_MAILBOX), Need(parent_of(op.new_name, delimiter), CREATE))
    if isinstance(op, (ops.Select, ops.EnsureSynced)):
        return (Need(op.mailbox, READ),)
    if isinstance(op, ops.Status):
        return (Need(op.mailbox, LOOKUP + READ),)
    if isinstance(op, ops.ListFolders):
        return (Need(None, LOOKUP),)
    if isinstance(op, ops.Subscribe):
        return (Need(op.mailbox, LOOKUP),)
    if isinstance(op, ops.SetReadMode):
        return (Need(op.mailbox, ADMIN),)
    if isinstance(op, ops.MyRights):
        return (Need(op.mailbox, LOOKUP),)
    if isinstance(op, (ops.GetAcl, ops.ListRights, ops.SetAcl, ops.DeleteAcl)):
        return (Need(op.mailbox, ADMIN),)
    if isinstance(op, ops.Unsubscribe):
        return ()
    raise TypeError(f"no rights known for {type(op).__name__}: add it to gateway/rights.py")
