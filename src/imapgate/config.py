"""Configuration: one TOML file, validated into typed settings.

The file is named by ``--config FILE`` or the ``IMAPGATE_CONFIG`` environment
variable (for every subcommand).  Every key is documented in
``docs/configuration.md``; an unknown key or a wrong type is an error that
names the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TlsMode = Literal["none", "starttls", "implicit"]
IndexMode = Literal["auto", "on", "off"]
SeenMode = Literal["private", "shared"]

ENV_VAR = "IMAPGATE_CONFIG"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class UpstreamConfig:
    host: str
    port: int = 993
    tls: TlsMode = "implicit"
    user: str = ""
    password: str = field(default="", repr=False)
    #: Hosters cap connections per account (often 10-20): stay well below.
    max_connections: int = 4
    #: Seconds between safety-net checks of every folder (NOTIFY/IDLE miss nothing
    #: in theory; a periodic check catches servers that do).
    poll_interval: float = 60.0
    #: Verify the upstream certificate (turn off only for a test server).
    verify_certificate: bool = True


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[str, ...] = ("127.0.0.1:1143",)
    tls_listen: tuple[str, ...] = ()
    certificate: Path | None = None
    private_key: Path | None = None
    #: Allow LOGIN/AUTHENTICATE without TLS.  Off by default: passwords would
    #: cross the network in clear text (RFC 9051 §11.1, LOGINDISABLED).
    allow_plaintext: bool = False
    #: Failed logins per user or address in one window before throttling.
    max_failed_logins: int = 5
    #: Seconds a verified login (name + password) is remembered, so a client's
    #: next login needs no argon2 check; 0 turns the cache off.
    login_cache_ttl: float = 3600.0
    #: Seconds an idle, non-IDLE connection may stay open (RFC 9051 §5.4: >= 30 min).
    idle_timeout: float = 30 * 60


@dataclass(frozen=True)
class StoreConfig:
    data_dir: Path
    url: str
    #: Upper bound for the content cache (message bodies, headers, structures).
    cache_max_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class FoldersConfig:
    #: Read state (\\Seen) default: each user has their own, or one for all.
    default_seen: SeenMode = "private"
    #: Flags kept per user; others are shared by the team and live upstream.
    private_flags: tuple[str, ...] = ("\\Seen",)
    #: Folders with their own read-state mode.
    seen: dict[str, SeenMode] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchConfig:
    #: Answer text searches (SUBJECT, FROM, BODY, TEXT, HEADER ...) from the local
    #: index: "auto" when the hoster is Dovecot (the index reproduces its search),
    #: "on" always, "off" never (every text search goes to the hoster).
    index: IndexMode = "auto"


@dataclass(frozen=True)
class Config:
    path: Path | None
    upstream: UpstreamConfig
    server: ServerConfig
    store: StoreConfig
    folders: FoldersConfig
    search: SearchConfig = field(default_factory=SearchConfig)


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The config file: the explicit argument, else ``$IMAPGATE_CONFIG``."""
    value = explicit or os.environ.get(ENV_VAR)
    if not value:
        raise ConfigError(f"no configuration file: pass --config FILE or set {ENV_VAR}")
    return Path(value)


def load(path: Path) -> Config:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, base_dir=path.parent.resolve(), path=path)


def from_dict(data: dict[str, Any], *, base_dir: Path, path: Path | None = None) -> Config:
    r = _Section(data, "")
    up = r.section("upstream", required=True)
    password = up.get_str("password", "")
    password_file = up.get_str("password_file", "")
    if password and password_file:
        raise ConfigError("[upstream] set password or password_file, not both")
    if password_file:
        pf = _resolve(base_dir, password_file)
        try:
            password = pf.read_text(encoding="utf-8").rstrip("\r\n")
            if pf.stat().st_mode & 0o077:
                warnings.warn(
                    f"[upstream] password_file {pf} is readable by others; use chmod 600",
                    stacklevel=2,
                )
        except OSError as exc:
            raise ConfigError(f"[upstream] password_file {pf}: {exc.strerror}") from None
    tls = up.choice("tls", ("none", "starttls", "implicit"), "implicit")
    upstream = UpstreamConfig(
        host=up.get_str("host", required=True),
        port=up.get_int("port", 993 if tls == "implicit" else 143, 1, 65535),
        tls=tls,  # type: ignore[arg-type]
        user=up.get_str("user", required=True),
        password=password,
        max_connections=up.get_int("max_connections", 4, 2, 100),
        poll_interval=up.get_float("poll_interval", 60.0, 1.0, 86400.0),
        verify_certificate=up.get_bool("verify_certificate", True),
    )
    up.done()

    sv = r.section("server")
    server = ServerConfig(
        listen=sv.addresses("listen", ("127.0.0.1:1143",)),
        tls_listen=sv.addresses("tls_listen", ()),
        certificate=_opt_path(base_dir, sv.get_str("certificate", "")),
        private_key=_opt_path(base_dir, sv.get_str("private_key", "")),
        allow_plaintext=sv.get_bool("allow_plaintext", False),
        max_failed_logins=sv.get_int("max_failed_logins", 5, 1, 1000),
        login_cache_ttl=sv.get_float("login_cache_ttl", 3600.0, 0.0, 86400.0),
        idle_timeout=sv.get_float("idle_timeout", 30 * 60.0, 60.0, 7 * 86400.0),
    )
    sv.done()
    if bool(server.certificate) != bool(server.private_key):
        raise ConfigError("[server] certificate and private_key go together: set both or neither")
    if server.tls_listen and not server.certificate:
        raise ConfigError("[server] tls_listen needs certificate and private_key")
    if not server.certificate and not server.allow_plaintext:
        raise ConfigError(
            "[server] no certificate/private_key and allow_plaintext = false: no client could ever "
            "log in. Configure a certificate (recommended) or, on a trusted network only, "
            "allow_plaintext = true"
        )
    if not server.listen and not server.tls_listen:
        raise ConfigError("[server] listen and tls_listen are both empty: nothing to serve")

    st = r.section("store")
    data_dir = _resolve(base_dir, st.get_str("data_dir", "imapgate-data"))
    url = st.get_str("url", "") or f"sqlite:///{data_dir / 'imapgate.sqlite3'}"
    store = StoreConfig(
        data_dir=data_dir,
        url=url,
        cache_max_bytes=st.get_int("cache_max_bytes", 1024**3, 0, 1 << 50),
    )
    st.done()

    fo = r.section("folders")
    seen_modes: dict[str, SeenMode] = {}
    for name, mode in fo.table("seen").items():
        if mode == "private":
            seen_modes[name] = "private"
        elif mode == "shared":
            seen_modes[name] = "shared"
        else:
            raise ConfigError(f'[folders.seen] {name!r}: expected "private" or "shared", got {mode!r}')
    folders = FoldersConfig(
        default_seen=fo.choice("default_seen", ("private", "shared"), "private"),  # type: ignore[arg-type]
        private_flags=tuple(fo.get_str_list("private_flags", ["\\Seen"])),
        seen=seen_modes,
    )
    fo.done()
    se = r.section("search")
    search = SearchConfig(index=se.choice("index", ("auto", "on", "off"), "auto"))  # type: ignore[arg-type]
    se.done()
    r.done()
    return Config(path=path, upstream=upstream, server=server, store=store, folders=folders, search=search)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _opt_path(base: Path, value: str) -> Path | None:
    return _resolve(base, value) if value else None


class _Section:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, data: dict[str, Any], name: str) -> None:
        self.data = data
        self.name = name
        self.seen: set[str] = set()

    def _where(self, key: str) -> str:
        return f"[{self.name}] {key}" if self.name else key

    def _get(self, key: str, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(f"{self._where(key)} is required")
            return None
        return self.data[key]

    def section(self, key: str, required: bool = False) -> _Section:
        value = self._get(key, required)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table")
        return _Section(value, f"{self.name}.{key}" if self.name else key)

    def table(self, key: str) -> dict[str, str]:
        value = self._get(key, False) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{self._where(key)} must be a table of strings")
        return value

    def get_str(self, key: str, default: str = "", required: bool = False) -> str:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ConfigError(f"{self._where(key)} must be a string")
        return value

    def get_str_list(self, key: str, default: list[str]) -> list[str]:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self._where(key)} must be a list of strings")
        return value

    def addresses(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f'{self._where(key)} must be a list of "host:port" strings')
        for v in value:
            parse_address(v, self._where(key))
        return tuple(value)

    def get_int(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._where(key)} must be an integer")
        if not lo <= value <= hi:
            raise ConfigError(f"{self._where(key)} must be between {lo} and {hi}, got {value}")
        return value

    def get_float(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self._where(key)} must be a number")
        if not lo <= value <= hi:
            raise ConfigError(f"{self._where(key)} must be between {lo} and {hi}, got {value}")
        return float(value)

    def get_bool(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{self._where(key)} must be true or false")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.get_str(key, default)
        if value not in options:
            raise ConfigError(f"{self._where(key)} must be one of {', '.join(options)}; got {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(self._where(k) for k in unknown)}")


def parse_address(value: str, where: str = "address") -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` into (host, port); port 0 picks a free port (tests)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f'{where}: {value!r} is not "host:port"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)
