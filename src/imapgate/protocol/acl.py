"""RFC 4314 ACL commands on the wire (server side): SETACL, DELETEACL, GETACL,
LISTRIGHTS and MYRIGHTS, parsed from a frame into ``commands`` values.

The grammar (RFC 4314 §4) makes identifiers and rights plain ``astring``s;
this module adds the checks that belong to the wire, so that hostile input is
a ``BAD`` with a clear text before any rights logic runs:

* an identifier is UTF-8 of at most ``MAX_IDENTIFIER`` octets (identifiers
  name users and groups, and the store holds names of up to 255 characters);
* a rights string is ``[+|-]`` followed by lower-case letters and digits
  (RFC 4314 §2: rights are lower-case letters, digits for extensions), at most
  ``MAX_RIGHTS`` octets (the RFC defines 13 letters; longer is a repetition).

Which letters a server knows, and what identifiers mean, is not the codec's
business: ``team/acl.py`` decides (an unknown letter is also a BAD there, as
RFC 4314 §3.1 requires).  Mailbox names are mUTF-7, or UTF-8 after
UTF8=ACCEPT, as in every other command (``Reader.mailbox``).  The untagged
ACL, LISTRIGHTS and MYRIGHTS responses are ``responses.AclResponse`` & co.,
written by ``response_writer`` and parsed by ``response_parser``.
"""

from __future__ import annotations

import re
from typing import Final

from . import commands as c
from .grammar import Reader

#: Identifiers name users and groups; the store holds names of up to 255 characters.
MAX_IDENTIFIER: Final = 255
#: RFC 4314 defines 13 letters (with the obsolete c and d); 64 leaves room for a sign and
#: extension digits, and anything longer is a repetition or garbage.
MAX_RIGHTS: Final = 64
_RIGHTS_RE: Final = re.compile(rb"[+-]?[a-z0-9]*")


def _identifier(r: Reader) -> str:
    start = r.pos
    raw = r.astring("an identifier")
    if len(raw) > MAX_IDENTIFIER:
        r.pos = start
        raise r.error(f"identifier longer than {MAX_IDENTIFIER} bytes (MAX_IDENTIFIER)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        r.pos = start
        raise r.error("identifier is not valid UTF-8") from None


def _rights(r: Reader, *, modifiable: bool) -> str:
    start = r.pos
    raw = r.astring("rights")
    if len(raw) > MAX_RIGHTS:
        r.pos = start
        raise r.error(f"rights longer than {MAX_RIGHTS} bytes (MAX_RIGHTS)")
    if not _RIGHTS_RE.fullmatch(raw) or (not modifiable and raw[:1] in (b"+", b"-")):
        r.pos = start
        sign = "an optional + or - and " if modifiable else ""
        raise r.error(
            f"rights must be {sign}lower-case letters or digits (RFC 4314 §2), "
            f"found {raw[:20].decode('latin-1')!r}"
        )
    return raw.decode("ascii")


def parse_setacl(r: Reader, tag: str, uid: bool) -> c.Command:
    """``SETACL mailbox identifier mod-rights``."""
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    identifier = _identifier(r)
    r.sp()
    return c.SetAcl(tag, mailbox, identifier, _rights(r, modifiable=True))


def parse_deleteacl(r: Reader, tag: str, uid: bool) -> c.Command:
    """``DELETEACL mailbox identifier``."""
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.DeleteAcl(tag, mailbox, _identifier(r))


def parse_listrights(r: Reader, tag: str, uid: bool) -> c.Command:
    """``LISTRIGHTS mailbox identifier``."""
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.ListRights(tag, mailbox, _identifier(r))


def parse_getacl(r: Reader, tag: str, uid: bool) -> c.Command:
    """``GETACL mailbox``."""
    r.sp()
    return c.GetAcl(tag, r.mailbox())


def parse_myrights(r: Reader, tag: str, uid: bool) -> c.Command:
    """``MYRIGHTS mailbox``."""
    r.sp()
    return c.MyRights(tag, r.mailbox())
