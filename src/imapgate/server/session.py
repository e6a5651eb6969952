"""One client connection: the asyncio driver of the codec's server side.

Theory of operation.  A session reads frames (``CommandFramer``), parses each
into a typed command, checks the command against the state table below, runs
its handler, then sends what the selected view has queued (respecting the
RFC 2180 expunge rules) and the tagged completion.  Handlers raise
``OperationError`` for a ``NO``; a ``ClientProtocolError`` becomes ``BAD``;
anything unexpected is logged and answered ``NO [SERVERBUG]`` — a session
never dies of bad input, and the server never dies of a session.

    state              commands allowed
    -----------------  -----------------------------------------------------
    NOT_AUTHENTICATED  any-state + STARTTLS, LOGIN, AUTHENTICATE
    AUTHENTICATED      any-state + mailbox commands (SELECT, LIST, APPEND, ...)
    SELECTED           AUTHENTICATED + message commands (FETCH, STORE, ...)
    LOGOUT             none (the connection closes)

Transitions: LOGIN/AUTHENTICATE -> AUTHENTICATED; SELECT/EXAMINE ->
SELECTED (a failed SELECT leaves AUTHENTICATED); CLOSE/UNSELECT ->
AUTHENTICATED; LOGOUT, BYE or EOF -> LOGOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .. import __version__, logs
from ..gateway import operations as ops
from ..gateway.app import Gateway
from ..gateway.claim_policy import ClaimConflict
from ..gateway.control import SessionInfo
from ..gateway.errors import OperationError
from ..gateway.policy import Actor
from ..gateway.storehealth import DATABASE_UNREACHABLE, is_database_unreachable
from ..protocol import commands as cmd
from ..protocol import limits
from ..protocol import responses as rsp
from ..protocol.command_parser import parse_command
from ..protocol.errors import ClientProtocolError, CodecError, InvalidMailboxName
from ..protocol.framing import CommandFramer, Frame, NeedContinuation
from ..protocol.redact import wire_lines
from ..protocol.response_writer import write_response
from .view import SelectedView

log = logging.getLogger("imapgate.session")
#: The client exchange at ``-v`` (DEBUG), through ``wire_lines``: no credentials, no mail.
wire_log = logging.getLogger("imapgate.wire.client")

#: Consecutive bad commands before the session is closed: a client that sends
#: only garbage (or a non-IMAP protocol) is not served forever.
MAX_CONSECUTIVE_ERRORS = 20
#: Bytes buffered before the session writes them out during a long response.
WRITE_CHUNK = 256 * 1024
#: Seconds a client may take to log in after connecting.
LOGIN_TIMEOUT = 60.0

_session_ids = itertools.count(1)
#: The framer's go-ahead for a synchronizing literal (RFC 9051 §7.5).
_LITERAL_GO_AHEAD = write_response(rsp.ContinuationRequest("Ready for literal data"))


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset(State) - {State.LOGOUT}
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


class Done:
    """A handler's successful completion: text and optional response code."""

    __slots__ = ("code", "text")

    def __init__(self, text: str = "completed", code: rsp.ResponseCode | None = None) -> None:
        self.text = text
        self.code = code


Handler = Callable[["Session", cmd.Command], Awaitable[Done]]


@dataclass(frozen=True)
class CommandSpec:
    states: frozenset[State]
    handler: Handler
    #: May EXPUNGE responses follow this command (RFC 9051 §7.5.1)?
    allow_expunge: bool = True


#: Filled by the handler modules (``commands_*``), keyed by command class.
COMMANDS: dict[type[cmd.Command], CommandSpec] = {}


def command(
    kind: type[cmd.Command], states: frozenset[State], *, allow_expunge: bool = True
) -> Callable[
    [Callable[[Session, cmd.Command], Awaitable[Done]]], Callable[[Session, cmd.Command], Awaitable[Done]]
]:
    def register(fn: Handler) -> Handler:
        COMMANDS[kind] = CommandSpec(states, fn, allow_expunge)
        return fn

    return register


class Session:
    def __init__(
        self,
        gw: Gateway,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls_context: ssl.SSLContext | None,
        is_tls: bool,
        address: str | None = None,
    ) -> None:
        self.gw = gw
        self.reader = reader
        self.writer = writer
        self.tls_context = tls_context
        self.is_tls = is_tls
        self.id = next(_session_ids)
        #: What every log line of this session (and of work done for it) carries.
        self.log_context = logs.LogContext(f"s{self.id}")
        self.started = time.monotonic()
        peer = writer.get_extra_info("peername")
        # ``address``: the client's, from the load balancer's PROXY header (listener).
        self.address = address or (str(peer[0]) if isinstance(peer, tuple) and peer else "unknown")
        # Before login, APPEND gets no more room than any other literal: an
        # anonymous client must not make the server buffer a 64 MiB message.
        self.framer = CommandFramer(max_append_literal=limits.MAX_COMMAND_LITERAL)
        self.state = State.NOT_AUTHENTICATED
        self._actor: Actor | None = None
        self.view: SelectedView | None = None
        self.enabled: set[str] = set()
        self.client_id: str = ""
        self._out: list[bytes] = []
        self._out_size = 0
        self._wake = asyncio.Event()
        self._errors = 0
        self.log = log
        #: time.time() of the connect, for ``imapgate sessions``.
        self.since = time.time()
        self.idling = False
        #: Set by ``end``: the session says ``* BYE <reason>`` and closes.
        self._end_reason: str | None = None
        self._busy = False

    @property
    def actor(self) -> Actor | None:
        return self._actor

    @actor.setter
    def actor(self, actor: Actor | None) -> None:
        self._actor = actor
        self.log_context.user = actor.user if actor is not None else None

    # -- capabilities ---------------------------------------------------------------------
    @property
    def login_allowed(self) -> bool:
        return self.is_tls or self.gw.config.server.allow_plaintext

    def capabilities(self) -> list[str]:
        caps = [
            "IMAP4rev1",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "CHILDREN",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "SPECIAL-USE",
        ]
        if self.state == State.NOT_AUTHENTICATED:
            if self.tls_context is not None and not self.is_tls:
                caps.append("STARTTLS")
            if self.login_allowed:
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
        else:
            caps += ["UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "ESEARCH", "STATUS=SIZE"]
            caps += ["ACL", "RIGHTS=texk"]  # RFC 4314 §2.1.1/§3: the rights c and d stand for
        return caps

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled

    @property
    def imap4rev2(self) -> bool:
        """ENABLE IMAP4rev2 (RFC 9051): no \\Recent, no RECENT responses.  The
        gateway does not offer IMAP4rev2 yet, so today this is never true."""
        return "IMAP4REV2" in self.enabled

    def enable_condstore(self) -> None:
        """A CONDSTORE enabling command (RFC 7162 §3.1: FETCH MODSEQ or
        CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ, ENABLE): the first one
        while a mailbox is selected reports its HIGHESTMODSEQ."""
        if "CONDSTORE" in self.enabled:
            return
        self.enabled.add("CONDSTORE")
        if self.view is not None:
            self.send_response(
                rsp.UntaggedStatus("OK", rsp.HighestModseqCode(self.view.highest_modseq()), "Highest")
            )

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise OperationError("not logged in", "CLIENTBUG", status="BAD")
        return self.actor

    def require_view(self) -> SelectedView:
        if self.view is None:
            raise OperationError("no mailbox selected", "CLIENTBUG", status="BAD")
        return self.view

    # -- output ---------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def send_response(self, resp: rsp.Response) -> None:
        self.send(write_response(resp, utf8=self.utf8))

    async def flush(self) -> None:
        if self._out:
            if wire_log.isEnabledFor(logging.DEBUG):
                for chunk in self._out:
                    for line in wire_lines(chunk):
                        wire_log.debug("S: %s", line)
            data = b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            self.writer.write(data)
        await self.writer.drain()

    async def maybe_flush(self) -> None:
        """Write out a long response in pieces (bounded memory per session)."""
        if self._out_size >= WRITE_CHUNK:
            await self.flush()

    def wake(self) -> None:
        self._wake.set()

    # -- administration -------------------------------------------------------------------
    def info(self) -> SessionInfo:
        actor = self.actor
        return SessionInfo(
            id=self.id,
            user=actor.user if actor else None,
            user_id=actor.user_id if actor else None,
            client_id=self.client_id,
            address=self.address,
            tls=self.is_tls,
            folder=self.view.mb.name if self.view is not None else None,
            since=self.since,
            idle=self.idling,
        )

    def end(self, reason: str) -> bool:
        """End the session with ``* BYE <reason>`` (the admin's kick, a removed or
        disabled account).  Waiting for input or in IDLE it ends at once; a command
        in progress completes first (the write path is transactional, but a
        cancelled command could leave the client not knowing what happened)."""
        if self.state == State.LOGOUT or self._end_reason is not None:
            return False
        self._end_reason = reason
        if not self._busy or self.idling:
            self._stop_reading()
        return True

    def _stop_reading(self) -> None:
        """Make the pending read return end-of-stream: the main loop (or IDLE)
        then ends the session the normal way."""
        transport = self.writer.transport
        if isinstance(transport, asyncio.ReadTransport):
            with contextlib.suppress(Exception):
                transport.pause_reading()
        self.reader.feed_eof()

    # -- input ----------------------------------------------------------------------------
    async def next_event(self, timeout: float | None = None) -> Frame | CodecError | None:
        """The next frame or codec error; None at end of stream or timeout."""
        while True:
            ev = self.framer.next_event()
            if isinstance(ev, NeedContinuation):
                wire_log.debug("S: + Ready for literal data")
                self.writer.write(_LITERAL_GO_AHEAD)
                await self.writer.drain()
                continue
            if ev is not None:
                return ev
            try:
                async with asyncio.timeout(timeout):
                    data = await self.reader.read(65536)
            except TimeoutError:
                return None
            if not data:
                return None
            self.framer.feed(data)

    # -- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        # This task's context: every record from here on names the session.
        logs.current.set(self.log_context)
        self.log.info("connection from %s%s", self.address, " (TLS)" if self.is_tls else "")
        try:
            self.send_response(
                rsp.UntaggedStatus(
                    "OK", rsp.CapabilityCode(tuple(self.capabilities())), f"imapgate {__version__} ready"
                )
            )
            await self.flush()
            while self.state != State.LOGOUT:
                if self._end_reason is not None:
                    break
                timeout = (
                    LOGIN_TIMEOUT
                    if self.state == State.NOT_AUTHENTICATED
                    else self.gw.config.server.idle_timeout
                )
                ev = await self.next_event(timeout)
                if ev is None:
                    if self._end_reason is not None:
                        break
                    if self.framer.has_partial_frame() or self.state == State.NOT_AUTHENTICATED:
                        self._bye("Autologout; idle for too long")
                    break
                if isinstance(ev, CodecError):
                    await self._protocol_error(ev)
                else:
                    await self.handle_frame(ev.data)
                await self.flush()
                if self._errors >= MAX_CONSECUTIVE_ERRORS:
                    self._bye("Too many invalid commands")
                    break
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            self.log.info("connection lost: %s", exc)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self._bye("Server shutting down")
            raise
        finally:
            await self.close()

    async def close(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None
        self.state = State.LOGOUT
        if self._end_reason is not None:
            self._bye(self._end_reason)
            self.log.info("ended: %s", self._end_reason)
        with contextlib.suppress(Exception):
            if self._out:
                self.writer.write(b"".join(self._out))
                self._out.clear()
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        who = f"user {self.actor.user}" if self.actor is not None else "not logged in"
        self.log.info("closed (%s, %s, after %.0f s)", who, self.address, time.monotonic() - self.started)

    async def _protocol_error(self, err: CodecError) -> None:
        self._errors += 1
        code = rsp.AtomCode(err.code) if err.code else None
        if err.tag:
            self.send_response(rsp.TaggedResponse(err.tag, "BAD", code, err.reason))
        else:
            self.send_response(rsp.UntaggedStatus("BAD", code, err.reason))
        if err.fatal:
            self._bye("Protocol error")
            self.state = State.LOGOUT

    async def handle_frame(self, frame: bytes) -> None:
        if wire_log.isEnabledFor(logging.DEBUG):
            for line in wire_lines(frame):
                wire_log.debug("C: %s", line)
        invalid: InvalidMailboxName | None = None
        try:
            command = parse_command(frame, utf8=self.utf8)
        except InvalidMailboxName as exc:
            command, invalid = exc.command, exc
        except ClientProtocolError as exc:
            await self._protocol_error(exc)
            return
        tag = command.tag
        spec = COMMANDS.get(type(command))
        if spec is None:
            self._errors += 1
            self.send_response(
                rsp.TaggedResponse(tag, "BAD", rsp.CANNOT, f"{command.name} is not supported by this server")
            )
            return
        if self.state not in spec.states:
            self._errors += 1
            self.send_response(self._wrong_state(tag, command, spec))
            return
        handler = spec.handler if invalid is None else _invalid_name_handler(invalid)
        self._busy = True
        try:
            if _works_on_selected(command, spec):
                self._require_readable()
            done = await handler(self, command)
        except OperationError as exc:
            if exc.status == "ANSWERED":
                return
            self._flush_view(spec.allow_expunge and not _is_seq_command(command))
            if isinstance(exc, ClaimConflict):
                self._true_flags(exc)
            self._tagged(tag, "BAD" if exc.status == "BAD" else "NO", exc.code, exc.text)
            if exc.status == "BAD":
                self._errors += 1
            return
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            ended = self._account_ended()
            if ended is not None:
                # A removed account's per-user state cannot be written any more:
                # that is the answer, not an internal error.
                self._tagged(tag, "NO", "UNAVAILABLE", f"{command.name}: {ended.split('] ', 1)[-1]}")
                self._end_reason = ended
                self.state = State.LOGOUT
                return
            if is_database_unreachable(exc):  # PostgreSQL restarting: not a bug of ours
                self.log.warning("%s: %s (%s)", command.name, DATABASE_UNREACHABLE, exc.__class__.__name__)
                self._tagged(tag, "NO", "UNAVAILABLE", f"{command.name}: {DATABASE_UNREACHABLE}")
                return
            self.log.exception("internal error in %s", command.name)
            self._tagged(
                tag, "NO", "SERVERBUG", f"{command.name} failed: internal error (logged by the gateway)"
            )
            return
        finally:
            self._busy = False
        self._errors = 0
        if self.state != State.LOGOUT:
            self._flush_view(spec.allow_expunge and not _is_seq_command(command))
        self.send_response(rsp.TaggedResponse(tag, "OK", done.code, done.text))

    def _true_flags(self, exc: ClaimConflict) -> None:
        """Before a claim refusal: the refused messages' flags as they are, so a
        client that already showed its change (a tag, a move) shows the truth again."""
        view = self.view
        if view is None or view.mb.id != exc.mailbox_id:
            return
        uids = [u for u in exc.uids if view.seq_of(u) and u in view.mb.records]
        for line in view.announce_keywords([view.flags_of(u) for u in uids]):
            self.send(line)
        for uid in uids:
            self.send(view.flags_line(view.seq_of(uid), uid, self.condstore))

    def _account_ended(self) -> str | None:
        if self.actor is None:
            return None
        try:
            return self.gw.account_ended(self.actor)
        except Exception:  # the store itself is broken: report the original failure
            return None

    def _tagged(self, tag: str, status: rsp.StatusWord, code: str | None, text: str) -> None:
        self.send_response(rsp.TaggedResponse(tag, status, rsp.AtomCode(code) if code else None, text))

    def _bye(self, text: str) -> None:
        self.send_response(rsp.UntaggedStatus("BYE", None, text))

    def _wrong_state(self, tag: str, command: cmd.Command, spec: CommandSpec) -> rsp.TaggedResponse:
        if self.state == State.NOT_AUTHENTICATED:
            why = "log in first"
        elif spec.states == SELECTED:
            why = "select a mailbox first"
        elif spec.states == NOT_AUTH:
            why = "already logged in"
        else:
            why = f"not allowed in the {self.state.value} state"
        return rsp.TaggedResponse(tag, "BAD", rsp.CLIENTBUG, f"{command.name}: {why}")

    def _require_readable(self) -> None:
        """A folder whose ``r`` the user lost since SELECT (an ACL change) answers
        every further command there with the policy's NO."""
        view, actor = self.view, self.actor
        if view is not None and actor is not None:
            self.gw.service.execute_now(actor, ops.ReadMessages(view.mb))

    def _readable(self) -> bool:
        try:
            self._require_readable()
        except OperationError:
            return False
        return True

    def _flush_view(self, allow_expunge: bool) -> None:
        view = self.view
        if view is None:
            return
        if not self._readable():
            return  # no events about a folder the user may no longer read
        if view.reset_reason is not None:
            self._bye(f"{view.reset_reason}; please reconnect")
            self.state = State.LOGOUT
            return
        for line in view.flush(allow_expunge=allow_expunge, condstore=self.condstore, qresync=self.qresync):
            self.send(line)

    # -- helpers for handlers -------------------------------------------------------------
    def select_view(self, view: SelectedView | None) -> None:
        if self.view is not None:
            self.view.close()
        self.view = view
        self.state = State.SELECTED if view is not None else State.AUTHENTICATED

    async def idle_until_done(self) -> bool:
        """IDLE: push changes as they happen until the client sends DONE.
        Returns False when the client sent something else (a protocol error)."""
        self._wake.clear()
        self.framer.raw_line()
        reader_task = asyncio.ensure_future(self.next_event(self.gw.config.server.idle_timeout))
        self.idling = True
        if self._end_reason is not None:
            self._stop_reading()  # told to end while the IDLE command was being read
        try:
            while True:
                self._flush_view(True)
                await self.flush()
                if self.state == State.LOGOUT:
                    return True
                waker = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait({reader_task, waker}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                self._wake.clear()
                if reader_task in done:
                    ev = reader_task.result()
                    if ev is None:
                        self.state = State.LOGOUT
                        return True
                    return bool(isinstance(ev, Frame) and ev.data.strip().upper() == b"DONE")
        finally:
            self.idling = False
            if not reader_task.done():
                reader_task.cancel()
                with contextlib.suppress(BaseException):
                    await reader_task


def _invalid_name_handler(err: InvalidMailboxName) -> Handler:
    """The answer to a command naming a mailbox that cannot exist (its name is
    not valid modified UTF-7): LIST and LSUB match nothing, CREATE and RENAME
    cannot make it, everything else finds no such mailbox, as Dovecot answers.
    The session goes on (it is not a protocol error)."""

    async def answer(s: Session, c: cmd.Command) -> Done:
        if isinstance(c, (cmd.List, cmd.Lsub)):
            return Done(f"{c.name} completed")
        if isinstance(c, (cmd.Create, cmd.Rename)):
            raise OperationError(f"{err.reason}: it cannot be created", "CANNOT")
        if isinstance(c, cmd.SelectBase):
            s.select_view(None)  # a failed SELECT leaves no mailbox selected
        raise OperationError(f"{err.reason}: no such mailbox", "NONEXISTENT")

    return answer


def _works_on_selected(command: cmd.Command, spec: CommandSpec) -> bool:
    """Commands that act on (or wait for news of) the selected folder: refused
    there once the user may not read it any more.  CLOSE and UNSELECT still
    leave it, and every other command is about other folders or the session."""
    if isinstance(command, (cmd.Close, cmd.Unselect)):
        return False
    return spec.states == SELECTED or isinstance(command, (cmd.Noop, cmd.Idle, cmd.Check))


def _is_seq_command(command: cmd.Command) -> bool:
    """FETCH, STORE and SEARCH by sequence number: no EXPUNGE may follow them."""
    if isinstance(command, (cmd.Fetch, cmd.Store, cmd.Search, cmd.Sort, cmd.Thread)):
        return not command.uid
    return False
