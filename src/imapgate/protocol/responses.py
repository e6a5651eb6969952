"""Typed IMAP responses (RFC 9051 §7 plus CONDSTORE/QRESYNC, ESEARCH, ACL,
NAMESPACE, ID, ENABLE, LIST-EXTENDED, SORT/THREAD, UIDPLUS).

These values are what ``response_parser`` produces from upstream bytes and
what ``response_writer`` turns into bytes for mail clients.  They are plain
frozen data: no I/O and no knowledge of sessions.

Conventions:

* status text (``resp-text``) is a ``str`` decoded from UTF-8 with
  ``surrogateescape``, so any bytes a server sent survive a parse/write trip;
* mailbox names are ``str`` decoded from modified UTF-7 (UTF-8 after
  ``ENABLE UTF8=ACCEPT``), ``INBOX`` always spelt ``INBOX``;
* flags are ``str`` with system flags in the RFC's spelling (``\\Seen``);
* FETCH items are keyed by their canonical wire name (see ``canonical_item_name``);
  items served verbatim (ENVELOPE, BODYSTRUCTURE, BODY, unknown items) are a
  ``RawItem`` holding the exact bytes of the value.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from .sequence import SequenceSet

StatusWord = Literal["OK", "NO", "BAD"]
UntaggedStatusWord = Literal["OK", "NO", "BAD", "BYE", "PREAUTH"]


# --- response codes (RFC 9051 §7.1, RFC 5530, RFC 7162, RFC 4315) --------------

@dataclass(frozen=True, slots=True)
class AtomCode:
    """A response code without structured data, known (``ALERT``, ``TRYCREATE``,
    ``NOMODSEQ``, ``CLOSED``, RFC 5530 codes ...) or unknown.

    ``text`` is the raw ``SP 1*<TEXT-CHAR except "]">`` part of an unknown code
    (e.g. ``[REFERRAL imap://...]``, ``[METADATA LONGENTRIES 2000]``), kept
    verbatim so the gateway can relay it unchanged.
    """

    name: str
    text: bytes | None = None


@dataclass(frozen=True, slots=True)
class UidValidityCode:
    value: int


@dataclass(frozen=True, slots=True)
class UidNextCode:
    value: int


@dataclass(frozen=True, slots=True)
class UnseenCode:
    value: int


@dataclass(frozen=True, slots=True)
class HighestModseqCode:
    """RFC 7162 ``[HIGHESTMODSEQ n]``."""

    value: int


@dataclass(frozen=True, slots=True)
class ModifiedCode:
    """RFC 7162 ``[MODIFIED set]``: messages that failed UNCHANGEDSINCE."""

    uids: SequenceSet


@dataclass(frozen=True, slots=True)
class CopyUidCode:
    """RFC 4315 ``[COPYUID uidvalidity source-set dest-set]``."""

    uidvalidity: int
    source: SequenceSet
    dest: SequenceSet


@dataclass(frozen=True, slots=True)
class AppendUidCode:
    """RFC 4315 ``[APPENDUID uidvalidity uid-set]`` (a set for MULTIAPPEND)."""

    uidvalidity: int
    uids: SequenceSet


@dataclass(frozen=True, slots=True)
class PermanentFlagsCode:
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CapabilityCode:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BadCharsetCode:
    charsets: tuple[str, ...] = ()


ResponseCode = (
    AtomCode | UidValidityCode | UidNextCode | UnseenCode | HighestModseqCode | ModifiedCode
    | CopyUidCode | AppendUidCode | PermanentFlagsCode | CapabilityCode | BadCharsetCode
)

#: Codes without arguments that RFC 9051, RFC 5530, RFC 7162 and RFC 4315 define.
KNOWN_ATOM_CODES: Final = frozenset({
    "ALERT", "PARSE", "TRYCREATE", "READ-ONLY", "READ-WRITE", "NOMODSEQ", "CLOSED",
    "UIDNOTSTICKY", "UNAVAILABLE", "AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED",
    "PRIVACYREQUIRED", "CONTACTADMIN", "NOPERM", "INUSE", "EXPUNGEISSUED", "CORRUPTION",
    "SERVERBUG", "CLIENTBUG", "CANNOT", "LIMIT", "OVERQUOTA", "ALREADYEXISTS", "NONEXISTENT",
    "TOOBIG", "HASCHILDREN", "UNKNOWN-CTE", "NOTSAVED",
})

ALERT: Final = AtomCode("ALERT")
PARSE: Final = AtomCode("PARSE")
TRYCREATE: Final = AtomCode("TRYCREATE")
READ_ONLY: Final = AtomCode("READ-ONLY")
READ_WRITE: Final = AtomCode("READ-WRITE")
NOMODSEQ: Final = AtomCode("NOMODSEQ")
CLOSED: Final = AtomCode("CLOSED")
UNAVAILABLE: Final = AtomCode("UNAVAILABLE")
AUTHENTICATIONFAILED: Final = AtomCode("AUTHENTICATIONFAILED")
AUTHORIZATIONFAILED: Final = AtomCode("AUTHORIZATIONFAILED")
EXPIRED: Final = AtomCode("EXPIRED")
PRIVACYREQUIRED: Final = AtomCode("PRIVACYREQUIRED")
CONTACTADMIN: Final = AtomCode("CONTACTADMIN")
NOPERM: Final = AtomCode("NOPERM")
INUSE: Final = AtomCode("INUSE")
EXPUNGEISSUED: Final = AtomCode("EXPUNGEISSUED")
CORRUPTION: Final = AtomCode("CORRUPTION")
SERVERBUG: Final = AtomCode("SERVERBUG")
CLIENTBUG: Final = AtomCode("CLIENTBUG")
CANNOT: Final = AtomCode("CANNOT")
LIMIT: Final = AtomCode("LIMIT")
OVERQUOTA: Final = AtomCode("OVERQUOTA")
ALREADYEXISTS: Final = AtomCode("ALREADYEXISTS")
NONEXISTENT: Final = AtomCode("NONEXISTENT")
TOOBIG: Final = AtomCode("TOOBIG")


# --- status responses ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TaggedResponse:
    """``tag OK|NO|BAD [code] text``: completion of one command."""

    tag: str
    status: StatusWord
    code: ResponseCode | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class UntaggedStatus:
    """``* OK|NO|BAD|BYE|PREAUTH [code] text`` (greeting, warnings, BYE)."""

    status: UntaggedStatusWord
    code: ResponseCode | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """``+ text`` or ``+ base64`` (AUTHENTICATE challenges).

    The wire cannot tell text from base64, so both are kept as ``text``; use
    ``with_data`` to build a challenge and ``data`` to decode one.
    """

    text: str = ""
    code: ResponseCode | None = None

    @classmethod
    def with_data(cls, data: bytes) -> ContinuationRequest:
        return cls(base64.b64encode(data).decode("ascii"))

    @property
    def data(self) -> bytes:
        """The text as base64; raises ``ValueError`` when it is not base64."""
        try:
            return base64.b64decode(self.text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"continuation text is not base64: {exc}") from None


# --- untagged data -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Capability:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    count: int


@dataclass(frozen=True, slots=True)
class Recent:
    """IMAP4rev1 only (RFC 3501); RFC 9051 dropped RECENT."""

    count: int


@dataclass(frozen=True, slots=True)
class Expunge:
    seq: int


@dataclass(frozen=True, slots=True)
class Flags:
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RawItem:
    """The exact wire bytes of one value (ENVELOPE, BODYSTRUCTURE, unknown items)."""

    raw: bytes


FetchValue = int | tuple[str, ...] | datetime | RawItem | bytes | None


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """``* seq FETCH (...)``; ``items`` keep the order of the wire.

    Values by item: ``UID``, ``RFC822.SIZE``, ``MODSEQ`` (written ``MODSEQ (n)``),
    ``BINARY.SIZE[..]`` -> int; ``FLAGS`` -> tuple of flags; ``INTERNALDATE`` ->
    aware datetime (``RawItem`` when a server sent an unparsable date);
    ``BODY[..]``/``BINARY[..]``/``RFC822*`` contents -> bytes or None (NIL);
    everything else -> ``RawItem``.
    """

    seq: int
    items: dict[bytes, FetchValue]

    @property
    def uid(self) -> int | None:
        value = self.items.get(b"UID")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def flags(self) -> tuple[str, ...] | None:
        value = self.items.get(b"FLAGS")
        return value if isinstance(value, tuple) else None

    @property
    def modseq(self) -> int | None:
        value = self.items.get(b"MODSEQ")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Search:
    """``* SEARCH n...`` with RFC 7162's optional ``(MODSEQ n)``."""

    ids: tuple[int, ...]
    modseq: int | None = None


@dataclass(frozen=True, slots=True)
class Sort:
    """RFC 5256 ``* SORT n...`` (CONDSTORE may add ``(MODSEQ n)``)."""

    ids: tuple[int, ...]
    modseq: int | None = None


#: A thread (RFC 5256): its members in order, then >= 2 sub-threads (tuples).
#: ``(3 6 (4 23)(44 7 96))`` is ``(3, 6, (4, 23), (44, 7, 96))``.
Thread = tuple["int | Thread", ...]


@dataclass(frozen=True, slots=True)
class ThreadResponse:
    threads: tuple[Thread, ...]


@dataclass(frozen=True, slots=True)
class ESearch:
    """RFC 4731/9051 ``* ESEARCH [(TAG "t")] [UID] MIN/MAX/ALL/COUNT/MODSEQ``.

    ``extra`` keeps unknown return data (name, raw value bytes) verbatim.
    """

    tag: str | None = None
    uid: bool = False
    min: int | None = None
    max: int | None = None
    all: SequenceSet | None = None
    count: int | None = None
    modseq: int | None = None
    extra: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class ListResponse:
    """``* LIST (flags) delim name [extended]`` (RFC 9051, RFC 5258).

    ``childinfo`` is RFC 5258 CHILDINFO (e.g. ``("SUBSCRIBED",)``), ``oldname``
    RFC 9051 OLDNAME; ``extended`` keeps other items as (tag, raw value bytes).
    """

    flags: tuple[str, ...]
    delimiter: str | None
    name: str
    childinfo: tuple[str, ...] | None = None
    oldname: str | None = None
    extended: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class LsubResponse(ListResponse):
    """``* LSUB``: same shape as LIST (IMAP4rev1)."""


#: STATUS items whose value is number64 rather than number (RFC 9051, RFC 7162).
STATUS_ITEMS: Final = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED",
                       "SIZE", "HIGHESTMODSEQ")


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """``* STATUS mailbox (ITEM n ...)``; ``items`` keep the order of the wire,
    names upper-case (MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN, DELETED, SIZE,
    RECENT, HIGHESTMODSEQ, or any other numeric item a server sends)."""

    mailbox: str
    items: dict[str, int]

    @property
    def messages(self) -> int | None:
        return self.items.get("MESSAGES")

    @property
    def uidnext(self) -> int | None:
        return self.items.get("UIDNEXT")

    @property
    def uidvalidity(self) -> int | None:
        return self.items.get("UIDVALIDITY")

    @property
    def unseen(self) -> int | None:
        return self.items.get("UNSEEN")

    @property
    def highestmodseq(self) -> int | None:
        return self.items.get("HIGHESTMODSEQ")


@dataclass(frozen=True, slots=True)
class NamespaceDescriptor:
    """One namespace: prefix, hierarchy delimiter, RFC 2342 extensions."""

    prefix: str
    delimiter: str | None
    extensions: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Namespace:
    """``* NAMESPACE personal other shared``; None for NIL."""

    personal: tuple[NamespaceDescriptor, ...] | None
    other: tuple[NamespaceDescriptor, ...] | None
    shared: tuple[NamespaceDescriptor, ...] | None


@dataclass(frozen=True, slots=True)
class Enabled:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdResponse:
    """RFC 2971 ``* ID (...)``; None for ``* ID NIL``.  Order of fields kept."""

    params: dict[str, str | None] | None


@dataclass(frozen=True, slots=True)
class Vanished:
    """RFC 7162 ``* VANISHED [(EARLIER)] uid-set``."""

    uids: SequenceSet
    earlier: bool = False


@dataclass(frozen=True, slots=True)
class AclResponse:
    """RFC 4314 ``* ACL mailbox identifier rights ...``."""

    mailbox: str
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ListRightsResponse:
    """RFC 4314 ``* LISTRIGHTS mailbox identifier required optional...``."""

    mailbox: str
    identifier: str
    required: str
    optional: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MyRightsResponse:
    mailbox: str
    rights: str


@dataclass(frozen=True, slots=True)
class UntaggedUnknown:
    """An untagged response the codec does not know, kept verbatim: ``raw`` is
    the whole frame (``* ...`` with any literals) without its final CRLF."""

    raw: bytes

    @property
    def name(self) -> str:
        """The response's keyword (``QUOTA``, ``METADATA``; for ``* 3 FOO`` it is ``FOO``)."""
        words = self.raw.split(b" ", 3)
        word = words[2] if len(words) > 2 and words[1].isdigit() else (words[1] if len(words) > 1 else b"")
        return word.split(b"\r")[0].upper().decode("latin-1")


UntaggedData = (
    Capability | Exists | Recent | Expunge | Flags | FetchResponse | Search | Sort | ThreadResponse
    | ESearch | ListResponse | StatusResponse | Namespace | Enabled | IdResponse | Vanished
    | AclResponse | ListRightsResponse | MyRightsResponse | UntaggedUnknown
)

Response = TaggedResponse | UntaggedStatus | ContinuationRequest | UntaggedData


def canonical_item_name(name: bytes) -> bytes:
    """The key a FETCH item has in ``FetchResponse.items``: upper-case, single
    spaces, ``.PEEK`` dropped, a partial ``<origin.count>`` reduced to ``<origin>``
    — so a request item (``body.peek[header.fields (Subject)]<0.100>``) maps to
    the key of its answer (``BODY[HEADER.FIELDS (SUBJECT)]<0>``)."""
    key = b" ".join(name.upper().split())
    key = key.replace(b".PEEK[", b"[")
    lt = key.rfind(b"<")
    if lt >= 0 and key.endswith(b">"):
        dot = key.find(b".", lt)
        if dot >= 0:
            key = key[:dot] + b">"
    return key
