"""A private, throw-away Dovecot 2.3 instance: the "hoster" upstream for the demo and the tests.

:class:`DovecotServer` writes a self-contained Dovecot configuration into a directory of its own
(its own ``base_dir``, ``state_dir``, ``instance_name`` and log), starts ``dovecot -F`` on an
unprivileged 127.0.0.1 port, and stops it again with ``doveadm stop``.  Several instances can run
side by side.  Mail is stored in Maildir++ owned by a ``vmail`` system user (created when
missing), because Dovecot refuses to access mail as root.

:meth:`DovecotServer.populate` writes Maildir files directly (with a ``dovecot-uidlist`` so UIDs
follow the given order, and a ``dovecot-keywords`` file for keywords): 100,000 small messages load
in a few seconds, far faster than IMAP APPEND or ``doveadm save``.

This module is part of the standalone demo/test helper layer: it imports nothing else from
imapgate.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from .sample_mail import SampleMessage

__all__ = [
    "DEFAULT_SPECIAL_USE",
    "DovecotError",
    "DovecotServer",
    "ensure_vmail_user",
    "find_free_port",
    "mutf7_encode",
]

VMAIL_USER = "vmail"

#: Special-use attributes (RFC 6154) Dovecot announces for these top-level folders.
DEFAULT_SPECIAL_USE: dict[str, str] = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Archive": "\\Archive",
    "Junk": "\\Junk",
}

# Maildir info letters for the system flags (Maildir spec: must be in ASCII order in the name).
_FLAG_LETTERS: dict[str, str] = {
    "\\draft": "D",
    "\\flagged": "F",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}

# RFC 4314 identifiers that name no user; Dovecot's ACL files spell them the same way.
_ACL_SPECIAL_IDS = ("anyone", "authenticated", "owner")

# Unix socket paths are limited to 108 bytes; Dovecot's deepest socket under base_dir adds ~30.
_MAX_BASE_DIR_LEN = 70


class DovecotError(RuntimeError):
    """Dovecot failed to start, stop or run a doveadm command."""


#: Where ``find_free_port`` looks first: below the kernel's ephemeral range.
_PRIVATE_PORTS_FROM = 10_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now, outside the kernel's ephemeral range.

    A port the kernel picks (``bind`` to 0) comes from that range, which every outgoing
    connection on the machine draws its source port from: between the pick and the server's
    ``bind`` another connection may take it (the server then fails to start, or -- with
    ``SO_REUSEADDR``, as Dovecot binds -- shares the number with an unrelated socket, which a
    test counting a server's connections by port then counts too).  Below the range no
    outgoing connection ever gets it."""
    low, _high = _ephemeral_range()
    if low > _PRIVATE_PORTS_FROM + 1000:
        rng = random.SystemRandom()
        for _ in range(100):
            port = rng.randrange(_PRIVATE_PORTS_FROM, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue  # in use: another
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        picked: int = sock.getsockname()[1]
        return picked


def mutf7_encode(name: str) -> str:
    """Encode a mailbox name in IMAP modified UTF-7 (RFC 3501 §5.1.3).

    A local copy on purpose: the demo layer must not depend on imapgate's own codec, which the
    tests use it to check.
    """
    import base64

    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def ensure_vmail_user(name: str = VMAIL_USER) -> tuple[int, int]:
    """Return (uid, gid) of the mail-owning system user, creating it (``useradd --system``) if needed."""
    try:
        entry = pwd.getpwnam(name)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise DovecotError(f"system user {name!r} is missing and only root can create it")
    # Another test process may create it at the same moment: ignore useradd's failure and re-check.
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=False,
        capture_output=True,
    )
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise DovecotError(f"could not create system user {name!r}") from exc
    return entry.pw_uid, entry.pw_gid


def _traversable_by_others(path: Path) -> bool:
    """True if every directory from / down to ``path`` has the "others" search (x) bit."""
    return all(directory.stat().st_mode & 0o001 for directory in [path, *path.parents])


class DovecotServer:
    """A private Dovecot instance listening on ``127.0.0.1:port`` without TLS.

    ``directory`` receives dovecot.conf and the logs.  ``users`` maps login name to password;
    every user gets the ``vmail`` uid and a home ``<runtime_dir>/home/<user>`` with Maildir++ at
    ``~/Maildir`` (hierarchy separator ``/``).  ``runtime_dir`` is ``directory`` itself when that
    is reachable by unprivileged users, else a fresh ``/tmp/imapgate-dovecot-*`` (symlinked as
    ``directory/runtime``, deleted by :meth:`close`).
    ``max_userip_connections`` defaults to 10, as at typical hosters; raise it for load tests.
    ``enable_acl`` loads the ``acl``/``imap_acl`` plugins (vfile backend; owners keep all rights).

    Opt-in extras for the peer tests (all off by default; the configuration is then unchanged):

    * ``mail_of`` maps a login to the user whose home (and so Maildir) it opens: several logins
      on one mailbox, e.g. ``{"alice": "shared"}`` -- with ``enable_acl`` and :meth:`set_acl` a
      test gives each of them the rights the gateway would, and compares.  Such a login sees the
      mailbox as a *public* namespace (prefix ``""``; NAMESPACE ``NIL NIL (("" "/"))``): no owner,
      so its rights are exactly the entries matching it (``user=``, ``anyone``, ``authenticated``,
      negative ``-``), RFC 4314 style, and a folder without an ACL file is invisible to it (but
      for INBOX: Dovecot always lists it, yet SELECT and MYRIGHTS say it does not exist); the
      mailbox's real user keeps the owner's implicit full rights unless an entry names it.  Quota
      rules do not apply to such logins (public namespace).  ACL files are re-read after at most
      ``acl_cache_secs`` (default 1 s when ``mail_of`` is set, else Dovecot's 30 s);
    * ``quota_rules`` maps a login to a Dovecot ``quota_rule`` (``"*:storage=64K"``,
      ``"*:messages=5"``): loads ``quota``/``imap_quota`` (count backend); APPEND, COPY and LMTP
      deliveries over it are refused (``NO [OVERQUOTA]``, LMTP ``552 5.2.2``);
    * ``enable_lmtp`` adds LMTP on ``127.0.0.1:lmtp_port`` (a free port unless given; package
      ``dovecot-lmtpd``) for deliveries by a test Postfix; ``user@domain`` recipients are looked up
      as ``user``;
    * ``auth_penalty=False`` turns off Dovecot's growing per-IP delay after failed logins (2, 4,
      8, 15 s; all test clients come from 127.0.0.1, so one test's wrong password would slow down
      every later login to a shared instance); the first failure is still answered after 2 s;
    * ``auth_listener`` adds an auth socket at :attr:`auth_socket_path` (mode 0666: it lives in the
      private runtime dir) for ``smtpd_sasl_type = dovecot`` of a test Postfix.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        max_userip_connections: int = 10,
        enable_acl: bool = False,
        special_use: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        mail_of: Mapping[str, str] | None = None,
        acl_cache_secs: int | None = None,
        quota_rules: Mapping[str, str] | None = None,
        enable_lmtp: bool = False,
        lmtp_port: int | None = None,
        auth_listener: bool = False,
        postmaster_address: str = "postmaster@example.test",
        auth_penalty: bool = True,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port if port is not None else find_free_port(host)
        self.users: dict[str, str] = dict(users if users is not None else {"shared": "shared-secret"})
        self.max_userip_connections = max_userip_connections
        self.enable_acl = enable_acl
        self.mail_of: dict[str, str] = dict(mail_of or {})
        self.acl_cache_secs = acl_cache_secs if acl_cache_secs is not None else (1 if self.mail_of else None)
        self.quota_rules: dict[str, str] | None = dict(quota_rules) if quota_rules is not None else None
        self.enable_lmtp = enable_lmtp or lmtp_port is not None
        self.lmtp_port: int | None = (
            (lmtp_port if lmtp_port is not None else find_free_port(host)) if self.enable_lmtp else None
        )
        self.auth_listener = auth_listener
        self.postmaster_address = postmaster_address
        self.auth_penalty = auth_penalty
        self.special_use: dict[str, str] = dict(
            special_use if special_use is not None else DEFAULT_SPECIAL_USE
        )
        self.config_path = self.directory / "dovecot.conf"
        self.log_path = self.directory / "dovecot.log"
        # Dovecot's unprivileged processes must reach some files: imap-login (dovenull) and imap
        # (vmail) the sockets in base_dir, auth (dovecot) the passwd-file, imap the mail.  pytest's
        # temp dirs are 0700 root -- and a concurrent pytest run resets them to 0700 -- so such
        # files live in a world-traversable (not listable) runtime dir of their own unless
        # ``directory`` already is one.  Short path too: unix socket paths max out at 108 bytes.
        self._own_runtime = not (
            _traversable_by_others(self.directory) and len(str(self.directory / "run")) <= _MAX_BASE_DIR_LEN
        )
        if self._own_runtime:
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="imapgate-dovecot-", dir="/tmp"))
            os.chmod(self.runtime_dir, 0o711)
            link = self.directory / "runtime"
            if link.is_symlink():
                link.unlink()
            link.symlink_to(self.runtime_dir)
        else:
            self.runtime_dir = self.directory
        self.base_dir = self.runtime_dir / "run"
        self.state_dir = self.runtime_dir / "state"
        self.passwd_path = self.runtime_dir / "users.passwd"
        self.home_root = self.runtime_dir / "home"
        #: The auth socket for a test Postfix (``smtpd_sasl_path``), when ``auth_listener`` is set.
        self.auth_socket_path = self.base_dir / "auth-smtp"
        digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:10]
        self.instance_name = f"imapgate-{digest}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._uid, self._gid = ensure_vmail_user()
        self._pending_subscriptions: dict[str, list[str]] = {}
        self._prepare()

    # ----------------------------------------------------------------- configuration

    def _prepare(self) -> None:
        for path in (self.state_dir, self.home_root, self.base_dir):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        os.chown(self.home_root, self._uid, self._gid)
        os.chmod(self.home_root, 0o755)
        self._write_passwd()
        self.config_path.write_text(self.render_config(), encoding="utf-8")

    def _write_passwd(self) -> None:
        lines = []
        for user, password in self.users.items():
            if any(ch in user + password for ch in ":\n"):
                raise ValueError(f"user {user!r} or its password contains ':' or a newline")
            home_user = self.mail_of.get(user, user)
            home = self.home_root / home_user
            # The last passwd-file field: space-separated userdb extra fields (colons allowed).
            extra = []
            if home_user != user:
                # A public namespace has no owner: the login's rights are exactly its ACL entries
                # (RFC 4314), never the private-namespace owner's implicit full rights.
                extra.append("userdb_namespace/inbox/type=public")
            if self.quota_rules is not None and user in self.quota_rules:
                rule = self.quota_rules[user]
                if any(ch.isspace() for ch in rule):
                    raise ValueError(f"quota rule {rule!r} of {user!r} contains white space")
                extra.append(f"userdb_quota_rule={rule}")
            lines.append(f"{user}:{{PLAIN}}{password}:{self._uid}:{self._gid}::{home}::{' '.join(extra)}\n")
            self._ensure_home(home_user)
        tmp = self.passwd_path.with_suffix(".tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        # Read by the auth process, which runs as the ``dovecot`` user.
        os.chown(tmp, 0, grp.getgrnam("dovecot").gr_gid)
        os.chmod(tmp, 0o640)
        # Atomic replace: Dovecot re-reads the file when it changes, never half-written.
        os.replace(tmp, self.passwd_path)

    def _ensure_home(self, user: str) -> None:
        home = self.home_root / user
        maildir = home / "Maildir"
        for path in (home, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            if not path.exists():
                path.mkdir(mode=0o700)
                os.chown(path, self._uid, self._gid)

    def render_config(self) -> str:
        """Return the dovecot.conf text for this instance (each ``{`` body on its own lines)."""
        mailboxes = []
        for name, attr in self.special_use.items():
            mailboxes.append(
                f"  mailbox {_quote(name)} {{\n    special_use = {attr}\n    auto = subscribe\n  }}\n"
            )
        plugins = (["acl"] if self.enable_acl else []) + (["quota"] if self.quota_rules is not None else [])
        imap_only = ["imap_" + name for name in plugins]
        mail_plugins = " ".join(["$mail_plugins", *plugins])
        imap_plugins = " ".join(["$mail_plugins", *imap_only])
        plugin_settings = []
        if self.enable_acl:
            if self.acl_cache_secs is not None:
                plugin_settings.append(f"acl = vfile:cache_secs={self.acl_cache_secs}")
            else:
                plugin_settings.append("acl = vfile")
        if self.quota_rules is not None:
            # The count backend (quota from the mailbox indexes) needs virtual sizes.
            plugin_settings += ["quota = count:User quota", "quota_vsizes = yes"]
        acl_plugin = (
            "plugin {\n" + "".join(f"  {line}\n" for line in plugin_settings) + "}\n"
            if plugin_settings
            else ""
        )
        protocols = "imap lmtp" if self.enable_lmtp else "imap"
        # Without the penalty socket anvil keeps no per-IP failure count (auth-penalty docs).
        anvil_extra = (
            "" if self.auth_penalty else ("  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n")
        )
        extras = ""
        if self.enable_lmtp:
            extras += (
                "protocol lmtp {\n"
                f"  postmaster_address = {self.postmaster_address}\n"
                # Postfix passes RCPT TO:<customer@example.test>; the passwd-file has "customer".
                "  auth_username_format = %Ln\n"
                "}\n"
                "service lmtp {\n"
                "  inet_listener lmtp {\n"
                f"    address = {self.host}\n"
                f"    port = {self.lmtp_port}\n"
                "  }\n"
                "}\n"
            )
        if self.auth_listener:
            extras += (
                "service auth {\n"
                f"  unix_listener {self.auth_socket_path.name} {{\n"
                # Postfix's smtpd runs as the postfix user; the socket sits in the private base_dir.
                "    mode = 0666\n"
                "  }\n"
                "}\n"
            )
        return (
            "# Generated by imapgate.demo.dovecot — a private test/demo instance.\n"
            f"instance_name = {self.instance_name}\n"
            f"base_dir = {self.base_dir}\n"
            f"state_dir = {self.state_dir}\n"
            f"log_path = {self.log_path}\n"
            f"info_log_path = {self.log_path}\n"
            f"protocols = {protocols}\n"
            f"listen = {self.host}\n"
            "ssl = no\n"
            "disable_plaintext_auth = no\n"
            "auth_mechanisms = plain login\n"
            f"first_valid_uid = {self._uid}\n"
            f"first_valid_gid = {self._gid}\n"
            "mail_location = maildir:~/Maildir\n"
            "mailbox_list_index = yes\n"
            f"mail_plugins = {mail_plugins}\n"
            # Shared test machines: avoid fsync cost, the data is disposable.
            "mail_fsync = never\n"
            "passdb {\n"
            "  driver = passwd-file\n"
            f"  args = scheme=PLAIN username_format=%u {self.passwd_path}\n"
            "}\n"
            "userdb {\n"
            "  driver = passwd-file\n"
            f"  args = username_format=%u {self.passwd_path}\n"
            "}\n"
            "namespace inbox {\n"
            "  inbox = yes\n"
            "  separator = /\n" + "".join(mailboxes) + "}\n"
            "protocol imap {\n"
            f"  mail_max_userip_connections = {self.max_userip_connections}\n"
            f"  mail_plugins = {imap_plugins}\n"
            "}\n" + acl_plugin + "service imap-login {\n"
            "  chroot =\n"
            "  inet_listener imap {\n"
            f"    address = {self.host}\n"
            f"    port = {self.port}\n"
            "  }\n"
            "  inet_listener imaps {\n"
            "    port = 0\n"
            "  }\n"
            "}\n"
            "service anvil {\n"
            "  chroot =\n" + anvil_extra + "}\n" + extras
        )

    def add_user(self, user: str, password: str) -> None:
        """Add (or change) a login; a running Dovecot picks up the new passwd-file by itself."""
        self.users[user] = password
        self._write_passwd()

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 15.0) -> None:
        """Start Dovecot and wait until the port answers with an ``* OK`` greeting."""
        if self.running:
            return
        dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not Path(dovecot).exists():
            raise DovecotError("dovecot binary not found (apt-get install -y dovecot-imapd)")
        self.config_path.write_text(self.render_config(), encoding="utf-8")
        # Check the port first: the greeting probe below would otherwise happily talk to whatever
        # server already listens there while our Dovecot dies on "Address already in use".
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise DovecotError(f"dovecot cannot listen on {self.host}:{self.port}: {exc}") from exc
        with open(self.directory / "dovecot.stderr", "ab") as err:
            # -F: stay in the foreground so we own the master process; own session so that a
            # last-resort kill reaches every child Dovecot spawned.
            self._proc = subprocess.Popen(
                [dovecot, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DovecotError(
                    f"dovecot exited with status {self._proc.returncode} during start\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    greeting = sock.recv(512)
                if greeting.startswith(b"* OK") and self._proc.poll() is None:
                    break
                last_error = f"unexpected greeting {greeting!r}"
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.05)
        else:
            self._kill()
            raise DovecotError(
                f"dovecot did not greet on {self.host}:{self.port}: {last_error}\n{self.log_tail()}"
            )
        self._apply_pending_subscriptions()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Dovecot (``doveadm stop``) and make sure no process of this instance is left."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            # doveadm stop polls kill(pid, 0) until the master is gone; the master is our child, so
            # it stays a zombie (and doveadm waits its full timeout) until we reap it concurrently.
            stopper = subprocess.Popen(
                [_doveadm_binary(), "-c", str(self.config_path), "stop"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=timeout)
            try:
                stopper.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stopper.kill()
                stopper.wait()
        self._kill()
        self._proc = None

    def _kill(self) -> None:
        """SIGKILL whatever is still alive in the instance's session and reap the master."""
        if self._proc is None:
            return
        deadline = time.monotonic() + 5.0
        while self.processes() and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5.0)

    def processes(self) -> list[int]:
        """PIDs still alive in this instance's session (master and the children it spawned)."""
        if self._proc is None:
            return []
        return _session_pids(self._proc.pid)

    def close(self) -> None:
        """Stop, and delete the private runtime dir (mail included) if one was made under /tmp."""
        self.stop()
        if self._own_runtime:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the Dovecot log and stderr, for error messages."""
        parts = []
        for path in (self.log_path, self.directory / "dovecot.stderr"):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name}:\n" + "\n".join(text))
        return "\n".join(parts) or "(no log output)"

    def doveadm(self, *args: str, check: bool = True) -> str:
        """Run ``doveadm -c CONF ARGS...`` and return its stdout.

        Mail commands (``mailbox``, ``fetch``, ``index``, ... with ``-u USER`` right after the
        sub-command) need the instance running: userdb lookups go through its auth socket.
        """
        cmd = [_doveadm_binary(), "-c", str(self.config_path), *args]
        result = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise DovecotError(
                f"{' '.join(cmd)} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout.decode("utf-8", errors="replace")

    def connection_info(self) -> dict[str, object]:
        """Host, port and users, e.g. for printing in ``imapgate demo``."""
        return {"host": self.host, "port": self.port, "users": dict(self.users)}

    # ----------------------------------------------------------------- mail

    def maildir_root(self, user: str) -> Path:
        return self.home_root / self.mail_of.get(user, user) / "Maildir"

    def folder_path(self, user: str, folder: str) -> Path:
        """The Maildir directory of ``folder`` (``/``-separated IMAP name) for ``user``.

        Maildir++ layout: INBOX is the root, other folders are ``.A.B`` with each part in modified
        UTF-7, as Dovecot stores them.
        """
        root = self.maildir_root(user)
        if folder.upper() == "INBOX":
            return root
        parts = folder.split("/")
        if any(not part or "." in part for part in parts):
            raise ValueError(f"folder name {folder!r} cannot be stored in Maildir++ (empty part or '.')")
        return root / ("." + ".".join(mutf7_encode(part) for part in parts))

    def populate(
        self,
        user: str,
        folders: Mapping[str, Sequence[SampleMessage]],
        *,
        subscribe: bool = True,
    ) -> None:
        """Write ``folders`` (name -> messages, in UID order) straight into the user's Maildir.

        Intended for folders that no IMAP session has open yet (normally before :meth:`start`);
        messages are appended after any already present.  Subscriptions are made through doveadm
        once the instance runs.
        """
        if user not in self.users:
            raise KeyError(f"unknown user {user!r}")
        self._ensure_home(user)
        pid = os.getpid()
        seq = 0
        for folder, messages in folders.items():
            path = self._ensure_folder(user, folder)
            keywords = _read_keywords(path)
            uidvalidity, next_uid, uid_lines = _read_uidlist(path)
            new_lines: list[str] = []
            cur = path / "cur"
            for message in messages:
                seq += 1
                ts = message.internal_date.timestamp()
                letters = []
                for flag in message.flags:
                    letter = _FLAG_LETTERS.get(flag.lower())
                    if letter is not None:
                        letters.append(letter)
                    elif not flag.startswith("\\"):
                        if flag not in keywords:
                            if len(keywords) >= 26:
                                raise ValueError("Maildir supports at most 26 keywords per folder")
                            keywords.append(flag)
                        letters.append(chr(ord("a") + keywords.index(flag)))
                size = len(message.raw)
                base = f"{int(ts)}.M{seq}P{pid}Q{next_uid}.imapgate,S={size},W={size}"
                file_path = cur / f"{base}:2,{''.join(sorted(set(letters)))}"
                fd = os.open(file_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, message.raw)
                    os.fchown(fd, self._uid, self._gid)
                    # Dovecot takes the Maildir INTERNALDATE from the file's mtime.
                    os.utime(fd, (ts, ts))
                finally:
                    os.close(fd)
                new_lines.append(f"{next_uid} :{base}\n")
                next_uid += 1
            _write_owned(
                path / "dovecot-uidlist",
                f"3 V{uidvalidity} N{next_uid}\n" + "".join(uid_lines + new_lines),
                self._uid,
                self._gid,
            )
            if keywords:
                _write_owned(
                    path / "dovecot-keywords",
                    "".join(f"{i} {kw}\n" for i, kw in enumerate(keywords)),
                    self._uid,
                    self._gid,
                )
            if folder.upper() != "INBOX":
                self._pending_subscriptions.setdefault(user, []).append(folder)
        if not subscribe:
            self._pending_subscriptions.pop(user, None)
        if self.running:
            self._apply_pending_subscriptions()

    def _ensure_folder(self, user: str, folder: str) -> Path:
        path = self.folder_path(user, folder)
        for sub in (path, path / "cur", path / "new", path / "tmp"):
            if not sub.exists():
                sub.mkdir(mode=0o700)
                os.chown(sub, self._uid, self._gid)
        if path != self.maildir_root(user):
            marker = path / "maildirfolder"
            if not marker.exists():
                _write_owned(marker, "", self._uid, self._gid)
        return path

    def _apply_pending_subscriptions(self) -> None:
        for user, folders in list(self._pending_subscriptions.items()):
            if folders:
                self.doveadm("mailbox", "subscribe", "-u", user, *dict.fromkeys(folders))
            del self._pending_subscriptions[user]

    def set_acl(self, user: str, folder: str, entries: Mapping[str, str]) -> None:
        """Write ``folder``'s ``dovecot-acl`` file (vfile backend) in ``user``'s Maildir.

        ``entries`` maps an RFC 4314 identifier as IMAP spells it -- ``alice``, ``anyone``,
        ``authenticated``, ``owner``, ``$group``; a leading ``-`` for negative rights -- to its
        rights (``"lr"``), so the same table can be given to the gateway; Dovecot's file spelling
        (``user=alice``, ``group=NAME``) is accepted too.  The file replaces any earlier one (also
        one written by SETACL); ``owner`` is the mailbox's real user.  Creates the folder (an
        empty Maildir) if it does not exist yet.  Needs ``enable_acl``.
        """
        if not self.enable_acl:
            raise DovecotError("set_acl needs enable_acl=True")
        lines = []
        for identifier, rights in entries.items():
            negative = identifier.startswith("-")
            bare = identifier.removeprefix("-")
            # The file takes RFC 4314 rights only; MYRIGHTS' obsolete "c"/"d" (RFC 2086) are
            # derived from k/x and e/t by Dovecot itself and are an "Unknown ACL" in the file.
            if not bare or any(ch.isspace() for ch in identifier) or not set(rights) <= set("lrwstipekxa"):
                raise ValueError(f"bad ACL entry {identifier!r}: {rights!r} (rights: lrwstipekxa)")
            if bare.startswith("$"):
                bare = "group=" + bare[1:]
            elif bare not in _ACL_SPECIAL_IDS and not bare.startswith(("user=", "group=")):
                bare = "user=" + bare
            lines.append(f"{'-' if negative else ''}{bare} {rights}\n")
        path = self._ensure_folder(user, folder)
        _write_owned(path / "dovecot-acl", "".join(lines), self._uid, self._gid)

    def index(self, user: str, folder: str = "*") -> None:
        """Build Dovecot's indexes now (``doveadm index``) so a huge folder's first SELECT is quick."""
        self.doveadm("index", "-u", user, folder)


def _quote(name: str) -> str:
    return f'"{name}"' if any(ch in name for ch in ' "{}') else name


def _doveadm_binary() -> str:
    return shutil.which("doveadm") or "/usr/bin/doveadm"


def _read_keywords(path: Path) -> list[str]:
    keywords_file = path / "dovecot-keywords"
    if not keywords_file.exists():
        return []
    names: dict[int, str] = {}
    for line in keywords_file.read_text(encoding="utf-8").splitlines():
        index, _, name = line.partition(" ")
        if index.isdigit() and name:
            names[int(index)] = name
    return [names[i] for i in sorted(names)]


def _read_uidlist(path: Path) -> tuple[int, int, list[str]]:
    """Return (uidvalidity, next uid, existing entry lines) of a Maildir's dovecot-uidlist."""
    uidlist = path / "dovecot-uidlist"
    if not uidlist.exists():
        # Distinct per folder and per run, like Dovecot's own time-based choice.
        return int(time.time()) + (hash(str(path)) & 0xFFFF), 1, []
    lines = uidlist.read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[0].split()
    fields = {item[0]: item[1:] for item in header[1:] if item}
    return int(fields["V"]), int(fields["N"]), lines[1:]


def _write_owned(path: Path, text: str, uid: int, gid: int) -> None:
    tmp = path.with_name(path.name + ".imapgate-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chown(tmp, uid, gid)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # Field 6 is the session id; the comm field (2) may contain spaces, so split after ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != b"Z":
            pids.append(int(entry.name))
    return pids
