"""The store repository: commits the replica's change sets.

``commit`` turns the row changes of one transition (``store.changes``) plus
the caller's hook (its journal entry) into one transaction.  A failure of the
disk (``health.is_storage_failure``) does not raise: the store is marked
unwritable and what the commit owed is kept in ``StoreHealth`` for the heal;
while it is unwritable nothing is attempted (a change could otherwise land
on top of rows that never were written).  Any other error raises as before,
and the caller's memory stays unchanged.

SQL runs on the caller's thread, the event loop's: measured in
docs/architecture.md ("Store"), a typical transition's commit costs tens of
microseconds, and a writer thread would make each transition wait for a
hand-over (or let sessions see changes before they are durable).  A
PostgreSQL repository, whose round trips are not free, is where a writer
task belongs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import Connection, Engine, delete, insert, select, update

from .changes import (
    AddMessages,
    ClearMessages,
    CompactPrivateModseqs,
    DeleteMailbox,
    DropPrivateFlag,
    ExpungeMessages,
    InsertMailbox,
    ParkMailboxName,
    ReplaceMailbox,
    RestampMessages,
    RowChange,
    RowChanges,
    SetMeta,
    SetPrivateModseqs,
    SetSharedFlags,
    TrimExpunged,
    UpdateMailbox,
    WritePrivateSets,
)
from .health import StoreHealth, is_storage_failure
from .schema import expunged, mailboxes, messages, meta, private_flags, private_modseqs, users
from .upsert import upsert

Hook = Callable[[Connection], None]

#: UIDs per ``IN (...)``: SQLite's default limit of bound parameters is far above.
_CHUNK = 500

_PROBE_KEY = "store_probe"


class StoreRepository:
    def __init__(self, engine: Engine, health: StoreHealth | None = None) -> None:
        self.engine = engine
        self.health = health or StoreHealth()

    def commit(self, changes: RowChanges, hook: Hook | None = None, *, last: Hook | None = None) -> bool:
        """Write ``changes`` and run ``hook``, then ``last``, in one transaction.  True:
        committed; False: the store is unwritable, the debt is recorded in ``health``
        (``changes`` and ``hook``; never ``last``, which tells others of this commit
        -- the change bus's log row -- and is for a commit that happens now)."""
        if not changes and hook is None:
            return True
        if not self.health.writable:
            self.health.defer(changes.mailbox_ids(), hook)
            return False
        try:
            with self.engine.begin() as conn:
                self.apply(conn, changes.items)
                if hook is not None:
                    hook(conn)
                if last is not None:
                    last(conn)
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            self.health.failed(exc, changes.mailbox_ids(), hook)
            return False
        return True

    def write(self, hook: Hook, mailbox_ids: Iterable[int] = ()) -> bool:
        """A write of the service layer alone (a journal entry of its own), with
        the same truth as ``commit``: kept for replay while the store is unwritable."""
        changes = RowChanges()
        ok = self.commit(changes, hook)
        if not ok:
            self.health.dirty.update(mailbox_ids)
        return ok

    def write_through(self, items: Iterable[RowChange], hooks: Iterable[Hook]) -> None:
        """One transaction, whatever ``health`` says (the heal); raises on failure."""
        with self.engine.begin() as conn:
            self.apply(conn, items)
            for hook in hooks:
                hook(conn)

    def probe(self) -> bool:
        """Does the store take a write now?  (A tiny one: a heal may still fail.)"""
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(meta).where(meta.c.key == _PROBE_KEY))
                conn.execute(insert(meta).values(key=_PROBE_KEY, value="ok"))
        except Exception as exc:
            if is_storage_failure(exc):
                return False
            raise
        return True

    # -- row changes into SQL ---------------------------------------------------------
    def apply(self, conn: Connection, items: Iterable[RowChange]) -> None:
        for c in items:
            _APPLY[type(c)](conn, c)


def _insert_mailbox(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, InsertMailbox)
    conn.execute(
        insert(mailboxes).values(
            id=c.mailbox_id,
            name=c.name,
            delimiter=c.delimiter,
            attributes=" ".join(c.attributes),
            uidvalidity=0,
            uidnext=1,
            upstream_modseq=0,
            modseq=1,
            synced=False,
        )
    )


def _update_mailbox(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, UpdateMailbox)
    conn.execute(update(mailboxes).where(mailboxes.c.id == c.mailbox_id).values(**c.values))


def _clear(conn: Connection, mailbox_id: int) -> None:
    for table in (messages, private_flags, private_modseqs, expunged):
        conn.execute(delete(table).where(table.c.mailbox_id == mailbox_id))


def _delete_mailbox(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, DeleteMailbox)
    _clear(conn, c.mailbox_id)
    conn.execute(delete(mailboxes).where(mailboxes.c.id == c.mailbox_id))


def _clear_messages(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, ClearMessages)
    _clear(conn, c.mailbox_id)


def _add_messages(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, AddMessages)
    if not c.rows:
        return
    rows = [
        {
            "mailbox_id": c.mailbox_id,
            "uid": r.uid,
            "internal_date": r.internal_date,
            "tz_offset": r.tz_offset,
            "size": r.size,
            "flags": " ".join(r.flags),
            "modseq": r.modseq,
            "message_id": r.message_id,
        }
        for r in c.rows
    ]
    if conn.dialect.name == "postgresql":
        # Several nodes: another node may have committed these messages already while this
        # node's replica did not hear of it (its change-log row was still waiting for the
        # database): a UID names one message, so its row is written again, not refused.
        upsert(conn, messages, rows, ("mailbox_id", "uid"))
    else:
        conn.execute(insert(messages), rows)


def _set_shared_flags(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, SetSharedFlags)
    # One UPDATE per flag combination keeps a 100,000-message flag resync to a
    # handful of statements.
    for flags, uids in c.by_flags.items():
        for chunk in _chunks(list(uids)):
            conn.execute(
                update(messages)
                .where(messages.c.mailbox_id == c.mailbox_id, messages.c.uid.in_(chunk))
                .values(flags=" ".join(flags), modseq=c.modseq)
            )


def _expunge(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, ExpungeMessages)
    for chunk in _chunks(sorted(c.uids)):
        conn.execute(delete(messages).where(messages.c.mailbox_id == c.mailbox_id, messages.c.uid.in_(chunk)))
        conn.execute(
            delete(private_modseqs).where(
                private_modseqs.c.mailbox_id == c.mailbox_id, private_modseqs.c.uid.in_(chunk)
            )
        )
    if c.uids:
        conn.execute(
            insert(expunged), [{"mailbox_id": c.mailbox_id, "uid": u, "modseq": c.modseq} for u in c.uids]
        )


def _trim_expunged(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, TrimExpunged)
    conn.execute(
        delete(expunged).where(expunged.c.mailbox_id == c.mailbox_id, expunged.c.modseq < c.below_modseq)
    )


def _write_private_sets(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, WritePrivateSets)
    # An upsert: two nodes writing one user's first set of a folder at once must not
    # both insert (a delete-then-insert fails the second on the primary key).
    rows = [
        {"user_id": c.user_id, "mailbox_id": c.mailbox_id, "flag": flag, "uids": encoded}
        for flag, encoded in c.sets.items()
    ]
    upsert(conn, private_flags, rows, key=("user_id", "mailbox_id", "flag"))


def _set_private_modseqs(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, SetPrivateModseqs)
    if not c.uids:
        return
    conn.execute(
        delete(private_modseqs).where(
            private_modseqs.c.user_id == c.user_id,
            private_modseqs.c.mailbox_id == c.mailbox_id,
            private_modseqs.c.uid.in_(sorted(c.uids)),
        )
    )
    conn.execute(
        insert(private_modseqs),
        [{"user_id": c.user_id, "mailbox_id": c.mailbox_id, "uid": u, "modseq": c.modseq} for u in c.uids],
    )


def _compact_private_modseqs(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, CompactPrivateModseqs)
    conn.execute(
        delete(private_modseqs).where(
            private_modseqs.c.user_id == c.user_id,
            private_modseqs.c.mailbox_id == c.mailbox_id,
            private_modseqs.c.modseq <= c.floor,
        )
    )
    conn.execute(
        insert(private_modseqs).values(
            user_id=c.user_id, mailbox_id=c.mailbox_id, uid=c.floor_uid, modseq=c.floor
        )
    )


def _drop_private_flag(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, DropPrivateFlag)
    conn.execute(
        delete(private_flags).where(
            private_flags.c.mailbox_id == c.mailbox_id, private_flags.c.flag == c.flag
        )
    )


def _restamp(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, RestampMessages)
    conn.execute(update(messages).where(messages.c.mailbox_id == c.mailbox_id).values(modseq=c.modseq))


def _park_mailbox_name(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, ParkMailboxName)
    conn.execute(update(mailboxes).where(mailboxes.c.id == c.mailbox_id).values(name=f":heal:{c.mailbox_id}"))


def _replace_mailbox(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, ReplaceMailbox)
    mid = c.mailbox_id
    if conn.execute(update(mailboxes).where(mailboxes.c.id == mid).values(**c.values)).rowcount == 0:
        conn.execute(insert(mailboxes).values(id=mid, **c.values))
    for table in (messages, expunged):
        conn.execute(delete(table).where(table.c.mailbox_id == mid))
    _add_messages(conn, AddMessages(mid, c.rows))
    if c.expunged:
        conn.execute(
            insert(expunged), [{"mailbox_id": mid, "uid": u, "modseq": m} for u, m in c.expunged.items()]
        )
    existing = {r[0] for r in conn.execute(select(users.c.id).where(users.c.id.in_(list(c.private))))}
    for user_id, state in c.private.items():
        if user_id not in existing:
            continue  # removed meanwhile: their rows went with the account
        for table in (private_flags, private_modseqs):
            conn.execute(delete(table).where(table.c.mailbox_id == mid, table.c.user_id == user_id))
        _write_private_sets(conn, WritePrivateSets(mid, user_id, state.sets))
        modseqs = dict(state.modseqs)
        if state.floor:
            modseqs[c.floor_uid] = state.floor
        if modseqs:
            conn.execute(
                insert(private_modseqs),
                [{"user_id": user_id, "mailbox_id": mid, "uid": u, "modseq": m} for u, m in modseqs.items()],
            )


def _set_meta(conn: Connection, c: RowChange) -> None:
    assert isinstance(c, SetMeta)
    conn.execute(delete(meta).where(meta.c.key == c.key))
    conn.execute(insert(meta).values(key=c.key, value=c.value))


_APPLY: dict[type, Callable[[Connection, RowChange], None]] = {
    InsertMailbox: _insert_mailbox,
    UpdateMailbox: _update_mailbox,
    DeleteMailbox: _delete_mailbox,
    ClearMessages: _clear_messages,
    AddMessages: _add_messages,
    SetSharedFlags: _set_shared_flags,
    ExpungeMessages: _expunge,
    TrimExpunged: _trim_expunged,
    WritePrivateSets: _write_private_sets,
    SetPrivateModseqs: _set_private_modseqs,
    CompactPrivateModseqs: _compact_private_modseqs,
    DropPrivateFlag: _drop_private_flag,
    RestampMessages: _restamp,
    ParkMailboxName: _park_mailbox_name,
    ReplaceMailbox: _replace_mailbox,
    SetMeta: _set_meta,
}


def _chunks(items: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]
