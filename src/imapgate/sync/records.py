"""Upstream FETCH answers turned into replica records and flag reports.

Pure functions over parsed responses: no connection, no replica.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute, Section
from ..protocol.sequence import SequenceSet
from ..replica.mailbox import MessageRecord

#: Flags upstream reported for a message, and the MODSEQ they are at (None: the
#: server gives none, the report is taken as the newest).
FlagReport = tuple[tuple[str, ...], int | None]

MESSAGE_ID_FIELD = FetchAttribute("BODY", Section((), "HEADER.FIELDS", ("MESSAGE-ID",)), peek=True)
NEW_MESSAGE_ITEMS = (
    FetchAttribute("UID"),
    FetchAttribute("FLAGS"),
    FetchAttribute("INTERNALDATE"),
    FetchAttribute("RFC822.SIZE"),
    MESSAGE_ID_FIELD,
)
_MESSAGE_ID_RE = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>|[^\r\n]+)", re.IGNORECASE | re.MULTILINE)


def new_message_items(enabled: frozenset[str] | set[str]) -> tuple[FetchAttribute, ...]:
    """What a new-message fetch asks for (MODSEQ too under CONDSTORE)."""
    return NEW_MESSAGE_ITEMS + ((FetchAttribute("MODSEQ"),) if "CONDSTORE" in enabled else ())


def uid_fetch_builder(uids: SequenceSet, items: tuple[FetchAttribute, ...]) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(tag, uids, items, uid=True)

    return build


def fetch_new_builder(a: int, b: int, items: tuple[FetchAttribute, ...]) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(tag, SequenceSet(((a, b),)), items, uid=True)

    return build


def changedsince_builder(known_max: int, since: int) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(
            tag,
            SequenceSet(((1, known_max),)),
            (FetchAttribute("UID"), FetchAttribute("FLAGS")),
            uid=True,
            changedsince=since,
            vanished=True,
        )

    return build


def stored_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    """Upstream flags as the replica keeps them: without \\Recent, which is the
    state of one upstream session (ours), not of the message."""
    return tuple(f for f in flags if f != "\\Recent")


def _is_new_message_answer(f: rsp.FetchResponse) -> bool:
    """True for an answer to ``NEW_MESSAGE_ITEMS``; False for the unsolicited
    flag updates (another session's STORE) a server mixes into the same answer."""
    return f.uid is not None and b"RFC822.SIZE" in f.items and b"INTERNALDATE" in f.items


def split_new_messages(
    answers: list[rsp.FetchResponse], start: int
) -> tuple[list[MessageRecord], dict[int, FlagReport]]:
    """New-message records (UID >= ``start``, one per UID) found in the answer
    to a new-message fetch, and the latest flags reported per UID (records and
    any other UID).

    An unsolicited ``FETCH (UID u FLAGS ...)`` is never a new message: for a UID
    of the batch it only updates the flags (the later line on the wire is the
    newer state); for any other UID it is a flag report for the caller to apply
    to a known message, or to ignore (a later sync fetches that message)."""
    records: dict[int, MessageRecord] = {}
    reports: dict[int, FlagReport] = {}
    for f in answers:
        uid = f.uid
        if uid is None:
            continue
        if _is_new_message_answer(f) and uid >= start:
            rec = record_from_fetch(f)
            if rec is not None:
                records[uid] = rec
        if f.flags is not None:
            reports[uid] = (stored_flags(f.flags), f.modseq)
    for uid, rec in records.items():
        if uid in reports:
            rec.flags = reports[uid][0]
    return [records[u] for u in sorted(records)], reports


def record_from_fetch(f: rsp.FetchResponse) -> MessageRecord | None:
    uid = f.uid
    if uid is None:
        return None
    flags = stored_flags(f.flags or ())
    size = f.items.get(b"RFC822.SIZE")
    date = f.items.get(b"INTERNALDATE")
    ts = 0.0
    tz = 0
    if hasattr(date, "timestamp") and hasattr(date, "utcoffset"):
        ts = date.timestamp()  # type: ignore[union-attr]
        off = date.utcoffset()  # type: ignore[union-attr]
        tz = int(off.total_seconds() // 60) if off is not None else 0
    header = f.items.get(MESSAGE_ID_FIELD.response_name())
    message_id = None
    if isinstance(header, bytes):
        m = _MESSAGE_ID_RE.search(header)
        if m:
            message_id = m.group(1).strip().decode("utf-8", "replace")
    return MessageRecord(
        uid=uid,
        flags=tuple(flags),
        modseq=0,
        internal_date=ts,
        tz_offset=tz,
        size=size if isinstance(size, int) else 0,
        message_id=message_id,
    )
