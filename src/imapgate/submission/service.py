"""The submission's service side: the reply guard's I/O edges and what a sent
reply changes.

For one message at the end of the client's DATA (``submit``):

1. the sender check: every ``From`` address in ``allowed_from`` (the envelope
   sender was checked at MAIL);
2. ``Message-ID``/``Date`` added when missing (RFC 6409 §8);
3. the original: the first of the reply's In-Reply-To/References Message-IDs
   the replica knows (``MessageIdIndex``), with all its copies;
4. its history from the store (``team/replies.py``: replies sent through the
   gateway, ``\\Answered`` marks, this member's refused attempts and earlier
   submissions of the same message) and the claims (``ClaimLookup``);
5. the pure decision (``guard.decide``); a refusal is recorded (override
   window) with its journal entry and the hoster's transaction is reset;
6. a message that goes out is recorded ``sending``; then, shielded from the
   client going away, the hoster gets DATA + content + the final dot and its
   answer settles the record (``sent``, or ``unknown`` without an answer) with
   the journal entry ("answered by alice"), in one transaction;
7. a reply that went out sets ``\\Answered`` on every copy of the original
   through the write path, as the sender (``MailService.store``: hoster first,
   then replica, journal and the answer mark, pushed to every IDLE session).

Steps 3–6 run under a per-original lock: of two members replying to the same
mail at the same moment, the second sees the first's ``sending`` record.

Seams for later issues: the claims issue fills ``ClaimLookup`` (``guard.py``);
the operation pipeline (issue 10) replaces the direct ``MailService.store``
call in ``_mark_answered`` and the store calls here by typed operations.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import zoneinfo
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import SubmissionConfig
from ..gateway import operations as ops
from ..gateway.app import Gateway
from ..gateway.errors import OperationError
from ..gateway.policy import Actor
from ..team.journal import JournalEntry
from ..team.replies import ReplyLog, SubmissionRow, recipients_key
from . import guard
from .guard import Attempt, ClaimLookup, Clock, Copy, History, NoClaims, Original
from .message import SubmittedMessage, complete, parse
from .msgindex import MessageIdIndex
from .relay import HosterSession, RelayError

log = logging.getLogger("imapgate.submission")

#: Seconds between prunes of old records (refusals past the override window,
#: sent messages past ``KEEP_SENT_SECONDS``).
PRUNE_INTERVAL = 6 * 3600


@dataclass(frozen=True)
class Outcome:
    """What the client is told, and what happened (for tests and logs)."""

    reply: str
    #: "sent", "refused", "already-sent", "busy", "hoster-refused", "failed", "unknown", "rejected".
    status: str
    decision: guard.Decision | None = None
    original: Original | None = None


class SubmissionService:
    def __init__(self, gw: Gateway, config: SubmissionConfig, claims: ClaimLookup | None = None) -> None:
        self.gw = gw
        self.config = config
        # The gateway's claims (gateway/claims_ops.py) unless a test gives its own.
        self.claims: ClaimLookup = claims or gw.service.claims or NoClaims()
        self.replies = ReplyLog(gw.journal.engine)
        self.index = MessageIdIndex(gw.replica)
        zone = zoneinfo.ZoneInfo(config.time_zone) if config.time_zone else None
        self.clock = Clock(zone)
        self.allowed = frozenset(config.allowed_from)
        self.domain = config.allowed_from[0].rpartition("@")[2]
        self._locks: dict[str, list[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        interrupted = await asyncio.to_thread(self.replies.settle_interrupted)
        if interrupted:
            log.warning(
                "%d message(s) were being handed to the mail server when the gateway stopped: their "
                "outcome is unknown; a retry is held back once with an explanation",
                interrupted,
            )
        await asyncio.to_thread(self.replies.prune)
        self._pruner = asyncio.get_running_loop().create_task(self._prune_loop())

    async def stop(self) -> None:
        """Wait briefly for relays and \\Answered updates still running, then cancel
        what is left."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(BaseException):
                await self._pruner
        tasks = list(self._background)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self.index.close()

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            try:
                await asyncio.to_thread(self.replies.prune)
            except Exception:
                log.exception("pruning old submission records failed")

    # -- checks -------------------------------------------------------------------------
    def sender_allowed(self, address: str) -> bool:
        return address.strip().lower() in self.allowed

    def not_allowed_reply(self, address: str) -> str:
        shown = guard.ascii_line(address, 100) or "<>"
        return (
            f"550 5.7.1 Not sent: {shown} is not an address you may send as through the gateway; "
            f"allowed: {', '.join(sorted(self.allowed))}"
        )

    def find_original(self, msg: SubmittedMessage) -> Original | None:
        """The first Message-ID of In-Reply-To, then References (last to first),
        that the replica knows: the mail this one replies to, with all its copies."""
        for mid in msg.candidates():
            found = self.index.find(mid)
            if found:
                copies = tuple(
                    Copy(mb.id, mb.name, rec.uid, "\\Answered" in rec.flags)
                    for mb, rec in sorted(found, key=lambda f: (f[0].name != "INBOX", f[0].name, f[1].uid))
                )
                return Original(mid, copies)
        return None

    def _history(
        self, user: str, msg: SubmittedMessage, original: Original | None, now: float
    ) -> tuple[History, list[SubmissionRow]]:
        """The store's side of the guard's input (runs in a worker thread)."""
        assert msg.message_id is not None
        mine = self.replies.own_attempts(
            user, msg.message_id, original.message_id if original else None, now - self.config.override_window
        )

        def attempt(r: SubmissionRow) -> guard.PastAttempt:
            return guard.PastAttempt(
                r.ts,
                r.state,
                frozenset(r.recipients.split(", ")) if r.recipients else frozenset(),
                r.subject,
                r.original,
            )

        refusals = tuple(attempt(r) for r in mine if r.state == "refused")
        same = tuple(attempt(r) for r in mine if r.state != "refused" and r.message_id == msg.message_id)
        if original is None:
            return History(refusals=refusals, same_message=same), mine
        replies = tuple(
            guard.PastReply(r.user, r.ts, r.subject, r.state)
            for r in self.replies.replies_to([original.message_id])
            if r.message_id != msg.message_id
        )
        marks = tuple(guard.PastMark(m.user, m.ts) for m in self.replies.marks_for([original.message_id]))
        return History(replies=replies, marks=marks, refusals=refusals, same_message=same), mine

    def _claims(self, original: Original | None) -> tuple[guard.Claim, ...]:
        if original is None:
            return ()
        found = (self.claims.claim_of(c.mailbox_id, c.uid) for c in original.copies)
        return tuple(c for c in found if c is not None)

    @contextlib.asynccontextmanager
    async def _serialized(self, original: Original | None) -> AsyncIterator[None]:
        if original is None:
            yield
            return
        key = original.message_id
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1  # users, waiting ones included: the lock lives while any has it
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]

    # -- one message --------------------------------------------------------------------
    async def submit(
        self, actor: Actor, sender: str, recipients: Sequence[str], content: bytes, hoster: HosterSession
    ) -> Outcome:
        """Check, guard and relay one message; the reply for the client's end of DATA."""
        msg = parse(content)
        if not msg.from_addresses or msg.from_unreadable:
            await hoster.reset()
            return Outcome("550 5.6.0 Not sent: the From header is missing or cannot be read", "rejected")
        for address in msg.from_addresses:
            if not self.sender_allowed(address):
                await hoster.reset()
                self.gw.journal.record(
                    JournalEntry(
                        actor.user,
                        actor.client,
                        "SUBMIT",
                        result="NO",
                        detail=f"From {address} not allowed (envelope {sender})",
                    )
                )
                return Outcome(self.not_allowed_reply(address), "rejected")
        content, msg = complete(content, msg, self.domain)
        assert msg.message_id is not None
        rcpts = recipients_key(recipients)
        original = self.find_original(msg)
        async with self._serialized(original):
            now = time.time()
            history, _ = await asyncio.to_thread(self._history, actor.user, msg, original, now)
            claims = self._claims(original)
            if claims:
                history = dataclasses.replace(history, claims=claims)
            attempt = Attempt(actor.user, frozenset(rcpts.split(", ")), msg.subject, now)
            decision = guard.decide(
                attempt, original, history, window=self.config.override_window, clock=self.clock
            )
            where = _where(original)
            if isinstance(decision, guard.AlreadySent):
                await hoster.reset()
                when = self.clock.when(decision.ts, now)
                self.gw.journal.record(
                    JournalEntry(
                        actor.user,
                        actor.client,
                        "SUBMIT",
                        *where,
                        detail=f"{_describe(msg, original, rcpts)}: already sent at {when}, not sent twice",
                    )
                )
                return Outcome(
                    f"250 2.0.0 Already sent at {when}; not sent twice", "already-sent", decision, original
                )
            if isinstance(decision, guard.Busy):
                await hoster.reset()
                return Outcome(
                    "451 4.4.0 This message is being sent right now (another connection); try again in "
                    "a minute",
                    "busy",
                    decision,
                    original,
                )
            if isinstance(decision, guard.Refuse):
                await hoster.reset()
                entry = JournalEntry(
                    actor.user,
                    actor.client,
                    "SUBMIT",
                    *where,
                    result="NO",
                    detail=f"{_describe(msg, original, rcpts)}: refused ({decision.kind}): {decision.text}",
                )
                await asyncio.to_thread(
                    self.replies.refuse,
                    user=actor.user,
                    message_id=msg.message_id,
                    recipients=rcpts,
                    subject=msg.subject,
                    original=original.message_id if original else None,
                    reason=decision.text,
                    entry=entry,
                )
                log.info("%s: %s", actor.user, decision.text)
                return Outcome(f"550 5.7.1 {decision.text}", "refused", decision, original)
            row = await asyncio.to_thread(
                self.replies.begin,
                user=actor.user,
                message_id=msg.message_id,
                recipients=rcpts,
                subject=msg.subject,
                original=original.message_id if original else None,
            )
        # The end of the data goes out only now, after every check.  From here the
        # hoster's answer decides, whether or not the client is still there.
        relay: asyncio.Task[Outcome] = asyncio.get_running_loop().create_task(
            self._relay(actor, msg, original, rcpts, content, hoster, row, decision)
        )
        self._background.add(relay)
        relay.add_done_callback(_settled(self._background))
        hoster.pending = relay
        return await asyncio.shield(relay)

    async def _relay(
        self,
        actor: Actor,
        msg: SubmittedMessage,
        original: Original | None,
        rcpts: str,
        content: bytes,
        hoster: HosterSession,
        row: int,
        decision: guard.Decision,
    ) -> Outcome:
        described = _describe(msg, original, rcpts)
        where = _where(original)
        overrides = decision.overrides if isinstance(decision, guard.Send) else None
        try:
            reply = await hoster.data(content)
        except RelayError as exc:
            state = "unknown" if exc.uncertain else "failed"
            entry = JournalEntry(
                actor.user,
                actor.client,
                "SUBMIT",
                *where,
                result="NO",
                detail=f"{described}: not sent: {exc.reason}",
            )
            await asyncio.to_thread(self.replies.finish, row, state, entry, exc.reason)
            log.warning("%s: %s not sent: %s", actor.user, msg.message_id, exc.reason)
            return Outcome(exc.reply, "hoster-refused" if exc.refused else state, decision, original)
        except BaseException:
            # Cancelled (shutdown) or a bug, with the end of the data maybe sent.
            with contextlib.suppress(Exception):
                entry = JournalEntry(
                    actor.user,
                    actor.client,
                    "SUBMIT",
                    *where,
                    result="NO",
                    detail=f"{described}: outcome unknown (interrupted)",
                )
                self.replies.finish(row, "unknown", entry, "interrupted while the mail server took it")
            raise
        note = f", overriding the {overrides} refusal" if overrides else ""
        answered = f" (answered by {actor.user})" if original is not None else ""
        entry = JournalEntry(
            actor.user, actor.client, "SUBMIT", *where, detail=f"{described}: sent{answered}{note}"
        )
        await asyncio.to_thread(self.replies.finish, row, "sent", entry)
        log.info("%s sent %s%s%s", actor.user, msg.message_id, answered, note)
        if original is not None:
            self._spawn(self._mark_answered(actor, original))
        return Outcome(reply, "sent", decision, original)

    async def _mark_answered(self, actor: Actor, original: Original) -> None:
        """``\\Answered`` on every copy of the original, through the write path as the
        sender: at the hoster, in the replica, journaled, pushed to IDLE sessions."""
        for copy in original.copies:
            mb = self.gw.replica.by_id.get(copy.mailbox_id)
            rec = mb.records.get(copy.uid) if mb is not None else None
            if mb is None or rec is None or "\\Answered" in rec.flags:
                continue
            try:
                await self.gw.service.execute(actor, ops.StoreFlags(mb, [copy.uid], "add", ("\\Answered",)))
            except OperationError as exc:
                log.warning(
                    "could not mark %s in %s answered after %s's reply: %s",
                    original.message_id,
                    copy.mailbox,
                    actor.user,
                    exc.text,
                )
            except Exception:
                log.exception("marking %s answered failed", original.message_id)


def _settled(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Outcome]], None]:
    def done(task: asyncio.Task[Outcome]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("relaying a message failed", exc_info=task.exception())

    return done


def _where(original: Original | None) -> tuple[str | None, str | None]:
    if original is None or not original.copies:
        return None, None
    first = original.copies[0]
    return first.mailbox, str(first.uid)


def _describe(msg: SubmittedMessage, original: Original | None, rcpts: str) -> str:
    subject = guard.ascii_line(msg.subject, 80)
    what = f"reply {msg.message_id} to {original.message_id}" if original else f"message {msg.message_id}"
    return f'{what} "{subject}" to {rcpts}'
