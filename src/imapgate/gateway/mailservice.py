"""MailService: the per-operation handlers behind ``Service.execute``.

``Service.execute`` (gateway/service.py) has asked the policy for the rights
of the operation (rights.py) and checked that the store takes writes before a
handler here runs.  Each write handler then goes through the rest of the
pipeline in the same order (DESIGN, write path):

1. conflict check (``policy.check_conflicts``), told the typed operation, at
   the same step of every handler: targets known, upstream next, under the
   folder's lock wherever the operation holds it for upstream;
2. removals upstream only through ``Remover`` (removal.py), whose pre-removal
   hook is where recoverable deletes will copy the messages first;
3. an intent is written before a multi-step upstream operation (a move
   without MOVE);
4. apply upstream on a pooled connection, using UIDPLUS (COPYUID/APPENDUID,
   UID EXPUNGE) where offered;
5. on success, update the replica and write the journal entry in one store
   transaction; the replica then publishes events to every session.

If upstream refuses or the connection drops, ``OperationError`` carries the
reason and nothing local changed.  If upstream did it but the commit fails
(store full, I/O error), the client is told the truth: done (OK), and the
folder is re-read from upstream to heal the replica (``_committed``).

Step 5 runs under the sync engine's lock for the mailbox, so a sync never
interleaves with it; the upstream command of step 4 does not hold the lock, so
writes to one folder run side by side.  That is safe where upstream's answers
say what they describe: STORE answers carry the upstream MODSEQ (CONDSTORE) and
``SyncEngine.apply_flags`` keeps the newest, UID EXPUNGE answers name the
expunged UIDs (VANISHED), and UIDVALIDITY is checked again under the lock.
Without CONDSTORE (STORE), without UIDPLUS (EXPUNGE, MOVE) or with
UNCHANGEDSINCE, the lock is held throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from ..index.indexer import SearchIndex
from ..index.query import charset_supported as search_charset_supported
from ..index.query import needle_for
from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute, Section
from ..protocol.search import SearchHeader, SearchKey, SearchUid
from ..protocol.sequence import STAR, SequenceSet
from ..replica import mime
from ..replica.content import ContentCache
from ..replica.mailbox import MailboxIndex, MessageRecord
from ..replica.replica import Hook, Replica
from ..store.health import is_database_unreachable
from ..sync.engine import SyncEngine
from ..sync.locks import MailboxLock
from ..sync.records import FlagReport, stored_flags
from ..team.acl_store import folder_created_in, folder_deleted_in, folder_renamed_in
from ..team.journal import Journal, JournalEntry
from ..team.subscriptions import Subscriptions
from ..upstream.connection import (
    CommandResult,
    UpstreamBusy,
    UpstreamConnection,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..upstream.pool import UpstreamPool
from . import operations as ops
from .acl_watch import AclWatch
from .audit_hoster import OwnChanges
from .audit_refs import appended_ref, message_refs, moved_refs, op_command
from .departures import Departures
from .errors import OperationError
from .inflight import InFlight
from .intents import Intent, IntentLog
from .operations import CopyResult, StoreResult
from .policy import Actor, Policy
from .removal import Removal, Remover
from .storehealth import STORE_FAILURES, AlwaysWritable, StoreHealth
from .virtual import VirtualFolders

log = logging.getLogger("imapgate.service")

#: Upstream FETCH of message content is batched by size: enough to amortise
#: the round trip, small enough to bound memory per request.
CONTENT_BATCH_BYTES = 8 * 1024 * 1024
CONTENT_BATCH_MAX_UIDS = 500
#: Flags the gateway never sends upstream: \Recent is session state (RFC 3501).
NEVER_UPSTREAM = frozenset({"\\Recent"})
#: A search for the messages the index does not cover names them as a UID set; a
#: set longer than this (scattered UIDs) makes the search ask for the whole folder.
SEARCH_SET_MAX_BYTES = 4096
#: Seconds before a move whose connection broke with no copy seen yet is rolled
#: back for good: long enough for a COPY still queued at the hoster to land
#: (it is then finished instead of leaving the mail in both folders).
INTENT_RECHECK_SECONDS = 30.0


def _upstream_failure(
    exc: UpstreamError | UpstreamUnavailable, what: str, *, write: bool = False
) -> OperationError:
    if isinstance(exc, UpstreamTimeout):
        text = f"{what}: the mail server did not answer within {exc.seconds:.0f} s"
        if write:
            # The command reached the hoster and may still be carried out there:
            # say so instead of claiming it failed; the folder is re-read (sync)
            # once the hoster answers, so every client then sees what it did.
            text += "; it may still carry this out, and the gateway shows the result once it answers"
        return OperationError(text, "UNAVAILABLE")
    if isinstance(exc, UpstreamBusy):
        # The budget across nodes is spent (store/leases.py): the hoster itself is fine.
        return OperationError(f"{what}: {exc}", "UNAVAILABLE")
    if isinstance(exc, UpstreamUnavailable):
        return OperationError(f"{what}: the mail server is unreachable ({exc})", "UNAVAILABLE")
    code = exc.result.tagged.code
    name = code.name if isinstance(code, rsp.AtomCode) else None
    return OperationError(f"{what}: the mail server refused: {exc.result.tagged.text}", name)


class MailService:
    def __init__(
        self,
        replica: Replica,
        pool: UpstreamPool,
        sync: SyncEngine,
        content: ContentCache,
        journal: Journal,
        policy: Policy | None = None,
        *,
        health: StoreHealth | None = None,
        remover: Remover | None = None,
        subscriptions: Subscriptions | None = None,
    ) -> None:
        self.replica = replica
        self.pool = pool
        self.sync = sync
        self.content = content
        self.journal = journal
        self.policy = policy or Policy()
        #: Whether the store takes writes (asked before upstream is touched).
        self.health: StoreHealth = health or AlwaysWritable()
        #: The one way messages leave a folder upstream (the recovery seam).
        self.remover = remover or Remover()
        #: The team's subscription decisions (SUBSCRIBE, UNSUBSCRIBE, CREATE).
        self.subscriptions = subscriptions
        self.intents = IntentLog(journal.engine)
        #: Who took a message away, for the loser of a race (gateway/departures.py).
        #: The order of lock-free writes against removals of the same message.
        self.inflight = InFlight()
        self.departures = Departures(replica.departures, remover_of=self.inflight.remover_of)
        # Messages the sync or a MOVE finds gone at the hoster: deleted by whoever
        # has a lock-free expunge of them in flight, else "at the hoster".
        replica.gone_at_hoster = self.departures.at_hoster
        #: The writes in flight, which the sync must not journal as made at the hoster.
        self.own_changes = OwnChanges()
        #: Per-user read-only folders (gateway/virtual.py) and the hidden real ones.
        self.virtual = VirtualFolders(replica)
        #: Settlement of other features' intents by kind (recovery: its copies and
        #: restores); each returns 1 when it settled the intent, 0 when it stays open.
        self.settlers: dict[str, Callable[[Intent], Awaitable[int]]] = {}
        #: The search index (None: every text search goes to the hoster) and whether it
        #: answers now (``[search] index``; "auto" waits for the hoster's greeting).
        self.index: SearchIndex | None = None
        self.index_active: Callable[[], bool] = lambda: True
        #: The team's folder permissions (None: none kept, e.g. a bare test service):
        #: the ACL commands read and change them, and a folder's CREATE, RENAME and
        #: DELETE carry its entries along in the same commit.
        self.acl: AclWatch | None = None
        #: Delayed re-checks of interrupted moves (kept referenced until done).
        self._background: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        """Cancel delayed re-checks; their intents stay open in the store and are
        settled at the next start."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task

    # -- helpers -----------------------------------------------------------------------
    def mailbox(self, name: str) -> MailboxIndex:
        mb = self.replica.get(name)
        if mb is None:
            raise OperationError(f"mailbox {name!r} does not exist", "NONEXISTENT")
        return mb

    async def _ensure_synced(self, name: str) -> MailboxIndex:
        mb = self.mailbox(name)
        if any(a.upper() in ("\\NOSELECT", "\\NONEXISTENT") for a in mb.attributes):
            raise OperationError(
                f"mailbox {name!r} cannot be selected (it only holds other folders)", "CANNOT"
            )
        if not mb.synced:
            try:
                await self.sync.sync_mailbox(name)
            except (UpstreamError, UpstreamUnavailable) as exc:
                raise _upstream_failure(exc, f"cannot open {name}") from None
            mb = self.mailbox(name)
            if not mb.synced:
                raise OperationError(f"mailbox {name!r} could not be synchronised", "UNAVAILABLE")
        return mb

    def _fail(
        self, actor: Actor, command: str, mailbox: str | None, uids: Sequence[int], err: OperationError
    ) -> None:
        try:
            self.journal.record(
                JournalEntry.by(
                    actor, command, mailbox=mailbox, uids=_uids_text(uids), result="NO", detail=err.text
                )
            )
        except STORE_FAILURES as exc:
            # The client's answer is about upstream's refusal; a store that cannot
            # take the journal line must not turn it into an internal error.
            log.error("%s %s refused (%s); journal entry not written: %s", command, mailbox, err.text, exc)

    def _check_conflicts(
        self, actor: Actor, op: ops.Operation[Any], mailbox: str, uids: Sequence[int]
    ) -> None:
        """The conflict check, at the same step of every handler: the targets are
        known, upstream is next, and the folder's lock is held exactly when the
        operation holds it for its upstream part.  Lock-free writes (STORE under
        CONDSTORE, UID EXPUNGE under QRESYNC) do not wait for the lock to check:
        that would queue them behind a sync, which is what running them lock-free
        avoids (tests/gateway/test_write_path.py).  A refusal is journaled."""
        try:
            self.policy.check_conflicts(actor, mailbox, uids, op)
        except OperationError as exc:
            self._refused(actor, op_command(op), mailbox, uids, exc)
            raise

    def _refused(
        self, actor: Actor, command: str, mailbox: str | None, uids: Sequence[int], exc: OperationError
    ) -> None:
        """Journal a refusal by the gateway (a store that cannot take it: logged only,
        the client's answer stays the refusal)."""
        try:
            self.journal.refused(actor, command, mailbox, _uids_text(uids) if uids else None, exc.text)
        except STORE_FAILURES as err:
            log.error("%s %s refused (%s); journal entry not written: %s", command, mailbox, exc.text, err)

    @contextlib.contextmanager
    def _committed(self, what: str, *mailboxes: str, private: bool = False) -> Iterator[None]:
        """The commit after upstream carried out ``what``: a store failure here is
        logged and healed (the folders are re-read from upstream once the store
        takes writes), never reported to the client as a failure of what it asked.
        ``private``: ``what`` also changed per-user state, which lives in the store
        alone -- with the database unreachable it was not done, and the client hears
        so (``NO [UNAVAILABLE]``; the replica in memory is unchanged)."""
        try:
            yield
        except STORE_FAILURES as exc:
            if private and is_database_unreachable(exc):
                raise
            log.error(
                "%s was carried out at the mail server, but the gateway's store could not record it "
                "(%s); the replica of %s is re-read from the mail server",
                what,
                exc,
                ", ".join(mailboxes),
            )
            for name in mailboxes:
                self.sync.request(name)

    # -- flags -------------------------------------------------------------------------
    async def _store(self, actor: Actor, op: ops.StoreFlags) -> StoreResult:
        """STORE for ``actor``: shared flags upstream, private flags per user."""
        mb, uids, operation, unchangedsince = op.mailbox, op.uids, op.mode, op.unchangedsince
        requested = {self.replica.canonical_flag(f) for f in op.flags if f not in NEVER_UPSTREAM}
        private = self.replica.private_flags_of(mb)
        req_private = requested & private
        req_shared = requested - private
        lock = self.sync.mailbox_lock(mb.name)
        # Lock-free upstream needs answers in MODSEQ order; UNCHANGEDSINCE is
        # decided on the replica, which must not change until the STORE is done.
        hold = unchangedsince is not None or "CONDSTORE" not in self.pool.enabled
        async with _held(lock, hold), contextlib.AsyncExitStack() as flight:
            if not hold and req_shared:
                # Lock-free upstream: ordered against a colleague's MOVE or UID EXPUNGE
                # of the same messages (gateway/inflight.py) until upstream has answered.
                # (Private flags never go upstream: nothing to order.)
                await flight.enter_async_context(self.inflight.storing(mb, uids))
            self._check_conflicts(actor, op, mb.name, uids)
            # The gateway itself (user id 0: claim keywords it tidies) has no read state.
            state = self.replica.private_state(mb, actor.user_id) if private and actor.user_id else None
            targets = [u for u in uids if u in mb.records]
            # Named by the session but gone (a colleague won the race): nothing to do
            # for them, and the client must hear why (gateway/departures.py).
            missing = [u for u in uids if u not in mb.records]
            if missing and not targets:
                self._refuse_gone(actor, "STORE", mb, missing, len(uids))
            modified: list[int] = []
            if unchangedsince is not None:
                ok: list[int] = []
                for u in targets:
                    if self.replica.modseq_for(mb, mb.records[u], state) > unchangedsince:
                        modified.append(u)
                    else:
                        ok.append(u)
                targets = ok
            new_shared = self._plan_shared(mb, targets, operation, req_shared, private)
            entry = JournalEntry.by(
                actor,
                "STORE",
                mailbox=mb.name,
                uids=_uids_text(targets),
                detail=f"{operation} {' '.join(sorted(requested))}",
                answered=_answer_marks(mb, new_shared),
                messages=message_refs(mb, targets, self.content),
            )
            uidvalidity = mb.uidvalidity
            reports: dict[int, FlagReport] = {}
            try:
                if new_shared:
                    reports = await self._store_upstream(mb, new_shared)
            except (UpstreamError, UpstreamUnavailable) as exc:
                if isinstance(exc, UpstreamTimeout):
                    self.sync.request(mb.name)  # settles it when the hoster answers
                err = _upstream_failure(exc, "cannot change flags", write=True)
                self._fail(actor, "STORE", mb.name, targets, err)
                raise err from None
            await flight.aclose()  # before the commit takes the lock a removal may hold
            async with _held(lock, not hold):
                if mb.uidvalidity != uidvalidity:
                    err = _rebuilt(mb)
                    self._fail(actor, "STORE", mb.name, targets, err)
                    raise err
                changed: set[int] = set()
                with self._committed("STORE", mb.name, private=bool(req_private and state is not None)):
                    changed = self._apply_store(
                        actor, mb, entry, reports, targets, operation, req_private, private
                    )
                # Gone at the hoster before this STORE reached it (a colleague's move
                # ran meanwhile, lock-free): upstream reported nothing for them.
                lost = [u for u in new_shared if u not in reports and u not in mb.records]
        not_done = sorted({*missing, *lost})
        if not_done and len(not_done) == len(uids) and not changed:
            self._refuse_gone(actor, "STORE", mb, not_done, len(uids))
        gone = self.departures.gone(mb, not_done, len(uids))
        return StoreResult(sorted(changed), modified, gone.text if gone else None)

    def _refuse_gone(
        self, actor: Actor, verb: str, mb: MailboxIndex, uids: Sequence[int], total: int
    ) -> None:
        """Raise ``NO [EXPUNGEISSUED]`` naming who took ``uids`` away (journaled)."""
        gone = self.departures.gone(mb, uids, total)
        assert gone is not None
        err = gone.refusal()
        self._fail(actor, verb, mb.name, uids, err)
        raise err

    def _apply_store(
        self,
        actor: Actor,
        mb: MailboxIndex,
        entry: JournalEntry,
        reports: dict[int, FlagReport],
        targets: list[int],
        operation: str,
        req_private: set[str],
        private: frozenset[str],
    ) -> set[int]:
        """The replica side of a STORE: what upstream reported, the user's private
        flags, and the journal entry in the first of those transactions."""
        changed: set[int] = set()
        hook_used = False
        if reports:
            changed.update(self.sync.apply_flags(mb, reports, hook=entry.writer()))
            hook_used = True
        if private:
            add: dict[str, list[int]] = {}
            remove: dict[str, list[int]] = {}
            if operation == "add":
                add = {f: targets for f in req_private}
            elif operation == "remove":
                remove = {f: targets for f in req_private}
            else:
                add = {f: targets for f in req_private}
                remove = {f: targets for f in private - req_private}
            if add or remove:
                changed.update(
                    self.replica.set_private_flags(
                        mb, actor.user_id, add, remove, hook=None if hook_used else entry.writer()
                    )
                )
                hook_used = True
        if not hook_used:
            self.journal.record(entry)
        return changed

    def _plan_shared(
        self,
        mb: MailboxIndex,
        uids: Sequence[int],
        operation: str,
        req_shared: set[str],
        private: frozenset[str],
    ) -> dict[int, tuple[str, ...]]:
        """New upstream flags per message whose shared flags change.  A replace
        (FLAGS) keeps upstream flags that are private here (e.g. the hoster's \\Seen
        in a private-read folder): the user does not own them."""
        plan: dict[int, tuple[str, ...]] = {}
        for u in uids:
            current = set(mb.records[u].flags)
            if operation == "add":
                new = current | req_shared
            elif operation == "remove":
                new = current - req_shared
            else:
                new = {f for f in current if f in private} | req_shared
            if new != current:
                plan[u] = tuple(sorted(new))
        return plan

    async def _store_upstream(
        self, mb: MailboxIndex, plan: dict[int, tuple[str, ...]]
    ) -> dict[int, FlagReport]:
        """Apply ``plan`` upstream; return the flags upstream reports afterwards,
        with the MODSEQ each report is at (under CONDSTORE).

        STORE is not .SILENT: a server may drop a flag it cannot keep (a keyword
        when PERMANENTFLAGS lacks \\*), and the replica must record what upstream
        really holds, never what was asked for.  Other sessions' changes that
        upstream reports along with the answer are returned too."""
        groups = _store_groups(mb, plan)
        reported: dict[int, FlagReport] = {}
        async with self.pool.connection(mb.name, need_uid=max(plan)) as conn:
            self._check_uidvalidity(conn, mb)
            answered = await _run_stores(conn, groups, reported)
            reports_modseq = "CONDSTORE" in conn.enabled
            missing = {u: f for u, f in plan.items() if u not in reported}
            if missing and (answered or reports_modseq):
                # No answer for these: upstream had the flags already (the replica
                # was behind), the message is gone, or this session had not been
                # told about it (Dovecot skips such a UID silently).  The last must
                # not lose the change: NOOP and repeat (+FLAGS/-FLAGS are idempotent).
                await conn.check(lambda tag: cmd.Noop(tag))
                again = {k: [u for u in g if u in missing] for k, g in groups.items()}
                again = {k: g for k, g in again.items() if g}
                answered = await _run_stores(conn, again, reported) or answered
                missing = {u: f for u, f in missing.items() if u not in reported}
        if missing:
            if not answered and not reports_modseq:
                # A server that sends no FETCH after STORE: trust the plan.
                reported.update((u, (f, None)) for u, f in missing.items())
            else:
                # Unchanged upstream: the replica was behind; a sync brings what
                # upstream holds (never claim what upstream did not report).
                self.sync.request(mb.name)
        return reported

    def _check_uidvalidity(self, conn: UpstreamConnection, mb: MailboxIndex) -> None:
        if conn.selected_uidvalidity and conn.selected_uidvalidity != mb.uidvalidity:
            self.sync.request(mb.name)
            raise OperationError(
                f"mailbox {mb.name} was rebuilt on the mail server (UIDVALIDITY changed); reopen it",
                "UNAVAILABLE",
            )

    def _mark_seen(self, actor: Actor, op: ops.MarkSeen) -> list[int]:
        """\\Seen from a non-PEEK body fetch.  Private read state changes locally
        only; in a shared-read folder it goes upstream in the background."""
        mb, uids = op.mailbox, op.uids
        if not uids:
            return []
        private = self.replica.private_flags_of(mb)
        if "\\Seen" in private:
            state = self.replica.private_state(mb, actor.user_id)
            s = state.flags.get("\\Seen")
            todo = [u for u in uids if s is None or u not in s]
            if not todo:
                return []
            # "Read by alice": the audit journal's entry, with the read state in one commit.
            entry = JournalEntry.by(
                actor, "FETCH", mailbox=mb.name, uids=_uids_text(todo), detail="opened (\\Seen)",
                action="read", messages=message_refs(mb, todo, self.content),
            )  # fmt: skip
            return list(
                self.replica.set_private_flags(mb, actor.user_id, {"\\Seen": todo}, {}, hook=entry.writer())
            )
        todo = [u for u in uids if u in mb.records and "\\Seen" not in mb.records[u].flags]
        if todo:
            self.sync.spawn(self._seen_upstream(actor, mb, todo))
        return []

    async def _seen_upstream(self, actor: Actor, mb: MailboxIndex, uids: list[int]) -> None:
        try:
            # The rights were asked for the MarkSeen (s) and the fetch (r) already.
            op = ops.StoreFlags(mb, uids, "add", ("\\Seen",))
            with self.own_changes.during(op):
                await self._store(actor, op)
        except OperationError as exc:
            log.warning("could not set \\Seen upstream in %s: %s", mb.name, exc.text)

    # -- expunge -----------------------------------------------------------------------
    async def _expunge(self, actor: Actor, op: ops.Expunge) -> list[int]:
        """Expunge messages flagged \\Deleted (all of them, or those among ``uids``)."""
        mb, uids = op.mailbox, op.uids
        lock = self.sync.mailbox_lock(mb.name)
        # Lock-free only where UID EXPUNGE's answer names what went (VANISHED):
        # without UIDPLUS, other messages' \\Deleted is shielded by the replica's
        # view of them, which must not change meanwhile.
        exact = self.pool.has("UIDPLUS") and "QRESYNC" in self.pool.enabled
        # Never two removals of one message at once, nor a removal during a lock-free
        # STORE of it (gateway/inflight.py); registered before the folder lock.
        named = uids if uids is not None else [u for u in mb.uids if "\\Deleted" in mb.records[u].flags]
        async with self.inflight.removing(mb, named, actor.user), _held(lock, not exact):
            candidates = mb.uids if uids is None else [u for u in uids if u in mb.records]
            targets = [u for u in candidates if "\\Deleted" in mb.records[u].flags]
            # UID EXPUNGE naming messages a colleague took away meanwhile.
            missing = [] if uids is None else [u for u in uids if u not in mb.records]
            if not targets:
                if missing:
                    self._refuse_gone(actor, "EXPUNGE", mb, missing, len(missing))
                return []
            self._check_conflicts(actor, op, mb.name, targets)
            refs = message_refs(mb, targets, self.content)
            entry = JournalEntry.by(
                actor, "EXPUNGE", mailbox=mb.name, uids=_uids_text(targets), messages=refs
            )
            uidvalidity = mb.uidvalidity
            try:
                if exact:
                    gone = await self._uid_expunge(mb, targets, actor)
                else:
                    async with self.pool.connection(mb.name) as conn:
                        self._check_uidvalidity(conn, mb)
                        await self.remover.remove(conn, _expunging(mb.name, targets, actor), mb)
                    gone = set(targets)
            except (UpstreamError, UpstreamUnavailable) as exc:
                if isinstance(exc, UpstreamTimeout):
                    self.sync.request(mb.name)
                err = _upstream_failure(exc, "cannot expunge", write=True)
                self._fail(actor, "EXPUNGE", mb.name, targets, err)
                raise err from None
            async with _held(lock, exact):
                if mb.uidvalidity != uidvalidity:
                    err = _rebuilt(mb)
                    self._fail(actor, "EXPUNGE", mb.name, targets, err)
                    raise err
                entry.uids = _uids_text(gone)
                entry.messages = tuple(r for r in refs if r.uid in gone)
                removed: tuple[int, ...] = ()
                departed = self.replica.departures.writer(mb.id, uidvalidity, gone, "deleted", actor.user)
                with self._committed("EXPUNGE", mb.name):
                    removed = self.replica.expunge(mb, gone, hook=_hooks(entry.writer(), departed))
                # Not removed by this command and gone now: a colleague's move or
                # expunge reached the hoster first (its commit came before ours).
                lost = [u for u in targets if u not in gone and u not in mb.records]
        if not gone and uids is not None and (missing or lost):
            self._refuse_gone(actor, "EXPUNGE", mb, [*missing, *lost], len(missing) + len(targets))
        if len(gone) < len(targets) or not exact:
            # Some stayed upstream (their \\Deleted there was not what the replica
            # says): a sync brings the replica in line.
            self.sync.request(mb.name)
        return list(removed)

    async def _uid_expunge(self, mb: MailboxIndex, targets: list[int], actor: Actor) -> set[int]:
        """UID EXPUNGE ``targets``; returns those upstream reports gone (VANISHED)."""
        wanted = set(targets)
        async with self.pool.connection(mb.name, need_uid=max(targets)) as conn:
            self._check_uidvalidity(conn, mb)
            res = await self.remover.remove(conn, _expunging(mb.name, targets, actor), mb)
            gone = _vanished(res) & wanted
            left = wanted - gone
            if left:
                # Not reported: no \\Deleted upstream (the replica was behind), gone
                # before, or unknown to this session (skipped silently): NOOP and
                # repeat for those once.
                noop = await conn.check(lambda tag: cmd.Noop(tag))
                gone |= _vanished(noop) & left
                left -= gone
                if left:
                    again = await self.remover.remove(conn, _expunging(mb.name, sorted(left), actor), mb)
                    gone |= _vanished(again) & left
        return gone

    # -- copy / move -------------------------------------------------------------------
    async def _copy(self, actor: Actor, op: ops.Copy | ops.Move) -> CopyResult:
        mb, uids, dest_name = op.mailbox, op.uids, op.dest
        move = isinstance(op, ops.Move)
        verb = "MOVE" if move else "COPY"
        dest = self.replica.get(dest_name)
        if dest is None:
            raise OperationError(f"mailbox {dest_name!r} does not exist", "TRYCREATE")
        if not uids:
            return CopyResult(dest.uidvalidity, [], [])
        intent: int | None = None
        # The source stays locked across the upstream command: its records and
        # everyone's private flags are carried to the copies after it (a sync
        # must not expunge the moved originals in between).
        source_lock = self.sync.mailbox_lock(mb.name)
        # A MOVE is a removal: never at once with another removal or a lock-free
        # STORE of the same messages (gateway/inflight.py), registered before the lock.
        removing = self.inflight.removing(mb, uids, actor.user) if move else contextlib.nullcontext()
        async with removing, source_lock:
            # The targets are read under the lock: a colleague's move of the same
            # message that held it before us has committed by now, and this one
            # must not answer OK for a message it never moved.
            targets = [u for u in uids if u in mb.records]
            missing = [u for u in uids if u not in mb.records]
            if not targets:
                self._refuse_gone(actor, verb, mb, missing, len(uids))
            refs = message_refs(mb, targets, self.content)
            entry = JournalEntry.by(
                actor,
                verb,
                mailbox=mb.name,
                uids=_uids_text(targets),
                detail=f"to {dest.name}",
                messages=refs,
            )
            self._check_conflicts(actor, op, mb.name, targets)
            try:
                async with self.pool.connection(mb.name) as conn:
                    self._check_uidvalidity(conn, mb)
                    uidplus = conn.has("UIDPLUS")
                    uidset = SequenceSet.from_ids(targets)
                    if move and conn.has("MOVE"):
                        res = await self.remover.remove(
                            conn, Removal("move", mb.name, uidset, dest=dest.name, by=actor), mb
                        )
                    elif move:
                        intent = self._move_intent(mb, targets, dest)
                        res = await conn.check(lambda tag: cmd.Copy(tag, uidset, dest.name, uid=True))
                        await self._expunge_originals(conn, mb.name, uidset, mb, dest.name, actor)
                        self.intents.finish(intent)
                        intent = None
                    else:
                        res = await conn.check(lambda tag: cmd.Copy(tag, uidset, dest.name, uid=True))
            except (UpstreamError, UpstreamUnavailable) as exc:
                if intent is not None:
                    # Find out how far this move got and finish or undo it now.
                    # A refusal (NO) is final; after a lost connection the COPY
                    # may still land upstream, so "no copy yet" is looked at
                    # again later instead of being rolled back at once.
                    lost = isinstance(exc, UpstreamUnavailable)
                    await self.recover_intents(only=intent, final=not lost)
                    if lost and intent in {i.id for i in self.intents.pending()}:
                        self._recheck_later(intent)
                if isinstance(exc, UpstreamTimeout):
                    self.sync.request(mb.name)
                    self.sync.request(dest.name)
                err = _upstream_failure(exc, f"cannot {verb.lower()}", write=True)
                self._fail(actor, verb, mb.name, targets, err)
                raise err from None
            copyuid = res.code_of_type(rsp.CopyUidCode)
            result = CopyResult(dest.uidvalidity, [], [])
            if copyuid is not None and copyuid.uidvalidity == dest.uidvalidity and dest.synced:
                src = list(copyuid.source.iter(0))
                dst = list(copyuid.dest.iter(0))
                if len(src) == len(dst):
                    result = CopyResult(copyuid.uidvalidity, src, dst)
            # With UIDPLUS, COPYUID names every message copied; one it leaves out
            # was gone at the hoster (taken away there, past the gateway).
            copied = set(copyuid.source.iter(0)) if copyuid is not None else set()
            at_hoster = [u for u in targets if u not in copied] if uidplus else []
            if at_hoster and not move:
                # Still in the replica until the sync removes them; recorded now so
                # that this answer names who took them away.
                with self._committed(verb, mb.name), self.journal.engine.begin() as db:
                    self.departures.at_hoster(mb, at_hoster)(db)
            if len(at_hoster) == len(targets):
                if move:
                    with self._committed(verb, mb.name):
                        self.replica.expunge(mb, at_hoster, hook=self.departures.at_hoster(mb, at_hoster))
                self.sync.request(mb.name)
                self._refuse_gone(actor, verb, mb, [*missing, *at_hoster], len(uids))
            # The history of a message follows it: its copies' refs ride on the entry.
            entry.messages = refs + moved_refs(
                refs, dest.name, dict(zip(result.source, result.dest, strict=True))
            )
            hook: Callable[[Connection], None] | None = entry.writer()
            if move:
                # Where each original went, in the expunge's transaction.
                moved = [u for u in targets if u not in at_hoster]
                departures = self.replica.departures
                hook = _hooks(
                    entry.writer(),
                    departures.writer(mb.id, mb.uidvalidity, moved, "moved", actor.user, dest.name),
                    self.departures.at_hoster(mb, at_hoster),
                )
            # Snapshot records and everyone's private flags first: a move expunges the source.
            carried = self._private_snapshot(mb, targets)
            copies = [
                r
                for s_uid, d_uid in zip(result.source, result.dest, strict=True)
                if (r := _copied_record(mb, s_uid, d_uid)) is not None
            ]
            if move:
                with self._committed(verb, mb.name, dest.name):
                    self.replica.expunge(mb, targets, hook=hook)
                hook = None
            gone = self.departures.gone(mb, [*missing, *at_hoster], len(uids))
            result.gone = gone.text if gone is not None else None
        if result.dest:
            async with self.sync.mailbox_lock(dest.name):
                with self._committed(verb, mb.name, dest.name):
                    # Initialise these users' destination state before the copies
                    # arrive, so a copy never inherits upstream \\Seen as "read" for
                    # someone who had not read the original.
                    for user_id in carried:
                        self.replica.private_state(dest, user_id)
                    await self.sync.fill_below(dest, min(result.dest))
                    self.replica.add_messages(dest, copies, hook=hook)
                    mapping = dict(zip(result.source, result.dest, strict=True))
                    self._carry_private_state(carried, dest, mapping)
        elif hook is not None:
            with self._committed(verb, mb.name, dest.name):
                self.journal.record(entry)
        self.sync.request(dest.name)
        if move:
            self.sync.request(mb.name)
        return result

    def _move_intent(self, mb: MailboxIndex, uids: list[int], dest: MailboxIndex) -> int:
        return self.intents.begin(
            "move",
            {
                "source": mb.name,
                "uidvalidity": mb.uidvalidity,
                "uids": uids,
                "dest": dest.name,
                "dest_uidnext": dest.uidnext,
                "message_ids": [mb.records[u].message_id for u in uids],
            },
        )

    async def _expunge_originals(
        self,
        conn: UpstreamConnection,
        name: str,
        uidset: SequenceSet,
        mb: MailboxIndex | None,
        dest: str,
        by: Actor | None = None,
    ) -> None:
        """The last steps of a move without MOVE to ``dest``: \\Deleted on the
        originals, then expunge exactly them."""
        removal = Removal("expunge", name, uidset, dest=dest, flag_first=True, by=by)
        await self.remover.remove(conn, removal, mb)

    async def recover_intents(self, *, only: int | None = None, final: bool = True) -> int:
        """Finish or roll back open intents: all of them at start-up, ``only`` one
        after its operation failed (others may still be running).  ``final``
        False: a move none of whose copies has arrived yet stays open (its COPY
        may still be on its way upstream).  Returns how many were settled; those
        that cannot be checked now (upstream down) stay open for the next attempt."""
        settled = 0
        for intent in self.intents.pending():
            if only is not None and intent.id != only:
                continue
            if intent.kind in self.settlers:
                settled += await self.settlers[intent.kind](intent)
                continue
            if intent.kind != "move":
                self.intents.finish(intent.id, "unknown")
                continue
            p = intent.payload
            try:
                outcome = await self._settle_move(p, final=final)
            except (UpstreamError, UpstreamUnavailable) as exc:
                log.warning(
                    "open move %d (%s -> %s) not settled yet: %s", intent.id, p["source"], p["dest"], exc
                )
                continue
            if outcome is None:
                continue
            self.intents.finish(intent.id, outcome)
            self.journal.record(
                JournalEntry(
                    None,
                    "gateway",
                    "RECOVER",
                    p["source"],
                    _uids_text(p["uids"]),
                    detail=f"interrupted move to {p['dest']}: {outcome}",
                )
            )
            log.warning("interrupted move %s -> %s: %s", p["source"], p["dest"], outcome)
            self.sync.request(p["source"])
            self.sync.request(p["dest"])
            settled += 1
        return settled

    def _recheck_later(self, intent_id: int) -> None:
        """Settle a move interrupted by a lost connection for good after
        ``INTENT_RECHECK_SECONDS`` (or at the next start, whichever comes first)."""

        async def recheck() -> None:
            await asyncio.sleep(INTENT_RECHECK_SECONDS)
            await self.recover_intents(only=intent_id)

        task = asyncio.create_task(recheck(), name=f"intent-{intent_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle_move(self, p: dict[str, Any], *, final: bool = True) -> str | None:
        uids: list[int] = p["uids"]
        ids: list[str | None] = p["message_ids"]
        copied: list[int] = []
        unknown: list[int] = []
        async with self.pool.connection(p["dest"]) as conn:
            for uid, mid in zip(uids, ids, strict=True):
                if not mid:
                    unknown.append(uid)
                    continue
                criteria = (
                    SearchUid(SequenceSet(((max(p["dest_uidnext"], 1), STAR),))),
                    SearchHeader("Message-ID", mid.encode("utf-8")),
                )
                res = await conn.check(_uid_search(criteria))
                if any(u >= p["dest_uidnext"] for r in res.of_type(rsp.Search) for u in r.ids):
                    copied.append(uid)
        if not final and not copied:
            return None
        async with self.pool.connection(p["source"]) as conn:
            if conn.selected_uidvalidity != p["uidvalidity"]:
                return "source folder was rebuilt; nothing to do"
            if copied:
                await self._expunge_originals(
                    conn, p["source"], SequenceSet.from_ids(copied), self.replica.get(p["source"]), p["dest"]
                )
            rollback = [u for u in uids if u not in copied and u not in unknown]
            if rollback:
                await conn.check(_uid_store(SequenceSet.from_ids(rollback), "remove", ("\\Deleted",)))
        if copied and not rollback:
            return "finished (copies verified by Message-ID, originals expunged)"
        if rollback and not copied:
            return "rolled back (no copy arrived; originals kept)"
        return f"finished {len(copied)}, rolled back {len(rollback)}, unverifiable {len(unknown)} kept"

    def _private_snapshot(self, mb: MailboxIndex, uids: Sequence[int]) -> dict[int, dict[str, set[int]]]:
        """Every user's private flags of ``uids``: {user: {flag: uids}}."""
        wanted = set(uids)
        out: dict[int, dict[str, set[int]]] = {}
        for user_id in self.replica.users_with_private_state(mb):
            state = self.replica.private_state(mb, user_id)
            per_flag = {flag: {u for u in wanted if u in s} for flag, s in state.flags.items()}
            # Users with no flag on these messages are kept too: their state in
            # the destination must exist before the copies arrive (see below).
            out[user_id] = {f: us for f, us in per_flag.items() if us}
        return out

    def _carry_private_state(
        self, carried: dict[int, dict[str, set[int]]], dest: MailboxIndex, mapping: dict[int, int]
    ) -> None:
        """Every user's private flags follow a copied/moved message (a moved mail
        stays read for those who had read it)."""
        for user_id, per_flag in carried.items():
            self.replica.private_state(dest, user_id)
            add = {flag: [mapping[u] for u in us if u in mapping] for flag, us in per_flag.items()}
            add = {f: us for f, us in add.items() if us}
            if add:
                self.replica.set_private_flags(dest, user_id, add, {})

    # -- append ------------------------------------------------------------------------
    async def _append(self, actor: Actor, op: ops.Append) -> CopyResult:
        dest_name, messages = op.mailbox, op.messages
        dest = self.replica.get(dest_name)
        if dest is None:
            raise OperationError(f"mailbox {dest_name!r} does not exist", "TRYCREATE")
        private = self.replica.private_flags_of(dest)
        appends = []
        private_flags: list[set[str]] = []
        for data, flags, date in messages:
            fl = {self.replica.canonical_flag(f) for f in flags if f not in NEVER_UPSTREAM}
            private_flags.append(fl & private)
            appends.append(cmd.AppendMessage(data, tuple(sorted(fl - private)), date))
        entry = JournalEntry.by(actor, "APPEND", mailbox=dest.name, detail=f"{len(appends)} message(s)")
        uidnext_before = dest.uidnext
        result = CopyResult(dest.uidvalidity, [], [])
        try:
            async with self.pool.connection() as conn:
                res = await conn.check(lambda tag: cmd.Append(tag, dest.name, tuple(appends)))
        except UpstreamUnavailable as exc:
            # The connection broke after the message may have been stored: if it
            # is there, the APPEND succeeded (a client retry would duplicate it).
            found = await self._find_by_message_id(dest, [a.data for a in appends], uidnext_before)
            if found is None:
                if isinstance(exc, UpstreamTimeout):
                    self.sync.request(dest.name)
                err = _upstream_failure(exc, "cannot append", write=True)
                self._fail(actor, "APPEND", dest.name, [], err)
                raise err from None
            log.warning("APPEND to %s: connection lost, but the message arrived (UIDs %s)", dest.name, found)
            result = CopyResult(dest.uidvalidity, [], found)
        except UpstreamError as exc:
            err = _upstream_failure(exc, "cannot append")
            self._fail(actor, "APPEND", dest.name, [], err)
            raise err from None
        else:
            code = res.code_of_type(rsp.AppendUidCode)
            if code is not None and code.uidvalidity == dest.uidvalidity and dest.synced:
                new_uids = list(code.uids.iter(0))
                if len(new_uids) == len(appends):
                    result = CopyResult(code.uidvalidity, [], new_uids)
        async with self.sync.mailbox_lock(dest.name):
            with self._committed("APPEND", dest.name):
                if result.dest and dest.uidvalidity != result.uidvalidity:
                    # Rebuilt meanwhile: these UIDs are not the folder's any more; the
                    # sync that rebuilt it fetches what is there.
                    result = CopyResult(dest.uidvalidity, [], [])
                    self.journal.record(entry)
                elif result.dest:
                    await self.sync.fill_below(dest, min(result.dest))
                    recs = []
                    for uid, msg in zip(result.dest, appends, strict=True):
                        when = msg.internal_date or datetime.now().astimezone()
                        off = when.utcoffset()
                        recs.append(
                            MessageRecord(
                                uid,
                                msg.flags,
                                0,
                                when.timestamp(),
                                int(off.total_seconds() // 60) if off else 0,
                                len(msg.data),
                                _message_id(msg.data),
                            )
                        )
                    entry.uids = _uids_text(result.dest)
                    entry.messages = tuple(
                        appended_ref(dest.name, u, a.data) for u, a in zip(result.dest, appends, strict=True)
                    )
                    self.replica.add_messages(dest, recs, hook=entry.writer())
                    add: dict[str, list[int]] = {}
                    for uid, fl in zip(result.dest, private_flags, strict=True):
                        for f in fl:
                            add.setdefault(f, []).append(uid)
                    if add:
                        self.replica.set_private_flags(dest, actor.user_id, add, {})
                else:
                    self.journal.record(entry)
        if not result.dest:
            with self._committed("APPEND", dest.name):
                await self.sync.sync_mailbox(dest.name)
        return result

    async def _find_by_message_id(
        self, dest: MailboxIndex, messages: Sequence[bytes], since_uid: int
    ) -> list[int] | None:
        """UIDs (>= ``since_uid``) of ``messages`` in ``dest`` found by Message-ID on a
        fresh connection, or None when any is missing, ambiguous or unverifiable."""
        ids = [_message_id(m) for m in messages]
        if not all(ids):
            return None
        found: list[int] = []
        try:
            async with self.pool.connection(dest.name) as conn:
                for mid in ids:
                    assert mid is not None
                    key = SearchHeader("Message-ID", mid.encode("utf-8"))
                    criteria = (SearchUid(SequenceSet(((max(since_uid, 1), STAR),))), key)
                    res = await conn.check(_uid_search(criteria))
                    uids = [u for r in res.of_type(rsp.Search) for u in r.ids if u >= since_uid]
                    if len(uids) != 1:
                        return None
                    found.append(uids[0])
        except (UpstreamError, UpstreamUnavailable):
            return None
        return found

    # -- mailboxes ---------------------------------------------------------------------
    async def _create(self, actor: Actor, op: ops.Create) -> None:
        name = op.mailbox
        if self.replica.get(name) is not None:
            raise OperationError(f"mailbox {name!r} already exists", "ALREADYEXISTS")

        # The new folder is listed on the connection that created it: another session of
        # the hoster may not list it yet (seen with Dovecot while the indexer holds one).
        async def listed(conn: UpstreamConnection) -> None:
            # The parent's entries are the new folder's before any session can list it.
            self._acl_change(lambda db: folder_created_in(db, name, self.replica.delimiter()))
            await self.sync.sync_list(conn)

        async with self.sync.list_lock:
            entry = await self._simple_upstream(
                actor,
                "CREATE",
                name,
                lambda conn: conn.check(lambda tag: cmd.Create(tag, name, tuple(op.special_use))),
                then=listed,
            )
        with self._committed("CREATE", name):
            self.journal.record(entry)
            if self.subscriptions is not None and actor.user_id:
                # (No team member acting, e.g. a restore by the operator: no decision to keep.)
                # RFC 3501 §6.3.3: CREATE does not subscribe (the rest of the team sees
                # the new folder subscribed by default; see team/subscriptions.py).
                self.subscriptions.created(actor.user_id, name)
            if self.replica.get(name) is not None:
                await self.sync.sync_mailbox(name)

    async def _delete(self, actor: Actor, op: ops.Delete) -> None:
        name = op.mailbox
        mb = self.mailbox(name)
        if name == "INBOX":
            raise OperationError("INBOX cannot be deleted", "CANNOT")
        lock = self.sync.mailbox_lock(name)
        async with lock:
            self._check_conflicts(actor, op, name, mb.uids)
            entry = await self._simple_upstream(
                actor,
                "DELETE",
                name,
                lambda conn: self.remover.remove(conn, Removal("delete-mailbox", name, None, by=actor), mb),
            )
            with self._committed("DELETE", name):
                self.content.drop_mailbox(mb.id)
                # The journal entry, the folder's ACL and the replica's drop: one transaction.
                self.replica.drop_mailbox(
                    name, hook=self._with_acl(entry.writer(), lambda db: folder_deleted_in(db, name))
                )
        await self.pool.drop_selected(name)
        with self._committed("DELETE", name):
            await self.sync.sync_list()

    async def _rename(self, actor: Actor, op: ops.Rename) -> None:
        old, new = op.mailbox, op.new_name
        mb = self.mailbox(old)
        if self.replica.get(new) is not None:
            raise OperationError(f"mailbox {new!r} already exists", "ALREADYEXISTS")
        lock = self.sync.mailbox_lock(old)
        async with lock:
            self._check_conflicts(actor, op, old, mb.uids)

            async def rename(conn: UpstreamConnection) -> CommandResult:
                if conn.selected == old:
                    await conn.run(lambda tag: cmd.Unselect(tag) if conn.has("UNSELECT") else cmd.Close(tag))
                    conn.selected = None
                return await conn.check(lambda tag: cmd.Rename(tag, old, new))

            entry = await self._simple_upstream(actor, "RENAME", old, rename, detail=f"to {new}")
            with self._committed("RENAME", old, new):
                delimiter = self.replica.delimiter()
                hook = self._with_acl(entry.writer(), lambda db: folder_renamed_in(db, old, new, delimiter))
                if old != "INBOX":
                    # The journal entry, the ACLs and the replica's rename: one transaction.
                    self.replica.rename_mailbox(old, new, hook=hook)
                else:
                    # INBOX stays (its messages move): no replica change to commit with.
                    self.journal.record(entry)
                    self._acl_change(lambda db: folder_renamed_in(db, old, new, delimiter))
        await self.pool.drop_selected(old)
        with self._committed("RENAME", old, new):
            await self.sync.sync_list()
        for name in self.replica.names():
            other = self.replica.get(name)
            if other is not None and not other.synced:
                self.sync.request(name)

    def _with_acl(self, hook: Hook, acl_step: Hook) -> Hook:
        """``hook`` followed by ``acl_step`` in its transaction (no ACLs kept: ``hook``)."""
        if self.acl is None:
            return hook

        def both(db: Connection) -> None:
            hook(db)
            acl_step(db)
            self._acl_refresh()

        return both

    def _acl_change(self, step: Hook) -> None:
        """``step`` in a transaction of its own (the ACL part of a CREATE)."""
        if self.acl is not None:
            with self.journal.engine.begin() as db:
                step(db)
            self._acl_refresh()

    def _acl_refresh(self) -> None:
        if self.acl is not None:
            self.acl.refresh()

    async def _simple_upstream(
        self,
        actor: Actor,
        verb: str,
        mailbox: str,
        act: Callable[[UpstreamConnection], Awaitable[CommandResult]],
        detail: str | None = None,
        then: Callable[[UpstreamConnection], Awaitable[None]] | None = None,
    ) -> JournalEntry:
        """``act`` upstream on a pooled connection; returns the journal entry for
        the caller to commit with its replica change.  ``then`` runs on the same
        connection after it succeeded."""
        entry = JournalEntry.by(actor, verb, mailbox=mailbox, detail=detail)
        try:
            async with self.pool.connection() as conn:
                await act(conn)
                if then is not None:
                    with self._committed(verb, mailbox):
                        await then(conn)
        except (UpstreamError, UpstreamUnavailable) as exc:
            err = _upstream_failure(exc, f"cannot {verb.lower()} {mailbox}", write=True)
            self._fail(actor, verb, mailbox, [], err)
            raise err from None
        return entry

    # -- subscriptions and folder settings ---------------------------------------------
    def _subscribe(self, actor: Actor, op: ops.Subscribe, known: bool) -> None:
        """SUBSCRIBE: ``known`` says whether the name is a folder (or a level above
        one) the actor sees."""
        subs = self._subscriptions()
        if not known and not subs.is_subscribed(actor.user_id, op.mailbox, exists=False):
            # RFC 3501 §6.3.6 lets a server check; Dovecot does (a typo is caught).
            raise OperationError(f"mailbox {op.mailbox!r} does not exist", "NONEXISTENT")
        subs.subscribe(actor.user_id, op.mailbox)

    def _unsubscribe(self, actor: Actor, op: ops.Unsubscribe) -> None:
        self._subscriptions().unsubscribe(actor.user_id, op.mailbox)

    def _subscriptions(self) -> Subscriptions:
        if self.subscriptions is None:
            raise OperationError("subscriptions are not kept by this gateway", "CANNOT")
        return self.subscriptions

    def _set_read_mode(self, actor: Actor, op: ops.SetReadMode) -> None:
        """Switch a folder's read state (private/shared/default) and journal it."""
        mb = self.mailbox(op.mailbox)
        before = self.replica.seen_mode(mb)
        self.replica.set_seen_mode(mb, op.mode)
        after = self.replica.seen_mode(mb)
        self.journal.record(
            JournalEntry.by(
                actor, "FOLDER SET", mailbox=mb.name,
                detail=f"read state {before} -> {after} ({op.mode or 'default'})",
            )
        )  # fmt: skip

    # -- reads through upstream --------------------------------------------------------
    async def _fetch_content(
        self, mb: MailboxIndex, uids: Sequence[int], attrs: Sequence[FetchAttribute]
    ) -> dict[tuple[int, bytes], bytes | None]:
        """Content items for ``uids``: {(uid, cache key): bytes, or None for NIL}.
        Cache keys are ``cache_key(attr)``; missing items are fetched upstream in
        batches.  A message expunged from the replica is served from the cache
        only (a session not yet told of the expunge may still ask for it).  A key
        is absent only when its message's content cannot be had any more: gone
        at the hoster and not cached."""
        keys = {cache_key(a): upstream_attribute(a) for a in attrs}
        wanted = [(u, k) for u in uids for k in keys]
        found = self.content.get_many(mb.id, mb.uidvalidity, wanted)
        missing_by_uid: dict[int, list[bytes]] = {}
        for u, k in wanted:
            if (u, k) not in found and u in mb.records:
                missing_by_uid.setdefault(u, []).append(k)
        if not missing_by_uid:
            return found
        batches: list[list[int]] = []
        size = 0
        for u in sorted(missing_by_uid):
            rec = mb.records.get(u)
            msize = rec.size if rec else 0
            if (
                not batches
                or size + msize > CONTENT_BATCH_BYTES
                or len(batches[-1]) >= CONTENT_BATCH_MAX_UIDS
            ):
                batches.append([])
                size = 0
            batches[-1].append(u)
            size += msize
        try:
            async with self.pool.connection(mb.name, need_uid=max(missing_by_uid)) as conn:
                self._check_uidvalidity(conn, mb)
                uidvalidity = mb.uidvalidity  # the UIDs' own, whatever a sync does meanwhile
                for batch in batches:
                    found.update(
                        await self._fetch_batch(conn, mb.id, uidvalidity, batch, missing_by_uid, keys)
                    )
                unanswered = [u for u in sorted(missing_by_uid) if (u, missing_by_uid[u][0]) not in found]
                if unanswered:
                    # Gone upstream, or not yet announced to this session (Dovecot
                    # skips such a UID silently): NOOP and ask once more.
                    await conn.check(lambda tag: cmd.Noop(tag))
                    found.update(
                        await self._fetch_batch(conn, mb.id, uidvalidity, unanswered, missing_by_uid, keys)
                    )
        except (UpstreamError, UpstreamUnavailable) as exc:
            if isinstance(exc, UpstreamUnavailable):
                derived = self._derive_missing(mb, missing_by_uid, found)
                if derived is not None:
                    log.info(
                        "%s: hoster unreachable (%s); %d item(s) derived from cached messages",
                        mb.name,
                        exc,
                        len(derived),
                    )
                    found.update(derived)
                    return found
            raise _upstream_failure(exc, "cannot fetch message content") from None
        return found

    def _derive_missing(
        self,
        mb: MailboxIndex,
        missing_by_uid: dict[int, list[bytes]],
        found: dict[tuple[int, bytes], bytes | None],
    ) -> dict[tuple[int, bytes], bytes | None] | None:
        """The items still missing, derived from each message's cached ``BODY[]``
        (headers, sections, ENVELOPE, BODYSTRUCTURE: ``replica/mime.py``), or None
        when any of them cannot be (no cached body, or an item such as BINARY).

        Only while the hoster cannot be asked: other servers format ENVELOPE and
        BODYSTRUCTURE their own way, and one folder must not show two.  Derived
        items are not cached, so the hoster's own answer replaces them later."""
        todo = {u: [k for k in keys if (u, k) not in found] for u, keys in missing_by_uid.items()}
        todo = {u: keys for u, keys in todo.items() if keys}
        if not todo:
            return {}
        bodies = self.content.get_many(mb.id, mb.uidvalidity, [(u, WHOLE) for u in todo])
        out: dict[tuple[int, bytes], bytes | None] = {}
        for u, keys in todo.items():
            whole = found.get((u, WHOLE)) or bodies.get((u, WHOLE))
            if whole is None:
                return None
            for k in keys:
                value = mime.derive(whole, k)
                if value is None:
                    return None
                out[(u, k)] = value
        return out

    async def _fetch_batch(
        self,
        conn: UpstreamConnection,
        mailbox_id: int,
        uidvalidity: int,
        batch: list[int],
        missing_by_uid: dict[int, list[bytes]],
        keys: dict[bytes, FetchAttribute],
    ) -> dict[tuple[int, bytes], bytes | None]:
        need = sorted({k for u in batch for k in missing_by_uid[u]})
        items = tuple(keys[k] for k in need)
        res = await conn.run(_uid_fetch(SequenceSet.from_ids(batch), items))
        # Some of the messages were expunged by another session at the hoster
        # (Dovecot: NO or OK with [EXPUNGEISSUED], NIL for what it could not
        # read): keep what it did send, never a NIL of that answer.
        expunged = res.tagged.code == rsp.EXPUNGEISSUED
        if not res.ok and not expunged:
            raise UpstreamError(res)
        got: dict[tuple[int, bytes], bytes | None] = {}
        missing: dict[tuple[int, bytes], bytes | None] = {}
        for f in res.of_type(rsp.FetchResponse):
            fuid = f.uid
            if fuid is None or fuid not in missing_by_uid:
                continue
            values = {k: _find_item(f.items, keys[k].response_name()) for k in missing_by_uid[fuid]}
            if expunged and any(v is None for ok, v in values.values() if ok):
                continue  # unreadable there: not an answer about this message
            for k, (found_item, value) in values.items():
                if found_item:
                    got[(fuid, k)] = _as_bytes(value)
                else:
                    # Left out of an answer about the message: NIL this time,
                    # not cached (asked again next time).
                    missing[(fuid, k)] = None
        self.content.put_many(mailbox_id, uidvalidity, got)
        # An unsolicited FETCH about the same message in the same answer (Dovecot sends
        # ``* n FETCH (UID MODSEQ FLAGS)`` for a flag change another connection made, e.g.
        # a claim's keywords) leaves the content out: it is no NIL of the item the other
        # response did carry.
        for key, value in missing.items():
            got.setdefault(key, value)
        return got

    # -- search ------------------------------------------------------------------------
    def charset_supported(self, charset: str) -> bool:
        """Whether SEARCH accepts ``CHARSET charset`` (else NO [BADCHARSET])."""
        return search_charset_supported(charset)

    async def _search_content(self, mb: MailboxIndex, key: SearchKey, charset: str | None) -> set[int]:
        """UIDs matching one content criterion (text, header, sent date): from the
        search index for the messages it covers, from the hoster for the rest (all of
        them while the index is off or cannot answer this key the hoster's way)."""
        index = self.index if self.index is not None and self.index_active() else None
        needle = needle_for(key, charset) if index is not None else None
        if index is None or needle is None:
            return await self._search_upstream(mb, key, charset)
        found, uncovered = await index.lookup(mb, needle)
        if uncovered:
            found |= await self._search_upstream_among(mb, key, charset, uncovered)
        return found

    async def _search_upstream_among(
        self, mb: MailboxIndex, key: SearchKey, charset: str | None, uids: list[int]
    ) -> set[int]:
        """``key`` asked upstream for ``uids`` only (``UID set key``), or for the whole
        folder when the set would make a long command line."""
        uidset = SequenceSet.from_ids(uids)
        if len(bytes(uidset)) > SEARCH_SET_MAX_BYTES:
            return (await self._search_upstream(mb, key, charset)) & set(uids)
        return await self._search_upstream(mb, key, charset, within=uidset)

    async def _search_upstream(
        self, mb: MailboxIndex, key: SearchKey, charset: str | None, *, within: SequenceSet | None = None
    ) -> set[int]:
        """UIDs matching one content criterion (text, header, sent date), asked upstream
        (among the UIDs ``within`` when given)."""
        criteria: tuple[SearchKey, ...] = (key,) if within is None else (SearchUid(within), key)
        try:
            async with self.pool.connection(mb.name, need_uid=mb.uids[-1] if mb.uids else 0) as conn:
                self._check_uidvalidity(conn, mb)
                res = await conn.check(lambda tag: cmd.Search(tag, criteria, uid=True, charset=charset))
        except (UpstreamError, UpstreamUnavailable) as exc:
            if isinstance(exc, UpstreamError) and isinstance(exc.result.tagged.code, rsp.BadCharsetCode):
                raise OperationError(f"unsupported charset {charset}", "BADCHARSET") from None
            raise _upstream_failure(exc, "cannot search") from None
        found: set[int] = set()
        for s in res.of_type(rsp.Search):
            found.update(s.ids)
        for e in res.of_type(rsp.ESearch):
            if e.all is not None:
                found.update(e.all.iter(0))
        return found


def _store_groups(
    mb: MailboxIndex, plan: dict[int, tuple[str, ...]]
) -> dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]]:
    """Messages grouped by (flags to add, flags to remove), so a bulk change is a
    few UID STORE commands, not one per message.  (Called before any await after
    ``plan`` was made: the records are the ones it was made from.)"""
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
    for u, new in plan.items():
        cur = set(mb.records[u].flags)
        add = tuple(sorted(set(new) - cur))
        rem = tuple(sorted(cur - set(new)))
        groups.setdefault((add, rem), []).append(u)
    return groups


async def _run_stores(
    conn: UpstreamConnection,
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]],
    reported: dict[int, FlagReport],
) -> bool:
    """Send the UID STOREs of ``groups``; collect every FETCH upstream answers
    into ``reported`` (later lines win).  True when upstream sent any FETCH."""
    answered = False
    for (add, rem), group in groups.items():
        uidset = SequenceSet.from_ids(group)
        steps: tuple[tuple[cmd.StoreOperation, tuple[str, ...]], ...] = (("add", add), ("remove", rem))
        for op, flags in steps:
            if not flags:
                continue
            res = await conn.check(_uid_store(uidset, op, flags, silent=False))
            for f in res.of_type(rsp.FetchResponse):
                answered = True
                if f.uid is not None and f.flags is not None:
                    reported[f.uid] = (stored_flags(f.flags), f.modseq)
    return answered


def _hooks(*hooks: Hook) -> Hook:
    """One transaction hook running ``hooks`` in order."""

    def run(db: Connection) -> None:
        for hook in hooks:
            hook(db)

    return run


@contextlib.asynccontextmanager
async def _held(lock: MailboxLock, hold: bool) -> AsyncIterator[None]:
    """``lock`` held for the block when ``hold``, else nothing."""
    if hold:
        async with lock:
            yield
    else:
        yield


def _rebuilt(mb: MailboxIndex) -> OperationError:
    return OperationError(
        f"mailbox {mb.name} was rebuilt on the mail server (UIDVALIDITY changed); reopen it", "UNAVAILABLE"
    )


def _uid_store(
    uids: SequenceSet, op: cmd.StoreOperation, flags: tuple[str, ...], *, silent: bool = True
) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Store(tag, uids, op, flags, silent=silent, uid=True)

    return build


def _expunging(name: str, uids: Sequence[int], by: Actor) -> Removal:
    """The removal of an EXPUNGE of ``uids`` (they carry \\Deleted already)."""
    return Removal("expunge", name, SequenceSet.from_ids(uids), by=by)


def _vanished(res: CommandResult) -> set[int]:
    """UIDs an answer reports expunged (QRESYNC's VANISHED)."""
    return {u for v in res.of_type(rsp.Vanished) for u in v.uids.iter(0)}


def _uid_search(criteria: tuple[SearchKey, ...]) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Search(tag, criteria, uid=True)

    return build


def _uid_fetch(uids: SequenceSet, items: tuple[FetchAttribute, ...]) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(tag, uids, items, uid=True)

    return build


# --- content item naming ------------------------------------------------------------------
_RFC822_AS_BODY = {
    "RFC822": Section(),
    "RFC822.HEADER": Section((), "HEADER"),
    "RFC822.TEXT": Section((), "TEXT"),
}

#: The cache key of a whole message (``BODY.PEEK[]``, also what RFC822 is asked as).
WHOLE = b"BODY[]"

CONTENT_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"})


def is_content(attr: FetchAttribute) -> bool:
    """True when the item comes from the message content (cache/upstream)."""
    return attr.name in CONTENT_ITEMS or attr.name in ("BINARY", "BINARY.SIZE") or (attr.name == "BODY")


def upstream_attribute(attr: FetchAttribute) -> FetchAttribute:
    """What to ask upstream for ``attr``: always PEEK (upstream \\Seen is not the
    user's), never partial (the whole section is cached and sliced locally)."""
    if attr.name in _RFC822_AS_BODY:
        return FetchAttribute("BODY", _RFC822_AS_BODY[attr.name], peek=True)
    if attr.section is None:
        return FetchAttribute(attr.name)
    return FetchAttribute(attr.name, attr.section, None, peek=attr.name != "BINARY.SIZE")


def cache_key(attr: FetchAttribute) -> bytes:
    return upstream_attribute(attr).response_name()


def _find_item(items: dict[bytes, rsp.FetchValue], name: bytes) -> tuple[bool, rsp.FetchValue]:
    """The FETCH item ``name`` of an upstream answer.  Servers may echo a HEADER.FIELDS list
    in another order or case than asked (pymap sorts it): match those too, else the client
    would get NIL for headers the server did send."""
    if name in items:
        return True, items[name]
    want = _normalized_item_name(name)
    for key, value in items.items():
        if _normalized_item_name(key) == want:
            return True, value
    return False, None


_FIELD_LIST = re.compile(rb"\(([^()]*)\)")


def _normalized_item_name(name: bytes) -> bytes:
    return _FIELD_LIST.sub(lambda m: b"(" + b" ".join(sorted(m.group(1).split())) + b")", name.upper())


def _as_bytes(value: rsp.FetchValue) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, rsp.RawItem):
        return value.raw
    if isinstance(value, int):
        return b"%d" % value
    return str(value).encode("utf-8")


def _copied_record(mb: MailboxIndex, src: int, dst: int) -> MessageRecord | None:
    r = mb.records.get(src)
    if r is None:
        return None
    return MessageRecord(dst, r.flags, 0, r.internal_date, r.tz_offset, r.size, r.message_id)


def _message_id(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip().decode("utf-8", "replace") or None
    return None


def _answer_marks(mb: MailboxIndex, plan: dict[int, tuple[str, ...]]) -> tuple[tuple[str, int, str], ...]:
    """The messages ``plan`` newly sets \\Answered on (those with a Message-ID): recorded
    with the STORE's journal entry, so the reply guard knows who answered them."""
    marks = []
    for uid, new in plan.items():
        rec = mb.records.get(uid)
        if rec is not None and rec.message_id and "\\Answered" in new and "\\Answered" not in rec.flags:
            marks.append((mb.name, uid, rec.message_id))
    return tuple(marks)


def _uids_text(uids: Iterable[int]) -> str:
    return str(SequenceSet.from_ids(uids))


def now() -> float:
    return time.time()
