"""team/recovery_store.py on a real store (SQLite; the same Core statements run on
PostgreSQL): items through their states, the listing's filters, repeated removals,
Trash origins, the one UIDVALIDITY of the "Recovered" folders."""

from __future__ import annotations

import time
from pathlib import Path

from imapgate.store.engine import open_engine
from imapgate.team.recovery_store import KEPT, PENDING, RESTORED, ItemFilter, RecoveryItem, RecoveryStore


def item(uid: int, **kw: object) -> RecoveryItem:
    values: dict[str, object] = {
        "mailbox": "INBOX", "uidvalidity": 7, "uid": uid, "copy_uidvalidity": 9, "internal_date": 1.0,
        "size": 100, "how": "EXPUNGE", "subject": f"Rechnung {uid}", "sender": "Lieferant X <x@example.org>",
        "message_id": f"<m{uid}@x>", "removed_by": "alice", "flags": ("\\Flagged",),
        "private": {3: ("\\Seen",)}, "copy_uid": 100 + uid, "state": KEPT,
    }  # fmt: skip
    values.update(kw)
    return RecoveryItem(**values)  # type: ignore[arg-type]


def store(tmp_path: Path) -> RecoveryStore:
    return RecoveryStore(open_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}"))


def test_items_round_trip_and_filters(tmp_path: Path) -> None:
    s = store(tmp_path)
    old = item(1, removed_at=time.time() - 3600, removed_by="bob")
    ids = s.add([old, item(2, mailbox="Work", restore_to="Projects"), item(3, state=PENDING)])
    assert ids == [old.id, ids[1], ids[2]] and len(set(ids)) == 3
    (got,) = s.items(ItemFilter(ids=(old.id,)))
    assert (got.flags, got.private, got.copy_uid, got.sender) == (
        ("\\Flagged",),
        {3: ("\\Seen",)},
        101,
        old.sender,
    )
    assert [i.uid for i in s.items()] == [1, 2]  # pending is listed nowhere
    assert [i.uid for i in s.items(ItemFilter(user="bob"))] == [1]
    assert [i.uid for i in s.items(ItemFilter(since=time.time() - 60))] == [2]
    assert [i.uid for i in s.items(ItemFilter(folder="Projects"))] == [2]  # where it goes back to
    assert [i.uid for i in s.items(ItemFilter(search="rechnung 2"))] == [2]  # any case
    assert [i.uid for i in s.items(ItemFilter(search="LIEFERANT"))] == [1, 2]
    assert [i.uid for i in s.expired(time.time() - 60)] == [1]
    s.set_state([old.id], RESTORED)
    assert [i.uid for i in s.items()] == [2]
    (done,) = s.items(ItemFilter(states=(RESTORED,)))
    assert done.done_at is not None


def test_repeated_removal_and_copies_are_known(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.add([item(1, state=PENDING, intent_id=5), item(2), item(3, state=RESTORED)])
    assert s.open_originals("INBOX", 7, [1, 2, 3, 4]) == {1: 5, 2: None}
    assert s.open_originals("INBOX", 8, [1, 2]) == {}  # another UIDVALIDITY: other messages
    assert s.copy_uids(9) == {101, 102}
    assert [i.uid for i in s.of_intent(5)] == [1]


def test_payload_round_trip(tmp_path: Path) -> None:
    original = item(4, intent_id=2, restore_to="Work")
    back = RecoveryItem.from_payload(original.payload())
    assert back == original


def test_trash_origin_and_uidvalidity(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.trash_origin("Trash", "<a@x>") is None
    s.remember_trash("Trash", [("<a@x>", "Work"), ("<b@x>", "INBOX")])
    s.remember_trash("Trash", [("<a@x>", "Projects")])
    assert s.trash_origin("Trash", "<a@x>") == "Projects"  # the latest move wins
    assert s.trash_origin("Deleted Items", "<a@x>") is None
    first = s.uidvalidity()
    assert first > 0 and store(tmp_path).uidvalidity() == first  # made once, kept
