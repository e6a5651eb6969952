"""Frame assembly: arbitrary byte chunks in, complete frames out (sans-IO).

A frame is one command (server side) or one response (client side): a line,
and when the line ends in a literal header ``{n}``, ``{n+}`` or ``~{n}``, the n
octets and the rest of the command, and so on until a line ends without one.

Theory of operation (one assembler per direction of a connection)::

    state          input seen                  next state / output
    -------------  --------------------------  -----------------------------------
    LINE           CRLF, no literal header     emit Frame; LINE
    LINE           CRLF after {n} / {n+}       LITERAL(n)  (+ emit NeedContinuation
                                               for a synchronizing {n} on the server
                                               side, unless its bytes already came)
    LITERAL(n)     n octets                    LINE (same frame continues)
    LINE           > max line without CRLF     emit error; DISCARD
    any            literal or frame too large  emit error; DISCARD (or, for a
                                               synchronizing literal, reset: the
                                               client waits for '+' and sends nothing)
    DISCARD        ... until the frame ends    LINE (data dropped, memory bounded)

``raw_line()`` switches the next frame to a bare line without literal
interpretation (AUTHENTICATE responses, the DONE that ends IDLE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from . import limits
from .errors import ClientProtocolError, CodecError, UpstreamProtocolError

_LITERAL_TAIL_RE: Final = re.compile(rb"~?\{(\d{1,20})(\+?)\}\Z")
_TAG_RE: Final = re.compile(rb"([^(){ \x00-\x1f\x7f%*\"\\+\x80-\xff]{1,64}) ")
_APPEND_RE: Final = re.compile(rb"[^ ]+ (?:UID )?APPEND ", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete command or response, exactly as received."""

    data: bytes


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """Server side: the client sent a synchronizing literal header and waits for
    a continuation request (``+ ...``) before sending ``size`` octets."""

    size: int


FramerEvent = Frame | NeedContinuation | CodecError


class _Assembler:
    """Shared machinery; see the module docstring for the state table."""

    _error_cls: type[CodecError] = CodecError

    def __init__(self, *, max_line: int, max_literal: int, max_frame: int) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_frame = max_frame
        self._buf = b""
        self._pos = 0
        self._scan = 0  # where to resume the CRLF search in _buf
        self._parts: list[bytes] = []
        self._frame_size = 0
        self._literal_left = 0
        self._discarding: CodecError | None = None
        self._raw_line = False
        self._first_line: bytes | None = None
        # True while dropping the rest of an over-long line (already reported).
        self._drop_until_eol = False

    # -- input ------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self._pos:
            self._scan -= self._pos
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf += data

    def raw_line(self) -> None:
        """Read the next frame as one bare line (no literals)."""
        self._raw_line = True

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def has_partial_frame(self) -> bool:
        return bool(self._parts) or self._literal_left > 0 or self.buffered > 0

    # -- output -----------------------------------------------------------------
    def next_event(self) -> FramerEvent | None:
        """The next event, or None when more bytes are needed."""
        while True:
            if self._literal_left:
                if not self._take_literal():
                    return None
                continue
            buf = self._buf
            eol = buf.find(b"\r\n", self._scan)
            if eol < 0:
                # Keep the last byte: it may be the CR of a CRLF split across chunks.
                if self._drop_until_eol:
                    # Keep only a trailing CR that may start the CRLF we wait for.
                    self._pos = self._scan = max(self._pos, len(buf) - 1)
                    return None
                self._scan = max(self._pos, len(buf) - 1)
                if len(buf) - self._pos > self.max_line:
                    return self._overlong_line()
                return None
            line_len = eol - self._pos
            if line_len > self.max_line and not self._drop_until_eol:
                return self._overlong_line()
            end = eol + 2
            segment = buf[self._pos : end]
            self._pos = self._scan = end
            size = 0
            sync = False
            literal = False
            if not self._raw_line and line_len and buf[eol - 1] == 0x7D:  # '}'
                m = _LITERAL_TAIL_RE.search(segment, 0, len(segment) - 2)
                if m is not None:
                    literal = True
                    size = int(m.group(1))
                    sync = not m.group(2)
            if self._discarding is not None:
                if literal:
                    self._literal_left = size
                    continue
                return self._end_discard()
            if not self._parts and not literal:
                # The common case: a whole frame on one line.
                self._raw_line = False
                return Frame(segment)
            if self._first_line is None:
                self._first_line = segment
            self._parts.append(segment)
            self._frame_size += len(segment)
            if not literal:
                data = b"".join(self._parts)
                self._reset_frame()
                return Frame(data)
            problem = self._check_literal(size, sync)
            if problem is not None:
                return problem
            self._literal_left = size
            if sync and self._wants_continuation():
                return NeedContinuation(size)
            # An empty literal {0} has no data: the line continues at once.

    def _take_literal(self) -> bool:
        avail = len(self._buf) - self._pos
        if not avail:
            return False
        take = min(avail, self._literal_left)
        if self._discarding is None:
            self._parts.append(self._buf[self._pos : self._pos + take])
            self._frame_size += take
        self._pos += take
        self._scan = self._pos
        self._literal_left -= take
        return self._literal_left == 0

    def _check_literal(self, size: int, sync: bool) -> CodecError | None:
        limit = self._literal_limit()
        what = None
        if size > limit:
            what = f"literal of {size} bytes exceeds the limit of {limit} bytes"
        elif self._frame_size + size > self._frame_limit():
            what = f"command exceeds the limit of {self._frame_limit()} bytes in total"
        elif not sync and not self._nonsync_allowed(size):
            what = f"non-synchronizing literal of {size} bytes exceeds {limits.MAX_LITERAL_MINUS} (LITERAL-)"
        if what is None:
            return None
        err = self._error_cls(what, tag=self._current_tag(), code="TOOBIG")
        if sync and self._wants_continuation():
            # The client waits for '+' and sends no literal data: start afresh.
            self._reset_frame()
            return err
        self._discarding = err
        self._literal_left = size
        return None

    def _overlong_line(self) -> FramerEvent:
        """Report an over-long line at once, then drop bytes up to its CRLF.

        Reported before the line ends so that a peer streaming garbage without
        CRLF gets its answer (and the driver may close) while memory stays bounded.
        """
        err = self._error_cls(
            f"line longer than {self.max_line} bytes", tag=self._current_tag(), code="TOOBIG"
        )
        self._reset_frame()
        self._drop_until_eol = True
        self._discarding = err
        # Keep a trailing CR: it may be the first half of the CRLF.
        self._pos = self._scan = max(self._pos, len(self._buf) - 1)
        return err

    def _end_discard(self) -> FramerEvent | None:
        err = self._discarding
        already_reported = self._drop_until_eol
        self._reset_frame()
        if already_reported:
            return self.next_event()
        return err

    def _reset_frame(self) -> None:
        self._parts = []
        self._frame_size = 0
        self._literal_left = 0
        self._discarding = None
        self._raw_line = False
        self._first_line = None
        self._drop_until_eol = False

    def _current_tag(self) -> str | None:
        head = self._first_line if self._first_line is not None else self._buf[self._pos : self._pos + 80]
        m = _TAG_RE.match(head)
        return m.group(1).decode("ascii") if m else None

    # -- per side ---------------------------------------------------------------
    def _literal_limit(self) -> int:
        return self.max_literal

    def _frame_limit(self) -> int:
        return self.max_frame

    def _nonsync_allowed(self, size: int) -> bool:
        return True

    def _wants_continuation(self) -> bool:
        return False


class CommandFramer(_Assembler):
    """Server side: frames of client commands, with continuation requests for
    synchronizing literals and the LITERAL+/LITERAL- rules."""

    _error_cls = ClientProtocolError

    def __init__(
        self,
        *,
        literal_plus: bool = True,
        max_line: int = limits.MAX_COMMAND_LINE,
        max_literal: int = limits.MAX_COMMAND_LITERAL,
        max_append_literal: int = limits.MAX_APPEND_LITERAL,
        max_frame: int = limits.MAX_COMMAND_FRAME,
    ) -> None:
        super().__init__(max_line=max_line, max_literal=max_literal, max_frame=max_frame)
        #: True when LITERAL+ is advertised (any size), False for LITERAL- (<= 4096).
        self.literal_plus = literal_plus
        self.max_append_literal = max_append_literal

    def _is_append(self) -> bool:
        return self._first_line is not None and _APPEND_RE.match(self._first_line) is not None

    def _literal_limit(self) -> int:
        return self.max_append_literal if self._is_append() else self.max_literal

    def _frame_limit(self) -> int:
        if self._is_append():
            return self.max_append_literal * limits.MAX_APPEND_MESSAGES
        return self.max_frame

    def _nonsync_allowed(self, size: int) -> bool:
        return self.literal_plus or size <= limits.MAX_LITERAL_MINUS

    def _wants_continuation(self) -> bool:
        # No continuation needed when the literal's bytes are already here
        # (a client that pipelines anyway); otherwise ask for them.
        return True


class ResponseFramer(_Assembler):
    """Client side: frames of upstream responses."""

    _error_cls = UpstreamProtocolError

    def __init__(
        self,
        *,
        max_line: int = limits.MAX_RESPONSE_LINE,
        max_literal: int = limits.MAX_RESPONSE_LITERAL,
        max_frame: int = limits.MAX_RESPONSE_FRAME,
    ) -> None:
        super().__init__(max_line=max_line, max_literal=max_literal, max_frame=max_frame)
