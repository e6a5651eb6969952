"""What the sync finds changed at the hoster becomes journal entries "at the hoster",
except the effects of the gateway's own writes still in flight (``OwnChanges``)."""

from __future__ import annotations

from pathlib import Path

from imapgate.gateway import operations as ops
from imapgate.gateway.audit_hoster import HosterJournal, OwnChanges
from imapgate.replica.mailbox import MailboxIndex, MessageRecord
from imapgate.store.engine import open_engine
from imapgate.team.audit import AuditQuery, search


def _folder() -> MailboxIndex:
    mb = MailboxIndex(1, "INBOX", "/", (), 7, 10, 1, 1, 1, None, True)
    for uid in (1, 2, 3):
        mb.add(MessageRecord(uid, ("\\Seen",) if uid == 1 else (), 1, 0.0, 0, 100, f"<m{uid}@x>"))
    return mb


def test_flag_changes_grouped_by_action_and_expunges(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 's.sqlite3'}")
    mb = _folder()
    observer = HosterJournal()
    hook = observer.flags_changed(mb, {1: (), 2: ("\\Flagged",), 3: ("\\Flagged",)})
    assert hook is not None
    with engine.begin() as conn:
        hook(conn)
    assert observer.flags_changed(mb, {1: ("\\Seen",)}) is None  # no change: no entry
    expunged = observer.expunged(mb, {3, 99})
    assert expunged is not None
    with engine.begin() as conn:
        expunged(conn)
    found = {(r.entry.action_word, r.entry.uids, r.entry.detail) for r in search(engine, AuditQuery())}
    assert found == {("unread", "1", "-\\Seen"), ("flagged", "2:3", "+\\Flagged"), ("expunged", "3", None)}
    for r in search(engine, AuditQuery()):
        assert (r.entry.user, r.entry.client, r.entry.origin) == (None, "at the hoster", "hoster")
    (gone,) = search(engine, AuditQuery(message_id="m3@x", action="expunged"))
    assert [m.uid for m in gone.entry.messages] == [3]


def test_the_gateways_own_writes_in_flight_are_not_the_hosters() -> None:
    mb = _folder()
    own = OwnChanges()
    observer = HosterJournal(own=own)
    store = ops.StoreFlags(mb, [2], "add", ("\\Flagged",))
    with own.during(store), own.during(ops.Expunge(mb)), own.during(ops.Append("INBOX", [])):
        assert observer.flags_changed(mb, {2: ("\\Flagged",)}) is None
        assert observer.flags_changed(mb, {3: ("\\Flagged",)}) is not None  # not the write's UID
        assert observer.expunged(mb, {1}) is None
        assert observer.arrived(mb, [MessageRecord(11, (), 1, 0.0, 0, 1, "<n@x>")]) is None
    # Done: the same changes are the hoster's again.
    assert observer.flags_changed(mb, {2: ("\\Flagged",)}) is not None
    assert observer.expunged(mb, {1}) is not None
    assert observer.arrived(mb, [MessageRecord(11, (), 1, 0.0, 0, 1, "<n@x>")]) is not None
    assert not (own.flags or own.expunges or own.all_expunges or own.arrivals)
    with own.during(ops.Move(mb, [3], "Archive")):
        assert observer.expunged(mb, {3}) is None and own.is_adding("Archive")
