"""Configuration: one TOML file, validated into typed settings.

The file is named by ``--config FILE`` or the ``IMAPGATE_CONFIG`` environment
variable (for every subcommand).  Every key is documented in
``docs/configuration.md``; an unknown key or a wrong type is an error that
names the key, so a typo never silently falls back to a default.  Unknown keys
and sections are reported before anything else (a misspelt ``hots`` is named,
not a missing ``host``), with the closest known name.

Problems that do not stop the gateway (a password file others can read) are
collected in ``Config.warnings`` for the caller to show.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import os
import re
import stat
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from .errors import EXIT_CONFIG, OperatorError
from .team.acl import DEFAULT_RIGHTS_TEXT as DEFAULT_ACL_RIGHTS
from .team.acl import AclError
from .team.acl import rights as acl_rights

TlsMode = Literal["none", "starttls", "implicit"]
IndexMode = Literal["auto", "on", "off"]
SeenMode = Literal["private", "shared"]
WebTls = Literal["auto", "off"]

ENV_VAR = "IMAPGATE_CONFIG"

#: Flags kept per user by default: \\Seen (personal read state) and the keywords
#: real clients set as a per-user "I have seen this" mark -- mutt/neomutt's
#: ``Old`` (seen in the index, not yet read).  Team-relevant keywords
#: ($Forwarded, $MDNSent, Junk/NonJunk, $Junk/$NotJunk, $Label1-5,
#: $MailFlagBit0-2) stay shared; the reasons are in docs/clients.md.
DEFAULT_PRIVATE_FLAGS = ("\\Seen", "Old")


class ConfigError(OperatorError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = EXIT_CONFIG


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
    #: Seconds for the TCP/TLS connection, the greeting and the login together.
    connect_timeout: float = 10.0
    #: Seconds an upstream command may go without the hoster sending or taking a
    #: byte before the hoster counts as not answering (the clock restarts with
    #: every byte, so a long FETCH or a big APPEND is never cut off while it moves).
    command_timeout: float = 20.0
    #: A pooled connection unused for this many seconds gets a NOOP (answered within
    #: PROBE_TIMEOUT or the hoster counts as down); 0 turns the probes off.
    probe_interval: float = 10.0
    #: Where ``password`` was read from (None: inline in the file).
    password_file: Path | None = None


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
    #: Every connection starts with a PROXY protocol header (v1 or v2) from a load balancer.
    proxy_protocol: bool = False


@dataclass(frozen=True)
class StoreConfig:
    data_dir: Path
    #: The database URL, with the password of ``password_file`` filled in (never logged:
    #: ``store.engine.safe_url``; hidden from repr).
    url: str = field(repr=False)
    #: Upper bound for the content cache (message bodies, headers, structures).
    cache_max_bytes: int = 1024 * 1024 * 1024
    #: Where the database password was read from (None: in ``url`` or none).
    password_file: Path | None = None


@dataclass(frozen=True)
class FoldersConfig:
    #: Read state (\\Seen) default: each user has their own, or one for all.
    default_seen: SeenMode = "private"
    #: Flags kept per user; others are shared by the team and live upstream.
    private_flags: tuple[str, ...] = DEFAULT_PRIVATE_FLAGS
    #: Folders with their own read-state mode.
    seen: dict[str, SeenMode] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmissionUpstreamConfig:
    """The hoster's SMTP submission server, where the gateway relays team members' mail."""

    host: str
    port: int = 587
    tls: TlsMode = "starttls"
    user: str = ""
    password: str = field(default="", repr=False)
    verify_certificate: bool = True
    #: Where ``password`` was read from (None: inline, or the [upstream] one).
    password_file: Path | None = None


@dataclass(frozen=True)
class SubmissionConfig:
    """``[submission]``: the SMTP submission server with the double-reply guard (off when absent)."""

    upstream: SubmissionUpstreamConfig
    #: STARTTLS listeners (port 587 in production).
    listen: tuple[str, ...] = ("127.0.0.1:1587",)
    #: Implicit-TLS listeners (port 465, RFC 8314).
    tls_listen: tuple[str, ...] = ()
    #: AUTH without TLS (only for localhost or tests): passwords would cross in clear.
    allow_plaintext: bool = False
    #: Addresses team members may send as (From header and envelope sender), lower case.
    allowed_from: tuple[str, ...] = ()
    #: Seconds in which sending a refused reply again sends it anyway.
    override_window: float = 600.0
    #: IANA time zone of the times in refusal texts; None = the machine's local time.
    time_zone: str | None = None


@dataclass(frozen=True)
class WebConfig:
    """The web dashboard, its JSON API and the operations endpoints (off while
    ``listen`` is empty)."""

    listen: tuple[str, ...] = ()
    #: TLS certificate and key of the web listener; unset: the ``[server]`` ones.
    certificate: Path | None = None
    private_key: Path | None = None
    #: ``auto``: HTTPS whenever a certificate is known (its own or ``[server]``'s),
    #: plain HTTP on loopback addresses otherwise; ``off``: plain HTTP (behind a
    #: reverse proxy that terminates TLS).
    tls: WebTls = "auto"
    #: Addresses (or networks, ``10.0.0.0/8``) of reverse proxies whose
    #: X-Forwarded-For / X-Forwarded-Proto headers are believed.
    trusted_proxies: tuple[str, ...] = ()
    #: Host name mail clients should use (autoconfiguration); empty: the name
    #: the request came to, without an ``autoconfig.``/``autodiscover.`` prefix.
    public_host: str = ""
    #: Seconds a dashboard login stays valid without a request (an open Live
    #: page keeps it alive).
    session_idle_timeout: float = 2 * 3600.0
    #: Seconds a dashboard login stays valid at most, however active.
    session_lifetime: float = 12 * 3600.0
    #: Show which team members have read a message ("read by": the folder page, the
    #: API's ``read_by`` and the read entries of a message's history); false hides it.
    show_read_by: bool = True


@dataclass(frozen=True)
class SearchConfig:
    #: Answer text searches (SUBJECT, FROM, BODY, TEXT, HEADER ...) from the local
    #: index: "auto" when the hoster is Dovecot (the index reproduces its search),
    #: "on" always, "off" never (every text search goes to the hoster).
    index: IndexMode = "auto"


@dataclass(frozen=True)
class AclConfig:
    #: RFC 4314 rights every team member has on a folder without an ACL of its
    #: own (docs/permissions.md); "" gives them none (only admins then).  Kept
    #: as the model writes it back (``c``/``d`` spelt out as ``kx``/``te``).
    default: str = DEFAULT_ACL_RIGHTS


#: Longest ``[claims] expire_after``: a claim is "I'm handling this now"; beyond a
#: month it is a forgotten claim that blocks colleagues, and an admin's job.
MAX_CLAIM_SECONDS = 31 * 86400.0


@dataclass(frozen=True)
class ClaimsConfig:
    #: Seconds after which a claim ends by itself; 0: never (docs/claims.md).
    expire_after: float = 86400.0
    #: Folders that mean "done": a claimed message moved there is released.
    release_on_move_to: tuple[str, ...] = ()
    #: A member's draft replying to a message (APPEND to Drafts with
    #: In-Reply-To) claims that message for them.
    claim_on_draft: bool = False
    #: The read-only virtual folder listing a member's own open claims (for
    #: clients that show no keywords), e.g. "Claimed by me"; "" (default): none.
    folder_name: str = ""


#: Longest ``[recovery] retention``: ten years; beyond that, turn recovery off and
#: keep backups (the hoster's space holds every kept copy until then).
MAX_RECOVERY_RETENTION = 3650 * 86400.0
#: Shortest retention: a minute, so a purge never races the copy it follows.
MIN_RECOVERY_RETENTION = 60.0


@dataclass(frozen=True)
class RecoveryConfig:
    #: Keep a copy of every message removed through the gateway (docs/recovery.md).
    #: Off by default: the copies take space at the hoster, which the admin decides.
    enabled: bool = False
    #: The hidden upstream folder holding the copies (never listed to clients).
    folder: str = "imapgate-recovery"
    #: The read-only virtual folder listing what a member may restore.
    visible_name: str = "Recovered"
    #: How long a copy is kept (seconds); expired copies are purged upstream.
    retention: float = 30 * 86400.0


@dataclass(frozen=True)
class AuditConfig:
    #: How long journal entries are kept (docs/audit.md); older ones are purged by
    #: the gateway every ``gateway/audit_retention.PURGE_INTERVAL``.
    retention: float = 365 * 86400.0


@dataclass(frozen=True)
class Config:
    path: Path | None
    upstream: UpstreamConfig
    server: ServerConfig
    store: StoreConfig
    folders: FoldersConfig
    web: WebConfig = field(default_factory=WebConfig)
    #: Problems worth telling the operator that do not stop the gateway.
    warnings: tuple[str, ...] = ()
    #: None: no SMTP submission server.
    submission: SubmissionConfig | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    acl: AclConfig = field(default_factory=AclConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    claims: ClaimsConfig = field(default_factory=ClaimsConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)


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
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied (run as the gateway's user?)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return from_dict(data, base_dir=path.parent.resolve(), path=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


#: The sections of the file and the dataclass whose fields are its keys.  Keys
#: come from the fields, so a new setting is known as soon as it has a field.
SECTIONS: dict[str, type] = {
    "upstream": UpstreamConfig,
    "server": ServerConfig,
    "store": StoreConfig,
    "folders": FoldersConfig,
    "submission": SubmissionConfig,
    "web": WebConfig,
    "search": SearchConfig,
    "acl": AclConfig,
    "audit": AuditConfig,
    "claims": ClaimsConfig,
    "recovery": RecoveryConfig,
}
#: Tables inside a section whose keys are free (folder names).
_FREE_TABLES = {("folders", "seen")}
#: Tables inside a section whose keys are the fields of another dataclass.
_NESTED: dict[tuple[str, str], type] = {("submission", "upstream"): SubmissionUpstreamConfig}


def known_keys(section: str) -> list[str]:
    names = [f.name for f in dataclasses.fields(SECTIONS[section])]
    # A password may also come from a file: password_file is a key wherever password is.
    return [*names, "password_file"] if "password" in names and "password_file" not in names else names


def _nested_keys(kind: type) -> list[str]:
    names = [f.name for f in dataclasses.fields(kind)]
    return [*names, "password_file"] if "password" in names and "password_file" not in names else names


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else ""


def check_names(data: dict[str, Any]) -> None:
    """Unknown sections and keys, named with a suggestion, before any value is read."""
    problems: list[str] = []
    sections = list(SECTIONS)
    for top, value in data.items():
        if top in SECTIONS:
            if not isinstance(value, dict):
                problems.append(f"{top} must be a section: [{top}]")
                continue
            keys = known_keys(top)
            for key in value:
                if (top, key) in _FREE_TABLES:
                    continue
                nested = _NESTED.get((top, key))
                if nested is not None and isinstance(value[key], dict):
                    inner = _nested_keys(nested)
                    for sub in value[key]:
                        if sub not in inner:
                            hint = _did_you_mean(sub, inner)
                            problems.append(
                                f"unknown key [{top}.{key}] {sub}"
                                + (f" (did you mean {hint}?)" if hint else f" (known: {', '.join(inner)})")
                            )
                    continue
                if key in keys:
                    continue
                hint = _did_you_mean(key, keys)
                if hint:
                    problems.append(f"unknown key [{top}] {key} (did you mean {hint}?)")
                    continue
                home = [s for s in sections if s != top and key in known_keys(s)]
                if home:
                    problems.append(f"unknown key [{top}] {key} (it belongs in [{home[0]}])")
                else:
                    problems.append(f"unknown key [{top}] {key} (known: {', '.join(keys)})")
        elif isinstance(value, dict):
            hint = _did_you_mean(top, sections)
            problems.append(
                f"unknown section [{top}]"
                + (f" (did you mean [{hint}]?)" if hint else f" (known: {', '.join(sections)})")
            )
        else:
            home = [s for s in sections if top in known_keys(s)]
            where = f"it belongs in [{home[0]}]" if home else "keys go into a section such as [upstream]"
            problems.append(f"unknown key {top} above every section ({where})")
    if problems:
        raise ConfigError("; ".join(problems))


def from_dict(data: dict[str, Any], *, base_dir: Path, path: Path | None = None) -> Config:
    check_names(data)
    warnings: list[str] = []
    r = _Section(data, "")
    up = r.section("upstream", required=True)
    password, pf = _password(up, base_dir, warnings)
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
        connect_timeout=up.get_float("connect_timeout", 10.0, 1.0, 300.0),
        command_timeout=up.get_float("command_timeout", 20.0, 1.0, 3600.0),
        probe_interval=up.get_float("probe_interval", 10.0, 0.0, 3600.0),
        password_file=pf,
    )
    up.done()
    if not upstream.host.strip():
        raise ConfigError("[upstream] host is empty")

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
        proxy_protocol=sv.get_bool("proxy_protocol", False),
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
    db_password, db_password_file = _store_password(st, base_dir, warnings)
    store = StoreConfig(
        data_dir=data_dir,
        url=_store_url(url, db_password, db_password_file),
        cache_max_bytes=st.get_int("cache_max_bytes", 1024**3, 0, 1 << 50),
        password_file=db_password_file,
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
        private_flags=tuple(fo.get_str_list("private_flags", list(DEFAULT_PRIVATE_FLAGS))),
        seen=seen_modes,
    )
    fo.done()
    submission = _submission(r, base_dir, upstream, server, warnings) if "submission" in data else None
    web = _web_section(r.section("web"), base_dir, server)
    se = r.section("search")
    search = SearchConfig(index=se.choice("index", ("auto", "on", "off"), "auto"))  # type: ignore[arg-type]
    se.done()
    acl = _acl_section(r.section("acl"))
    au = r.section("audit")
    # At least a day: the journal answers "who did this yesterday"; at most ten years.
    audit = AuditConfig(retention=au.duration("retention", 365 * 86400.0, 86400.0, 3650 * 86400.0))
    au.done()
    claims = _claims_section(r.section("claims"))
    recovery = _recovery_section(r.section("recovery"))
    r.done()
    return Config(
        path=path,
        upstream=upstream,
        server=server,
        store=store,
        folders=folders,
        submission=submission,
        web=web,
        search=search,
        acl=acl,
        audit=audit,
        claims=claims,
        recovery=recovery,
        warnings=tuple(warnings),
    )


def _acl_section(section: _Section) -> AclConfig:
    text = section.get_str("default", DEFAULT_ACL_RIGHTS)
    try:
        default = acl_rights(text)
    except AclError as exc:
        raise ConfigError(f"[acl] default: {exc}") from None
    section.done()
    return AclConfig(default=str(default))


def _store_password(section: _Section, base_dir: Path, warnings: list[str]) -> tuple[str, Path | None]:
    """The database password of ``[store] password_file`` (the URL holds none then)."""
    if not section.get_str("password_file", ""):
        return "", None
    return _password(section, base_dir, warnings)


def _store_url(url: str, password: str, password_file: Path | None) -> str:
    """``url`` checked for its scheme, with the password of ``password_file`` put in."""
    scheme = url.partition(":")[0].lower()
    if scheme.partition("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            f'[store] url: unsupported database {scheme!r}: use "sqlite:///PATH" or '
            '"postgresql://USER@HOST:PORT/DATABASE"'
        )
    if password_file is None:
        return url
    if scheme.startswith("sqlite"):
        raise ConfigError("[store] password_file is for a PostgreSQL url; SQLite has no password")
    if _URL_PASSWORD_RE.search(url):
        raise ConfigError("[store] url has a password and password_file is set: keep only one")
    if not re.match(r"^[^:]+://[^/@]+@", url):
        raise ConfigError("[store] password_file needs the user in url: postgresql://USER@HOST/DATABASE")
    # The password goes in percent-encoded: a '@' or '/' in it must not change the URL.
    return re.sub(
        r"^([^:]+://)([^/@]*)@", lambda m: f"{m[1]}{m[2]}:{quote(password, safe='')}@", url, count=1
    )


def _claims_section(section: _Section) -> ClaimsConfig:
    claims = ClaimsConfig(
        # 0 is allowed (never); anything else between one second and the named limit.
        expire_after=section.duration("expire_after", 86400.0, 0.0, MAX_CLAIM_SECONDS),
        release_on_move_to=tuple(section.get_str_list("release_on_move_to", [])),
        claim_on_draft=section.get_bool("claim_on_draft", False),
        folder_name=section.get_str("folder_name", "").strip(),
    )
    section.done()
    name = claims.folder_name
    if name and (name.upper() == "INBOX" or "/" in name or name.startswith(".")):
        raise ConfigError(
            f"[claims] folder_name must be a top-level folder name other than INBOX "
            f"(no '/', not starting with '.'), got {name!r}"
        )
    return claims


def _recovery_section(section: _Section) -> RecoveryConfig:
    default = RecoveryConfig()
    cfg = RecoveryConfig(
        enabled=section.get_bool("enabled", default.enabled),
        folder=section.get_str("folder", default.folder).strip(),
        visible_name=section.get_str("visible_name", default.visible_name).strip(),
        retention=section.duration(
            "retention", default.retention, MIN_RECOVERY_RETENTION, MAX_RECOVERY_RETENTION
        ),
    )
    section.done()
    for key, name in (("folder", cfg.folder), ("visible_name", cfg.visible_name)):
        if not name or name.upper() == "INBOX" or "/" in name or "." in name[:1]:
            raise ConfigError(
                f"[recovery] {key} must be a top-level folder name other than INBOX "
                f"(no '/', not starting with '.'), got {name!r}"
            )
    if cfg.folder == cfg.visible_name:
        raise ConfigError("[recovery] folder and visible_name must differ (one is hidden, one is listed)")
    return cfg


def _password(section: _Section, base_dir: Path, warnings: list[str]) -> tuple[str, Path | None]:
    """``password`` or the content of ``password_file`` ("" when neither is set), and
    the file it came from.  A file other users can open is a warning."""
    where = f"[{section.name}]"
    password = section.get_str("password", "")
    password_file = section.get_str("password_file", "")
    if password and password_file:
        raise ConfigError(f"{where} set password or password_file, not both")
    if not password_file:
        return password, None
    pf = _resolve(base_dir, password_file)
    try:
        password = pf.read_text(encoding="utf-8").rstrip("\r\n")
        file_mode = stat.S_IMODE(pf.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"{where} password_file {pf}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} password_file {pf}: not UTF-8 text") from None
    # Group read is fine (root:imapgate 0640); anything for others, or group
    # write, is not.
    if file_mode & 0o027:
        warnings.append(
            f"{where} password_file {pf} is open to other users (mode {file_mode:04o}): chmod 600 {pf}"
        )
    return password, pf


def _submission(
    root: _Section,
    base_dir: Path,
    imap_upstream: UpstreamConfig,
    server: ServerConfig,
    warnings: list[str],
) -> SubmissionConfig:
    sm = root.section("submission")
    su = sm.section("upstream", required=True)
    tls = su.choice("tls", ("none", "starttls", "implicit"), "starttls")
    own_user = su.get_str("user", "")
    own_password, own_password_file = _password(su, base_dir, warnings)
    # Credentials as in [upstream] unless given here: most hosters use the same
    # account for IMAP and SMTP.
    user = own_user or imap_upstream.user
    password = own_password or (imap_upstream.password if not own_user else "")
    hoster = SubmissionUpstreamConfig(
        host=su.get_str("host", required=True),
        port=su.get_int("port", 465 if tls == "implicit" else 587, 1, 65535),
        tls=tls,  # type: ignore[arg-type]
        user=user,
        password=password,
        verify_certificate=su.get_bool("verify_certificate", True),
        password_file=own_password_file,
    )
    su.done()
    allowed = [a.strip().lower() for a in sm.get_str_list("allowed_from", [])]
    if not allowed:
        if "@" not in user:
            raise ConfigError(
                f"[submission] allowed_from is required: the upstream user {user!r} is not a mail "
                "address (list the addresses team members may send as)"
            )
        allowed = [user.lower()]
    for address in allowed:
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or any(c.isspace() or c in "<>" for c in address):
            raise ConfigError(f"[submission] allowed_from: {address!r} is not a mail address")
    zone = sm.get_str("time_zone", "") or None
    if zone is not None:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f'[submission] time_zone: {zone!r} is not a known time zone (e.g. "Europe/Berlin")'
            ) from None
    config = SubmissionConfig(
        upstream=hoster,
        listen=sm.addresses("listen", ("127.0.0.1:1587",)),
        tls_listen=sm.addresses("tls_listen", ()),
        allow_plaintext=sm.get_bool("allow_plaintext", False),
        allowed_from=tuple(dict.fromkeys(allowed)),
        override_window=sm.duration("override_window", 600.0, 10.0, 86400.0),
        time_zone=zone,
    )
    sm.done()
    if not config.listen and not config.tls_listen:
        raise ConfigError("[submission] listen and tls_listen are both empty: nothing to serve")
    if not server.certificate:
        if config.tls_listen:
            raise ConfigError("[submission] tls_listen needs [server] certificate and private_key")
        if not config.allow_plaintext:
            raise ConfigError(
                "[submission] no [server] certificate/private_key and allow_plaintext = false: no "
                "client could ever log in. Configure a certificate or, on a trusted network only, "
                "allow_plaintext = true"
            )
    return config


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)\Z")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | int | float, where: str = "duration") -> float:
    """``"90s"``, ``"10m"``, ``"8h"``, ``"2d"`` or a number of seconds, into seconds."""
    if isinstance(value, bool):
        raise ConfigError(f'{where} must be a duration like "90s", "10m", "8h" or "2d"')
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise ConfigError(f'{where}: {value!r} is not a duration like "90s", "10m", "8h" or "2d"')
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _web_section(we: _Section, base_dir: Path, server: ServerConfig) -> WebConfig:
    own_cert = _opt_path(base_dir, we.get_str("certificate", ""))
    own_key = _opt_path(base_dir, we.get_str("private_key", ""))
    if bool(own_cert) != bool(own_key):
        raise ConfigError("[web] certificate and private_key go together: set both or neither")
    proxies = tuple(we.get_str_list("trusted_proxies", []))
    for entry in proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"[web] trusted_proxies: {entry!r} is not an IP address or network "
                "(e.g. 127.0.0.1, 10.0.0.0/8)"
            ) from None
    web = WebConfig(
        listen=we.addresses("listen", ()),
        certificate=own_cert or server.certificate,
        private_key=own_key or server.private_key,
        tls=we.choice("tls", ("auto", "off"), "auto"),  # type: ignore[arg-type]
        trusted_proxies=proxies,
        public_host=we.get_str("public_host", "").strip(),
        session_idle_timeout=we.get_float("session_idle_timeout", 2 * 3600.0, 60.0, 30 * 86400.0),
        session_lifetime=we.get_float("session_lifetime", 12 * 3600.0, 60.0, 365 * 86400.0),
        show_read_by=we.get_bool("show_read_by", True),
    )
    we.done()
    if web.session_idle_timeout > web.session_lifetime:
        raise ConfigError("[web] session_idle_timeout is longer than session_lifetime")
    if web.tls == "auto" and web.certificate is None:
        for addr in web.listen:
            host, _ = parse_address(addr, "[web] listen")
            if not _is_loopback(host):
                raise ConfigError(
                    f"[web] listen {addr!r} without a certificate: passwords would cross the network "
                    "in clear text. Set [web] certificate/private_key (or [server]'s), or "
                    'tls = "off" behind a reverse proxy that terminates TLS'
                )
    return web


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        if required and key not in self.data:
            full = f"{self.name}.{key}" if self.name else key
            raise ConfigError(f"section [{full}] is missing (see docs/configuration.md)")
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

    def duration(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f'{self._where(key)} must be a duration like "90s", "10m", "8h" or "2d"')
        seconds = parse_duration(value, self._where(key))
        if not lo <= seconds <= hi:
            raise ConfigError(
                f"{self._where(key)} must be between {_seconds_text(lo)} and {_seconds_text(hi)}, "
                f"got {value!r}"
            )
        return seconds

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


def _seconds_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_address(value: str, where: str = "address") -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` into (host, port); port 0 picks a free port (tests)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f'{where}: {value!r} is not "host:port"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


# --- the effective configuration as TOML (``imapgate config``) ----------------------------

#: Fields never printed: their value is a secret.
_SECRET_FIELDS = {("upstream", "password"), ("submission.upstream", "password")}
_URL_PASSWORD_RE = re.compile(r"(//[^/:@]*):[^/@]*@")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def effective_toml(cfg: Config) -> str:
    """Every setting with defaults filled in, as TOML that loads again; secrets
    (the upstream passwords, a password in the store URL) are left out."""
    lines = [
        f"# effective configuration of {cfg.path or '(no file)'}",
        "# (defaults filled in, secrets hidden)",
    ]
    for name in SECTIONS:
        section = getattr(cfg, name)
        if section is None:
            lines += ["", f"# [{name}] (not configured)"]
            continue
        _render_section(lines, name, section)
    return "\n".join(lines) + "\n"


def _render_section(lines: list[str], name: str, section: Any) -> None:
    lines += ["", f"[{name}]"]
    tables: list[tuple[str, dict[str, Any]]] = []
    nested: list[tuple[str, Any]] = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if (name, f.name) in _SECRET_FIELDS:
            if getattr(section, "password_file", None) is None:
                state = "set inline" if value else "empty"
                lines.append(f"# {f.name} = (hidden; {state})")
            continue
        if dataclasses.is_dataclass(value):
            nested.append((f.name, value))
            continue
        if isinstance(value, dict):
            tables.append((f.name, value))
            continue
        if value is None:
            lines.append(f"# {f.name} = (not set)")
            continue
        if name == "store" and f.name == "url":
            # From password_file: left out, so the output loads again with that file.
            hidden = r"\1@" if section.password_file is not None else r"\1:***@"
            value = _URL_PASSWORD_RE.sub(hidden, value)
        lines.append(f"{f.name} = {_toml_value(value)}")
    for tname, table in tables:
        lines += ["", f"[{name}.{tname}]"]
        lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in table.items()]
    for sub, value in nested:
        _render_section(lines, f"{name}.{sub}", value)
