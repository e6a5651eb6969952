"""Change sets as text for the bus between nodes (replica/wire.py): every type comes back equal,
nothing else is decoded."""

from __future__ import annotations

import json

import pytest

from imapgate.replica import events as ev
from imapgate.replica.changes import ChangeSet
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.wire import WireError, decode, encode
from imapgate.store import changes as rc


def sample() -> ChangeSet:
    cs = ChangeSet()
    row = rc.MessageRow(7, 1.7e9, 60, 1234, ("\\Flagged", "$Label1"), 42, "<m@x>")
    for change in (
        rc.InsertMailbox(3, "Support/Ä", "/", ("\\HasNoChildren",)),
        rc.UpdateMailbox(3, {"uidnext": 8, "synced": True, "seen_mode": None}),
        rc.AddMessages(3, (row,)),
        rc.SetSharedFlags(3, {("\\Seen",): (1, 2, 3), (): (4,)}, 43),
        rc.WritePrivateSets(3, 5, {"\\Seen": b"\x00\x01\xff"}),
        rc.ExpungeMessages(3, (4,), 44),
        rc.ReplaceMailbox(
            3, {"name": "X"}, (row,), {4: 44}, {5: rc.PrivateRows({"\\Seen": b"x"}, {7: 9}, 2)}, 0
        ),
        rc.SetMeta("seen_mode:3", "private"),
    ):
        cs.add(change)
    record = MessageRecord(4, ("\\Seen",), 40, 1.7e9, 0, 99, None)
    cs.events += [
        ev.FlagsChanged(3, (1, 2, 3), 43, user_id=5),
        ev.MessagesAdded(3, (7,)),
        ev.MessagesExpunged(
            3, (4,), 44, (record,), {5: ev.ExpungedPrivate({"\\Seen": frozenset({4})}, {4: 41}, 2)}
        ),
        ev.MailboxReset(3, "UIDVALIDITY changed"),
        ev.MailboxListChanged(("Support/Ä",)),
    ]
    return cs


def test_round_trip_is_equal() -> None:
    cs = sample()
    back = decode(encode(cs))
    assert back.rows.items == cs.rows.items
    assert back.events == cs.events
    # compare=False fields too:
    assert back.events[2].private == cs.events[2].private  # type: ignore[union-attr]


def test_only_known_types_are_decoded() -> None:
    text = json.dumps({"rows": [{"@": "Popen", "args": ["rm"]}], "events": []})
    with pytest.raises(WireError, match="unknown type"):
        decode(text)
    with pytest.raises(WireError, match="malformed"):
        decode("{")

    class Foreign:
        pass

    cs = ChangeSet()
    cs.events.append(Foreign())  # type: ignore[arg-type]
    with pytest.raises(WireError):
        encode(cs)


def test_payload_is_compact() -> None:
    cs = ChangeSet()
    cs.add(rc.SetSharedFlags(1, {("\\Seen",): tuple(range(1, 100_001))}, 5))
    # 100,000 UIDs: about 7 bytes each; travels in the log, never in a NOTIFY.
    assert len(encode(cs)) < 800_000
