"""The command line as an operator uses it, against a real Dovecot:
``imapgate sync`` (progress, summary), ``imapgate serve`` (clients work, SIGTERM
stops it cleanly), and ``imapgate demo`` (the README's main command)."""

from __future__ import annotations

import imaplib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo.dovecot import DovecotServer, find_free_port

pytestmark = pytest.mark.integration
IMAPGATE = [sys.executable, "-m", "imapgate.cli"]


def write_config(tmp_path: Path, dc: DovecotServer, port: int) -> Path:
    cfg = tmp_path / "imapgate.toml"
    (tmp_path / "upstream.pw").write_text("shared-secret\n")
    cfg.write_text(
        f"""
[upstream]
host = "127.0.0.1"
port = {dc.port}
tls = "none"
user = "shared"
password_file = "upstream.pw"

[server]
listen = ["127.0.0.1:{port}"]
allow_plaintext = true
"""
    )
    return cfg


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def test_sync_then_serve(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders=sample_mailbox)
    port = find_free_port()
    cfg = write_config(tmp_path, dc, port)
    env = {**os.environ, "IMAPGATE_CONFIG": str(cfg)}
    out = subprocess.run([*IMAPGATE, "sync"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    total = sum(len(v) for v in sample_mailbox.values())
    assert f"synchronised {len(sample_mailbox)} folders, {total} messages" in out.stdout
    assert "INBOX: 73 messages" in out.stdout
    added = subprocess.run(
        [*IMAPGATE, "user", "add", "alice", "--password-stdin"],
        env=env,
        input="alice-pw\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    log = tmp_path / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([*IMAPGATE, "serve"], env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        m = imaplib.IMAP4("127.0.0.1", port)
        assert m.login("alice", "alice-pw")[0] == "OK"
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"73"]
        m.logout()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text
    assert "shutting down" in text
    # No credential reaches the log.
    assert "shared-secret" not in text and "alice-pw" not in text


def test_demo_prints_working_logins(tmp_path: Path) -> None:
    port = find_free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [*IMAPGATE, "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        password = None
        while time.monotonic() < deadline and password is None:
            m = re.search(r"bob\s+password (\S+)", log.read_text())
            password = m.group(1) if m else None
            time.sleep(0.2)
        assert password, log.read_text()
        wait_port(port)
        client = imaplib.IMAP4("127.0.0.1", port)
        assert client.login("bob", password)[0] == "OK"
        typ, data = client.list()
        assert typ == "OK" and any(b"INBOX" in d for d in data)
        assert client.select("INBOX")[0] == "OK"
        client.logout()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()
