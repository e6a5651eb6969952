"""The admin side of the command line as an operator uses it (real
subprocesses, a real Dovecot): one writer per store, a failed first sync
leaves nothing behind, commands that drop data ask first, ``imapgate config``.
"""

from __future__ import annotations

import imaplib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo import DovecotServer
from tests.support.cli import (
    assert_one_line_error,
    closed_port,
    free_port,
    run,
    serving,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def hoster(fresh_dovecot: Callable[..., DovecotServer], sample_mailbox: Any) -> DovecotServer:
    return fresh_dovecot(folders=sample_mailbox)


def test_sync_and_second_serve_refused_while_serve_runs(hoster: DovecotServer, tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, upstream_port=hoster.port, listen_port=port)
    with serving(cfg, tmp_path / "serve.log", port=port) as proc:
        sync = run("sync", cfg=cfg)
        assert_one_line_error(sync, f"is in use by pid {proc.pid}: imapgate serve", "stop it first")
        second = run("serve", cfg=cfg)
        assert_one_line_error(second, f"is in use by pid {proc.pid}: imapgate serve")
        # Admin commands still work alongside.
        added = run("user", "add", "alice", "--password-stdin", cfg=cfg, input="alice-pw\n")
        assert added.returncode == 0, added.stderr
        assert "alice" in run("user", "list", cfg=cfg).stdout
    # Once serve is gone the lock is free again (released by the kernel, never stale).
    assert run("sync", cfg=cfg).returncode == 0


def test_killed_serve_leaves_no_stale_lock(hoster: DovecotServer, tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, upstream_port=hoster.port, listen_port=port)
    with serving(cfg, tmp_path / "serve.log", port=port) as proc:
        proc.kill()
        proc.wait(timeout=10)
    assert run("sync", cfg=cfg).returncode == 0


@pytest.mark.parametrize("problem", ["unreachable", "wrong password"])
def test_failed_first_sync_leaves_no_database(hoster: DovecotServer, tmp_path: Path, problem: str) -> None:
    if problem == "unreachable":
        cfg = write_config(tmp_path, upstream_port=closed_port())
    else:
        cfg = write_config(tmp_path, upstream_port=hoster.port, password="Not-The-Password-1")
    out = run("sync", cfg=cfg)
    line = assert_one_line_error(out, "sync failed:")
    assert "Not-The-Password-1" not in out.stderr
    if problem == "wrong password":
        assert "upstream login as shared at 127.0.0.1 failed" in line
    assert not (tmp_path / "imapgate-data" / "imapgate.sqlite3").exists()
    # ... so nothing later mistakes it for a synced (empty) store.
    assert "no folders yet" in run("folder", "list", cfg=cfg).stdout


def test_empty_user_list_says_so(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, upstream_port=closed_port())
    out = run("user", "list", cfg=cfg)
    assert out.returncode == 0 and out.stdout == "no users yet: add one with `imapgate user add NAME`\n"


def test_user_remove_asks_first(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, upstream_port=closed_port())
    assert run("user", "add", "bob", "--password-stdin", cfg=cfg, input="bob-pw\n").returncode == 0
    refused = run("user", "remove", "bob", cfg=cfg)  # stdin is not a terminal
    assert_one_line_error(refused, "This removes bob's login", "add --yes to confirm")
    assert "bob" in run("user", "list", cfg=cfg).stdout
    done = run("user", "remove", "bob", "--yes", cfg=cfg)
    assert done.returncode == 0 and done.stdout == "removed user bob\n"
    assert_one_line_error(run("user", "remove", "bob", "--yes", cfg=cfg), "no user 'bob'")


def test_folder_set_shared_asks_before_dropping_read_marks(hoster: DovecotServer, tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, upstream_port=hoster.port, listen_port=port)
    assert run("user", "add", "alice", "--password-stdin", cfg=cfg, input="alice-pw\n").returncode == 0
    with serving(cfg, tmp_path / "serve.log", port=port):
        m = imaplib.IMAP4("127.0.0.1", port)
        m.login("alice", "alice-pw")
        m.select("INBOX")
        assert m.store("1", "+FLAGS", "\\Seen")[0] == "OK"  # a private read mark
        m.logout()
    refused = run("folder", "set", "INBOX", "--seen", "shared", cfg=cfg)
    assert_one_line_error(refused, "This drops 1 user's read marks in INBOX", "add --yes to confirm")
    assert "read state: private" in run("folder", "list", cfg=cfg).stdout
    done = run("folder", "set", "INBOX", "--seen", "shared", "--yes", cfg=cfg)
    assert done.returncode == 0 and "read state is now shared" in done.stdout
    # Back to private drops nothing: no question.
    back = run("folder", "set", "INBOX", "--seen", "private", cfg=cfg)
    assert back.returncode == 0 and "now private" in back.stdout


def test_config_prints_the_effective_config(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, upstream_port=143, upstream={"password_file": None}, extra='[store]\ndata_dir = "state"\n'
    )
    text = cfg.read_text().replace('password_file = "None"', 'password = "Inline-Secret-5"')
    cfg.write_text(text)
    out = run("config", cfg=cfg)
    assert out.returncode == 0, out.stderr
    assert "Inline-Secret-5" not in out.stdout
    assert "# password = (hidden; set inline)" in out.stdout
    parsed = tomllib.loads(out.stdout)
    assert parsed["upstream"]["max_connections"] == 4  # defaults filled in
    assert parsed["store"]["data_dir"] == str(tmp_path / "state")
