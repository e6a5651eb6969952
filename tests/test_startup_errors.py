"""Every start-up failure an operator meets on a first deployment is one line
that says what to fix, a non-zero exit status, and no traceback (``-v`` adds
it): real ``imapgate`` subprocesses, real sockets, real certificates, a real
Dovecot as the hoster.

Each case reproduced a ~58-line traceback (or a silent empty mailbox) before.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
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
from tests.support.tls import make_certificate

pytestmark = pytest.mark.integration


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_listen_port_in_use(tmp_path: Path, busy_port: int) -> None:
    cfg = write_config(tmp_path, upstream_port=closed_port(), listen_port=busy_port)
    out = run("serve", cfg=cfg)
    assert_one_line_error(out, f"127.0.0.1:{busy_port} is already in use (another imapgate or IMAP server?)")


def test_verbose_adds_the_traceback(tmp_path: Path, busy_port: int) -> None:
    cfg = write_config(tmp_path, upstream_port=closed_port(), listen_port=busy_port)
    out = run("serve", "-v", cfg=cfg)
    assert out.returncode == 1
    assert "Traceback" in out.stderr
    assert out.stderr.rstrip().splitlines()[-1].startswith("imapgate: error: 127.0.0.1:")


def _free_privileged_port() -> int:
    for port in range(993, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


def test_privileged_port_without_capability(tmp_path: Path) -> None:
    # As root, but without CAP_NET_BIND_SERVICE (as a plain system user is).
    port = _free_privileged_port()
    cfg = write_config(tmp_path, upstream_port=closed_port(), listen_port=port)
    out = run(
        "serve",
        cfg=cfg,
        prefix=["setpriv", "--inh-caps=-all", "--bounding-set=-net_bind_service", "--"],
    )
    assert_one_line_error(
        out,
        f"127.0.0.1:{port}: binding a port below 1024 needs root or CAP_NET_BIND_SERVICE",
        "contrib/imapgate.service",
    )


def _tls_config(tmp_path: Path, cert: str, key: str) -> Path:
    return write_config(
        tmp_path,
        upstream_port=closed_port(),
        server={"allow_plaintext": False, "certificate": cert, "private_key": key},
    )


def test_missing_certificate_file_is_named(tmp_path: Path) -> None:
    make_certificate(tmp_path)
    cfg = _tls_config(tmp_path, "missing.pem", "cert.key")
    out = run("serve", cfg=cfg)
    assert_one_line_error(out, f"[server] certificate {tmp_path / 'missing.pem'}: no such file")


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    make_certificate(tmp_path)
    out = run("serve", cfg=_tls_config(tmp_path, "cert.pem", "nokey.pem"))
    assert_one_line_error(out, f"[server] private_key {tmp_path / 'nokey.pem'}: no such file")


@pytest.mark.parametrize("other_type", ["ec", "rsa"])
def test_certificate_and_key_that_do_not_match(tmp_path: Path, other_type: str) -> None:
    make_certificate(tmp_path, name="a")
    make_certificate(tmp_path, name="b", key_type=other_type)
    out = run("serve", cfg=_tls_config(tmp_path, "a.pem", "b.key"))
    assert_one_line_error(
        out, f"certificate {tmp_path / 'a.pem'} and private_key {tmp_path / 'b.key'} do not belong together"
    )


def test_tls_is_checked_before_anything_starts(tmp_path: Path) -> None:
    # A bad certificate is reported before the store is created or a port bound.
    cfg = _tls_config(tmp_path, "missing.pem", "missing.key")
    run("serve", cfg=cfg)
    assert not (tmp_path / "imapgate-data").exists()


def test_wrong_upstream_password_is_fatal_at_start(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path
) -> None:
    dc = fresh_dovecot(folders={"INBOX": []})
    port = free_port()
    cfg = write_config(tmp_path, upstream_port=dc.port, listen_port=port, password="Wrong-Pa55-x9")
    out = run("serve", cfg=cfg, timeout=120)
    line = assert_one_line_error(out, "upstream login as shared at 127.0.0.1 failed", "check [upstream] user")
    assert "Wrong-Pa55-x9" not in out.stderr
    assert "ready" not in out.stderr  # never claims to serve an empty mailbox
    assert "password" in line


def test_unreachable_hoster_with_empty_replica_is_fatal(tmp_path: Path) -> None:
    up = closed_port()
    cfg = write_config(tmp_path, upstream_port=up)
    out = run("serve", cfg=cfg)
    assert_one_line_error(out, f"cannot sync from 127.0.0.1:{up}", "the replica is empty")
    assert "ready" not in out.stderr


def test_unreachable_hoster_with_a_replica_serves_it(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders=sample_mailbox)
    port = free_port()
    cfg = write_config(tmp_path, upstream_port=dc.port, listen_port=port)
    assert run("sync", cfg=cfg).returncode == 0
    dc.stop()
    log = tmp_path / "serve.log"
    with serving(cfg, log, port=port) as proc:
        assert proc.poll() is None
    text = log.read_text()
    assert "serving from the replica" in text and "ready:" in text, text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[upstream]\nhots = "x"\nuser = "u"\n', "unknown key [upstream] hots (did you mean host?)"),
        (
            '[upstream]\nhost = "x"\nuser = "u"\n[sever]\nallow_plaintext = true\n',
            "unknown section [sever] (did you mean [server]?)",
        ),
        ('[upstream]\nhost = "x"\nuser = "u"\nport = "993"\n', "[upstream] port must be an integer"),
        ("[upstream\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "imapgate.toml"
    cfg.write_text(text)
    for command in (["serve"], ["user", "list"], ["check"]):
        out = run(*command, cfg=cfg)
        if command == ["check"]:  # the report: one FAIL line
            assert out.returncode == 1 and f"FAIL config     {cfg}: {expected}" in out.stdout, out
            continue
        assert_one_line_error(out, f"{cfg}: {expected}", code=78)


def test_no_config_at_all(tmp_path: Path) -> None:
    out = run("user", "list")
    assert_one_line_error(out, "no configuration file: pass --config FILE or set IMAPGATE_CONFIG", code=78)


def test_demo_on_a_busy_port(tmp_path: Path, busy_port: int) -> None:
    data = tmp_path / "demo"
    out = run("demo", "--port", str(busy_port), "--data-dir", str(data))
    assert_one_line_error(out, f"127.0.0.1:{busy_port} is already in use", "--port")
    assert not data.exists()  # nothing set up, nothing left behind


def test_loose_password_file_is_one_warning_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, upstream_port=closed_port())
    (tmp_path / "upstream.pw").chmod(0o644)
    out = run("user", "list", cfg=cfg)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        f"imapgate: warning: [upstream] password_file {tmp_path / 'upstream.pw'} is open to other users "
        f"(mode 0644): chmod 600 {tmp_path / 'upstream.pw'}"
    ]
    assert "UserWarning" not in out.stderr


def test_unexpected_error_is_one_line_too(tmp_path: Path) -> None:
    # A store file that is not a database: not an operator-named case, still one line.
    cfg = write_config(tmp_path, upstream_port=closed_port())
    (tmp_path / "imapgate-data").mkdir()
    (tmp_path / "imapgate-data" / "imapgate.sqlite3").write_text("not a database\n" * 100)
    out = run("user", "list", cfg=cfg)
    line = assert_one_line_error(out)
    assert re.search(r"store .*imapgate.sqlite3", line), line


def test_serve_help_runs() -> None:
    out = run("serve", "--help")
    assert out.returncode == 0 and "--log-format" in out.stdout
