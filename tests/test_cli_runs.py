"""The command line as an operator uses it, against a real Dovecot:
``imapgate sync`` (progress, summary), ``imapgate serve`` (clients work, SIGTERM
stops it cleanly), and ``imapgate demo`` (the README's main command)."""

from __future__ import annotations

import imaplib
import json
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

import httpx
import pytest

from imapgate.demo.dovecot import DovecotServer, find_free_port
from tests.support import cli
from tests.support.web import login as web_login

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


def _demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    port = find_free_port()
    log = tmp_path / "demo.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [*IMAPGATE, "demo", "--port", str(port), *args], stdout=fh, stderr=subprocess.STDOUT
        )
    return proc, log, port


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text())
        if m:
            return m
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {log.read_text()}")


def test_demo_prints_working_logins(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc, log, port = _demo(tmp_path, "--data-dir", str(data))
    try:
        password = _wait_for(log, r"bob\s+password (\S+)", proc).group(1)
        wait_port(port)
        client = imaplib.IMAP4("127.0.0.1", port)
        assert client.login("bob", password)[0] == "OK"
        typ, data_ = client.list()
        assert typ == "OK" and any(b"INBOX" in d for d in data_)
        assert client.select("INBOX")[0] == "OK"
        # The demo's permissions: bob is not in $buchhaltung (no Rechnungen for him),
        # and the archive is read-only for him.
        assert not any(b"Rechnungen" in d for d in data_), data_
        assert client.select("Rechnungen")[0] == "NO"
        assert client.select("Archive")[0] == "OK"  # lrs: may mark read (s), so not READ-ONLY
        typ, why = client.store("1", "+FLAGS", "(\\Deleted)")
        assert typ == "NO" and b"NOPERM" in why[0], why
        client.logout()
        alice_pw = _wait_for(log, r"alice\s+password (\S+)", proc).group(1)
        alice = imaplib.IMAP4("127.0.0.1", port)
        assert alice.login("alice", alice_pw)[0] == "OK"
        assert alice.select("Rechnungen")[0] == "OK"
        alice.logout()
        assert "carol is the admin" in log.read_text()
        # The demo's dashboard has the Admin pages on, for carol.
        site = _wait_for(log, r"Admin pages:\s+(http://\S+)/admin", proc).group(1)
        carol_pw = _wait_for(log, r"carol\s+password (\S+)", proc).group(1)
        with httpx.Client(base_url=site, timeout=30) as browser:
            assert web_login(browser, "carol", carol_pw).status_code == 303
            admin = browser.get("/admin")
            assert admin.status_code == 200 and "Users and groups" in admin.text, admin.text
        # The demo wrote its config and says how to use it: admin commands work against it.
        cfg = Path(_wait_for(log, r"export IMAPGATE_CONFIG=(\S+)", proc).group(1))
        assert cfg == data / "imapgate.toml" and cfg.exists()
        users = cli.run("user", "list", cfg=cfg)
        assert users.returncode == 0 and {"alice", "bob", "carol"} <= set(users.stdout.split()), users
        folders = cli.run("folder", "list", cfg=cfg)
        assert folders.returncode == 0 and "INBOX" in folders.stdout, folders
        # The audit journal is on: bob's login and his refused delete in Archive are in it.
        audit = cli.run("audit", "--user", "bob", "--json", cfg=cfg)
        assert audit.returncode == 0, audit
        seen = {(e["action"], e["folder"]) for e in json.loads(audit.stdout)}
        assert {("login", None), ("refused", "Archive")} <= seen, seen
        assert "[audit]" in cfg.read_text()
        # One writer per store: a sync is refused while the demo serves it.
        sync = cli.run("sync", cfg=cfg)
        assert sync.returncode == 1 and f"pid {proc.pid}: imapgate demo" in sync.stderr, sync
        assert "password =" not in cfg.read_text()  # the hoster's password is in a 0600 file
        assert (data / "upstream.password").stat().st_mode & 0o077 == 0
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()
    # What the demo made is gone (the folder did not exist before).
    assert not data.exists()


def test_demo_temporary_folder_removed_and_keep(tmp_path: Path) -> None:
    proc, log, _ = _demo(tmp_path)
    try:
        base = Path(_wait_for(log, r"Data:\s+(\S+)", proc).group(1))
        _wait_for(log, r"Press Ctrl-C", proc)
        assert base.is_dir() and base.name.startswith("imapgate-demo-")
        # Dovecot's sockets and mail may live in a /tmp folder of their own.
        runtime = base / "hoster" / "runtime"
        elsewhere = runtime.resolve() if runtime.is_symlink() else None
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert not base.exists()
    assert elsewhere is None or not elsewhere.exists()
    kept = tmp_path / "kept"
    proc, log, _ = _demo(tmp_path, "--data-dir", str(kept), "--keep")
    try:
        _wait_for(log, r"Press Ctrl-C", proc)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert (kept / "imapgate.toml").exists() and (kept / "gateway" / "imapgate.sqlite3").exists()
    # A second run on the kept folder reuses the logins (and says so).
    proc, log, _ = _demo(tmp_path, "--data-dir", str(kept))
    try:
        _wait_for(log, r"alice\s+\(password from an earlier run\)", proc)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    # What existed before that run stays; only what it made is gone.
    assert (kept / "imapgate.toml").exists() and (kept / "gateway" / "imapgate.sqlite3").exists()
    assert not (kept / "hoster").exists()
