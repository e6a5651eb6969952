"""The dashboard's one door into the gateway: every read and (later) every
change the web makes goes through a method of :class:`Dashboard` (the Admin
area's through ``admin_data.AdminDesk``, the CLI's ``AdminService``), and no
other module of ``web/`` imports anything of the gateway.

Today the methods read through what exists — the replica's index for folders,
counts and flags, ``MailService.fetch_content`` (the content cache, batched
upstream fetches) for ENVELOPE and bodies, ``Policy.rights`` for permissions,
the ``Authenticator`` for logins.  After issue 10 each becomes one
``Service.execute(actor, op)`` call with the operation named in its
docstring ("→ op"), so rights, conflicts and the journal are decided in the
pipeline, never here.  The methods that write (``mark_seen`` today; claim,
release, assign, note, restore, admin later) are the web's only write path.

Permissions follow IMAP: a folder without ``l`` (lookup) does not exist for
the user (404, as ``NO [NONEXISTENT]``); with ``l`` but without ``r`` (read)
its messages are refused (403, as ``NO [NOPERM]``).

The live feed: :class:`LiveFeed` subscribes once to the change bus (today the
replica's ``EventHub``, as a global subscriber), turns replica events into
:class:`Change` records (folder names, UIDs, and for new mail the senders and
subjects of the first few, fetched once for everybody), keeps the last
``REPLAY`` of them for reconnects (``Last-Event-ID``), and hands each to the
streams of the users allowed to see it (``r`` on the folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..gateway import changes as ev
from ..gateway import operations as ops
from ..gateway.app import Gateway
from ..gateway.auth import AuthResult, Outcome
from ..gateway.errors import OperationError
from ..gateway.policy import LOOKUP, READ, SEEN, SYSTEM, WRITE, Actor
from ..gateway.team_reads import (
    CLAIMANT_PREFIX,
    MAX_NOTE_CHARS,
    AuditQuery,
    AuditRecord,
    Note,
    RecoveryItem,
    answered_by,
    notes_of,
    recent_answers,
    seen_by,
)
from ..protocol.envelope import Envelope, parse_envelope
from ..protocol.errors import CodecError
from ..protocol.fetch_items import FetchAttribute, Section
from ..protocol.search import SearchText
from . import render
from .claims_data import ClaimDesk, ClaimView, Refused
from .journal_data import AuditPage, JournalDesk

log = logging.getLogger("imapgate.web")

#: Characters of a dashboard search string: longer than any subject a team types,
#: short enough that the hoster's command line (when the index does not cover the
#: folder yet) stays far below its limits.
MAX_QUERY_CHARS = 200
#: Messages per folder page (the JSON API may ask for up to MAX_PER_PAGE).
PER_PAGE = 50
MAX_PER_PAGE = 200
#: Messages larger than this are not fetched whole for the message page (the
#: headers are, and the download streams the whole): the page would show a
#: fraction of it anyway (render.MAX_TEXT_CHARS), at the cost of the transfer.
MAX_FETCH_FOR_PAGE = 64 * 1024 * 1024
#: Renders of message pages at once (each parses the message in a worker
#: thread; a 20 MB message takes ~0.4 s and a few times its size in memory).
RENDER_CONCURRENCY = 2
#: Characters of one internal note at most (team/notes.py says why).
MAX_NOTE: int = MAX_NOTE_CHARS
#: Changes kept for a reconnecting event stream (``Last-Event-ID``).
REPLAY = 256
#: Encoded events kept for the streams still to send them (a change is encoded once).
ENCODED_KEPT = 512
#: New messages of one change whose sender and subject the live feed looks up.
LIVE_ENVELOPES = 10
#: Messages of one flag change whose claim and answer the live feed looks at: a bulk
#: STORE of thousands stays one "flags changed" entry; claims and replies are per message.
LIVE_TEAM_UIDS = 50
#: An \\Answered mark is announced live when it is at most this old (the flag change that
#: shows it is published right after the commit that wrote it).
LIVE_ANSWER_SECONDS = 30.0

#: Journal actions that tell who read a message (hidden with ``show_read_by`` off).
READ_ACTIONS = frozenset({"read", "unread"})

Filter = Literal["all", "unread", "flagged", "unanswered", "unclaimed", "mine"]
FILTERS: tuple[Filter, ...] = ("all", "unread", "flagged", "unanswered", "unclaimed", "mine")


class DataError(Exception):
    """A request the dashboard answers with an HTTP error (status + reason)."""

    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(DataError):
    status = 404


class Forbidden(DataError):
    status = 403


class Unavailable(DataError):
    status = 503


class BadRequest(DataError):
    status = 400


class Conflict(DataError):
    """The gateway said ``NO [INUSE]`` (a colleague holds the message): 409."""

    status = 409


@dataclass(frozen=True, slots=True)
class FolderView:
    name: str
    total: int
    unread: int
    rights: str
    #: Selectable (holds messages; ``\\Noselect`` folders only hold folders).
    selectable: bool


@dataclass(frozen=True, slots=True)
class MessageSummary:
    uid: int
    sender: str
    sender_address: str
    subject: str
    #: Arrival (INTERNALDATE), seconds since the epoch.
    date: float
    size: int
    seen: bool
    flagged: bool
    answered: bool
    flags: tuple[str, ...]
    #: Who holds a claim on the message (None: nobody).
    claimed_by: str | None = None
    #: Who answered it through the gateway (\\Answered set, or a reply sent), first first.
    answered_by: tuple[str, ...] = ()
    #: The team members who may read the folder and whose read state has it \\Seen;
    #: None: not shown (``[web] show_read_by = false``, or \\Seen is shared there).
    read_by: tuple[str, ...] | None = None

    def to_json(self, show_read_by: bool = True) -> dict[str, Any]:
        out = {
            "uid": self.uid,
            "from": {"name": self.sender, "address": self.sender_address},
            "subject": self.subject,
            "date": _iso(self.date),
            "size": self.size,
            "seen": self.seen,
            "flagged": self.flagged,
            "answered": self.answered,
            "flags": list(self.flags),
            "claimed_by": self.claimed_by,
            "answered_by": list(self.answered_by),
        }
        if show_read_by:
            out["read_by"] = None if self.read_by is None else list(self.read_by)
        return out


@dataclass(frozen=True, slots=True)
class MessagePage:
    folder: FolderView
    messages: tuple[MessageSummary, ...]
    filter: Filter
    page: int
    pages: int
    matching: int
    per_page: int
    #: The search string the page is filtered by ("" = none).
    query: str = ""


@dataclass(frozen=True, slots=True)
class MessageView:
    folder: str
    uid: int
    flags: tuple[str, ...]
    seen: bool
    date: float
    rendered: render.RenderedMessage
    claim: ClaimView | None = None
    answered_by: tuple[str, ...] = ()
    read_by: tuple[str, ...] | None = None
    #: The team's internal notes on it, oldest first.
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: float
    user: str | None
    client: str | None
    command: str
    folder: str | None
    uids: str | None
    result: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """One change as the live feed shows it."""

    id: int
    ts: float
    kind: Literal["new", "flags", "expunged", "folders", "reset", "mode", "claim", "answered", "note"]
    folder: str | None
    uids: tuple[int, ...] = ()
    #: Set for a change of one user's private flags: only they see it.
    user_id: int | None = None
    #: For new mail: (uid, sender, subject) of the first LIVE_ENVELOPES.
    summaries: tuple[tuple[int, str, str], ...] = ()
    text: str = ""
    #: For a change of the folder list: the folder names it is about (each viewer is
    #: shown only the ones they may see).
    names: tuple[str, ...] = ()
    #: Team changes: who (the claimant, the one who answered, the note's author) and
    #: what ("claimed", "released", "assigned", "answered", "note").
    by: str | None = None
    action: str = ""
    #: For a note: the note (``Note.to_json``).
    note: Any = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "time": _iso(self.ts),
            "kind": self.kind,
            "folder": self.folder,
            "uids": list(self.uids[:100]),
            "count": len(self.uids),
            "messages": [{"uid": u, "from": s, "subject": t} for u, s, t in self.summaries],
            "text": self.text,
        }
        if self.by is not None or self.action:
            out["by"] = self.by
            out["action"] = self.action
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class Health:
    live: bool
    ready: bool
    upstream: str
    upstream_error: str | None
    watch: str
    folders: int
    messages: int
    #: Seconds since the least recently synced folder was synced (None: never).
    sync_lag: float | None
    pool_open: int
    pool_in_use: int
    pool_max: int


@dataclass(frozen=True, slots=True)
class ImapEndpoint:
    port: int
    #: "SSL" (implicit TLS), "STARTTLS" or "plain".
    socket: str


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _envelope_attr() -> FetchAttribute:
    return FetchAttribute("ENVELOPE")


def _whole_attr() -> FetchAttribute:
    return FetchAttribute("BODY", Section(), peek=True)


def _header_attr() -> FetchAttribute:
    return FetchAttribute("BODY", Section((), "HEADER"), peek=True)


class Dashboard:
    """See the module docstring.  One per gateway; ``start``/``stop`` the live feed."""

    def __init__(self, gw: Gateway, *, show_read_by: bool = True) -> None:
        self.gw = gw
        #: ``[web] show_read_by``: false leaves "read by" out everywhere (privacy).
        self.show_read_by = show_read_by
        self.live = LiveFeed(self)
        self.claims = ClaimDesk(gw)
        self.journal = JournalDesk(gw, self.may_read)
        self._render_slots = asyncio.Semaphore(RENDER_CONCURRENCY)

    # -- logins (→ the Authenticator, as today: it is the pipeline's login) ----------------
    async def login(self, name: str, password: str, address: str) -> AuthResult:
        """Check a team member's gateway login (same throttle, cache and logging
        as IMAP LOGIN)."""
        return await self.gw.auth.authenticate(name, password, address, via="web")

    @staticmethod
    def refusal(result: AuthResult) -> str:
        if result.outcome is Outcome.FAILED:
            return "Wrong user name or password."
        if result.outcome is Outcome.LOCKED:
            return f"Too many failed logins; try again in {max(1, round(result.retry_after))} s."
        if result.outcome is Outcome.BUSY:
            return "The gateway is busy checking other logins; try again in a moment."
        return "The login could not be checked right now; try again later."

    # -- permissions ---------------------------------------------------------------------
    def _rights(self, actor: Actor, folder: str) -> str:
        """The actor's rights on ``folder``; "" for one they may not see (MYRIGHTS
        refuses it as missing, and the dashboard shows it as missing too)."""
        try:
            return self.gw.service.execute_now(actor, ops.MyRights(folder))
        except OperationError as exc:
            if exc.code in ("NONEXISTENT", "NOPERM"):
                return ""
            raise

    def _readable(self, actor: Actor, folder: str) -> Any:
        """The folder's index if ``actor`` may read it (else NotFound/Forbidden)."""
        # The hidden recovery folder is no team folder (gateway/virtual.py: hidden).
        mb = None if folder in self.gw.service.virtual.hidden else self.gw.replica.get(folder)
        rights = self._rights(actor, folder) if mb is not None else ""
        if mb is None or LOOKUP not in rights:
            raise NotFound(f"no folder {folder!r}")
        if READ not in rights:
            raise Forbidden(f"you may not read {folder!r}")
        return mb

    def may_read(self, actor: Actor, folder: str | None) -> bool:
        if folder is None:
            return True
        rights = self._rights(actor, folder)
        return LOOKUP in rights and READ in rights

    # -- reads -----------------------------------------------------------------------------
    def list_folders(self, actor: Actor) -> list[FolderView]:
        """Folders ``actor`` may see, with counts for this user.  → ``ListFolders`` +
        ``Status(MESSAGES UNSEEN)`` per folder."""
        out: list[FolderView] = []
        for name in self.gw.replica.names():
            if name in self.gw.service.virtual.hidden:
                continue
            rights = self._rights(actor, name)
            if LOOKUP not in rights:
                continue
            mb = self.gw.replica.get(name)
            if mb is None:
                continue
            selectable = not any(a.upper() in ("\\NOSELECT", "\\NONEXISTENT") for a in mb.attributes)
            unread = self._unread(actor, mb) if READ in rights and selectable else 0
            out.append(FolderView(name, mb.exists if READ in rights else 0, unread, rights, selectable))
        return out

    def folder(self, actor: Actor, folder: str) -> FolderView:
        mb = self._readable(actor, folder)
        return FolderView(folder, mb.exists, self._unread(actor, mb), self._rights(actor, folder), True)

    def _seen_set(self, actor: Actor, mb: Any) -> Callable[[int], bool]:
        """``uid -> seen by actor`` (personal read state where \\Seen is private)."""
        replica = self.gw.replica
        if "\\Seen" in replica.private_flags_of(mb):
            seen = replica.private_state(mb, actor.user_id).flags.get("\\Seen")
            if seen is None:
                return lambda uid: False
            return seen.__contains__
        records = mb.records
        return lambda uid: "\\Seen" in records[uid].flags

    def _unread(self, actor: Actor, mb: Any) -> int:
        replica = self.gw.replica
        if "\\Seen" in replica.private_flags_of(mb):
            seen = replica.private_state(mb, actor.user_id).flags.get("\\Seen")
            return int(mb.exists) - (len(seen) if seen is not None else 0)
        return int(mb.shared_counts()[0])

    async def list_messages(
        self,
        actor: Actor,
        folder: str,
        filter: Filter = "all",
        page: int = 1,
        per_page: int = PER_PAGE,
        query: str = "",
    ) -> MessagePage:
        """One page of a folder, newest first, optionally only the messages whose text
        holds ``query`` (IMAP's ``TEXT``: headers and body, case-insensitive, answered
        by the search index where it covers the folder, as for IMAP clients).
        → ``ListMessages(folder, filter, page)`` (later with the claim and
        answered-by columns), whose envelopes come as one ``FetchContent(ENVELOPE)``
        of the page's UIDs; the search → ``Search(folder, TEXT query)``."""
        query = query.strip()
        if len(query) > MAX_QUERY_CHARS:
            raise BadRequest(f"a search is at most {MAX_QUERY_CHARS} characters")
        mb = self._readable(actor, folder)
        if not mb.synced:
            try:
                mb = await self.gw.service.execute(actor, ops.EnsureSynced(folder))
            except OperationError as exc:
                raise Unavailable(exc.text) from None
        per_page = max(1, min(per_page, MAX_PER_PAGE))
        seen = self._seen_set(actor, mb)
        records = mb.records
        uids = mb.uids
        claims = self.claims.in_folder(mb.id)
        if query:
            try:
                found = await self.gw.service.execute(
                    actor, ops.SearchContent(mb, SearchText("TEXT", query.encode("utf-8")), "UTF-8")
                )
            except OperationError as exc:
                raise (Forbidden if exc.code == "NOPERM" else Unavailable)(exc.text) from None
            uids = [u for u in uids if u in found]
        if filter == "all":
            matching = len(uids)
            pages = max(1, -(-matching // per_page))
            page = max(1, min(page, pages))
            # Newest first: the page is a slice from the end of the UID list.
            stop = matching - (page - 1) * per_page
            chosen = uids[max(0, stop - per_page) : stop][::-1]
        else:
            if filter == "unread":
                keep: Callable[[int], bool] = lambda u: not seen(u)  # noqa: E731
            elif filter == "unclaimed":
                keep = lambda u: u not in claims  # noqa: E731
            elif filter == "mine":
                keep = lambda u: u in claims and claims[u].user == actor.user  # noqa: E731
            elif filter == "flagged":
                keep = lambda u: "\\Flagged" in records[u].flags  # noqa: E731
            else:
                keep = lambda u: "\\Answered" not in records[u].flags  # noqa: E731
            hits = [u for u in reversed(uids) if keep(u)]
            matching = len(hits)
            pages = max(1, -(-matching // per_page))
            page = max(1, min(page, pages))
            chosen = hits[(page - 1) * per_page : page * per_page]
        envelopes = await self._envelopes(actor, mb, chosen)
        out: list[MessageSummary] = []
        private = self.gw.replica.private_flags_of(mb)
        answered, read_by = self._team_columns(mb, chosen)
        for u in chosen:
            rec = records.get(u)
            if rec is None:
                continue  # expunged while the envelopes were fetched
            env = envelopes.get(u)
            sender, address, subject = _summary(env)
            flags = tuple(f for f in rec.flags if f not in private) + (("\\Seen",) if seen(u) else ())
            out.append(
                MessageSummary(
                    u, sender, address, subject, rec.internal_date, rec.size, seen(u),
                    "\\Flagged" in rec.flags, "\\Answered" in rec.flags, flags,
                    claims[u].user if u in claims else None,
                    answered.get(rec.message_id or "", ()) if rec.message_id else (),
                    read_by(u),
                )
            )  # fmt: skip
        view = FolderView(folder, mb.exists, self._unread(actor, mb), self._rights(actor, folder), True)
        return MessagePage(view, tuple(out), filter, page, pages, matching, per_page, query)

    def _team_columns(
        self, mb: Any, uids: list[int]
    ) -> tuple[dict[str, tuple[str, ...]], Callable[[int], tuple[str, ...] | None]]:
        """ "Answered by" (Message-ID -> names) and "read by" (uid -> names, None: not shown)
        for the rows of one page only: one query for the answers, the users and their read
        states (memory, or one query), a rights check per member."""
        records = mb.records
        ids = [mid for u in uids if (rec := records.get(u)) is not None and (mid := rec.message_id)]
        answered = answered_by(self.gw.journal.engine, ids)
        if not self.show_read_by or "\\Seen" not in self.gw.replica.private_flags_of(mb):
            return answered, lambda uid: None
        members = [
            u for u in self.gw.users.list() if not u.disabled and self.may_read(Actor(u.id, u.name), mb.name)
        ]
        seen = seen_by(mb, [u.id for u in members], self.gw.journal.engine)
        readers = [(u.name, seen[u.id]) for u in members if u.id in seen]
        return answered, lambda uid: tuple(name for name, s in readers if uid in s)

    async def _envelopes(self, actor: Actor, mb: Any, uids: list[int]) -> dict[int, Envelope | None]:
        """ENVELOPE of ``uids`` in one batch through the content cache (most
        IMAP clients fetch ENVELOPE, so it is usually cached already)."""
        if not uids:
            return {}
        attr = _envelope_attr()
        try:
            found = await self.gw.service.execute(actor, ops.FetchContent(mb, uids, [attr]))
        except OperationError as exc:
            log.info("envelopes of %s unavailable: %s", mb.name, exc.text)
            return {}
        out: dict[int, Envelope | None] = {}
        for (uid, _key), raw in found.items():
            if raw is None:
                continue
            try:
                out[uid] = parse_envelope(raw)
            except CodecError:
                out[uid] = None
        return out

    async def message(self, actor: Actor, folder: str, uid: int) -> MessageView:
        """The message page.  → ``FetchContent(BODY.PEEK[])``, then
        ``StoreFlags(+\\Seen, implicit)`` as an IMAP FETCH BODY[] does."""
        mb = self._readable(actor, folder)
        rec = mb.records.get(uid)
        if rec is None:
            raise NotFound(f"no message {uid} in {folder!r}")
        attr = _whole_attr() if rec.size <= MAX_FETCH_FOR_PAGE else _header_attr()
        raw = await self._content(actor, mb, uid, attr)
        async with self._render_slots:
            rendered = await asyncio.to_thread(render.render_message, raw)
        if rec.size > MAX_FETCH_FOR_PAGE:
            rendered = _with_note(
                rendered, f"The message is {rec.size // (1024 * 1024)} MiB: only its headers are shown."
            )
        self.mark_seen(actor, mb, uid)
        seen = self._seen_set(actor, mb)(uid)
        claim = self.claims.of(mb.id, uid)
        answered, read_by = self._team_columns(mb, [uid])
        notes = tuple(notes_of(self.gw.journal.engine, rec.message_id, folder, uid))
        return MessageView(
            folder, uid, rec.flags, seen, rec.internal_date, rendered, claim,
            answered.get(rec.message_id or "", ()) if rec.message_id else (), read_by(uid), notes,
        )  # fmt: skip

    def mark_seen(self, actor: Actor, mb: Any, uid: int) -> None:
        """Opening a message marks it read for this user, as FETCH BODY[] does
        in IMAP.  → ``StoreFlags(+\\Seen, implicit)`` (needs ``s``)."""
        if SEEN not in self._rights(actor, mb.name):
            return
        with contextlib.suppress(OperationError):
            self.gw.service.execute_now(actor, ops.MarkSeen(mb, [uid]))

    async def raw_message(self, actor: Actor, folder: str, uid: int) -> bytes:
        """The whole message for download.  → ``FetchContent(BODY.PEEK[])``."""
        mb = self._readable(actor, folder)
        if uid not in mb.records:
            raise NotFound(f"no message {uid} in {folder!r}")
        return await self._content(actor, mb, uid, _whole_attr())

    async def attachment(self, actor: Actor, folder: str, uid: int, index: int) -> tuple[str, bytes]:
        """(safe file name, content) of one leaf part.  → ``FetchContent(BODY.PEEK[])``
        (later ``BODY.PEEK[n]`` from BODYSTRUCTURE, without the whole message)."""
        raw = await self.raw_message(actor, folder, uid)
        async with self._render_slots:
            got = await asyncio.to_thread(render.attachment, raw, index)
        if got is None:
            raise NotFound(f"message {uid} has no part {index}")
        return got

    async def _content(self, actor: Actor, mb: Any, uid: int, attr: FetchAttribute) -> bytes:
        from ..gateway.mailservice import cache_key

        try:
            found = await self.gw.service.execute(actor, ops.FetchContent(mb, [uid], [attr]))
        except OperationError as exc:
            raise Unavailable(exc.text) from None
        raw = found.get((uid, cache_key(attr)))
        if raw is None:
            raise NotFound(f"message {uid} is gone")
        return raw

    def audit(self, actor: Actor, limit: int = 100) -> list[AuditEntry]:
        """The newest journal entries of folders ``actor`` may read (entries
        without a folder: only their own).  → ``AuditSearch(filters)`` of issue 13."""
        out: list[AuditEntry] = []
        for e in self.gw.journal.recent(limit * 4):
            if e.mailbox is not None and not self.may_read(actor, e.mailbox):
                continue
            if e.mailbox is None and e.user != actor.user:
                continue
            out.append(AuditEntry(e.ts, e.user, e.client, e.command, e.mailbox, e.uids, e.result, e.detail))
            if len(out) >= limit:
                break
        return out

    # -- claims (web/claims_data.py: each a StoreFlags through Service.execute) -----------
    def _claimable(self, actor: Actor, folder: str, uid: int) -> Any:
        mb = self._readable(actor, folder)
        if uid not in mb.records:
            raise NotFound(f"no message {uid} in {folder!r}")
        return mb

    async def change_claim(
        self, actor: Actor, folder: str, uid: int, action: str, to: str = ""
    ) -> ClaimView | None:
        """``claim``, ``release`` or ``assign`` (to ``to``); the claim afterwards.
        ``NO [INUSE]`` becomes Conflict (409) with the gateway's text."""
        mb = self._claimable(actor, folder, uid)
        try:
            if action == "claim":
                await self.claims.claim(actor, mb, uid)
            elif action == "release":
                await self.claims.release(actor, mb, uid)
            elif action == "assign":
                if not to.strip():
                    raise BadRequest("name the colleague to assign the message to")
                self.live.expect_assignment(mb.id, uid, actor.user)
                try:
                    await self.claims.assign(actor, mb, uid, to.strip(), self._rights)
                finally:
                    self.live.forget_assignment(mb.id, uid)
            else:
                raise BadRequest("action must be claim, release or assign")
        except Refused as exc:
            if exc.code == "INUSE":
                raise Conflict(exc.text) from None
            if exc.code == "NOPERM":
                raise Forbidden(exc.text) from None
            if exc.code == "NONEXISTENT":
                raise BadRequest(exc.text) from None
            raise Unavailable(exc.text) from None
        return self.claims.of(mb.id, uid)

    # -- internal notes (→ AddNote through Service.execute) --------------------------------
    async def add_note(self, actor: Actor, folder: str, uid: int, text: str) -> Note:
        """Keep ``actor``'s note on a message (needs ``l`` and ``r``, as reading it) and
        show it on every open Live and message page that may see the folder."""
        mb = self._claimable(actor, folder, uid)
        try:
            note: Note = await self.gw.service.execute(actor, ops.AddNote(mb, uid, text))
        except OperationError as exc:
            if exc.code == "NOPERM":
                raise Forbidden(exc.text) from None
            if exc.code == "NONEXISTENT":
                raise NotFound(exc.text) from None
            if exc.code == "CANNOT":
                raise BadRequest(exc.text) from None
            raise Unavailable(exc.text) from None
        return note  # the Live pages hear of it from the event hub (NoteAdded), on every node

    def may_claim(self, actor: Actor, folder: str) -> bool:
        return WRITE in self._rights(actor, folder)

    def claim_list(self, actor: Actor, folder: str | None) -> list[tuple[str, int, ClaimView]]:
        """(folder, uid, claim) of every claim in folders ``actor`` may read."""
        names = [folder] if folder else list(self.gw.replica.names())
        out: list[tuple[str, int, ClaimView]] = []
        for name in names:
            if name in self.gw.service.virtual.hidden or not self.may_read(actor, name):
                if folder:
                    self._readable(actor, name)  # the 404/403 of that folder
                continue
            mb = self.gw.replica.get(name)
            if mb is not None:
                out.extend((name, uid, c) for uid, c in sorted(self.claims.in_folder(mb.id).items()))
        return out

    # -- the journal and recovery (web/journal_data.py) ----------------------------------
    async def history(self, actor: Actor, folder: str, uid: int, admin: bool) -> list[AuditRecord]:
        """The journal's entries about one message (by its Message-ID), oldest first."""
        m = await self.message(actor, folder, uid)
        return self.history_of(actor, m, admin)

    def history_of(self, actor: Actor, m: MessageView, admin: bool) -> list[AuditRecord]:
        """``m``'s history; with ``show_read_by`` off without the colleagues' read and
        unread entries (one's own stay)."""
        records = self.journal.history(actor, m.rendered.headers.message_id, admin)
        if self.show_read_by:
            return records
        return [r for r in records if r.entry.action_word not in READ_ACTIONS or r.entry.user == actor.user]

    def audit_page(self, actor: Actor, query: AuditQuery, page: int, per_page: int, admin: bool) -> AuditPage:
        return self.journal.audit(actor, query, page, per_page, admin)

    def recoverable(self, actor: Actor, admin: bool) -> list[RecoveryItem]:
        return self.journal.recoverable(actor, admin)

    async def restore(self, actor: Actor, item_id: int, admin: bool) -> tuple[str, int | None]:
        try:
            return await self.journal.restore(actor, item_id, admin)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        except OperationError as exc:
            raise (Forbidden if exc.code == "NOPERM" else Unavailable)(exc.text) from None

    # -- operations ------------------------------------------------------------------------
    def health(self) -> Health:
        """Liveness and readiness from what the pool and the sync engine expose."""
        gw = self.gw
        pool = gw.pool
        now = time.time()
        folders = [mb for mb in gw.replica.by_id.values() if mb.synced]
        synced = [gw.sync.last_sync.get(mb.name) for mb in folders]
        lag = None if not synced or any(t is None for t in synced) else now - min(t for t in synced if t)
        upstream = "down" if pool.down else "up"
        ready = not pool.down and bool(gw.replica.names())
        return Health(
            live=True,
            ready=ready,
            upstream=upstream,
            upstream_error=pool.last_error if pool.down else None,
            watch=gw.sync.watch_method,
            folders=len(gw.replica.names()),
            messages=sum(mb.exists for mb in gw.replica.by_id.values()),
            sync_lag=lag,
            pool_open=pool.open_connections,
            pool_in_use=pool.in_use,
            pool_max=pool.max_connections,
        )

    def imap_sessions(self) -> int:
        control = self.gw.control
        return len(control.provider.session_list()) if control is not None else 0

    def login_counts(self) -> dict[str, int]:
        s = self.gw.auth.stats
        return {
            "succeeded": s.succeeded,
            "failed": s.failed,
            "locked": s.locked,
            "busy": s.busy,
            "unavailable": s.unavailable,
            "cache_hits": s.cache_hits,
        }

    def imap_endpoints(self) -> list[ImapEndpoint]:
        """Where mail clients connect: implicit TLS first, then STARTTLS, then plain
        (autoconfiguration offers them in this order)."""
        from ..config import parse_address

        sv = self.gw.config.server
        plain = "STARTTLS" if sv.certificate is not None else "plain"
        # The listeners' bound ports when the IMAP server reports them (port 0
        # in the configuration means "any free port"), else the configured ones.
        provider = self.gw.control.provider if self.gw.control is not None else None
        bound: list[tuple[str, int, bool]] = list(getattr(provider, "addresses", []))
        if bound:
            tls = sorted({p for _, p, t in bound if t})
            plains = sorted({p for _, p, t in bound if not t})
        else:
            tls = [parse_address(a)[1] for a in sv.tls_listen]
            plains = [parse_address(a)[1] for a in sv.listen]
        return [ImapEndpoint(p, "SSL") for p in tls] + [ImapEndpoint(p, plain) for p in plains]

    def user_active(self, name: str, user_id: int) -> bool:
        """Is the account still there and enabled (checked at login only; removal
        and disabling end web sessions through the control channel)."""
        user = self.gw.users.get(name)
        return user is not None and user.id == user_id and not user.disabled


def _with_note(r: render.RenderedMessage, note: str) -> render.RenderedMessage:
    from dataclasses import replace

    return replace(r, notes=(*r.notes, note))


def _summary(env: Envelope | None) -> tuple[str, str, str]:
    """(sender name, sender address, subject) for the list, decoded for display."""
    if env is None:
        return "", "", ""
    sender = env.from_[0] if env.from_ else None
    name = render.decode_words(sender.name, 200) if sender and sender.name else ""
    address = render.clean_text(sender.email or "", 320) if sender else ""
    return name, address, render.decode_words(env.subject, 500)


# --- the live feed ---------------------------------------------------------------------------

Listener = Callable[[Change], None]


@dataclass(eq=False)
class _Stream:
    actor: Actor
    deliver: Listener
    session_number: int


@dataclass
class LiveFeed:
    dashboard: Dashboard
    _streams: set[_Stream] = field(default_factory=set)
    _recent: deque[Change] = field(default_factory=lambda: deque(maxlen=REPLAY))
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _started: bool = False
    #: Who holds a claim on which message, as the feed last told it: mailbox id -> uid -> name.
    _claimants: dict[int, dict[int, str]] = field(default_factory=dict)
    #: Assignments under way on this dashboard: (mailbox id, uid) -> who assigns.
    _assigning: dict[tuple[int, int], str] = field(default_factory=dict)
    #: \\Answered marks announced already: (time, user, Message-ID).
    _answered: deque[tuple[float, str, str]] = field(default_factory=lambda: deque(maxlen=REPLAY))
    #: Encoded SSE events by (change id, folder names shown): ``encoded``.
    _encoded: OrderedDict[tuple[int, tuple[str, ...]], bytes] = field(default_factory=OrderedDict)

    def start(self) -> None:
        if not self._started:
            for mailbox_id in list(self.dashboard.gw.replica.by_id):
                held = self.dashboard.claims.in_folder(mailbox_id)
                if held:
                    self._claimants[mailbox_id] = {uid: c.user for uid, c in held.items()}
            self.dashboard.gw.hub.subscribe(None, self._on_event)
            self._started = True

    async def stop(self) -> None:
        if self._started:
            self.dashboard.gw.hub.unsubscribe(None, self._on_event)
            self._started = False
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._streams.clear()

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def last_id(self) -> int:
        """The id of the newest change (0: none yet): where a page's stream starts."""
        return self._recent[-1].id if self._recent else 0

    def open(self, actor: Actor, deliver: Listener, session_number: int, last_id: int | None) -> _Stream:
        """A stream for ``actor``: ``deliver`` gets every change they may see,
        first the kept ones after ``last_id`` (a reconnect)."""
        stream = _Stream(actor, deliver, session_number)
        if last_id is not None:
            for change in list(self._recent):
                if change.id > last_id and (shown := self._for(actor, change)) is not None:
                    deliver(shown)
        self._streams.add(stream)
        return stream

    def close(self, stream: _Stream) -> None:
        self._streams.discard(stream)

    # -- team changes ---------------------------------------------------------------------
    def expect_assignment(self, mailbox_id: int, uid: int, by: str) -> None:
        """The next claim on the message is ``by``'s assignment (shown as such)."""
        self._assigning[(mailbox_id, uid)] = by

    def forget_assignment(self, mailbox_id: int, uid: int) -> None:
        # After the events the assignment's commit queued (``_on_event``): they still see it.
        try:
            asyncio.get_running_loop().call_soon(self._assigning.pop, (mailbox_id, uid), None)
        except RuntimeError:
            self._assigning.pop((mailbox_id, uid), None)

    def note_added(self, note: Note) -> None:
        first = note.text.splitlines()[0] if note.text else ""
        text = f"{note.user} added a note to message {note.uid}: {first[:140]}"
        self._publish(
            Change(
                0, note.ts, "note", note.mailbox, (note.uid,), text=text, by=note.user, action="note",
                note=note.to_json(),
            )
        )  # fmt: skip

    def _learn_claims(self, mb: Any, uids: tuple[int, ...]) -> None:
        """Messages that arrive claimed (a claim follows its message on a move): their
        claimant, so that a later release is told as one."""
        held = self.dashboard.claims.in_folder(mb.id)
        if held:
            known = self._claimants.setdefault(mb.id, {})
            known.update({u: held[u].user for u in uids if u in held})
            if not known:
                self._claimants.pop(mb.id, None)

    def _team_changes(self, mb: Any, uids: tuple[int, ...], now: float) -> None:
        """Claims taken, released or assigned, and replies, among the messages of a
        change of shared flags: each a change of its own, with who."""
        records = mb.records
        chosen = [u for u in uids[:LIVE_TEAM_UIDS] if u in records]
        known = self._claimants.setdefault(mb.id, {})
        claims = self.dashboard.claims
        for uid in chosen:
            flags = records[uid].flags
            claim = claims.of(mb.id, uid)
            holder = None
            if any(f.lower() == "$claimed" for f in flags):
                holder = claim.user if claim is not None else _claimant_of(flags)
            before = known.get(uid)
            if before is None and holder is None and claim is not None:
                # A release under way (the registry drops the row after the flags): a
                # claim the feed never saw taken, e.g. one that came along with a move.
                before = claim.user
            if holder == before:
                continue
            by_whom = self._assigning.pop((mb.id, uid), None)
            if holder is None:
                known.pop(uid, None)
                change = Change(0, now, "claim", mb.name, (uid,), text=f"{before} released message {uid}",
                                by=before, action="released")  # fmt: skip
            elif by_whom is not None and by_whom != holder:
                known[uid] = holder
                text = f"{by_whom} assigned message {uid} to {holder}"
                change = Change(0, now, "claim", mb.name, (uid,), text=text, by=holder, action="assigned")
            else:
                known[uid] = holder
                change = Change(0, now, "claim", mb.name, (uid,), text=f"{holder} claimed message {uid}",
                                by=holder, action="claimed")  # fmt: skip
            self._publish(change)
        if not known:
            self._claimants.pop(mb.id, None)
        answered = {
            mid: uid for uid in chosen
            if "\\Answered" in records[uid].flags and (mid := records[uid].message_id)
        }  # fmt: skip
        if not answered:
            return
        try:
            marks = recent_answers(
                self.dashboard.gw.journal.engine, list(answered), now - LIVE_ANSWER_SECONDS
            )
        except Exception as exc:  # the flag change itself is out already
            log.info("live feed: answers of %s not available: %s", mb.name, exc)
            return
        for mark in marks:
            if mark in self._answered:
                continue
            self._answered.append(mark)
            _ts, user, mid = mark
            uid = answered[mid]
            text = f"message {uid} answered by {user}"
            self._publish(Change(0, now, "answered", mb.name, (uid,), text=text, by=user, action="answered"))

    def _visible(self, actor: Actor, change: Change) -> bool:
        if change.user_id is not None and change.user_id != actor.user_id:
            return False
        return self.dashboard.may_read(actor, change.folder) if change.kind != "folders" else True

    def _for(self, actor: Actor, change: Change) -> Change | None:
        """``change`` as ``actor`` may see it: a folder-list change names only the
        folders they may see (None: none of them), anything else as it is."""
        if not self._visible(actor, change):
            return None
        if change.kind != "folders" or not change.names:
            return change
        names = tuple(n for n in change.names if self._may_see_name(actor, n))
        if not names:
            return None
        if names == change.names:
            return change
        from dataclasses import replace

        return replace(change, names=names, text=_folders_text(names))

    def _may_see_name(self, actor: Actor, name: str) -> bool:
        """``l`` on the folder and on every folder above it: a name under a folder the
        actor cannot see tells them that folder exists, and a just deleted folder has no
        entries of its own any more, so its own rights say nothing (docs/permissions.md)."""
        delimiter = self.dashboard.gw.replica.delimiter()
        parts = name.split(delimiter) if delimiter else [name]
        return all(
            LOOKUP in self.dashboard._rights(actor, delimiter.join(parts[: i + 1])) for i in range(len(parts))
        )

    # The hub calls subscribers synchronously right after a commit, the IMAP sessions
    # among them: the feed's work (rights of each stream, team changes, encoding) is
    # put behind them on the loop, so dashboards never delay an IDLE push
    # (benchmarks/web_events.py: 50 streams doubled IDLE p50 when done here).
    def _on_event(self, event: ev.ReplicaEvent) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._handle_event(event)  # no loop (a test driving the feed directly)
            return
        loop.call_soon(self._handle_event, event)

    def _handle_event(self, event: ev.ReplicaEvent) -> None:
        replica = self.dashboard.gw.replica
        mailbox_id = getattr(event, "mailbox_id", None)
        mb = replica.by_id.get(mailbox_id) if mailbox_id is not None else None
        name = mb.name if mb is not None else None
        now = time.time()
        if isinstance(event, ev.MessagesAdded):
            if mb is None or not event.uids:
                return
            self._learn_claims(mb, event.uids)
            change = Change(0, now, "new", name, event.uids, text=_count(len(event.uids), "new message"))
            task = asyncio.get_running_loop().create_task(self._with_envelopes(change, mb))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if isinstance(event, ev.FlagsChanged):
            text = _count(len(event.uids), "message") + (
                " marked (your read state)" if event.user_id is not None else ": flags changed"
            )
            self._publish(Change(0, now, "flags", name, event.uids, event.user_id, text=text))
            if event.user_id is None and mb is not None:
                self._team_changes(mb, event.uids, now)
        elif isinstance(event, ev.MessagesExpunged):
            known = self._claimants.get(event.mailbox_id)
            if known is not None:
                for uid in event.uids:
                    known.pop(uid, None)
            self._publish(
                Change(
                    0, now, "expunged", name, event.uids, text=_count(len(event.uids), "message") + " removed"
                )
            )
        elif isinstance(event, ev.MailboxListChanged):
            self._publish(Change(0, now, "folders", None, text=_folders_text(event.names), names=event.names))
        elif isinstance(event, ev.MailboxReset):
            self._publish(Change(0, now, "reset", name, text="Folder rebuilt at the hoster"))
        elif isinstance(event, ev.ModeChanged):
            self._publish(Change(0, now, "mode", name, text="Read-state mode changed"))
        elif isinstance(event, ev.NoteAdded):
            self.note_added(Note.from_wire(event.note))

    async def _with_envelopes(self, change: Change, mb: Any) -> None:
        """New mail: look up sender and subject of the first few messages (once
        for every viewer; usually a cache miss that IMAP clients would cause a
        moment later anyway), then publish."""
        summaries: list[tuple[int, str, str]] = []
        try:
            # Fetched once for every viewer; each stream then sees only folders its user may read.
            envs = await self.dashboard._envelopes(SYSTEM, mb, list(change.uids[-LIVE_ENVELOPES:]))
            for uid in change.uids[-LIVE_ENVELOPES:]:
                name, address, subject = _summary(envs.get(uid))
                summaries.append((uid, name or address, subject))
        except Exception as exc:  # never lose the change itself
            log.info("live feed: envelopes of %s not available: %s", mb.name, exc)
        from dataclasses import replace

        self._publish(replace(change, summaries=tuple(summaries)))

    def _publish(self, change: Change) -> None:
        from dataclasses import replace

        change = replace(change, id=next(self._ids))
        self._recent.append(change)
        # Many dashboards are a few users: what a user may see is decided once per change.
        shown_to: dict[int | None, Change | None] = {}
        for stream in list(self._streams):
            key = stream.actor.user_id
            if key not in shown_to:
                shown_to[key] = self._for(stream.actor, change)
            if (shown := shown_to[key]) is not None:
                stream.deliver(shown)

    def encoded(self, change: Change) -> bytes:
        """The SSE event of ``change``, encoded once for all the streams it goes to
        (a few recent ones kept: a change reaches every stream within moments)."""
        key = (change.id, change.names)
        data = self._encoded.get(key)
        if data is None:
            text = json.dumps(change.to_json(), separators=(",", ":"))
            data = f"id: {change.id}\nevent: change\ndata: {text}\n\n".encode()
            self._encoded[key] = data
            if len(self._encoded) > ENCODED_KEPT:
                self._encoded.popitem(last=False)
        return data


def _claimant_of(flags: tuple[str, ...]) -> str:
    """The claimant named by a ``$claimed_<name>`` keyword (a claim another node or the
    hoster reported, which this node's registry does not know yet)."""
    for f in flags:
        if f.lower().startswith(CLAIMANT_PREFIX) and len(f) > len(CLAIMANT_PREFIX):
            return f[len(CLAIMANT_PREFIX) :]
    return "someone"


def _folders_text(names: tuple[str, ...]) -> str:
    return "Folders changed: " + ", ".join(names[:10])


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")
