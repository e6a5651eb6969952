"""Configuration loading: defaults, validation, the environment variable."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from imapgate.config import ConfigError, config_path, load

MINIMAL = """
[upstream]
host = "imap.example.net"
user = "info@example.net"
password = "s3cret"

[server]
certificate = "cert.pem"
private_key = "key.pem"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "imapgate.toml"
    p.write_text(text)
    return p


def test_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, MINIMAL))
    assert cfg.upstream.port == 993 and cfg.upstream.tls == "implicit"
    assert cfg.upstream.max_connections == 4
    assert cfg.server.allow_plaintext is False
    assert cfg.server.login_cache_ttl == 3600.0
    assert cfg.store.data_dir == tmp_path / "imapgate-data"
    assert cfg.store.url.endswith("imapgate-data/imapgate.sqlite3")
    assert cfg.folders.private_flags == ("\\Seen", "Old")
    assert (cfg.upstream.connect_timeout, cfg.upstream.command_timeout, cfg.upstream.probe_interval) == (
        10.0,
        20.0,
        10.0,
    )
    assert "s3cret" not in repr(cfg)


def test_password_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    pw.chmod(0o600)
    config = write(tmp_path, MINIMAL.replace('password = "s3cret"', 'password_file = "pw"'))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a private file gets no warning
        cfg = load(config)
    assert cfg.upstream.password == "from-file"
    pw.chmod(0o644)
    with pytest.warns(UserWarning, match="readable by others"):
        assert load(config).upstream.password == "from-file"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[server.x]\n", "unknown key(s) [server] x"),
        ("[upstream.x]\n", "unknown key"),
        ("[folders]\nseen = { Support = \"sometimes\" }\n", "Support"),
    ],
)
def test_invalid(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(write(tmp_path, MINIMAL + extra))


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ('listen = ["nonsense"]', 'not "host:port"'),
        ("typo = 1\nallow_plaintext = true", "unknown key(s) [server] typo"),
        ("", "no client could ever log in"),
        ('certificate = "c.pem"', "certificate and private_key go together"),
        ('tls_listen = ["0.0.0.0:993"]\nallow_plaintext = true', "tls_listen needs certificate"),
    ],
)
def test_invalid_server(tmp_path: Path, server: str, message: str) -> None:
    base = MINIMAL.split("[server]")[0]
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(write(tmp_path, base + "[server]\n" + server + "\n"))


def test_max_connections_range(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_connections must be between 2 and 100"):
        load(write(tmp_path, MINIMAL.replace("[upstream]", "[upstream]\nmax_connections = 1")))


def test_login_cache_ttl(tmp_path: Path) -> None:
    off = MINIMAL.replace("[server]", "[server]\nlogin_cache_ttl = 0")
    assert load(write(tmp_path, off)).server.login_cache_ttl == 0.0
    with pytest.raises(ConfigError, match="login_cache_ttl must be between 0"):
        load(write(tmp_path, MINIMAL.replace("[server]", "[server]\nlogin_cache_ttl = 100000")))


def test_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMAPGATE_CONFIG", str(tmp_path / "x.toml"))
    assert config_path(None) == tmp_path / "x.toml"
    monkeypatch.delenv("IMAPGATE_CONFIG")
    with pytest.raises(ConfigError, match="IMAPGATE_CONFIG"):
        config_path(None)
