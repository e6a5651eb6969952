"""The messages a journal entry is about: UID, Message-ID and subject as known now.

The Message-ID comes from the replica's record (every message has it from the
sync).  The subject is taken only where it costs nothing: from the content
cache's memory (the ENVELOPE most clients fetch before they act on a message)
or from the message itself (APPEND); otherwise it stays empty — the audit
journal never goes to the hoster to describe a change.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.errors import MessageError
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser

from ..protocol.envelope import parse_envelope
from ..protocol.errors import CodecError
from ..replica.content import ContentCache
from ..replica.mailbox import MailboxIndex
from ..team.journal import MAX_MESSAGE_ROWS, MessageRef

_ENVELOPE = b"ENVELOPE"


def decoded(text: str | None) -> str | None:
    """An RFC 2047 encoded header value as readable text (as it is when unreadable)."""
    if not text:
        return None
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, MessageError):
        # Hostile or broken encoded words (bad base64: HeaderParseError) stay as sent.
        return text


def message_refs(
    mb: MailboxIndex, uids: Iterable[int], content: ContentCache | None
) -> tuple[MessageRef, ...]:
    """Refs of the messages among ``uids`` the replica knows (at most ``MAX_MESSAGE_ROWS``)."""
    refs: list[MessageRef] = []
    for uid in uids:
        rec = mb.records.get(uid)
        if rec is None:
            continue
        subject = None
        raw = content.peek(mb.id, mb.uidvalidity, uid, _ENVELOPE) if content is not None else None
        if raw is not None:
            try:
                subject = decoded(parse_envelope(raw).subject)
            except CodecError:
                subject = None
        refs.append(MessageRef(mb.name, uid, rec.message_id, subject))
        if len(refs) >= MAX_MESSAGE_ROWS:
            break
    return tuple(refs)


def appended_ref(mailbox: str, uid: int, data: bytes) -> MessageRef:
    """The ref of a message the gateway appended (its own headers say what it is)."""
    head = BytesHeaderParser().parsebytes(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    mid = head.get("Message-ID")
    return MessageRef(mailbox, uid, str(mid).strip() if mid else None, decoded(head.get("Subject")))


def moved_refs(refs: Iterable[MessageRef], dest: str, mapping: dict[int, int]) -> tuple[MessageRef, ...]:
    """The copies of ``refs`` in ``dest`` (``mapping``: source UID -> destination UID)."""
    return tuple(MessageRef(dest, mapping[r.uid], r.message_id, r.subject) for r in refs if r.uid in mapping)


#: The journal's command word of an operation (the IMAP command it comes from).
_COMMANDS: dict[str, str] = {
    "StoreFlags": "STORE",
    "MarkSeen": "STORE",
    "FetchContent": "FETCH",
    "ReadMessages": "FETCH",
    "SearchContent": "SEARCH",
    "ListFolders": "LIST",
    "EnsureSynced": "SELECT",
    "AddNote": "NOTE",
}


def op_command(op: object) -> str:
    """``STORE`` for ``StoreFlags``, ``MOVE`` for ``Move``, ...: the journal's command word."""
    name = type(op).__name__
    return _COMMANDS.get(name, name.upper())


def op_target(op: object) -> tuple[str | None, tuple[int, ...]]:
    """The folder name and UIDs an operation is about (for a refusal's entry)."""
    mailbox = getattr(op, "mailbox", None)
    name = mailbox if isinstance(mailbox, str) or mailbox is None else getattr(mailbox, "name", None)
    uids = getattr(op, "uids", None) or ()
    return name, tuple(uids)
