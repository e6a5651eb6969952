"""Log formats and the session context (``imapgate.logs``)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from imapgate import logs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``setup_logging`` changes process-wide state: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("imapgate", "alembic", "sqlalchemy", "asyncio")
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for n, lv in levels.items():
        logging.getLogger(n).setLevel(lv)


def _capture(fmt: logs.LogFormat) -> io.StringIO:
    stream = io.StringIO()
    logs.setup_logging(False, fmt, stream=stream)
    return stream


def test_text_lines_name_session_and_user() -> None:
    stream = _capture("text")
    log = logging.getLogger("imapgate.session")

    async def session() -> None:
        ctx = logs.LogContext("s12")
        logs.current.set(ctx)
        log.info("connection from 127.0.0.1")
        ctx.user = "alice"
        log.info("logged in as alice")

    asyncio.run(session())
    log.info("outside any session")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("INFO    imapgate.session: [s12] connection from 127.0.0.1")
    assert lines[1].endswith("imapgate.session: [s12 alice] logged in as alice")
    assert lines[2].endswith("imapgate.session: outside any session")


def test_json_one_object_per_line() -> None:
    stream = _capture("json")
    log = logging.getLogger("imapgate.server")

    async def session() -> None:
        logs.current.set(logs.LogContext("s3", "bob"))
        log.info("closed (%s)", "user bob", extra={"address": "10.0.0.5", "commands": 7})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("internal error in FETCH")

    asyncio.run(session())
    first, second = (json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{"))
    assert first["message"] == "closed (user bob)" and first["level"] == "INFO"
    assert first["logger"] == "imapgate.server" and first["session"] == "s3" and first["user"] == "bob"
    assert first["address"] == "10.0.0.5" and first["commands"] == 7
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "ValueError: boom" in second["exception"] and second["level"] == "ERROR"


def test_tasks_keep_their_own_context() -> None:
    stream = _capture("text")
    log = logging.getLogger("imapgate.session")

    async def one(name: str) -> None:
        logs.current.set(logs.LogContext(name))
        await asyncio.sleep(0)
        log.info("hello from %s", name)

    async def main() -> None:
        await asyncio.gather(one("s1"), one("s2"))

    asyncio.run(main())
    text = stream.getvalue()
    assert "[s1] hello from s1" in text and "[s2] hello from s2" in text


def test_verbose_sets_debug_for_imapgate_only() -> None:
    logs.setup_logging(True, "text", stream=io.StringIO())
    assert logging.getLogger("imapgate.wire.client").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("sqlalchemy.engine").isEnabledFor(logging.INFO)
    logs.setup_logging(False, "text", stream=io.StringIO())
    assert not logging.getLogger("imapgate.wire.client").isEnabledFor(logging.DEBUG)
