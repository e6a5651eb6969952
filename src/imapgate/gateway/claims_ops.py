"""Claims in the write path (issue 12): what ``Service.execute`` does around
the handlers when an operation claims, releases or carries a claim.

``ClaimOps.run`` wraps the service's handler dispatch:

* STORE ``+FLAGS $Claimed`` (or the member's own claimant keyword) claims: the
  store decides the one winner first (``ClaimRegistry.claim``, an INSERT under
  a unique constraint), then the STORE sets ``$Claimed`` and the claimant
  keyword upstream; if upstream refuses, the claim is taken back.
  ``-FLAGS $Claimed`` by the claimant releases (upstream first, then the row).
* MOVE by the claimant: the claim follows the message to its new folder and
  UID, or ends when the target is one of ``[claims] release_on_move_to``.
  COPY: the copies lose the claim keywords (a claim is on one message).
* APPEND to Drafts with ``[claims] claim_on_draft``: a draft replying to a
  known message (In-Reply-To) claims that message for its author.
* Every refusal (``ClaimConflict``) is journaled.

The keywords live upstream (see docs/architecture.md, "Claims"), so every
session — through the gateway or not — sees them with the existing flag sync
and IDLE push; the store's row is what decides.  ``sweep`` (every
``SWEEP_SECONDS``) ends expired claims, drops those whose message is gone and
removes claim keywords no claim stands behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.parser
import email.policy
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from ..config import ClaimsConfig
from ..protocol.sequence import SequenceSet
from ..replica.events import MailboxReset
from ..replica.mailbox import MailboxIndex
from ..replica.replica import Replica
from ..submission.guard import Claim as GuardClaim
from ..submission.msgindex import MessageIdIndex
from ..team.claims import CLAIMED, Claim, ClaimRegistry, ClaimTaken, claimant_keyword, is_claim_flag
from ..team.journal import Journal, JournalEntry
from . import operations as ops
from .audit_refs import message_refs
from .claim_policy import ClaimConflict, ClaimPolicy
from .errors import OperationError
from .policy import SYSTEM, Actor

log = logging.getLogger("imapgate.claims")

#: How often expired claims are ended: a claim ends at most this late, and a
#: sweep over every claim costs microseconds, so a short period is cheap.
SWEEP_SECONDS: Final = 30.0
#: Header bytes read from a draft for its In-Reply-To: a header block is rarely
#: longer, and the draft's body is never needed.
DRAFT_HEADER_BYTES: Final = 64 * 1024

Handler = Callable[[Actor, ops.Operation[Any]], Awaitable[Any]]


def _uids_text(uids: Sequence[int]) -> str:
    return str(SequenceSet.from_ids(uids)) if uids else ""


class ClaimOps:
    def __init__(
        self,
        registry: ClaimRegistry,
        policy: ClaimPolicy,
        replica: Replica,
        journal: Journal,
        config: ClaimsConfig,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.replica = replica
        self.journal = journal
        self.config = config
        self._done_folders = {n.lower() for n in config.release_on_move_to}
        self._ids: MessageIdIndex | None = None
        #: (mailbox id, UID) of claimed messages being moved right now.
        self._moving: set[tuple[int, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        replica.hub.subscribe(None, self._on_event)

    def _on_event(self, event: object) -> None:
        """A folder rebuilt at the hoster (new UIDVALIDITY) or deleted: its UIDs name
        other messages now, so its claims end (after this callback: the bus's
        listeners only queue work)."""
        if isinstance(event, MailboxReset) and self.registry.in_mailbox(event.mailbox_id):
            with contextlib.suppress(RuntimeError):  # no running loop: the next load settles it
                asyncio.get_running_loop().call_soon(self._drop_folder, event.mailbox_id, event.reason)

    def _drop_folder(self, mailbox_id: int, reason: str) -> None:
        uids = list(self.registry.in_mailbox(mailbox_id))
        entry = JournalEntry(
            user=None, client="gateway", command="CLAIM RELEASE", uids=_uids_text(uids),
            detail=f"{len(uids)} claim(s) ended: {reason}",
        )  # fmt: skip
        self.registry.release(mailbox_id, uids, also=entry.writer())

    # -- the reply guard's view (submission/guard.py ``ClaimLookup``) ---------------------
    def claim_of(self, mailbox_id: int, uid: int) -> GuardClaim | None:
        """Who holds a claim on a message, as the reply guard asks (one lookup)."""
        c = self.registry.get(mailbox_id, uid)
        return GuardClaim(c.user, c.claimed_at) if c is not None else None

    # -- the wrapper ---------------------------------------------------------------------
    async def run(self, actor: Actor, op: ops.Operation[Any], handle: Handler) -> Any:
        try:
            match op:
                case ops.StoreFlags():
                    return await self._store(actor, op, handle)
                case ops.Move() | ops.Copy():
                    return await self._copy(actor, op, handle)
                case ops.Append():
                    result = await handle(actor, op)
                    if self.config.claim_on_draft:
                        await self._claim_on_draft(actor, op, handle)
                    return result
            return await handle(actor, op)
        except ClaimConflict as exc:
            self._journal_refusal(actor, op, exc)
            raise

    def _journal_refusal(self, actor: Actor, op: ops.Operation[Any], exc: ClaimConflict) -> None:
        mb = getattr(op, "mailbox", None)
        name = mb.name if isinstance(mb, MailboxIndex) else mb if isinstance(mb, str) else None
        verb = type(op).__name__.upper()
        entry = JournalEntry.by(
            actor, "CLAIM REFUSED", mailbox=name, uids=_uids_text(exc.uids), result="NO",
            detail=f"{verb}: {exc.text}", action="refused",
            messages=message_refs(mb, exc.uids, None) if isinstance(mb, MailboxIndex) else (),
        )  # fmt: skip
        with contextlib.suppress(Exception):  # the answer matters more than its record
            self.journal.record(entry)

    # -- STORE: claim and release ----------------------------------------------------------
    async def _store(self, actor: Actor, op: ops.StoreFlags, handle: Handler) -> ops.StoreResult:
        claim_flags = [f for f in op.flags if is_claim_flag(f)]
        if not claim_flags and op.mode != "set":
            return await handle(actor, op)  # type: ignore[no-any-return]  # \Deleted: the policy's
        mine_kw = claimant_keyword(actor.user)
        forged = [f for f in claim_flags if f.lower() not in (CLAIMED.lower(), mine_kw)]
        if forged and actor.user_id != 0:
            raise OperationError(
                f"{forged[0]} names another member's claim; set $Claimed to claim a message yourself",
                "CANNOT",
            )
        mb = op.mailbox
        targets = [u for u in op.uids if u in mb.records]
        if op.mode != "remove" and claim_flags:
            return await self._claim(actor, op, targets, handle)
        return await self._release_by_store(actor, op, targets, handle)

    async def _claim(
        self, actor: Actor, op: ops.StoreFlags, targets: list[int], handle: Handler
    ) -> ops.StoreResult:
        mb = op.mailbox
        held = self.policy.held_by_others(actor, mb.name, targets)
        if held:
            raise ClaimConflict(held)
        new = [u for u in targets if self.registry.get(mb.id, u) is None]
        entry = JournalEntry.by(
            actor, "CLAIM", mailbox=mb.name, uids=_uids_text(new), detail=self._expiry_text(),
            action="claimed", messages=message_refs(mb, new, None),
        )  # fmt: skip
        try:
            self.registry.claim(
                mb.id, new, actor.user_id, actor.user,
                expires_after=self.config.expire_after or None, also=entry.writer(),
            )  # fmt: skip
        except ClaimTaken as exc:  # lost the race to a colleague: the store decided
            raise ClaimConflict(exc.holders) from None
        flags = (*(f for f in op.flags if not is_claim_flag(f)), CLAIMED, claimant_keyword(actor.user))
        try:
            return await handle(actor, dataclasses.replace(op, flags=flags))  # type: ignore[no-any-return]
        except BaseException:
            self._release(actor, mb, new, "claim undone: the flags could not be set")
            raise

    async def _release_by_store(
        self, actor: Actor, op: ops.StoreFlags, targets: list[int], handle: Handler
    ) -> ops.StoreResult:
        """``-FLAGS $Claimed`` (or ``FLAGS (...)`` without it): the policy refused it
        already if another member holds a claim; upstream first, then the rows."""
        mb = op.mailbox
        flags = list(op.flags)
        if op.mode == "remove":
            # Every claim keyword on these messages goes, stale ones included.
            found = {f for u in targets for f in mb.records[u].flags if is_claim_flag(f)}
            flags = [f for f in flags if not is_claim_flag(f)] + sorted(found | {CLAIMED})
        result = await handle(actor, dataclasses.replace(op, flags=tuple(flags)))
        mine = [u for u in targets if (c := self.registry.get(mb.id, u)) is not None
                and (c.user_id == actor.user_id or actor.user_id == 0)]  # fmt: skip
        self._release(actor, mb, mine, "released")
        return result  # type: ignore[no-any-return]

    def _release(self, actor: Actor, mb: MailboxIndex, uids: Sequence[int], why: str) -> list[Claim]:
        if not uids:
            return []
        entry = JournalEntry.by(
            actor, "CLAIM RELEASE", mailbox=mb.name, uids=_uids_text(uids), detail=why,
            action="released", messages=message_refs(mb, uids, None),
        )  # fmt: skip
        return self.registry.release(mb.id, uids, also=entry.writer())

    def _expiry_text(self) -> str:
        seconds = self.config.expire_after
        return "never expires" if not seconds else f"expires after {seconds:g} s"

    # -- MOVE / COPY -----------------------------------------------------------------------
    async def _copy(self, actor: Actor, op: ops.Copy | ops.Move, handle: Handler) -> ops.CopyResult:
        mb = op.mailbox
        # With several nodes a COPY asks the store (a MOVE's conflict check just did): a claim
        # taken on another node must not travel with the copy's keywords.
        registry = self.registry
        claims = (
            registry.fresh(mb.id)
            if registry.shared and isinstance(op, ops.Copy)
            else registry.in_mailbox(mb.id)
        )
        # The claims that travel (the policy refused a MOVE of others' claims).
        claimed = {u for u in op.uids if u in claims} if claims else set()
        if not claimed:
            return await handle(actor, op)  # type: ignore[no-any-return]
        keys = {(mb.id, u) for u in claimed}
        self._moving |= keys  # the sweep must not take them for gone meanwhile
        try:
            result: ops.CopyResult = await handle(actor, op)
            await self._carry(actor, op, result, claimed, handle)
        finally:
            self._moving -= keys
        return result

    async def _carry(
        self,
        actor: Actor,
        op: ops.Copy | ops.Move,
        result: ops.CopyResult,
        claimed: set[int],
        handle: Handler,
    ) -> None:
        mb = op.mailbox
        dest = self.replica.get(op.dest)
        if dest is None or not result.dest:
            return
        mapping = {s: d for s, d in zip(result.source, result.dest, strict=True) if s in claimed}
        if isinstance(op, ops.Move) and mapping:
            if dest.name.lower() in self._done_folders:
                self._release(actor, mb, list(mapping), f"moved to {dest.name} (done)")
                await self._strip(actor, dest, list(mapping.values()), handle)
            else:
                to = _uids_text(list(mapping.values()))
                entry = JournalEntry(
                    user=actor.user, client=actor.client, command="CLAIM MOVE", mailbox=mb.name,
                    uids=_uids_text(list(mapping)), detail=f"follows the message to {dest.name} UID {to}",
                )  # fmt: skip
                self.registry.move(mb.id, mapping, dest.id, also=entry.writer())
        elif not isinstance(op, ops.Move) and mapping:
            # A copy is another message: the claim stays with the original.
            await self._strip(actor, dest, list(mapping.values()), handle)

    async def _strip(self, actor: Actor, mb: MailboxIndex, uids: Sequence[int], handle: Handler) -> None:
        """Remove every claim keyword from ``uids`` of ``mb`` upstream, as ``actor``: a
        team member (a STORE by the gateway itself would create read state for
        nobody in a private-read folder), whose journal line says why."""
        found = sorted({f for u in uids if u in mb.records for f in mb.records[u].flags if is_claim_flag(f)})
        if not found:
            return
        try:
            await handle(actor, ops.StoreFlags(mb, list(uids), "remove", tuple(found)))
        except OperationError as exc:
            log.warning("could not remove claim keywords in %s: %s", mb.name, exc.text)

    # -- drafts --------------------------------------------------------------------------
    def _is_drafts(self, name: str) -> bool:
        mb = self.replica.get(name)
        if mb is None:
            return False
        return name.lower() == "drafts" or any(a.lower() == "\\drafts" for a in mb.attributes)

    async def _claim_on_draft(self, actor: Actor, op: ops.Append, handle: Handler) -> None:
        if not self._is_drafts(op.mailbox):
            return
        if self._ids is None:
            self._ids = MessageIdIndex(self.replica)
        for data, _flags, _date in op.messages:
            parent = _in_reply_to(data)
            if parent is None:
                continue
            for mb, rec in self._ids.find(parent):
                if self._is_drafts(mb.name):
                    continue
                claim = self.registry.get(mb.id, rec.uid)
                if claim is not None:
                    continue  # already claimed (by them, or a colleague: the guard warns)
                store = ops.StoreFlags(mb, [rec.uid], "add", (CLAIMED,))
                try:
                    await self._claim(actor, store, [rec.uid], handle)
                except OperationError as exc:
                    log.info("draft did not claim %s UID %d: %s", mb.name, rec.uid, exc.text)

    # -- admin release, expiry ---------------------------------------------------------------
    async def release(self, claims: Sequence[Claim], why: str, handle: Handler, actor: Actor = SYSTEM) -> int:
        """End ``claims`` (an admin's release, expiry): keywords upstream, then rows."""
        groups: dict[tuple[int, int, str], list[int]] = {}
        for c in claims:
            groups.setdefault((c.mailbox_id, c.user_id, c.user), []).append(c.uid)
        ended = 0
        for (mb_id, user_id, user), uids in groups.items():
            mb = _by_id(self.replica, mb_id)
            if mb is None:
                self.registry.release(mb_id, uids)
                ended += len(uids)
                continue
            # The keywords are removed in the claimant's name, marked as the gateway's doing.
            claimant = Actor(user_id, user, f"imapgate ({why})")
            await self._strip(claimant, mb, [u for u in uids if u in mb.records], handle)
            ended += len(self._release(actor, mb, uids, why))
        return ended

    async def sweep(self, handle: Handler, now: float | None = None) -> int:
        """End expired claims and those whose message is gone."""
        at = time.time() if now is None else now
        ended = 0
        expired = self.registry.expired(at)
        if expired:
            ended += await self.release(expired, "claim expired", handle)
        gone = []
        for c in self.registry.all():
            mb = _by_id(self.replica, c.mailbox_id)
            if (c.mailbox_id, c.uid) in self._moving:
                continue
            if mb is None or (mb.synced and c.uid not in mb.records):
                gone.append(c)
        if gone:
            ended += await self.release(gone, "message gone", handle)
        return ended

    async def tidy(self, handle: Handler) -> int:
        """Remove claim keywords no claim stands behind (a claim ended while the
        gateway was not running, a message copied upstream with its keywords);
        returns how many messages were tidied.  Folders without any claim
        keyword cost one look at their cached keyword summary."""
        tidied = 0
        for name in self.replica.names():
            mb = self.replica.get(name)
            if mb is None or not mb.synced or not any(is_claim_flag(k) for k in mb.keywords()):
                continue
            claims = self.registry.in_mailbox(mb.id)
            stale: dict[tuple[str, ...], list[int]] = {}
            for uid, rec in mb.records.items():
                found = tuple(f for f in rec.flags if is_claim_flag(f))
                if not found:
                    continue
                c = claims.get(uid)
                keep = {CLAIMED.lower(), claimant_keyword(c.user)} if c is not None else set()
                extra = tuple(f for f in found if f.lower() not in keep)
                if extra and (mb.id, uid) not in self._moving:
                    stale.setdefault(extra, []).append(uid)
            for flags, uids in stale.items():
                try:
                    await handle(SYSTEM, ops.StoreFlags(mb, uids, "remove", flags))
                    tidied += len(uids)
                except OperationError as exc:
                    log.warning("could not remove stale claim keywords in %s: %s", mb.name, exc.text)
        return tidied

    def reload(self, handle: Handler) -> int:
        """Claims changed in the store by another process: reload them, and tidy
        the keywords in the background.  Returns how many claims are open."""
        self.registry.load()
        self._spawn(self.tidy(handle))
        return len(self.registry.all())

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("claim keywords not tidied")

        task = asyncio.create_task(run(), name="claims-tidy")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self, handle: Handler) -> None:
        async def loop() -> None:
            await self.tidy(handle)  # claims ended while no gateway ran
            while True:
                await asyncio.sleep(SWEEP_SECONDS)
                try:
                    await self.sweep(handle)
                except Exception:  # keep sweeping; the next round may succeed
                    log.exception("claim sweep failed")

        self._sweeper = asyncio.create_task(loop(), name="claims-sweep")

    async def stop(self) -> None:
        self.replica.hub.unsubscribe(None, self._on_event)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeper
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._ids is not None:
            self._ids.close()


def _by_id(replica: Replica, mailbox_id: int) -> MailboxIndex | None:
    for name in replica.names():
        mb = replica.get(name)
        if mb is not None and mb.id == mailbox_id:
            return mb
    return None


def _in_reply_to(data: bytes) -> str | None:
    """The Message-ID a draft replies to (In-Reply-To), with its angle brackets
    (as the replica keeps Message-IDs)."""
    head = data[:DRAFT_HEADER_BYTES].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    value = msg.get("In-Reply-To")
    if not value:
        return None
    text = str(value).strip()
    start, end = text.find("<"), text.find(">")
    return text[start : end + 1] if 0 <= start < end else text or None


__all__ = ["SWEEP_SECONDS", "ClaimOps"]
