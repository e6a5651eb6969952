"""The replica service: every mailbox's index in memory, persisted in the
store, with change events published after each commit.

All mutation goes through the methods here, each one store transaction:
the sync engine applies what upstream reports, the server's write path applies
what it did upstream (passing a ``hook`` that writes the journal entry in the
same transaction).  Methods are synchronous and run on the event loop's thread;
they never await, so a change is atomic with respect to sessions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from ..store.schema import expunged as expunged_table
from ..store.schema import mailboxes, messages, meta, private_flags, private_modseqs
from .events import (
    EventHub,
    ExpungedPrivate,
    FlagsChanged,
    MailboxListChanged,
    MailboxReset,
    MessagesAdded,
    MessagesExpunged,
    ModeChanged,
)
from .mailbox import MailboxIndex, MessageRecord, PrivateState, intern_flags
from .uidset import UidSet

Hook = Callable[[Connection], None]
SeenMode = Literal["private", "shared"]

#: Per-user private modseqs kept per mailbox before the oldest half is folded
#: into the floor: bounds memory for 100,000 messages x 50 users, since only
#: recent private changes need exact modseqs.
MAX_PRIVATE_MODSEQS = 20_000
#: UID 0 is never a message: its row in private_modseqs stores the floor.
FLOOR_UID = 0

#: Expunged UIDs remembered per mailbox for QRESYNC VANISHED (EARLIER).  Older
#: ones are forgotten; a client resyncing from before that gets every UID it
#: names that no longer exists (RFC 7162 §3.2.5.1 allows this superset).
MAX_EXPUNGED_REMEMBERED = 100_000


class Replica:
    def __init__(
        self,
        engine: Engine,
        hub: EventHub | None = None,
        *,
        private_flags: Iterable[str] = ("\\Seen",),
        default_seen: SeenMode = "private",
        seen_modes: Mapping[str, SeenMode] | None = None,
    ) -> None:
        self.engine = engine
        self.hub = hub or EventHub()
        self.private_flag_names = tuple(private_flags)
        self._private_by_casefold = {f.casefold(): f for f in self.private_flag_names}
        self.default_seen: SeenMode = default_seen
        self.config_seen_modes = dict(seen_modes or {})
        self.by_name: dict[str, MailboxIndex] = {}
        self.by_id: dict[int, MailboxIndex] = {}

    # -- loading ----------------------------------------------------------------
    def load(self) -> None:
        """Read every mailbox and message from the store (start-up)."""
        self.by_name.clear()
        self.by_id.clear()
        with self.engine.connect() as conn:
            for r in conn.execute(select(mailboxes)):
                mb = MailboxIndex(
                    id=r.id,
                    name=r.name,
                    delimiter=r.delimiter,
                    attributes=tuple(r.attributes.split()) if r.attributes else (),
                    uidvalidity=r.uidvalidity,
                    uidnext=r.uidnext,
                    modseq=r.modseq,
                    shared_highest=r.modseq,
                    upstream_modseq=r.upstream_modseq,
                    seen_mode=r.seen_mode,
                    synced=r.synced,
                )
                self.by_name[mb.name] = mb
                self.by_id[mb.id] = mb
            rows = conn.execute(select(messages).order_by(messages.c.mailbox_id, messages.c.uid))
            for m in rows:
                mb = self.by_id[m.mailbox_id]
                rec = MessageRecord(
                    m.uid,
                    intern_flags(m.flags.split()) if m.flags else (),
                    m.modseq,
                    m.internal_date,
                    m.tz_offset,
                    m.size,
                    m.message_id,
                )
                mb.records[m.uid] = rec
                mb.uids.append(m.uid)
            for e in conn.execute(select(expunged_table)):
                self.by_id[e.mailbox_id].expunged[e.uid] = e.modseq
        self._settle_configured_modes()
        for mb in self.by_id.values():
            mb.shared_highest = max(
                [r.modseq for r in mb.records.values()] + list(mb.expunged.values()) + [1]
            )

    def _settle_configured_modes(self) -> None:
        """A folder's read-state mode may have changed in the configuration since the
        last run: treat it like ``imapgate folder set`` (drop stale personal \\Seen
        so everyone starts from the shared state, instead of old marks coming back)."""
        with self.engine.begin() as conn:
            stored = {
                r.key: r.value for r in conn.execute(select(meta).where(meta.c.key.like("seen_mode:%")))
            }
            for mb in self.by_id.values():
                key = f"seen_mode:{mb.id}"
                now = self.seen_mode(mb)
                before = stored.get(key)
                if before == now:
                    continue
                if before is not None:
                    conn.execute(
                        delete(private_flags).where(
                            private_flags.c.mailbox_id == mb.id, private_flags.c.flag == "\\Seen"
                        )
                    )
                self._record_mode(conn, mb)

    def _record_mode(self, conn: Connection, mb: MailboxIndex) -> None:
        """Remember the mode in force, so a later change in the config is noticed."""
        key = f"seen_mode:{mb.id}"
        conn.execute(delete(meta).where(meta.c.key == key))
        conn.execute(insert(meta).values(key=key, value=self.seen_mode(mb)))

    # -- mailbox list -------------------------------------------------------------
    def get(self, name: str) -> MailboxIndex | None:
        return self.by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self.by_name)

    def upsert_mailbox(self, name: str, delimiter: str | None, attributes: tuple[str, ...]) -> MailboxIndex:
        mb = self.by_name.get(name)
        if mb is not None:
            if mb.delimiter != delimiter or mb.attributes != attributes:
                with self.engine.begin() as conn:
                    conn.execute(
                        update(mailboxes)
                        .where(mailboxes.c.id == mb.id)
                        .values(delimiter=delimiter, attributes=" ".join(attributes))
                    )
                mb.delimiter, mb.attributes = delimiter, attributes
            return mb
        with self.engine.begin() as conn:
            key = conn.execute(
                insert(mailboxes).values(
                    name=name,
                    delimiter=delimiter,
                    attributes=" ".join(attributes),
                    uidvalidity=0,
                    uidnext=1,
                    upstream_modseq=0,
                    modseq=1,
                    synced=False,
                )
            ).inserted_primary_key
        assert key is not None
        mb = MailboxIndex(
            id=int(key[0]),
            name=name,
            delimiter=delimiter,
            attributes=attributes,
            uidvalidity=0,
            uidnext=1,
            modseq=1,
            shared_highest=1,
            upstream_modseq=0,
            seen_mode=None,
            synced=False,
        )
        self.by_name[name] = mb
        self.by_id[mb.id] = mb
        self.hub.publish(MailboxListChanged((name,)))
        return mb

    def drop_mailbox(self, name: str, *, hook: Hook | None = None) -> None:
        mb = self.by_name.pop(name, None)
        if mb is None:
            return
        del self.by_id[mb.id]
        with self.engine.begin() as conn:
            for table in (messages, private_flags, private_modseqs, expunged_table):
                conn.execute(delete(table).where(table.c.mailbox_id == mb.id))
            conn.execute(delete(mailboxes).where(mailboxes.c.id == mb.id))
            if hook:
                hook(conn)
        self.hub.publish(MailboxReset(mb.id, f"mailbox {name} was deleted"))
        self.hub.publish(MailboxListChanged((name,)))

    def rename_mailbox(self, old: str, new: str, *, hook: Hook | None = None) -> None:
        """Rename ``old`` and its children (``old`` + delimiter + ...)."""
        mb = self.by_name.get(old)
        renamed: list[tuple[MailboxIndex, str]] = []
        for name, m in list(self.by_name.items()):
            if name == old:
                renamed.append((m, new))
            elif mb is not None and mb.delimiter and name.startswith(old + mb.delimiter):
                renamed.append((m, new + name[len(old) :]))
        with self.engine.begin() as conn:
            for m, new_name in renamed:
                conn.execute(update(mailboxes).where(mailboxes.c.id == m.id).values(name=new_name))
            if hook:
                hook(conn)
        for m, _ in renamed:
            del self.by_name[m.name]
        for m, new_name in renamed:
            m.name = new_name
            self.by_name[new_name] = m
        self.hub.publish(MailboxListChanged((old, new)))

    def delimiter(self) -> str:
        """The upstream hierarchy delimiter (``/`` at Dovecot, ``.`` at many
        hosters), shown to clients unchanged so folder names pass through as-is."""
        inbox = self.by_name.get("INBOX")
        if inbox is not None and inbox.delimiter:
            return inbox.delimiter
        seen = [mb.delimiter for mb in self.by_name.values() if mb.delimiter]
        return max(set(seen), key=seen.count) if seen else "/"

    def seen_mode(self, mb: MailboxIndex, setting: str | None = None) -> SeenMode:
        """``mb``'s read-state mode (or what it would be with folder ``setting``)."""
        own = setting if setting is not None else mb.seen_mode
        mode = own or self.config_seen_modes.get(mb.name) or self.default_seen
        return "shared" if mode == "shared" else "private"

    def private_flags_of(self, mb: MailboxIndex) -> frozenset[str]:
        """The flags kept per user in ``mb`` (\\Seen is shared in a shared-read folder)."""
        names = set(self.private_flag_names)
        if self.seen_mode(mb) == "shared":
            names.discard("\\Seen")
        return frozenset(names)

    def canonical_flag(self, flag: str) -> str:
        """``flag`` spelt as in ``private_flags`` when it is one of them in another
        case (flag names are case-insensitive, RFC 9051 §2.3.2): a client's ``old``
        is the private ``Old``, not a shared keyword of its own."""
        return self._private_by_casefold.get(flag.casefold(), flag)

    # -- sync state -----------------------------------------------------------------
    def reset(self, mb: MailboxIndex, uidvalidity: int, reason: str) -> None:
        """Forget every message of ``mb`` (UIDVALIDITY changed upstream)."""
        with self.engine.begin() as conn:
            for table in (messages, private_flags, private_modseqs, expunged_table):
                conn.execute(delete(table).where(table.c.mailbox_id == mb.id))
            mb.modseq += 1
            conn.execute(
                update(mailboxes)
                .where(mailboxes.c.id == mb.id)
                .values(uidvalidity=uidvalidity, uidnext=1, upstream_modseq=0, synced=False, modseq=mb.modseq)
            )
        had_uidvalidity = mb.uidvalidity
        mb.uidvalidity, mb.uidnext, mb.upstream_modseq, mb.synced = uidvalidity, 1, 0, False
        mb.uids, mb.records, mb.expunged, mb.private = [], {}, {}, {}
        mb.recent = UidSet()
        mb.shared_highest = mb.modseq
        if had_uidvalidity:
            self.hub.publish(MailboxReset(mb.id, reason))

    def set_sync_state(
        self,
        mb: MailboxIndex,
        *,
        uidnext: int | None = None,
        upstream_modseq: int | None = None,
        synced: bool | None = None,
    ) -> None:
        values: dict[str, object] = {}
        if uidnext is not None and uidnext > mb.uidnext:
            mb.uidnext = values["uidnext"] = uidnext
        if upstream_modseq is not None and upstream_modseq != mb.upstream_modseq:
            mb.upstream_modseq = values["upstream_modseq"] = upstream_modseq
        if synced is not None and synced != mb.synced:
            mb.synced = values["synced"] = synced
        if values:
            with self.engine.begin() as conn:
                conn.execute(update(mailboxes).where(mailboxes.c.id == mb.id).values(**values))

    # -- messages ---------------------------------------------------------------------
    def add_messages(
        self,
        mb: MailboxIndex,
        recs: list[MessageRecord],
        *,
        hook: Hook | None = None,
        recent: bool | None = None,
    ) -> tuple[int, ...]:
        """Add new messages (from upstream sync, APPEND or COPY); returns their UIDs.
        Messages already known are left alone (sync may report them twice).

        ``recent``: the messages arrived now and are \\Recent for the first
        session that sees them (``MailboxIndex.recent``).  By default, whatever
        is added to a folder already synced: mail the gateway learns about while
        it runs (new at the hoster, or APPEND/COPY/MOVE through it), not the
        initial fill of a folder (first sync, rebuild after a UIDVALIDITY change),
        whose messages were there before the gateway knew the folder."""
        fresh = [r for r in recs if r.uid not in mb.records]
        if not fresh and hook is None:
            return ()
        modseq = mb.next_modseq() if fresh else mb.modseq
        for r in fresh:
            r.modseq = modseq
            r.flags = intern_flags(r.flags)
        with self.engine.begin() as conn:
            if fresh:
                conn.execute(
                    insert(messages),
                    [
                        {
                            "mailbox_id": mb.id,
                            "uid": r.uid,
                            "internal_date": r.internal_date,
                            "tz_offset": r.tz_offset,
                            "size": r.size,
                            "flags": " ".join(r.flags),
                            "modseq": modseq,
                            "message_id": r.message_id,
                        }
                        for r in fresh
                    ],
                )
                uidnext = max(mb.uidnext, max(r.uid for r in fresh) + 1)
                conn.execute(
                    update(mailboxes).where(mailboxes.c.id == mb.id).values(modseq=modseq, uidnext=uidnext)
                )
            if hook:
                hook(conn)
        for r in fresh:
            mb.add(r)
        if fresh:
            mb.shared_highest = modseq
        uids = tuple(sorted(r.uid for r in fresh))
        if uids and (mb.synced if recent is None else recent):
            mb.recent.update(uids)
        if uids:
            self.hub.publish(MessagesAdded(mb.id, uids))
        return uids

    def set_shared_flags(
        self, mb: MailboxIndex, changes: Mapping[int, Iterable[str]], *, hook: Hook | None = None
    ) -> tuple[int, ...]:
        """Set the shared flags of messages; returns the UIDs whose flags really changed
        (they get one new modseq).  Unknown UIDs are ignored."""
        changed: list[tuple[MessageRecord, tuple[str, ...]]] = []
        for uid, flags in changes.items():
            rec = mb.records.get(uid)
            if rec is None:
                continue
            new = intern_flags(tuple(flags))
            if new != rec.flags:
                changed.append((rec, new))
        if not changed and hook is None:
            return ()
        modseq = mb.next_modseq() if changed else mb.modseq
        with self.engine.begin() as conn:
            if changed:
                # One UPDATE per flag combination keeps a 100,000-message flag
                # resync to a handful of statements.
                by_flags: dict[tuple[str, ...], list[int]] = {}
                for rec, new in changed:
                    by_flags.setdefault(new, []).append(rec.uid)
                for new, flag_uids in by_flags.items():
                    for chunk in _chunks(flag_uids, 500):
                        conn.execute(
                            update(messages)
                            .where(messages.c.mailbox_id == mb.id, messages.c.uid.in_(chunk))
                            .values(flags=" ".join(new), modseq=modseq)
                        )
                conn.execute(update(mailboxes).where(mailboxes.c.id == mb.id).values(modseq=modseq))
            if hook:
                hook(conn)
        for rec, new in changed:
            rec.flags = new
            rec.modseq = modseq
        uids = tuple(sorted(rec.uid for rec, _ in changed))
        if uids:
            mb.shared_highest = modseq
            self.hub.publish(FlagsChanged(mb.id, uids, modseq, None))
        return uids

    def expunge(self, mb: MailboxIndex, uids: Iterable[int], *, hook: Hook | None = None) -> tuple[int, ...]:
        present = [u for u in set(uids) if u in mb.records]
        if not present and hook is None:
            return ()
        modseq = mb.next_modseq() if present else mb.modseq
        with self.engine.begin() as conn:
            for chunk in _chunks(sorted(present), 500):
                conn.execute(
                    delete(messages).where(messages.c.mailbox_id == mb.id, messages.c.uid.in_(chunk))
                )
                conn.execute(
                    delete(private_modseqs).where(
                        private_modseqs.c.mailbox_id == mb.id, private_modseqs.c.uid.in_(chunk)
                    )
                )
            if present:
                conn.execute(
                    insert(expunged_table),
                    [{"mailbox_id": mb.id, "uid": u, "modseq": modseq} for u in present],
                )
                conn.execute(update(mailboxes).where(mailboxes.c.id == mb.id).values(modseq=modseq))
            if hook:
                hook(conn)
            # Only the private sets that held an expunged UID change: with 20
            # users, rewriting every set on every expunge was 11 % of the CPU.
            ordered = sorted(present)
            records = tuple(mb.records[u] for u in ordered)
            private = _private_of(mb, ordered)
            gone = mb.remove(set(present), modseq)
            for user_id, snap in private.items():
                if snap.flags:
                    self._write_private_sets(conn, mb, user_id, mb.private[user_id], snap.flags)
        if gone:
            mb.shared_highest = modseq
            self._trim_expunged(mb)
            self.hub.publish(MessagesExpunged(mb.id, tuple(gone), modseq, records, private))
        return tuple(gone)

    def _trim_expunged(self, mb: MailboxIndex) -> None:
        if len(mb.expunged) <= MAX_EXPUNGED_REMEMBERED:
            return
        keep = sorted(mb.expunged.items(), key=lambda kv: kv[1])[-MAX_EXPUNGED_REMEMBERED // 2 :]
        cutoff = keep[0][1]
        mb.expunged = dict(keep)
        with self.engine.begin() as conn:
            conn.execute(
                delete(expunged_table).where(
                    expunged_table.c.mailbox_id == mb.id, expunged_table.c.modseq < cutoff
                )
            )

    # -- private flags --------------------------------------------------------------------
    def private_state(self, mb: MailboxIndex, user_id: int) -> PrivateState:
        state = mb.private.get(user_id)
        if state is None:
            state = PrivateState()
            with self.engine.connect() as conn:
                for r in conn.execute(
                    select(private_flags).where(
                        private_flags.c.user_id == user_id, private_flags.c.mailbox_id == mb.id
                    )
                ):
                    state.flags[r.flag] = UidSet.decode(r.uids)
                for r in conn.execute(
                    select(private_modseqs.c.uid, private_modseqs.c.modseq).where(
                        private_modseqs.c.user_id == user_id, private_modseqs.c.mailbox_id == mb.id
                    )
                ):
                    if r.uid == FLOOR_UID:
                        state.floor = r.modseq
                    else:
                        state.modseqs[r.uid] = r.modseq
            state.highest = max(max(state.modseqs.values(), default=0), state.floor)
            mb.private[user_id] = state
            if "\\Seen" not in state.flags and "\\Seen" in self.private_flags_of(mb):
                self._initialise_private_seen(mb, user_id, state)
        return state

    def _initialise_private_seen(self, mb: MailboxIndex, user_id: int, state: PrivateState) -> None:
        """A user's first look at a private-read folder starts from the folder's
        read state upstream: switching a team to imapgate must not turn years of
        read mail into unread mail.  From then on the user's state is their own."""
        seen = UidSet(u for u in mb.uids if "\\Seen" in mb.records[u].flags)
        state.flags["\\Seen"] = seen
        with self.engine.begin() as conn:
            self._write_private_sets(conn, mb, user_id, state, ["\\Seen"])

    def set_private_flags(
        self,
        mb: MailboxIndex,
        user_id: int,
        add: Mapping[str, Iterable[int]],
        remove: Mapping[str, Iterable[int]],
        *,
        hook: Hook | None = None,
    ) -> tuple[int, ...]:
        """Add/remove private flags of one user; returns the UIDs whose state changed
        (they get a new modseq visible to this user only)."""
        state = self.private_state(mb, user_id)
        touched: set[int] = set()
        names: set[str] = set()
        for flag, uids in add.items():
            s = state.flags.setdefault(flag, UidSet())
            for u in uids:
                if u in mb.records and u not in s:
                    s.add(u)
                    touched.add(u)
                    names.add(flag)
        for flag, uids in remove.items():
            s = state.flags.get(flag) or UidSet()
            for u in uids:
                if u in s:
                    s.discard(u)
                    touched.add(u)
                    names.add(flag)
        if not touched and hook is None:
            return ()
        modseq = mb.next_modseq() if touched else mb.modseq
        with self.engine.begin() as conn:
            if touched:
                self._write_private_sets(conn, mb, user_id, state, names)
                conn.execute(
                    delete(private_modseqs).where(
                        private_modseqs.c.user_id == user_id,
                        private_modseqs.c.mailbox_id == mb.id,
                        private_modseqs.c.uid.in_(sorted(touched)),
                    )
                )
                conn.execute(
                    insert(private_modseqs),
                    [{"user_id": user_id, "mailbox_id": mb.id, "uid": u, "modseq": modseq} for u in touched],
                )
                conn.execute(update(mailboxes).where(mailboxes.c.id == mb.id).values(modseq=modseq))
            if hook:
                hook(conn)
        for u in touched:
            state.modseqs[u] = modseq
        uids = tuple(sorted(touched))
        if uids:
            state.highest = modseq
            if len(state.modseqs) > MAX_PRIVATE_MODSEQS:
                self._compact_private_modseqs(mb, user_id, state)
            self.hub.publish(FlagsChanged(mb.id, uids, modseq, user_id))
        return uids

    def _compact_private_modseqs(self, mb: MailboxIndex, user_id: int, state: PrivateState) -> None:
        ordered = sorted(state.modseqs.items(), key=lambda kv: kv[1])
        drop = ordered[: len(ordered) // 2]
        state.floor = max(state.floor, drop[-1][1])
        for uid, _ in drop:
            del state.modseqs[uid]
        with self.engine.begin() as conn:
            conn.execute(
                delete(private_modseqs).where(
                    private_modseqs.c.user_id == user_id,
                    private_modseqs.c.mailbox_id == mb.id,
                    private_modseqs.c.modseq <= state.floor,
                )
            )
            conn.execute(
                insert(private_modseqs).values(
                    user_id=user_id, mailbox_id=mb.id, uid=FLOOR_UID, modseq=state.floor
                )
            )

    def _write_private_sets(
        self, conn: Connection, mb: MailboxIndex, user_id: int, state: PrivateState, names: Iterable[str]
    ) -> None:
        for flag in names:
            s = state.flags.get(flag)
            conn.execute(
                delete(private_flags).where(
                    private_flags.c.user_id == user_id,
                    private_flags.c.mailbox_id == mb.id,
                    private_flags.c.flag == flag,
                )
            )
            # An empty set is stored too: its row marks the state as initialised.
            conn.execute(
                insert(private_flags).values(
                    user_id=user_id, mailbox_id=mb.id, flag=flag, uids=(s or UidSet()).encode()
                )
            )

    def forget_user(self, user_id: int) -> None:
        """Drop what is held in memory about a removed user (their rows went with
        the account: the store cascades the delete)."""
        for mb in self.by_id.values():
            mb.private.pop(user_id, None)

    def users_with_private_state(self, mb: MailboxIndex) -> list[int]:
        """Users that have private flags in ``mb`` (loaded or only in the store)."""
        with self.engine.connect() as conn:
            stored = {
                r[0]
                for r in conn.execute(
                    select(private_flags.c.user_id).where(private_flags.c.mailbox_id == mb.id).distinct()
                )
            }
        return sorted(stored | set(mb.private))

    # -- read-state mode ------------------------------------------------------------------
    def set_seen_mode(self, mb: MailboxIndex, mode: SeenMode | None) -> None:
        """Switch a folder between private and shared read state (None: config default).

        Private -> shared: the folder's upstream \\Seen is what everybody sees from
        now on; the private states are discarded.  Shared -> private: every user
        starts from the shared state at the moment of the switch (their first look
        copies it).  Every session gets the new flags at once.
        """
        before = self.seen_mode(mb)
        mb.seen_mode = mode
        after = self.seen_mode(mb)
        with self.engine.begin() as conn:
            conn.execute(update(mailboxes).where(mailboxes.c.id == mb.id).values(seen_mode=mode))
            self._record_mode(conn, mb)
            if after != before:
                conn.execute(
                    delete(private_flags).where(
                        private_flags.c.mailbox_id == mb.id, private_flags.c.flag == "\\Seen"
                    )
                )
        if after != before:
            mb.private.clear()
            self._announce_all(mb)

    def users_with_private_seen(self, mb: MailboxIndex) -> int:
        """How many users keep their own read marks in ``mb`` (what a switch to
        shared read state drops)."""
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count(func.distinct(private_flags.c.user_id))).where(
                    private_flags.c.mailbox_id == mb.id, private_flags.c.flag == "\\Seen"
                )
            ).scalar_one()
        return int(n)

    def reload_seen_modes(self) -> None:
        """Pick up read-state modes changed by ``imapgate folder set`` in another process."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(mailboxes.c.id, mailboxes.c.seen_mode)).all()
        for r in rows:
            mb = self.by_id.get(r.id)
            if mb is not None and mb.seen_mode != r.seen_mode:
                before = self.seen_mode(mb)
                mb.seen_mode = r.seen_mode
                if self.seen_mode(mb) != before:
                    with self.engine.begin() as conn:
                        self._record_mode(conn, mb)
                    mb.private.clear()
                    self._announce_all(mb)

    def _announce_all(self, mb: MailboxIndex) -> None:
        """Every message's flags may look different now: a new modseq for all."""
        modseq = mb.next_modseq()
        with self.engine.begin() as conn:
            conn.execute(update(messages).where(messages.c.mailbox_id == mb.id).values(modseq=modseq))
            conn.execute(update(mailboxes).where(mailboxes.c.id == mb.id).values(modseq=modseq))
        for rec in mb.records.values():
            rec.modseq = modseq
        mb.shared_highest = modseq
        self.hub.publish(ModeChanged(mb.id))
        self.hub.publish(FlagsChanged(mb.id, tuple(mb.uids), modseq, None))

    # -- UIDVALIDITY change -----------------------------------------------------------------
    def private_by_message_id(self, mb: MailboxIndex) -> dict[int, dict[str, set[str]]]:
        """Each user's private flags keyed by Message-ID, for messages whose
        Message-ID is unique in the folder (to re-attach after a rebuild)."""
        count: dict[str, int] = {}
        for rec in mb.records.values():
            if rec.message_id:
                count[rec.message_id] = count.get(rec.message_id, 0) + 1
        unique = {
            rec.uid: rec.message_id
            for rec in mb.records.values()
            if rec.message_id and count[rec.message_id] == 1
        }
        out: dict[int, dict[str, set[str]]] = {}
        for user_id in self.users_with_private_state(mb):
            state = self.private_state(mb, user_id)
            per_flag = {
                flag: {mid for uid, mid in unique.items() if uid in s} for flag, s in state.flags.items()
            }
            out[user_id] = per_flag
        return out

    def reattach_private(self, mb: MailboxIndex, saved: dict[int, dict[str, set[str]]]) -> int:
        """Re-apply ``private_by_message_id`` output to the rebuilt folder; returns
        how many (user, message) states were restored."""
        count: dict[str, int] = {}
        by_mid: dict[str, int] = {}
        for rec in mb.records.values():
            if rec.message_id:
                count[rec.message_id] = count.get(rec.message_id, 0) + 1
                by_mid[rec.message_id] = rec.uid
        restored = 0
        for user_id, per_flag in saved.items():
            state = PrivateState()
            for flag, mids in per_flag.items():
                state.flags[flag] = UidSet(by_mid[m] for m in mids if count.get(m) == 1)
                restored += len(state.flags[flag])
            mb.private[user_id] = state
            with self.engine.begin() as conn:
                self._write_private_sets(conn, mb, user_id, state, state.flags.keys())
        return restored

    # -- what one user sees ---------------------------------------------------------------
    def highest_modseq_for(self, mb: MailboxIndex, user_id: int | None) -> int:
        if user_id is None:
            return mb.shared_highest
        state = mb.private.get(user_id)
        return max(mb.shared_highest, state.highest if state else 0)

    def modseq_for(self, mb: MailboxIndex, rec: MessageRecord, state: PrivateState | None) -> int:
        if state is None:
            return rec.modseq
        return max(rec.modseq, state.modseqs.get(rec.uid, state.floor))

    def flags_for(
        self, mb: MailboxIndex, rec: MessageRecord, state: PrivateState | None, private: frozenset[str]
    ) -> tuple[str, ...]:
        """The flags ``rec`` shows to the user whose private state is ``state``."""
        if not private:
            return rec.flags
        shown = [f for f in rec.flags if f not in private]
        if state is not None:
            for flag, s in state.flags.items():
                if flag in private and rec.uid in s:
                    shown.append(flag)
        return intern_flags(shown)


#: Below this many UIDs, membership in a private set is tested one by one
#: rather than merged with the set's ranges.
_FEW_UIDS = 64


def _private_of(mb: MailboxIndex, uids: list[int]) -> dict[int, ExpungedPrivate]:
    """What is private about ascending ``uids`` for each user with loaded state:
    the flags they carry (only sets holding one of them, the ones an expunge
    rewrites) and their private modseqs."""
    out: dict[int, ExpungedPrivate] = {}
    for user_id, state in mb.private.items():
        flags: dict[str, frozenset[int]] = {}
        for flag, s in state.flags.items():
            if not s:
                continue
            if len(uids) < _FEW_UIDS:
                held = frozenset(u for u in uids if u in s)
            else:
                held = frozenset(u for u, m in zip(uids, s.members_sorted(uids), strict=True) if m)
            if held:
                flags[flag] = held
        got = state.modseqs.get
        modseqs = {u: m for u in uids if (m := got(u)) is not None}
        out[user_id] = ExpungedPrivate(flags, modseqs, state.floor)
    return out


def _chunks(items: list[int], n: int) -> Iterable[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def now() -> float:
    return time.time()
