"""What the log says about a client session, in front of a real Dovecot:
every line of a session carries its id (also the upstream commands run for
it), the user once logged in, STARTTLS is logged, ``closed`` names the user;
``serve --log-format json`` writes one JSON object per line."""

from __future__ import annotations

import imaplib
import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo import DovecotServer
from imapgate.logs import ContextFilter
from tests.support.cli import free_port, run, serving, write_config
from tests.support.gateway import GatewayHarness
from tests.support.tls import make_certificate

pytestmark = pytest.mark.integration


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed test certificate
    return ctx


def test_every_session_line_names_its_session(
    fresh_dovecot: Callable[..., DovecotServer],
    sample_mailbox: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="imapgate")
    caplog.handler.addFilter(ContextFilter())
    cert, key = make_certificate(tmp_path)
    dc = fresh_dovecot(folders=sample_mailbox)
    with GatewayHarness(
        upstream_port=dc.port,
        data_dir=tmp_path / "gw",
        server={"certificate": str(cert), "private_key": str(key), "allow_plaintext": False},
        users={"alice": "alice-pw"},
    ) as gw:
        caplog.clear()
        m = imaplib.IMAP4(gw.host, gw.port)
        m.starttls(_client_tls())
        m.login("alice", "alice-pw")
        m.select("INBOX")
        typ, _ = m.fetch("1", "(BODY.PEEK[])")  # not cached: fetched upstream for this session
        assert typ == "OK"
        m.logout()
        gw.wait_for(lambda: any("closed" in r.getMessage() for r in caplog.records), what="closed")
    records = [r for r in caplog.records if r.name in ("imapgate.session", "imapgate.wire.client")]
    sessions = {getattr(r, "session", None) for r in records}
    assert len(sessions) == 1 and next(iter(sessions)).startswith("s"), sessions
    sid = next(iter(sessions))
    messages = [r.getMessage() for r in records]
    assert any(m.startswith("STARTTLS: TLSv1.") for m in messages), messages
    closed = [r for r in records if r.getMessage().startswith("closed")]
    assert closed and closed[0].getMessage().startswith("closed (user alice, 127.0.0.1, after ")
    login_at = next(i for i, r in enumerate(records) if r.getMessage() == "logged in as alice")
    assert all(getattr(r, "user", None) == "alice" for r in records[login_at:])
    assert all(getattr(r, "user", None) is None for r in records[: login_at - 1])
    # The upstream FETCH run for this session carries its id; the upstream
    # reader's lines belong to no session.
    upstream = [r for r in caplog.records if r.name == "imapgate.wire.upstream"]
    sent = [r for r in upstream if " > " in r.getMessage() and "FETCH" in r.getMessage()]
    assert any(getattr(r, "session", None) == sid and getattr(r, "user", None) == "alice" for r in sent)
    received = [r for r in upstream if " < " in r.getMessage()]
    assert received and all(getattr(r, "session", None) is None for r in received)
    # -v shows the client exchange, without the body.
    wire = [r.getMessage() for r in records if r.name == "imapgate.wire.client"]
    assert any(w.endswith("LOGIN <credentials hidden>") for w in wire), wire
    assert any("BODY[] {" in w and "bytes}" in w for w in wire), wire
    assert "alice-pw" not in "\n".join(wire)


def test_serve_json_log_format(
    fresh_dovecot: Callable[..., DovecotServer], sample_mailbox: Any, tmp_path: Path
) -> None:
    dc = fresh_dovecot(folders=sample_mailbox)
    port = free_port()
    cfg = write_config(tmp_path, upstream_port=dc.port, listen_port=port)
    assert run("user", "add", "bob", "--password-stdin", cfg=cfg, input="bob-pw\n").returncode == 0
    log = tmp_path / "serve.log"
    with serving(cfg, log, "--log-format", "json", port=port):
        m = imaplib.IMAP4("127.0.0.1", port)
        m.login("bob", "bob-pw")
        m.select("INBOX")
        m.logout()
    objects = [json.loads(line) for line in log.read_text().splitlines()]  # every line is JSON
    assert {"time", "level", "logger", "message", "session", "user"} <= set(objects[0])
    assert any(o["message"].startswith("ready:") for o in objects)
    login = next(o for o in objects if o["message"] == "logged in as bob")
    assert login["user"] == "bob" and login["session"].startswith("s")
    session = [o for o in objects if o["session"] == login["session"]]
    assert session[0]["message"] == "connection from 127.0.0.1" and session[0]["user"] is None
    assert session[-1]["message"].startswith("closed (user bob") and session[-1]["user"] == "bob"
