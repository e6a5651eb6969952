"""Configuration loading: defaults, validation, the environment variable,
unknown names with suggestions, the effective configuration."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from imapgate.config import ConfigError, WebConfig, config_path, effective_toml, from_dict, load

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
    cfg = load(config)
    assert cfg.upstream.password == "from-file"
    assert cfg.warnings == ()  # a private file gets no warning
    pw.chmod(0o640)  # root:imapgate 0640 is a fine set-up too
    assert load(config).warnings == ()
    pw.chmod(0o644)
    cfg = load(config)
    assert cfg.upstream.password == "from-file"
    # A warning the caller shows as one line, not a Python UserWarning.
    expected = f"[upstream] password_file {pw} is open to other users (mode 0644): chmod 600 {pw}"
    assert cfg.warnings == (expected,)


def test_password_file_missing_named(tmp_path: Path) -> None:
    config = write(tmp_path, MINIMAL.replace('password = "s3cret"', 'password_file = "nope"'))
    with pytest.raises(ConfigError, match=re.escape(f"password_file {tmp_path / 'nope'}: No such file")):
        load(config)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[server.x]\n", "unknown key [server] x"),
        ("[upstream.x]\n", "unknown key [upstream] x"),
        ('[folders]\nseen = { Support = "sometimes" }\n', "Support"),
    ],
)
def test_invalid(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(write(tmp_path, MINIMAL + extra))


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ('listen = ["nonsense"]', 'not "host:port"'),
        ("typo = 1\nallow_plaintext = true", "unknown key [server] typo"),
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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A misspelt required key is named (not "[upstream] host is required").
        ('[upstream]\nhots = "i.example"\nuser = "u"\n', "unknown key [upstream] hots (did you mean host?)"),
        # A misspelt section is named (not the allow_plaintext error it causes).
        (
            '[upstream]\nhost = "h"\nuser = "u"\n[sever]\nallow_plaintext = true\n',
            "unknown section [sever] (did you mean [server]?)",
        ),
        (
            '[upstream]\nhost = "h"\nuser = "u"\n[server]\nallow_plaintext = true\ndata_dir = "x"\n',
            "unknown key [server] data_dir (it belongs in [store])",
        ),
        (
            'host = "h"\n[upstream]\nuser = "u"\n',
            "unknown key host above every section (it belongs in [upstream])",
        ),
        ("[server]\nallow_plaintext = true\n", "section [upstream] is missing"),
    ],
)
def test_unknown_names_first(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load(path)


def test_every_problem_named_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[upstream]\nhots = "h"\nusr = "u"\n[sever]\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    text = str(info.value)
    assert "hots (did you mean host?)" in text and "usr (did you mean user?)" in text and "[sever]" in text


def test_effective_config_loads_again_without_secrets(tmp_path: Path) -> None:
    cfg = from_dict(
        {
            "upstream": {"host": "imap.example.net", "user": "info", "password": "Top-Secret-42"},
            "server": {"allow_plaintext": True},
            "store": {"url": "postgresql://gw:Db-Secret-7@db.example.net/imapgate"},
            "folders": {"seen": {"Support/Queue": "shared"}},
        },
        base_dir=tmp_path,
    )
    text = effective_toml(cfg)
    assert "Top-Secret-42" not in text and "Db-Secret-7" not in text
    assert "postgresql://gw:***@db.example.net/imapgate" in text
    assert "max_connections = 4" in text and 'listen = ["127.0.0.1:1143"]' in text  # defaults filled in
    again = from_dict(tomllib.loads(text), base_dir=tmp_path)
    assert again.upstream.max_connections == 4 and again.folders.seen == {"Support/Queue": "shared"}
    assert again.server == cfg.server


def test_effective_config_names_the_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("From-File-9\n")
    (tmp_path / "pw").chmod(0o600)
    cfg = load(write(tmp_path, MINIMAL.replace('password = "s3cret"', 'password_file = "pw"')))
    text = effective_toml(cfg)
    assert "From-File-9" not in text
    assert f'password_file = "{tmp_path / "pw"}"' in text
    assert "password =" not in text.replace("# password", "")


SUBMISSION = """
[submission]
listen = ["0.0.0.0:587"]
tls_listen = ["0.0.0.0:465"]
[submission.upstream]
host = "smtp.example.net"
"""


def test_submission_absent_is_off(tmp_path: Path) -> None:
    assert load(write(tmp_path, MINIMAL)).submission is None


def test_submission_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, MINIMAL + SUBMISSION))
    sub = cfg.submission
    assert sub is not None
    assert sub.listen == ("0.0.0.0:587",) and sub.tls_listen == ("0.0.0.0:465",)
    assert sub.allow_plaintext is False and sub.override_window == 600.0 and sub.time_zone is None
    # Credentials as in [upstream]; allowed_from = the upstream user, an address.
    assert sub.upstream.user == "info@example.net" and sub.upstream.password == "s3cret"
    assert sub.upstream.tls == "starttls" and sub.upstream.port == 587
    assert sub.allowed_from == ("info@example.net",)
    assert "s3cret" not in repr(cfg)


def test_submission_own_settings(tmp_path: Path) -> None:
    pw = tmp_path / "smtp.pw"
    pw.write_text("smtp-secret\n")
    pw.chmod(0o600)
    text = (
        MINIMAL
        + """
[submission]
allowed_from = ["Info@Example.net", "support@example.net"]
override_window = "90s"
time_zone = "Europe/Berlin"
[submission.upstream]
host = "smtp.example.net"
tls = "implicit"
user = "smtp-user"
password_file = "smtp.pw"
"""
    )
    sub = load(write(tmp_path, text)).submission
    assert sub is not None
    assert sub.upstream.port == 465 and sub.upstream.user == "smtp-user"
    assert sub.upstream.password == "smtp-secret"
    assert sub.allowed_from == ("info@example.net", "support@example.net")
    assert sub.override_window == 90.0 and sub.time_zone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("submission", "message"),
    [
        ("[submission]\n", "section [submission.upstream] is missing"),
        ("[submission]\n[submission.upstream]\nport = 25\n", "[submission.upstream] host is required"),
        ('[submission]\noverride_window = "soon"\n[submission.upstream]\nhost = "h"\n', "not a duration"),
        ('[submission]\noverride_window = "1s"\n[submission.upstream]\nhost = "h"\n', "between 10s and 1d"),
        (
            '[submission]\nallowed_from = ["nobody"]\n[submission.upstream]\nhost = "h"\n',
            "not a mail address",
        ),
        ('[submission]\ntime_zone = "Mars/Olympus"\n[submission.upstream]\nhost = "h"\n', "time zone"),
        ('[submission]\nlisten = []\n[submission.upstream]\nhost = "h"\n', "nothing to serve"),
        ('[submission]\nfrom = 1\n[submission.upstream]\nhost = "h"\n', "unknown key [submission] from"),
        (
            '[submission]\n[submission.upstream]\nhots = "h"\n',
            "unknown key [submission.upstream] hots (did you mean host?)",
        ),
        ('[submission]\n[submission.upstream]\nhost = "h"\nuser = "smtp"\n', "allowed_from is required"),
        ('[submission]\n[submission.upstream]\nhost = "h"\ntls = "ssl"\n', "tls must be one of"),
    ],
)
def test_invalid_submission(tmp_path: Path, submission: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(write(tmp_path, MINIMAL + submission))


def test_submission_needs_certificate_or_plaintext(tmp_path: Path) -> None:
    base = MINIMAL.split("[server]")[0] + "[server]\nallow_plaintext = true\n"
    with pytest.raises(ConfigError, match=re.escape("[submission] no [server] certificate")):
        load(write(tmp_path, base + '[submission]\n[submission.upstream]\nhost = "h"\n'))
    plain = '[submission]\nallow_plaintext = true\n[submission.upstream]\nhost = "h"\n'
    assert load(write(tmp_path, base + plain)).submission is not None


def test_parse_duration() -> None:
    from imapgate.config import parse_duration

    assert [parse_duration(v) for v in ("90s", "10m", "8h", "2d", "0", 30, "1.5h")] == [
        90.0,
        600.0,
        28800.0,
        172800.0,
        0.0,
        30.0,
        5400.0,
    ]
    with pytest.raises(ConfigError):
        parse_duration("10 minutes")


def _web(tmp_path: Path, web: str, server: str = "allow_plaintext = true") -> WebConfig:
    text = f'[upstream]\nhost = "h"\nuser = "u"\n[server]\n{server}\n[web]\n{web}\n'
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load(p).web


def test_web_defaults_and_certificate_from_server(tmp_path: Path) -> None:
    web = load(write(tmp_path, MINIMAL)).web
    assert web.listen == ()  # off
    (tmp_path / "cert.pem").write_text("")
    got = _web(
        tmp_path, 'listen = ["0.0.0.0:8443"]', server='certificate = "cert.pem"\nprivate_key = "key.pem"'
    )
    assert got.certificate == tmp_path / "cert.pem" and got.private_key == tmp_path / "key.pem"
    assert got.tls == "auto" and got.session_idle_timeout == 7200.0


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ('listen = ["0.0.0.0:8080"]', r"\[web\] listen '0.0.0.0:8080' without a certificate"),
        ('trusted_proxies = ["proxy"]', r"\[web\] trusted_proxies: 'proxy' is not an IP address"),
        ('certificate = "c.pem"', r"\[web\] certificate and private_key go together"),
        ("session_idle_timeout = 7200\nsession_lifetime = 600", r"session_idle_timeout is longer"),
        ('tls = "on"', r"\[web\] tls must be one of auto, off"),
    ],
)
def test_web_invalid(tmp_path: Path, web: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _web(tmp_path, web)


def test_web_plain_http_behind_a_proxy(tmp_path: Path) -> None:
    got = _web(tmp_path, 'listen = ["0.0.0.0:8080"]\ntls = "off"\ntrusted_proxies = ["10.0.0.0/8"]')
    assert got.listen == ("0.0.0.0:8080",) and got.trusted_proxies == ("10.0.0.0/8",)


def test_web_show_read_by(tmp_path: Path) -> None:
    assert load(write(tmp_path, MINIMAL)).web.show_read_by is True
    assert _web(tmp_path, "show_read_by = false").show_read_by is False
    with pytest.raises(ConfigError, match="show_read_by"):
        _web(tmp_path, 'show_read_by = "no"')


def test_acl_default(tmp_path: Path) -> None:
    assert load(write(tmp_path, MINIMAL)).acl.default == "lrswipkxte"
    # the obsolete c/d are spelt out as the model reads them; "" gives members nothing
    assert load(write(tmp_path, MINIMAL + '[acl]\ndefault = "lrc"\n')).acl.default == "lrkx"
    assert load(write(tmp_path, MINIMAL + '[acl]\ndefault = ""\n')).acl.default == ""


@pytest.mark.parametrize(
    ("acl", "message"),
    [
        ('default = "lrz"', "[acl] default: unknown right 'z' in 'lrz'"),
        ('default = "+lr"', "[acl] default: rights '+lr': + or - is not allowed here"),
        ("default = 3", "[acl] default must be a string"),
        ('defualt = "lr"', "unknown key [acl] defualt (did you mean default?)"),
    ],
)
def test_acl_default_invalid(tmp_path: Path, acl: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load(write(tmp_path, MINIMAL + "[acl]\n" + acl + "\n"))
    assert "\n" not in str(caught.value)


def test_acl_default_in_the_effective_config(tmp_path: Path) -> None:
    text = effective_toml(load(write(tmp_path, MINIMAL + '[acl]\ndefault = "lrs"\n')))
    assert '[acl]\ndefault = "lrs"' in text


def test_audit_retention(tmp_path: Path) -> None:
    assert load(write(tmp_path, MINIMAL)).audit.retention == 365 * 86400.0
    ninety = MINIMAL + '\n[audit]\nretention = "90d"\n'
    assert load(write(tmp_path, ninety)).audit.retention == 90 * 86400.0
    with pytest.raises(ConfigError, match=r"\[audit\] retention must be between"):
        load(write(tmp_path, MINIMAL + '\n[audit]\nretention = "2h"\n'))
    with pytest.raises(ConfigError, match=r"\[audit\] retention.*not a duration"):
        load(write(tmp_path, MINIMAL + '\n[audit]\nretention = "a year"\n'))
    with pytest.raises(ConfigError, match="retain"):
        load(write(tmp_path, MINIMAL + '\n[audit]\nretain = "1d"\n'))


def test_store_password_file_goes_into_the_url_and_never_out(tmp_path: Path) -> None:
    (tmp_path / "db.pw").write_text("P@ss/w:rd\n")
    (tmp_path / "db.pw").chmod(0o600)
    cfg = from_dict(
        {
            "upstream": {"host": "imap.example.net", "user": "info", "password": "x"},
            "server": {"allow_plaintext": True},
            "store": {"url": "postgresql://gw@db.example.net:5432/imapgate", "password_file": "db.pw"},
        },
        base_dir=tmp_path,
    )
    # Percent-encoded: '@', '/' and ':' in the password do not change where the URL points.
    assert cfg.store.url == "postgresql://gw:P%40ss%2Fw%3Ard@db.example.net:5432/imapgate"
    assert cfg.store.password_file == tmp_path / "db.pw"
    assert "P%40ss" not in repr(cfg.store) and "P@ss" not in repr(cfg.store)
    text = effective_toml(cfg)
    assert "P%40ss" not in text and 'url = "postgresql://gw@db.example.net:5432/imapgate"' in text
    again = from_dict(tomllib.loads(text), base_dir=tmp_path)
    assert again.store.url == cfg.store.url


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ({"url": "mysql://gw@db/x"}, "unsupported database 'mysql'"),
        ({"url": "postgresql://gw:inline@db/x", "password_file": "db.pw"}, "keep only one"),
        ({"url": "postgresql://db/x", "password_file": "db.pw"}, "needs the user in url"),
        ({"url": "sqlite:////tmp/x.sqlite3", "password_file": "db.pw"}, "SQLite has no password"),
    ],
)
def test_store_url_errors(tmp_path: Path, store: dict[str, str], message: str) -> None:
    (tmp_path / "db.pw").write_text("pw\n")
    (tmp_path / "db.pw").chmod(0o600)
    data = {
        "upstream": {"host": "imap.example.net", "user": "info", "password": "x"},
        "server": {"allow_plaintext": True},
        "store": store,
    }
    with pytest.raises(ConfigError, match=message):
        from_dict(data, base_dir=tmp_path)


def test_recovery_defaults_and_values(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, MINIMAL))
    assert (cfg.recovery.enabled, cfg.recovery.folder, cfg.recovery.visible_name) == (
        False,
        "imapgate-recovery",
        "Recovered",
    )
    assert cfg.recovery.retention == 30 * 86400.0
    extra = '[recovery]\nenabled = true\nfolder = "Kept"\nvisible_name = "Papierkorb"\nretention = "90d"\n'
    cfg = load(write(tmp_path, MINIMAL + extra))
    got = (cfg.recovery.enabled, cfg.recovery.folder, cfg.recovery.visible_name)
    assert got == (True, "Kept", "Papierkorb")
    assert cfg.recovery.retention == 90 * 86400.0
    # The effective configuration loads again with the same values.
    again = tomllib.loads(effective_toml(cfg))["recovery"]
    assert again["retention"] == 90 * 86400.0 and again["folder"] == "Kept"


@pytest.mark.parametrize(
    ("recovery", "message"),
    [
        ('retention = "10s"', "[recovery] retention must be between"),
        ('retention = "soon"', "is not a duration"),
        ('folder = "INBOX"', "[recovery] folder must be a top-level folder name other than INBOX"),
        ('visible_name = "Team/Recovered"', "[recovery] visible_name must be a top-level folder name"),
        ('folder = ".hidden"', "not starting with '.'"),
        ('folder = "Same"\nvisible_name = "Same"', "[recovery] folder and visible_name must differ"),
        ("typo = 1", "unknown key [recovery] typo"),
    ],
)
def test_invalid_recovery(tmp_path: Path, recovery: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(write(tmp_path, MINIMAL + "[recovery]\n" + recovery + "\n"))
