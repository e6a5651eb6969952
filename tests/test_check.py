"""``imapgate check`` against a real Dovecot hoster and real certificates:
one line per check, exit status 1 exactly when something FAILs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo import DovecotServer
from tests.support.cli import closed_port, free_port, run, serving, write_config
from tests.support.tls import make_certificate

pytestmark = pytest.mark.integration


def lines(out: str, status: str, name: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(rf"{status}\s+{name}\s", line)]


@pytest.fixture
def hoster(fresh_dovecot: Callable[..., DovecotServer], sample_mailbox: Any) -> DovecotServer:
    return fresh_dovecot(folders=sample_mailbox)


def test_a_good_installation(hoster: DovecotServer, tmp_path: Path) -> None:
    make_certificate(tmp_path, days=200, san=("DNS:mail-gw.example.com", "DNS:localhost"))
    cfg = write_config(
        tmp_path,
        upstream_port=hoster.port,
        server={"allow_plaintext": False, "certificate": "cert.pem", "private_key": "cert.key"},
    )
    assert run("sync", cfg=cfg).returncode == 0
    assert run("user", "add", "alice", "--password-stdin", cfg=cfg, input="pw-alice\n").returncode == 0
    out = run("check", cfg=cfg)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert lines(text, "OK", "config")
    assert lines(text, "OK", "tls")[0].endswith("belong together")
    assert any("host names: mail-gw.example.com, localhost" in line for line in lines(text, "OK", "tls"))
    assert any(re.search(r"valid until .* \((199|200) days\)", line) for line in lines(text, "OK", "tls"))
    assert lines(text, "OK", "listen")
    up = lines(text, "OK", "upstream")
    assert any(f"127.0.0.1:{hoster.port} (no TLS): logged in as shared" in line for line in up)
    assert any("capabilities used: IDLE NOTIFY CONDSTORE QRESYNC MOVE UIDPLUS" in line for line in up)
    assert any("opened 4 of 4 connections (max_connections = 4)" in line for line in up)
    assert any("schema at revision" in line and "(current)" in line for line in lines(text, "OK", "store"))
    assert lines(text, "OK", "users")[0].endswith("1 team members")
    assert re.search(r"OK\s+replica\s+\d+ folders, \d+ messages", text)
    assert text.rstrip().splitlines()[-1] == "0 problems, 0 warnings"
    assert "shared-secret" not in text + out.stderr


def test_problems_fail_and_warnings_warn(hoster: DovecotServer, tmp_path: Path) -> None:
    make_certificate(tmp_path, days=5)  # expires soon
    make_certificate(tmp_path, name="other")
    cfg = write_config(
        tmp_path,
        upstream_port=hoster.port,
        password="Wrong-Secret-3",
        server={"allow_plaintext": False, "certificate": "cert.pem", "private_key": "cert.key"},
    )
    (tmp_path / "upstream.pw").chmod(0o644)
    out = run("check", cfg=cfg)
    assert out.returncode == 1, out.stdout
    text = out.stdout
    assert lines(text, "WARN", "config")[0].endswith(f"(mode 0644): chmod 600 {tmp_path / 'upstream.pw'}")
    assert re.search(r"WARN\s+tls\s+the certificate expires in [45] days", text), text
    assert "upstream login as shared at 127.0.0.1 failed" in lines(text, "FAIL", "upstream")[0]
    assert "Wrong-Secret-3" not in text + out.stderr
    assert lines(text, "WARN", "store")[0].endswith("run `imapgate sync` (or serve)")  # nothing created
    assert not (tmp_path / "imapgate-data" / "imapgate.sqlite3").exists()
    assert re.search(r"^1 problem, 3 warnings$", text, re.M), text
    # Mismatched key.
    cfg.write_text(cfg.read_text().replace('"cert.key"', '"other.key"'))
    out = run("check", cfg=cfg)
    assert "do not belong together" in lines(out.stdout, "FAIL", "tls")[0]


def test_hoster_connection_limit(fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path) -> None:
    dc = fresh_dovecot(folders={"INBOX": []}, max_userip_connections=2)
    cfg = write_config(tmp_path, upstream_port=dc.port)
    out = run("check", cfg=cfg)
    assert out.returncode == 1
    fail = lines(out.stdout, "FAIL", "upstream")
    assert fail and "the hoster accepted 2 of max_connections = 4 connections" in fail[0], out.stdout
    assert "set [upstream] max_connections to 2" in fail[0]


def test_unreachable_hoster_and_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = closed_port()
        cfg = write_config(tmp_path, upstream_port=up, listen_port=port)
        out = run("check", cfg=cfg)
    assert out.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in lines(out.stdout, "FAIL", "listen")[0]
    assert f"cannot connect to 127.0.0.1:{up}" in lines(out.stdout, "FAIL", "upstream")[0]


def test_check_while_serve_runs(hoster: DovecotServer, tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, upstream_port=hoster.port, listen_port=port)
    with serving(cfg, tmp_path / "serve.log", port=port) as proc:
        out = run("check", cfg=cfg)
    assert out.returncode == 0, out.stdout
    assert f"in use by pid {proc.pid}: imapgate serve" in lines(out.stdout, "OK", "store")[0]
    assert any("connection limit not tested" in line for line in lines(out.stdout, "OK", "upstream"))
    assert any("not tested, the store is in use" in line for line in lines(out.stdout, "OK", "listen"))


def test_check_on_postgresql_shows_the_schema_version(
    hoster: DovecotServer, tmp_path: Path, postgres_db: Any
) -> None:
    """[store] url on PostgreSQL with the password in password_file: check reads the schema
    revision without creating anything and never shows the password."""
    (tmp_path / "db.pw").write_text("imapgate-pg-secret\n")
    (tmp_path / "db.pw").chmod(0o600)
    url = postgres_db.url.replace(":imapgate-pg-secret@", "@")
    extra = f'\n[store]\nurl = "{url}"\npassword_file = "db.pw"\n'
    cfg = write_config(tmp_path, upstream_port=hoster.port, extra=extra)
    before = run("check", cfg=cfg)
    assert any("no database yet" in line for line in lines(before.stdout, "WARN", "store")), before.stdout
    assert run("user", "add", "alice", "--password-stdin", cfg=cfg, input="pw-alice\n").returncode == 0
    out = run("check", cfg=cfg)
    assert out.returncode == 0, out.stdout + out.stderr
    store = lines(out.stdout, "OK", "store")
    assert any("postgresql://imapgate:***@127.0.0.1" in line and "(current)" in line for line in store), store
    assert lines(out.stdout, "OK", "users")[0].endswith("1 team members")
    assert "imapgate-pg-secret" not in out.stdout + out.stderr
    # The search index: this node's own file, not created by the check (no gateway ran yet).
    index = lines(out.stdout, "OK", "index")
    local = tmp_path / "imapgate-data" / "node-cache.sqlite3"
    assert any(line.endswith(f"this node's, in {local}") for line in index), out.stdout
    assert any("0 of 0 messages indexed" in line for line in index), out.stdout
    assert not local.exists()


def test_check_on_postgresql_fails_for_a_data_dir_it_cannot_write(
    hoster: DovecotServer, tmp_path: Path, postgres_db: Any
) -> None:
    """Each node's data_dir holds its lock, control socket, content cache and search index:
    one it cannot write is a FAIL (and `serve` stops with one line)."""
    from tests.support.cli import assert_one_line_error
    from tests.support.readonly import read_only, writable_dir

    with writable_dir(tmp_path / "node") as data:
        extra = f'\n[store]\ndata_dir = "{data}"\nurl = "{postgres_db.url}"\n'
        cfg = write_config(tmp_path, upstream_port=hoster.port, extra=extra)
        assert run("user", "add", "alice", "--password-stdin", cfg=cfg, input="pw\n").returncode == 0
        with read_only(data):
            out = run("check", cfg=cfg)
            served = run("serve", cfg=cfg)
        assert out.returncode == 1, out.stdout
        failed = lines(out.stdout, "FAIL", "store")
        assert failed and f"{data} is not writable" in failed[0], out.stdout
        assert_one_line_error(served, str(data))
