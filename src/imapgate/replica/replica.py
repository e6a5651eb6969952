"""The replica service: every mailbox's index in memory, persisted in the
store, with change events published after each commit.

All mutation goes through the methods here.  Each is a state transition:
it produces a ``ChangeSet`` (the row changes and the events), the store
repository commits the rows in one transaction together with the caller's
``hook`` (the write path's journal entry), the in-memory index takes the
change, and the change bus publishes the change set.  The sync engine applies
what upstream reports, the service layer what it did upstream.  Methods are
synchronous and run on the event loop's thread; they never await, so a change
is atomic with respect to sessions.

When the store cannot be written (disk full, I/O error) the repository
records the debt instead of raising (``store.health``): memory still follows
upstream, and the healer writes it out when the store is back.  Modseqs come
from a ``ModseqAllocator`` and new mailbox ids from a ``MailboxIdAllocator``,
so several nodes can later share them through the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from sqlalchemy import Connection, Engine, func, select

from ..store.changes import (
    AddMessages,
    ClearMessages,
    CompactPrivateModseqs,
    DeleteMailbox,
    DropPrivateFlag,
    ExpungeMessages,
    InsertMailbox,
    MessageRow,
    ParkMailboxName,
    PrivateRows,
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
from ..store.health import StoreHealth
from ..store.repository import StoreRepository
from ..store.schema import expunged as expunged_table
from ..store.schema import mailboxes, messages, meta, private_flags, private_modseqs
from .bus import ChangeBus, InProcessChangeBus
from .changes import ChangeSet
from .coordination import MailboxIdAllocator, MemoryMailboxIdAllocator, MemoryModseqAllocator, ModseqAllocator
from .departures import DepartureLog
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
        repository: StoreRepository | None = None,
        bus: ChangeBus | None = None,
        modseqs: ModseqAllocator | None = None,
        mailbox_ids: MailboxIdAllocator | None = None,
    ) -> None:
        self.engine = engine
        self.repository = repository or StoreRepository(engine)
        #: Local fan-out of events to sessions and the dashboard, by mailbox:
        #: one subscriber of ``bus``.
        self.hub = hub or EventHub()
        self.bus: ChangeBus = bus or InProcessChangeBus()
        self.bus.subscribe(self._deliver)
        self.modseqs: ModseqAllocator = modseqs or MemoryModseqAllocator()
        self.mailbox_ids: MailboxIdAllocator = mailbox_ids or MemoryMailboxIdAllocator()
        self.private_flag_names = tuple(private_flags)
        self._private_by_casefold = {f.casefold(): f for f in self.private_flag_names}
        self.default_seen: SeenMode = default_seen
        self.config_seen_modes = dict(seen_modes or {})
        self.by_name: dict[str, MailboxIndex] = {}
        self.by_id: dict[int, MailboxIndex] = {}
        #: Where expunged messages went, written with each expunge (conflicts).
        self.departures = DepartureLog(engine)
        #: The hook recording messages the sync found gone at the hoster (the
        #: service layer replaces it to name a removal of its own in flight).
        self.gone_at_hoster: Callable[[MailboxIndex, Sequence[int]], Hook] = lambda mb, uids: (
            self.departures.writer(mb.id, mb.uidvalidity, uids, "hoster")
        )

    @property
    def health(self) -> StoreHealth:
        return self.repository.health

    # -- the transition plumbing ------------------------------------------------
    def _commit(self, changes: ChangeSet, hook: Hook | None = None) -> bool:
        """Commit the rows of ``changes`` (with ``hook``); False when the store is
        unwritable and the debt was recorded instead (memory goes on).

        ``changes.events`` are complete before this: the bus between nodes writes the
        whole change set -- rows-only ones too (a folder's UIDVALIDITY, its sync state, a
        read-state mode: nothing to announce, still news for the other nodes' replicas) --
        into the log in this very transaction (``ChangeBus.recorder``)."""
        record = self.bus.recorder(changes) if changes.rows or changes.events else None
        done = self.repository.commit(changes.rows, hook, last=record)
        if done and record is not None:
            changes.logged = True
        return done

    def _publish(self, changes: ChangeSet) -> None:
        if changes.events:
            self.bus.publish(changes)

    def _deliver(self, changes: ChangeSet) -> None:
        """The bus's change set, to this node's sessions and dashboard."""
        for event in changes.events:
            self.hub.publish(event)

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
            highest_id = conn.execute(select(func.max(mailboxes.c.id))).scalar()
        self.mailbox_ids.seen(int(highest_id or 0))
        self._settle_configured_modes()
        for mb in self.by_id.values():
            mb.shared_highest = max(
                [r.modseq for r in mb.records.values()] + list(mb.expunged.values()) + [1]
            )

    def _settle_configured_modes(self) -> None:
        """A folder's read-state mode may have changed in the configuration since the
        last run: treat it like ``imapgate folder set`` (drop stale personal \\Seen
        so everyone starts from the shared state, instead of old marks coming back)."""
        with self.engine.connect() as conn:
            stored = {
                r.key: r.value for r in conn.execute(select(meta).where(meta.c.key.like("seen_mode:%")))
            }
        changes = ChangeSet()
        for mb in self.by_id.values():
            key = f"seen_mode:{mb.id}"
            now = self.seen_mode(mb)
            before = stored.get(key)
            if before == now:
                continue
            if before is not None:
                changes.add(DropPrivateFlag(mb.id, "\\Seen"))
            changes.add(self._record_mode(mb))
        self._commit(changes)

    def _record_mode(self, mb: MailboxIndex) -> RowChange:
        """Remember the mode in force, so a later change in the config is noticed."""
        return SetMeta(f"seen_mode:{mb.id}", self.seen_mode(mb))

    # -- mailbox list -------------------------------------------------------------
    def get(self, name: str) -> MailboxIndex | None:
        return self.by_name.get(name)

    def mailbox_id(self, name: str) -> int | None:
        """The id of the folder named ``name`` (None: no such folder)."""
        mb = self.by_name.get(name)
        return mb.id if mb is not None else None

    def names(self) -> list[str]:
        return sorted(self.by_name)

    def upsert_mailbox(self, name: str, delimiter: str | None, attributes: tuple[str, ...]) -> MailboxIndex:
        mb = self.by_name.get(name)
        if mb is not None:
            if mb.delimiter != delimiter or mb.attributes != attributes:
                changes = ChangeSet()
                changes.add(
                    UpdateMailbox(mb.id, {"delimiter": delimiter, "attributes": " ".join(attributes)})
                )
                self._commit(changes)
                mb.delimiter, mb.attributes = delimiter, attributes
            return mb
        mailbox_id = self.mailbox_ids.next()
        changes = ChangeSet()
        changes.add(InsertMailbox(mailbox_id, name, delimiter, attributes))
        changes.events.append(MailboxListChanged((name,)))
        self._commit(changes)
        mb = MailboxIndex.new(mailbox_id, name, delimiter, attributes)
        self.by_name[name] = mb
        self.by_id[mb.id] = mb
        self._publish(changes)
        return mb

    def drop_mailbox(self, name: str, *, hook: Hook | None = None) -> None:
        mb = self.by_name.pop(name, None)
        if mb is None:
            return
        del self.by_id[mb.id]
        changes = ChangeSet()
        changes.add(DeleteMailbox(mb.id))
        changes.events += [MailboxReset(mb.id, f"mailbox {name} was deleted"), MailboxListChanged((name,))]
        self._commit(changes, hook)
        self._publish(changes)

    def rename_mailbox(self, old: str, new: str, *, hook: Hook | None = None) -> None:
        """Rename ``old`` and its children (``old`` + delimiter + ...)."""
        mb = self.by_name.get(old)
        renamed: list[tuple[MailboxIndex, str]] = []
        for name, m in list(self.by_name.items()):
            if name == old:
                renamed.append((m, new))
            elif mb is not None and mb.delimiter and name.startswith(old + mb.delimiter):
                renamed.append((m, new + name[len(old) :]))
        changes = ChangeSet()
        for m, new_name in renamed:
            changes.add(UpdateMailbox(m.id, {"name": new_name}))
        changes.events.append(MailboxListChanged((old, new)))
        self._commit(changes, hook)
        for m, _ in renamed:
            del self.by_name[m.name]
        for m, new_name in renamed:
            m.name = new_name
            self.by_name[new_name] = m
        self._publish(changes)

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
        modseq = self.modseqs.next(mb)
        changes = ChangeSet()
        changes.add(ClearMessages(mb.id))
        changes.add(
            UpdateMailbox(
                mb.id,
                {
                    "uidvalidity": uidvalidity,
                    "uidnext": 1,
                    "upstream_modseq": 0,
                    "synced": False,
                    "modseq": modseq,
                },
            )
        )
        had_uidvalidity = mb.uidvalidity
        if had_uidvalidity:
            changes.events.append(MailboxReset(mb.id, reason))
        self._commit(changes)
        mb.uidvalidity, mb.uidnext, mb.upstream_modseq, mb.synced = uidvalidity, 1, 0, False
        mb.uids, mb.records, mb.expunged, mb.private = [], {}, {}, {}
        mb.recent = UidSet()
        mb.shared_highest = modseq
        self._publish(changes)

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
            changes = ChangeSet()
            changes.add(UpdateMailbox(mb.id, values))
            self._commit(changes)

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
        modseq = self.modseqs.next(mb) if fresh else self.modseqs.current(mb)
        for r in fresh:
            r.modseq = modseq
            r.flags = intern_flags(r.flags)
        changes = ChangeSet()
        if fresh:
            changes.add(AddMessages(mb.id, tuple(_row(r) for r in fresh)))
            uidnext = max(mb.uidnext, max(r.uid for r in fresh) + 1)
            changes.add(UpdateMailbox(mb.id, {"modseq": modseq, "uidnext": uidnext}))
        uids = tuple(sorted(r.uid for r in fresh))
        if uids:
            changes.events.append(MessagesAdded(mb.id, uids))
        self._commit(changes, hook)
        for r in fresh:
            mb.add(r)
        if fresh:
            mb.shared_highest = modseq
        if uids and (mb.synced if recent is None else recent):
            mb.recent.update(uids)
        self._publish(changes)
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
        modseq = self.modseqs.next(mb) if changed else self.modseqs.current(mb)
        changeset = ChangeSet()
        if changed:
            by_flags: dict[tuple[str, ...], list[int]] = {}
            for rec, new in changed:
                by_flags.setdefault(new, []).append(rec.uid)
            changeset.add(SetSharedFlags(mb.id, {f: tuple(u) for f, u in by_flags.items()}, modseq))
            changeset.add(UpdateMailbox(mb.id, {"modseq": modseq}))
        uids = tuple(sorted(rec.uid for rec, _ in changed))
        if uids:
            changeset.events.append(FlagsChanged(mb.id, uids, modseq, None))
        self._commit(changeset, hook)
        for rec, new in changed:
            rec.flags = new
            rec.modseq = modseq
        if uids:
            mb.shared_highest = modseq
        self._publish(changeset)
        return uids

    def expunge(self, mb: MailboxIndex, uids: Iterable[int], *, hook: Hook | None = None) -> tuple[int, ...]:
        present = [u for u in set(uids) if u in mb.records]
        if not present and hook is None:
            return ()
        modseq = self.modseqs.next(mb) if present else self.modseqs.current(mb)
        changes = ChangeSet()
        if present:
            changes.add(ExpungeMessages(mb.id, tuple(present), modseq))
            changes.add(UpdateMailbox(mb.id, {"modseq": modseq}))
        # Only the private sets that held an expunged UID change: with 20
        # users, rewriting every set on every expunge was 11 % of the CPU.
        ordered = sorted(present)
        records = tuple(mb.records[u] for u in ordered)
        private = _private_of(mb, ordered)
        gone = mb.remove(set(present), modseq)
        for user_id, snap in private.items():
            if snap.flags:
                changes.add(self._private_sets(mb, user_id, mb.private[user_id], snap.flags))
        if hook is None and ordered and self.health.writable:
            # No caller's hook: the sync saw them gone at the hoster.  The write
            # path's own hook records who moved or deleted them (replica/departures.py).
            # Not while the store is unwritable: the healer replays hooks, and a
            # missing departure only makes the loser's text generic.
            hook = self.gone_at_hoster(mb, ordered)
        if gone:
            changes.events.append(MessagesExpunged(mb.id, tuple(gone), modseq, records, private))
        self._commit(changes, hook)
        if gone:
            mb.shared_highest = modseq
            self._trim_expunged(mb)
        self._publish(changes)
        return tuple(gone)

    def _trim_expunged(self, mb: MailboxIndex) -> None:
        if len(mb.expunged) <= MAX_EXPUNGED_REMEMBERED:
            return
        keep = sorted(mb.expunged.items(), key=lambda kv: kv[1])[-MAX_EXPUNGED_REMEMBERED // 2 :]
        cutoff = keep[0][1]
        mb.expunged = dict(keep)
        trim = ChangeSet()
        trim.add(TrimExpunged(mb.id, cutoff))
        self._commit(trim)

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
        changes = ChangeSet()
        changes.add(self._private_sets(mb, user_id, state, ["\\Seen"]))
        self._commit(changes)

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
        modseq = self.modseqs.next(mb) if touched else self.modseqs.current(mb)
        changes = ChangeSet()
        if touched:
            changes.add(self._private_sets(mb, user_id, state, names))
            changes.add(SetPrivateModseqs(mb.id, user_id, tuple(touched), modseq))
            changes.add(UpdateMailbox(mb.id, {"modseq": modseq}))
        uids = tuple(sorted(touched))
        if uids:
            changes.events.append(FlagsChanged(mb.id, uids, modseq, user_id))
        self._commit(changes, hook)
        for u in touched:
            state.modseqs[u] = modseq
        if uids:
            state.highest = modseq
            if len(state.modseqs) > MAX_PRIVATE_MODSEQS:
                self._compact_private_modseqs(mb, user_id, state)
        self._publish(changes)
        return uids

    def _compact_private_modseqs(self, mb: MailboxIndex, user_id: int, state: PrivateState) -> None:
        ordered = sorted(state.modseqs.items(), key=lambda kv: kv[1])
        drop = ordered[: len(ordered) // 2]
        state.floor = max(state.floor, drop[-1][1])
        for uid, _ in drop:
            del state.modseqs[uid]
        changes = ChangeSet()
        changes.add(CompactPrivateModseqs(mb.id, user_id, state.floor, FLOOR_UID))
        self._commit(changes)

    def _private_sets(
        self, mb: MailboxIndex, user_id: int, state: PrivateState, names: Iterable[str]
    ) -> WritePrivateSets:
        # An empty set is stored too: its row marks the state as initialised.
        return WritePrivateSets(
            mb.id, user_id, {flag: (state.flags.get(flag) or UidSet()).encode() for flag in names}
        )

    def write_private_sets(self, mb: MailboxIndex, user_id: int, names: Iterable[str]) -> None:
        """Persist the user's in-memory private sets ``names`` of ``mb`` as they are
        (no modseq, no event: for state set up in bulk, e.g. a benchmark's fill)."""
        changes = ChangeSet()
        changes.add(self._private_sets(mb, user_id, self.private_state(mb, user_id), names))
        self._commit(changes)

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
        changes = ChangeSet()
        changes.add(UpdateMailbox(mb.id, {"seen_mode": mode}))
        changes.add(self._record_mode(mb))
        if after != before:
            changes.add(DropPrivateFlag(mb.id, "\\Seen"))
        self._commit(changes)
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
                    changes = ChangeSet()
                    changes.add(self._record_mode(mb))
                    self._commit(changes)
                    mb.private.clear()
                    self._announce_all(mb)

    def _announce_all(self, mb: MailboxIndex) -> None:
        """Every message's flags may look different now: a new modseq for all."""
        modseq = self.modseqs.next(mb)
        changes = ChangeSet()
        changes.add(RestampMessages(mb.id, modseq))
        changes.add(UpdateMailbox(mb.id, {"modseq": modseq}))
        changes.events += [ModeChanged(mb.id), FlagsChanged(mb.id, tuple(mb.uids), modseq, None)]
        self._commit(changes)
        for rec in mb.records.values():
            rec.modseq = modseq
        mb.shared_highest = modseq
        self._publish(changes)

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
            changes = ChangeSet()
            changes.add(self._private_sets(mb, user_id, state, state.flags.keys()))
            self._commit(changes)
        return restored

    # -- healing after the store was unwritable -----------------------------------------
    def heal(self, mailbox_ids: set[int], hooks: list[Hook]) -> list[str]:
        """Write ``mailbox_ids`` to the store as memory holds them (those deleted
        meanwhile: their rows go) and replay ``hooks``, in one transaction that
        raises on failure.  Returns the names of the folders written."""
        gone = sorted(i for i in mailbox_ids if i not in self.by_id)
        here = [self.by_id[i] for i in sorted(mailbox_ids) if i in self.by_id]
        items: list[RowChange] = [DeleteMailbox(i) for i in gone]
        items += [ParkMailboxName(mb.id) for mb in here]
        for mb in here:
            items.append(self._replace(mb))
            items.append(self._record_mode(mb))
        # The other nodes learn that these folders were rewritten (a ``ReplaceMailbox``
        # they cannot replay: they reload), in the heal's own transaction.
        record = self.bus.recorder(ChangeSet(RowChanges(items)))
        self.repository.write_through(items, [*hooks, record] if record is not None else hooks)
        return [mb.name for mb in here]

    def _replace(self, mb: MailboxIndex) -> ReplaceMailbox:
        values = {
            "name": mb.name,
            "delimiter": mb.delimiter,
            "attributes": " ".join(mb.attributes),
            "uidvalidity": mb.uidvalidity,
            "uidnext": mb.uidnext,
            "upstream_modseq": mb.upstream_modseq,
            "modseq": self.modseqs.current(mb),
            "seen_mode": mb.seen_mode,
            "synced": mb.synced,
        }
        private = {
            user_id: PrivateRows(
                {flag: s.encode() for flag, s in state.flags.items()}, dict(state.modseqs), state.floor
            )
            for user_id, state in mb.private.items()
        }
        rows = tuple(_row(mb.records[u]) for u in mb.uids)
        return ReplaceMailbox(mb.id, values, rows, dict(mb.expunged), private, FLOOR_UID)

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


def now() -> float:
    return time.time()


def _row(r: MessageRecord) -> MessageRow:
    return MessageRow(r.uid, r.internal_date, r.tz_offset, r.size, r.flags, r.modseq, r.message_id)
