"""Logging set-up: who a line is about, and two formats (text, JSON).

Every record logged while a client session runs carries that session's id
(``s12``) and, once logged in, its user — also records of code that runs on
the session's behalf (the mail service, an upstream command), without
passing anything down: the session sets :data:`current` (a context variable,
so every asyncio task has its own) and :class:`ContextFilter` copies it onto
each record as ``record.session`` / ``record.user``.

Formats (``--log-format``):

- ``text``: ``2026-11-26 16:56:48,839 INFO    imapgate.session [s12 alice]: logged in as alice``;
- ``json``: one object per line, ``{"time", "level", "logger", "message",
  "session", "user", ...}`` plus any ``extra=`` fields of the call and
  ``"exception"`` with the traceback, for log shippers.

``-v`` sets every imapgate logger to DEBUG, including ``imapgate.wire``: the
IMAP exchange with clients (``imapgate.wire.client``) and with the hoster
(``imapgate.wire.upstream``), each line passed through
:func:`imapgate.protocol.redact.wire_lines` (credentials and literal
contents never appear).
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]


@dataclass
class LogContext:
    """Who the current task works for; ``user`` is set at login."""

    session: str
    user: str | None = None

    def prefix(self) -> str:
        return f"[{self.session} {self.user}] " if self.user else f"[{self.session}] "


#: The session the running task belongs to (None outside sessions).
current: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "imapgate_log_context", default=None
)


class ContextFilter(logging.Filter):
    """Copies the current :class:`LogContext` onto every record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current.get()
        if not hasattr(record, "session"):
            record.session = ctx.session if ctx else None
        if not hasattr(record, "user"):
            record.user = ctx.user if ctx else None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(ctx)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        session = getattr(record, "session", None)
        user = getattr(record, "user", None)
        if session:
            record.ctx = f"[{session} {user}] " if user else f"[{session}] "
        else:
            record.ctx = f"[{user}] " if user else ""
        return super().format(record)


#: Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "ctx",
    "session",
    "user",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record and line."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "session": getattr(record, "session", None),
            "user": getattr(record, "user", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


#: Third-party loggers that say nothing an operator needs below WARNING.
_QUIET = ("alembic", "sqlalchemy", "asyncio")


def setup_logging(verbose: bool = False, fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
    """Log to standard error (journald under systemd) in ``fmt``; replaces any
    handler set up before (the demo, tests that run ``serve`` twice)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("imapgate").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
