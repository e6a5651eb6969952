"""One connection to the upstream server: the asyncio driver of the codec's
client side.

Commands run one at a time per connection (the pool gives each caller its own
connection).  A reader task turns bytes into responses: the tagged one ends
the running command, untagged ones are collected for it, and responses that
arrive while nothing runs (or during IDLE) go to ``on_unsolicited``.  When the
connection breaks, every waiter gets ``UpstreamUnavailable``; nothing is
retried here (the caller knows whether a retry is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import logging
import socket
import ssl
import struct
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..config import UpstreamConfig
from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.command_writer import write_command
from ..protocol.errors import CodecError
from ..protocol.framing import Frame, ResponseFramer
from ..protocol.redact import wire_lines
from ..protocol.response_parser import parse_response

log = logging.getLogger("imapgate.upstream")
#: The exchange with the hoster at ``-v`` (DEBUG), through ``wire_lines``: the
#: LOGIN (the shared account's password) and literal contents never appear.
wire_log = logging.getLogger("imapgate.wire.upstream")
T = TypeVar("T")

READ_CHUNK = 256 * 1024
#: While a large write drains, how often to look whether the hoster still takes
#: bytes (which restarts the command's no-progress clock).
WRITE_PROGRESS_CHECK = 1.0
#: Commands at least this big are watched for write progress until answered:
#: the kernel's send buffer (megabytes on a fast link) hides how far they got.
LARGE_WRITE = 64 * 1024
#: ioctl for the bytes a socket has not sent yet (Linux SIOCOUTQ).
_SIOCOUTQ = getattr(termios, "TIOCOUTQ", None)

_CHANGE_SIGNALS = (rsp.Exists, rsp.Expunge, rsp.Vanished)


class UpstreamError(Exception):
    """Upstream refused a command (tagged NO/BAD); the text is upstream's."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        t = result.tagged
        super().__init__(f"upstream answered {t.status}: {t.text}")


class UpstreamUnavailable(Exception):
    """The upstream server cannot be reached or the connection broke."""


class UpstreamBusy(UpstreamUnavailable):
    """Every upstream connection the nodes may hold is in use (no lease within the wait):
    the hoster is fine, the budget is spent."""


class UpstreamTimeout(UpstreamUnavailable):
    """The hoster stopped answering in the middle of a command: whether it carried
    the command out is not known (the connection was closed)."""

    def __init__(self, command: str, seconds: float) -> None:
        super().__init__(f"upstream did not answer {command} within {seconds:.0f} s")
        self.command = command
        self.seconds = seconds


def reason(exc: BaseException) -> str:
    """A readable reason for ``exc``: its text, or its kind when it has none
    (``TimeoutError()`` prints as nothing)."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror and not text:
        text = exc.strerror
    return text or type(exc).__name__


class UpstreamLoginRefused(UpstreamUnavailable):
    """The hoster answered LOGIN with NO/BAD (wrong password, account locked):
    trying again will not help until the configuration changes.  A temporary
    refusal (``NO [UNAVAILABLE]``) is a plain ``UpstreamUnavailable``."""


@dataclass
class CommandResult:
    tagged: rsp.TaggedResponse
    untagged: list[rsp.Response] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.tagged.status == "OK"

    def of_type(self, kind: type[T]) -> list[T]:
        return [r for r in self.untagged if isinstance(r, kind)]

    def code_of_type(self, kind: type[T]) -> T | None:
        """A response code of ``kind`` from the tagged or an untagged status response."""
        for r in [self.tagged, *self.untagged]:
            code = getattr(r, "code", None)
            if isinstance(code, kind):
                return code
        return None


Unsolicited = Callable[["UpstreamConnection", rsp.Response], None]


class UpstreamConnection:
    def __init__(
        self, config: UpstreamConfig, *, name: str = "upstream", on_unsolicited: Unsolicited | None = None
    ) -> None:
        self.config = config
        self.name = name
        self.on_unsolicited = on_unsolicited
        self.capabilities: frozenset[str] = frozenset()
        #: The server's greeting text ("Dovecot ready." ...): which server the hoster runs.
        self.greeting = ""
        self.enabled: frozenset[str] = frozenset()
        self.selected: str | None = None
        self.selected_uidvalidity: int = 0
        #: Highest UID of the selected mailbox this session has been told about
        #: (SELECT's UIDNEXT, any FETCH answer, an APPEND answered with EXISTS).
        #: Messages at or below it that still exist are in the session's view;
        #: above it, Dovecot's UID FETCH/STORE/SEARCH silently skip them until a
        #: NOOP (see ``UpstreamPool.connection``).
        self.known_uid = 0
        #: Messages in the selected mailbox as this session sees it (EXISTS, less
        #: EXPUNGE and VANISHED since).
        self.exists = 0
        #: ``time.monotonic()`` of the last completed command (or of the connect).
        self.last_used = time.monotonic()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._framer = ResponseFramer()
        self._read_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._tag_counter = 0
        self._pending_tag: str | None = None
        self._pending: asyncio.Future[CommandResult] | None = None
        self._collected: list[rsp.Response] = []
        self._continuation: asyncio.Future[rsp.ContinuationRequest] | None = None
        self._greeting: asyncio.Future[rsp.Response] | None = None
        self._idling = False
        self._pending_name = ""
        self.closed_reason: str | None = None
        #: Called once when the connection closes, however it closes (the pool gives its
        #: upstream lease back: store/leases.py).
        self.on_closed: Callable[[], None] | None = None
        #: The running command's no-progress deadline (restarted by every byte).
        self._deadline: asyncio.Timeout | None = None
        self._deadline_seconds = 0.0

    # -- connection -----------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._writer is not None and self.closed_reason is None

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    async def connect(self) -> None:
        """Connect, greet, (STARTTLS,) log in and ENABLE, within ``connect_timeout``."""
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                await self._connect()
        except TimeoutError:
            await self.close("connect timed out")
            raise UpstreamUnavailable(
                f"cannot connect to {cfg.host}:{cfg.port}: no answer within {cfg.connect_timeout:.0f} s"
            ) from None
        except BaseException:
            # Cancelled (the caller went away, or took another connection that came free)
            # or failed after the socket opened: close it now.  Left open, the socket (and
            # its reader task) outlived the lease the pool gives back on the way out: one
            # connection more at the hoster than the budget, until the hoster timed it out.
            await self.close("connect abandoned")
            raise

    async def _connect(self) -> None:
        cfg = self.config
        ctx: ssl.SSLContext | None = None
        if cfg.tls != "none":
            ctx = ssl.create_default_context()
            if not cfg.verify_certificate:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        try:
            self._reader, self._writer = await asyncio.open_connection(
                cfg.host, cfg.port, ssl=ctx if cfg.tls == "implicit" else None, limit=READ_CHUNK
            )
            loop = asyncio.get_running_loop()
            self._greeting = loop.create_future()
            # A fresh context: the reader outlives the session that happened
            # to open the connection, and its log lines are nobody's.
            self._read_task = asyncio.create_task(
                self._read_loop(), name=f"{self.name}-reader", context=contextvars.Context()
            )
            greeting = await self._greeting
        except (OSError, ssl.SSLError) as exc:
            await self.close()
            raise UpstreamUnavailable(f"cannot connect to {cfg.host}:{cfg.port}: {reason(exc)}") from None
        if isinstance(greeting, rsp.UntaggedStatus) and greeting.status == "BYE":
            await self.close()
            raise UpstreamUnavailable(f"upstream refused the connection: {greeting.text}")
        if isinstance(greeting, rsp.UntaggedStatus):
            self.greeting = greeting.text
        if isinstance(greeting, rsp.UntaggedStatus) and isinstance(greeting.code, rsp.CapabilityCode):
            self.capabilities = frozenset(c.upper() for c in greeting.code.capabilities)
        if cfg.tls == "starttls":
            await self._starttls(ctx)
        if not self.capabilities:
            await self.refresh_capabilities()
        await self._login()
        if not self.capabilities or (
            "IMAP4REV1" not in self.capabilities and "IMAP4REV2" not in self.capabilities
        ):
            await self.refresh_capabilities()
        want = [c for c in ("QRESYNC", "CONDSTORE") if self.has(c)]
        if want:
            res = await self.run(lambda tag: cmd.Enable(tag, tuple(want[:1])))
            enabled: set[str] = set()
            for r in res.of_type(rsp.Enabled):
                enabled.update(c.upper() for c in r.capabilities)
            if "QRESYNC" in enabled:
                enabled.add("CONDSTORE")
            self.enabled = frozenset(enabled)

    async def _starttls(self, ctx: ssl.SSLContext | None) -> None:
        if not self.capabilities:
            await self.refresh_capabilities()
        if not self.has("STARTTLS"):
            raise UpstreamUnavailable('upstream does not offer STARTTLS (config: tls = "starttls")')
        res = await self.run(lambda tag: cmd.StartTLS(tag))
        if not res.ok:
            raise UpstreamUnavailable(f"upstream refused STARTTLS: {res.tagged.text}")
        assert self._writer is not None and ctx is not None
        await self._writer.start_tls(ctx, server_hostname=self.config.host)
        self.capabilities = frozenset()
        await self.refresh_capabilities()

    async def _login(self) -> None:
        cfg = self.config
        # LOGIN carries the shared account's password: it is never logged
        # (commands.Login masks it in repr) and goes only over this connection.
        if self.has("LOGINDISABLED"):
            await self.close()
            raise UpstreamLoginRefused(
                f"{cfg.host} does not allow login without TLS (LOGINDISABLED): "
                'set [upstream] tls = "starttls" or "implicit"'
            )
        res = await self.run(lambda tag: cmd.Login(tag, cfg.user, cfg.password.encode("utf-8")))
        if not res.ok:
            await self.close()
            code = res.tagged.code
            said = res.tagged.text.rstrip(". ")  # our own text follows after a ";"
            if isinstance(code, rsp.AtomCode):
                said = f"[{code.name}] {said}"
            text = f"upstream login as {cfg.user} at {cfg.host} failed: {said}"
            # RFC 5530: UNAVAILABLE (the hoster's auth backend is down), INUSE
            # and LIMIT are temporary; anything else needs the operator.
            if isinstance(code, rsp.AtomCode) and code.name.upper() in ("UNAVAILABLE", "INUSE", "LIMIT"):
                raise UpstreamUnavailable(text)
            raise UpstreamLoginRefused(text)
        code = res.code_of_type(rsp.CapabilityCode)
        if code is not None:
            self.capabilities = frozenset(c.upper() for c in code.capabilities)

    async def refresh_capabilities(self) -> None:
        res = await self.run(lambda tag: cmd.Capability(tag))
        caps: set[str] = set()
        for r in res.of_type(rsp.Capability):
            caps.update(c.upper() for c in r.capabilities)
        self.capabilities = frozenset(caps)

    async def close(self, reason: str = "closed") -> None:
        self._fail(reason)
        self._close_socket()
        # After the socket is closed: a lease given back earlier would let another node
        # connect while this socket still counts at the hoster.
        self._notify_closed()
        if self._read_task is not None and self._read_task is not asyncio.current_task():
            self._read_task.cancel()
            with contextlib.suppress(BaseException):
                await self._read_task

    async def logout(self) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.run(lambda tag: cmd.Logout(tag))
        await self.close("logged out")

    # -- commands -------------------------------------------------------------------
    def _next_tag(self) -> str:
        self._tag_counter += 1
        return f"G{self._tag_counter:05d}"

    async def run(
        self, build: Callable[[str], cmd.Command], *, timeout: float | None = None
    ) -> CommandResult:
        """Send one command (built for the tag given) and wait for its completion.

        ``timeout`` (default ``command_timeout``) is the time the command may go
        without a byte moving either way; then the connection is closed and
        ``UpstreamTimeout`` raised.  A tagged NO/BAD is returned, not raised
        (see ``check``).
        """
        if timeout is None:
            timeout = self.config.command_timeout
        async with self._lock:
            if not self.alive and self._writer is not None:
                raise UpstreamUnavailable(f"upstream connection lost: {self.closed_reason}")
            if self._writer is None:
                raise UpstreamUnavailable("upstream connection not open")
            tag = self._next_tag()
            command = build(tag)
            # SELECT's own EXISTS/VANISHED describe the new mailbox, not a change.
            self._pending_name = command.name
            loop = asyncio.get_running_loop()
            self._pending_tag = tag
            self._pending = loop.create_future()
            self._collected = []
            literal_plus = self.has("LITERAL+") or False
            chunks = write_command(command, literal_plus=literal_plus)
            if wire_log.isEnabledFor(logging.DEBUG):
                for line in wire_lines(b"".join(chunks)):
                    wire_log.debug("%s > %s", self.name, line)
            try:
                async with asyncio.timeout(timeout) as deadline:
                    self._deadline, self._deadline_seconds = deadline, timeout
                    for i, chunk in enumerate(chunks):
                        last = i == len(chunks) - 1
                        if not last:
                            self._continuation = loop.create_future()
                        self._writer.write(chunk)
                        if not last:
                            assert self._continuation is not None
                            await self._drain()
                            waiters: set[asyncio.Future[Any]] = {self._continuation, self._pending}
                            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                            if self._pending in done:
                                break  # refused before the literal (e.g. NO [TOOBIG])
                    await self._drain()
                    if sum(map(len, chunks)) >= LARGE_WRITE:
                        await self._while_sending(self._pending)
                    result = await self._pending
                    self.last_used = time.monotonic()
                    if isinstance(command, cmd.Append) and result.ok:
                        self._note_appended(command, result)
                    return result
            except TimeoutError:
                await self.close(f"{command.name} timed out after {timeout:.0f} s")
                raise UpstreamTimeout(command.name, timeout) from None
            except (ConnectionError, OSError) as exc:
                self._fail(reason(exc))
                raise UpstreamUnavailable(f"upstream connection lost: {reason(exc)}") from None
            finally:
                self._deadline = None
                self._pending_tag = None
                self._pending = None
                self._continuation = None

    def _progress(self) -> None:
        """Bytes moved: the running command's no-progress clock starts again."""
        deadline = self._deadline
        if deadline is not None and not deadline.expired():
            with contextlib.suppress(RuntimeError):
                deadline.reschedule(asyncio.get_running_loop().time() + self._deadline_seconds)

    def _unsent(self) -> int:
        """Bytes written but not yet taken by the hoster: asyncio's buffer plus the
        kernel's send queue."""
        assert self._writer is not None
        transport = self._writer.transport
        n = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None and _SIOCOUTQ is not None:
            with contextlib.suppress(OSError, ValueError):
                n += struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0"))[0]
        return n

    async def _drain(self) -> None:
        """``drain``, counting bytes the hoster takes as progress (a big APPEND to a
        slow hoster may drain for longer than ``command_timeout``)."""
        assert self._writer is not None
        if self._writer.transport.get_write_buffer_size() == 0:
            await self._writer.drain()
            return
        await self._while_sending(asyncio.ensure_future(self._writer.drain()))

    async def _while_sending(self, fut: asyncio.Future[Any]) -> None:
        """Wait for ``fut`` while written bytes are still on their way, restarting
        the no-progress clock whenever the hoster took some; returns when ``fut``
        is done or everything was sent (then the plain timeout applies)."""
        unsent = self._unsent()
        try:
            while unsent > 0:
                done, _ = await asyncio.wait({fut}, timeout=WRITE_PROGRESS_CHECK)
                if done:
                    break
                now = self._unsent()
                if now < unsent:
                    self._progress()
                unsent = now
            if fut is not self._pending:
                await fut
        finally:
            if fut is not self._pending and not fut.done():
                fut.cancel()
                with contextlib.suppress(BaseException):
                    await fut

    def _note_appended(self, command: cmd.Append, result: CommandResult) -> None:
        """An APPEND to the selected mailbox answered with EXISTS has put the new
        messages into this session's view (APPENDUID names them)."""
        code = result.code_of_type(rsp.AppendUidCode)
        if (
            code is not None
            and command.mailbox == self.selected
            and code.uidvalidity == self.selected_uidvalidity
            and result.of_type(rsp.Exists)
        ):
            self.known_uid = max(self.known_uid, max(code.uids.iter(0), default=0))

    async def check(
        self, build: Callable[[str], cmd.Command], *, timeout: float | None = None
    ) -> CommandResult:
        """``run`` that raises ``UpstreamError`` unless the answer is OK."""
        res = await self.run(build, timeout=timeout)
        if not res.ok:
            raise UpstreamError(res)
        return res

    async def select(self, mailbox: str, *, qresync: cmd.QresyncParameters | None = None) -> CommandResult:
        condstore = "CONDSTORE" in self.enabled and qresync is None and "QRESYNC" not in self.enabled
        self.selected, self.known_uid = None, 0
        res = await self.run(lambda tag: cmd.Select(tag, mailbox, condstore=condstore, qresync=qresync))
        if res.ok:
            self.selected = mailbox
            code = res.code_of_type(rsp.UidValidityCode)
            self.selected_uidvalidity = code.value if code else 0
            nxt = res.code_of_type(rsp.UidNextCode)
            if nxt is not None:
                self.known_uid = max(self.known_uid, nxt.value - 1)
        else:
            self.selected, self.known_uid = None, 0
        return res

    # -- IDLE -----------------------------------------------------------------------
    async def idle(self, stop: asyncio.Event, *, max_seconds: float = 25 * 60) -> None:
        """IDLE until ``stop`` is set or ``max_seconds`` pass (RFC 2177: re-issue
        before 29 minutes).  Responses go to ``on_unsolicited``."""
        async with self._lock:
            if self._writer is None or not self.alive:
                raise UpstreamUnavailable("upstream connection not open")
            tag = self._next_tag()
            loop = asyncio.get_running_loop()
            self._pending_tag = tag
            self._pending = loop.create_future()
            self._continuation = loop.create_future()
            self._collected = []
            try:
                wire_log.debug("%s > %s IDLE", self.name, tag)
                self._writer.write(tag.encode() + b" IDLE\r\n")
                await self._writer.drain()
                first: set[asyncio.Future[Any]] = {self._continuation, self._pending}
                done, _ = await asyncio.wait(
                    first, timeout=self.config.command_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if self._pending in done:
                    return  # server refused IDLE
                if not done:
                    raise UpstreamUnavailable("upstream did not accept IDLE")
                self._idling = True
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    second: set[asyncio.Future[Any]] = {stopper, self._pending}
                    await asyncio.wait(second, timeout=max_seconds, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                self._idling = False
                if not self._pending.done():
                    wire_log.debug("%s > DONE", self.name)
                    self._writer.write(b"DONE\r\n")
                    await self._writer.drain()
                async with asyncio.timeout(self.config.command_timeout):
                    await self._pending
            except (ConnectionError, OSError) as exc:
                self._fail(reason(exc))
                raise UpstreamUnavailable(f"upstream connection lost: {reason(exc)}") from None
            except TimeoutError:
                await self.close("IDLE did not end")
                raise UpstreamUnavailable("upstream did not end IDLE") from None
            finally:
                self._idling = False
                self._pending_tag = None
                self._pending = None
                self._continuation = None

    # -- reading --------------------------------------------------------------------
    async def _read_loop(self) -> None:
        assert self._reader is not None
        why = "upstream closed the connection"
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                if self._deadline is not None:
                    self._progress()
                self._framer.feed(data)
                while (ev := self._framer.next_event()) is not None:
                    if isinstance(ev, CodecError):
                        raise ev
                    if isinstance(ev, Frame):
                        if wire_log.isEnabledFor(logging.DEBUG):
                            for line in wire_lines(ev.data):
                                wire_log.debug("%s < %s", self.name, line)
                        self._dispatch(parse_response(ev.data))
        except CodecError as exc:
            why = str(exc)
            log.warning("%s: %s; dropping the connection", self.name, exc)
        except (ConnectionError, OSError) as exc:
            why = f"upstream connection error: {reason(exc)}"
        except asyncio.CancelledError:
            why = "closed"
            raise
        finally:
            self._fail(why)
            # The read side ended (EOF, an error, or close() cancelled it after closing):
            # the socket goes too, then the lease (a pruned idle connection is never closed
            # by the pool).
            self._close_socket()
            self._notify_closed()

    def _close_socket(self) -> None:
        """Close the connection now, in the kernel too.  ``StreamWriter.close`` closes the
        socket only at a later turn of the loop (after the write buffer drained), so the
        lease given back right after it (``on_closed``) let another node connect while this
        socket still counted at the hoster: three connections with a budget of two, seen in
        tests/integration/test_postgres_budget.py.  ``shutdown`` sends the FIN at once; the
        transport closes the descriptor later as before."""
        if self._writer is None:
            return
        sock = self._writer.get_extra_info("socket")
        with contextlib.suppress(Exception):
            self._writer.close()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _notify_closed(self) -> None:
        closed, self.on_closed = self.on_closed, None
        if closed is not None:
            closed()

    def _dispatch(self, resp: rsp.Response) -> None:
        if self._greeting is not None and not self._greeting.done():
            self._greeting.set_result(resp)
            return
        if isinstance(resp, rsp.TaggedResponse):
            if resp.tag == self._pending_tag and self._pending is not None and not self._pending.done():
                self._pending.set_result(CommandResult(resp, self._collected))
                self._collected = []
            else:
                log.warning(
                    "%s: response for unknown tag %s ignored: %s %s",
                    self.name,
                    resp.tag,
                    resp.status,
                    resp.text,
                )
            return
        if isinstance(resp, rsp.ContinuationRequest):
            if self._continuation is not None and not self._continuation.done():
                self._continuation.set_result(resp)
            return
        if isinstance(resp, rsp.UntaggedStatus) and resp.status == "BYE":
            self.closed_reason = f"upstream said BYE: {resp.text}"
        if isinstance(resp, rsp.FetchResponse):
            uid = resp.uid
            if uid is not None and uid > self.known_uid:
                self.known_uid = uid
        elif isinstance(resp, rsp.Exists):
            self.exists = resp.count
        elif isinstance(resp, rsp.Expunge):
            self.exists = max(0, self.exists - 1)
        elif isinstance(resp, rsp.Vanished) and not resp.earlier:
            self.exists = max(0, self.exists - sum(b - a + 1 for a, b in resp.uids.resolve(0)))
        if self._pending is not None and not self._idling:
            self._collected.append(resp)
            # Mailbox-size changes ride along with any command's answer; the sync
            # engine wants them even so (someone else changed the mailbox).
            if (
                self.on_unsolicited is not None
                and isinstance(resp, _CHANGE_SIGNALS)
                and self._pending_name not in ("SELECT", "EXAMINE")
            ):
                self.on_unsolicited(self, resp)
        elif self.on_unsolicited is not None:
            self.on_unsolicited(self, resp)

    def _fail(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        for fut in (self._pending, self._continuation, self._greeting):
            if fut is not None and not fut.done():
                fut.set_exception(UpstreamUnavailable(f"upstream connection lost: {self.closed_reason}"))
        self.selected = None
        self.known_uid = 0
