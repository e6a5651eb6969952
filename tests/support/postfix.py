"""A private Postfix instance: the hoster's submission server for the reply-guard tests.

:class:`PostfixServer` writes its own ``main.cf``/``master.cf`` into a temp dir, with its own
queue and data directories, and runs ``postfix -c DIR start-fg`` (the master in the foreground,
our child).  It listens on a kernel-chosen port of 127.0.0.1 only, with

* STARTTLS (a test certificate, :mod:`tests.support.tls`) -- required before AUTH and MAIL;
  and implicit TLS ("submissions", RFC 8314, as on port 465) on :attr:`PostfixServer.smtps_port`;
* SASL AUTH (PLAIN, LOGIN) checked by the test Dovecot through its auth socket
  (``smtpd_sasl_type = dovecot``; :class:`DovecotServer` with ``auth_listener=True``);
* mail only from authenticated clients (``smtpd_relay_restrictions``), to any domain;
* ``message_size_limit`` (over it: ``552 5.3.4 Message size exceeds fixed limit``, at MAIL
  FROM with SIZE= or at the end of DATA);
* recipients it refuses at RCPT TO (``rejected_recipients``, default ``nobody@example.test``:
  ``550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual
  mailbox table``);
* delivery of everything accepted to the test Dovecot by LMTP (``enable_lmtp=True``;
  ``customer@any.domain`` lands in the INBOX of Dovecot user ``customer``).

:func:`wait_for_delivery` and :func:`count_deliveries` look for a Message-ID in a Dovecot user's
INBOX (its Maildir files; no IMAP login, so no connection slot of the user is used).

TESTING-notes (what bites):

* ``apt-get install postfix`` asks which configuration to write; preseed ``postfix/
  main_mailer_type`` = "No configuration" (scripts/setup-env.sh): then there is no
  /etc/postfix/main.cf and the packaged service cannot start, which is what we want.
* ``postfix -c DIR`` needs the whole set of directory parameters in DIR/main.cf (``meta_directory
  = /etc/postfix`` for ``postfix-files``/``postfix-script``, daemon/command/shlib dirs); the first
  start runs ``postfix check``/``post-install``, which creates the queue sub-directories owned by
  ``postfix`` and ``postdrop``.  queue_directory and its parents must be owned by root and not
  writable by others: the instance dir is a 0711 root dir under /tmp, not pytest's tmp_path.
* Debian's master.cf chroots the daemons into /var/spool/postfix: ours runs nothing chrooted, so
  smtpd reaches the Dovecot auth socket by its absolute path and needs no copies of /etc files.
* ``start-fg`` keeps the master in the foreground (``master -s``; ``-i`` is for PID 1 only)
  behind ``postfix-script`` -- but the master still calls setsid(), so killing our child's
  session misses it: stop reads ``queue/pid/master.pid`` and ends the master's own session
  (SIGTERM, the master ends its children; ``postfix stop`` would poll in one-second sleeps).
  The master refuses to start while another master holds the instance's ``pid/master.pid`` lock.
* Every Postfix program waits (300 ms steps, ~2.4 s) while main.cf's mtime is within the last
  couple of seconds (an editor may still be writing it): the fixture dates its files back.
* Logging: ``maillog_file`` (postlogd) only writes under ``maillog_file_prefixes`` (default /var
  and /dev/stdout): set to the instance dir.
* Nothing needs DNS: ``smtp_dns_support_level = disabled``, ``smtpd_peername_lookup = no``, the
  LMTP next hop is ``inet:127.0.0.1:PORT``.  Deferred mail is retried within a second or two
  (``queue_run_delay``/backoff times), not Postfix's 5 to 67 minutes.
* The TLS key may stay 0600 root: smtpd reads it before dropping to the ``postfix`` user.
* Readiness: the smtpd port answers ``220`` (polled; the master binds it before it forks smtpd).
* :meth:`PostfixServer.reconfigure` rewrites main.cf and runs ``postfix reload``; smtpd processes
  of the old configuration may still answer a moment, so it waits until the EHLO ``SIZE`` shows
  the new ``message_size_limit``.

By hand, for debugging (starts Dovecot with LMTP and auth socket, then Postfix)::

    .venv/bin/python -m tests.support.postfix
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import grp
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from imapgate.demo import DovecotServer, find_free_port

from .processes import kill_session, port_is_free
from .tls import TestCertificate, make_certificate

__all__ = [
    "DEFAULT_REJECTED",
    "PostfixError",
    "PostfixServer",
    "count_deliveries",
    "inbox_messages",
    "postfix_available",
    "wait_for_delivery",
]

POSTFIX = "/usr/sbin/postfix"
DOMAIN = "example.test"
#: Recipient -> the SMTP reply Postfix gives at RCPT TO.
DEFAULT_REJECTED: dict[str, str] = {
    # Postfix puts "<address>: Recipient address rejected: " before the text, as for a real
    # unknown virtual mailbox.
    f"nobody@{DOMAIN}": "550 5.1.1 User unknown in virtual mailbox table",
}


_QUEUE_DIRS = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
               "private", "saved", "trace")


class PostfixError(RuntimeError):
    """The test Postfix failed to start or stop."""


def postfix_available() -> bool:
    return Path(POSTFIX).exists() and Path("/usr/lib/postfix/sbin/master").exists()


class PostfixServer:
    """A private Postfix submission server in front of ``dovecot`` (LMTP + SASL).

    ``dovecot`` must have been made with ``enable_lmtp=True`` and ``auth_listener=True``;
    ``require_tls`` (default) makes STARTTLS mandatory before AUTH and MAIL, as at hosters.
    ``main_cf`` adds or overrides main.cf parameters.
    """

    def __init__(
        self,
        dovecot: DovecotServer,
        *,
        port: int | None = None,
        message_size_limit: int = 10_240_000,
        rejected_recipients: Mapping[str, str] | None = None,
        require_tls: bool = True,
        certificate: TestCertificate | None = None,
        main_cf: Mapping[str, str] | None = None,
    ) -> None:
        if not postfix_available():
            raise PostfixError("postfix is not installed (apt-get install -y postfix; scripts/setup-env.sh)")
        if dovecot.lmtp_port is None or not dovecot.auth_listener:
            raise PostfixError("the Dovecot needs enable_lmtp=True and auth_listener=True")
        self.dovecot = dovecot
        self.host = "127.0.0.1"
        self._own_port = port is None
        self.port = port if port is not None else find_free_port(self.host)
        self.smtps_port = find_free_port(self.host)
        self.message_size_limit = message_size_limit
        self.rejected_recipients = dict(
            DEFAULT_REJECTED if rejected_recipients is None else rejected_recipients)
        self.require_tls = require_tls
        self.extra_main_cf = dict(main_cf or {})
        # Root-owned and not writable by others (postfix check insists), traversable for postfix.
        self.root = Path(tempfile.mkdtemp(prefix="imapgate-postfix-", dir="/tmp"))
        os.chmod(self.root, 0o711)
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postfix.log"
        for path in (self.config_dir, self.queue_dir):
            path.mkdir(mode=0o755)
        self._make_queue_dirs()
        self.certificate = certificate or make_certificate(self.root / "tls")
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    # ----------------------------------------------------------------- configuration

    def _make_queue_dirs(self) -> None:
        """The queue and data directories as /etc/postfix/postfix-files wants them: made here, the
        first ``postfix check`` has nothing to create (2.3 s less at start)."""
        postfix = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop").gr_gid
        layout = {name: (postfix.pw_uid, 0, 0o700) for name in _QUEUE_DIRS}
        layout["maildrop"] = (postfix.pw_uid, postdrop, 0o730)
        layout["public"] = (postfix.pw_uid, postdrop, 0o710)
        layout["pid"] = (0, 0, 0o755)
        for name, (uid, gid, mode) in layout.items():
            path = self.queue_dir / name
            path.mkdir()
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        self.data_dir.mkdir()
        os.chown(self.data_dir, postfix.pw_uid, 0)
        os.chmod(self.data_dir, 0o700)

    def main_cf(self) -> dict[str, str]:
        params = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "meta_directory": "/etc/postfix",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "command_directory": "/usr/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.root),
            "syslog_name": f"postfix-{self.port}",
            "inet_interfaces": self.host,
            "inet_protocols": "ipv4",
            "myhostname": f"mail.{DOMAIN}",
            "mydomain": DOMAIN,
            "myorigin": DOMAIN,
            # Nothing is local: every recipient, whatever its domain, goes to Dovecot by LMTP.
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "mynetworks": "127.0.0.1/32",
            "default_transport": f"lmtp:inet:{self.dovecot.host}:{self.dovecot.lmtp_port}",
            "relay_transport": f"lmtp:inet:{self.dovecot.host}:{self.dovecot.lmtp_port}",
            "smtp_dns_support_level": "disabled",
            "lmtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "biff": "no",
            "append_dot_mydomain": "no",
            "message_size_limit": str(self.message_size_limit),
            "mailbox_size_limit": "0",
            # TLS (server side) and SASL through the test Dovecot.
            "smtpd_tls_cert_file": str(self.certificate.cert),
            "smtpd_tls_key_file": str(self.certificate.key),
            "smtpd_tls_security_level": "encrypt" if self.require_tls else "may",
            "smtpd_tls_auth_only": "yes" if self.require_tls else "no",
            "smtpd_tls_loglevel": "0",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": str(self.dovecot.auth_socket_path),
            "smtpd_sasl_authenticated_header": "no",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions": f"check_recipient_access texthash:{self.config_dir}/rejected",
            # Tests: retry deferred mail within seconds, not minutes; give up after a minute.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "maximal_queue_lifetime": "1m",
            "bounce_queue_lifetime": "1m",
            "smtpd_error_sleep_time": "0",
            "in_flow_delay": "0",
        }
        params.update(self.extra_main_cf)
        return params

    def master_cf(self) -> str:
        # Nothing chrooted (column 5 "n"); only the submission smtpd is on the network.
        services = [
            f"{self.host}:{self.port} inet n - n - - smtpd",
            f"{self.host}:{self.smtps_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        return "# Generated by tests/support/postfix.py\n" + "\n".join(services) + "\n"

    def _write_config(self) -> None:
        main = "".join(f"{key} = {value}\n" for key, value in self.main_cf().items())
        (self.config_dir / "main.cf").write_text("# Generated by tests/support/postfix.py\n" + main)
        (self.config_dir / "master.cf").write_text(self.master_cf())
        lines = []
        for address, reply in self.rejected_recipients.items():
            if any(ch.isspace() for ch in address) or not reply[:3].isdigit():
                raise ValueError(f"bad rejected recipient {address!r}: {reply!r} (want 'NNN text')")
            lines.append(f"{address} {reply}\n")
        (self.config_dir / "rejected").write_text("".join(lines))
        # Postfix waits (in 300 ms steps, ~2.4 s) until a config file is older than a moment, in
        # case an editor is still writing it: date them back.
        past = time.time() - 10
        for name in ("main.cf", "master.cf", "rejected"):
            os.utime(self.config_dir / name, (past, past))

    def reconfigure(self, *, message_size_limit: int | None = None, timeout: float = 15.0,
                    **main_cf: str) -> None:
        """Change main.cf parameters of the running instance (``postfix reload``) and wait until
        new connections see them (checked by the EHLO ``SIZE`` keyword)."""
        if message_size_limit is not None:
            self.message_size_limit = message_size_limit
        self.extra_main_cf.update(main_cf)
        self._write_config()
        self._postfix("reload")
        deadline = time.monotonic() + timeout
        while True:
            if self._ehlo_size() == self.message_size_limit:
                return
            if time.monotonic() > deadline:
                raise PostfixError(f"postfix reload not in effect after {timeout} s\n{self.log_tail()}")
            time.sleep(0.05)

    def _ehlo_size(self) -> int | None:
        with smtplib.SMTP(self.host, self.port, timeout=10) as client:
            client.ehlo("probe.example.test")
            size = client.esmtp_features.get("size")
        return int(size) if size else None

    def _postfix(self, *args: str, timeout: float = 60.0) -> str:
        result = subprocess.run([POSTFIX, "-c", str(self.config_dir), *args], capture_output=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise PostfixError(f"postfix {' '.join(args)} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace').strip()}\n{self.log_tail()}")
        return result.stdout.decode(errors="replace")

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the master and wait until the smtpd port greets with 220."""
        if self.running:
            return
        if not port_is_free(self.host, self.port):
            if not self._own_port:
                raise PostfixError(f"postfix cannot listen on {self.host}:{self.port}: port in use")
            self.port = find_free_port(self.host)
            self._write_config()
        if not port_is_free(self.host, self.smtps_port):
            self.smtps_port = find_free_port(self.host)
            self._write_config()
        with open(self.root / "postfix.stderr", "ab") as err:
            self._proc = subprocess.Popen([POSTFIX, "-c", str(self.config_dir), "start-fg"],
                                          stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                          start_new_session=True)
        deadline = time.monotonic() + timeout
        last = "no attempt"
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise PostfixError(f"postfix exited with status {self._proc.returncode} during start\n"
                                       f"{self.log_tail()}")
                try:
                    with socket.create_connection((self.host, self.port), timeout=2) as sock:
                        greeting = sock.recv(512)
                    if greeting.startswith(b"220"):
                        return
                    last = f"unexpected greeting {greeting!r}"
                except OSError as exc:
                    last = str(exc)
                time.sleep(0.02)
            raise PostfixError(f"postfix did not greet on {self.host}:{self.port}: {last}\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the master (it ends its children), SIGKILL after ``timeout``; no process of
        the instance is left afterwards."""
        if self._proc is None:
            return
        # The master makes itself a session leader (setsid): it is not in our child's session.
        master = self._master_pid()
        if master is not None:
            kill_session(master, grace=timeout)
        kill_session(self._proc.pid, grace=timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=timeout)
        self._proc = None

    def _master_pid(self) -> int | None:
        try:
            text = (self.queue_dir / "pid" / "master.pid").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.log_path, self.root / "postfix.stderr"):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name}:\n" + "\n".join(text))
        return "\n".join(parts) or "(no log output)"

    # ----------------------------------------------------------------- clients and queue

    def client(self, user: str | None = None, password: str | None = None, *,
               timeout: float = 30.0) -> smtplib.SMTP:
        """An smtplib client after EHLO and STARTTLS (certificate verified), logged in as ``user``
        (password from the Dovecot's users unless given) when a user is named."""
        client = smtplib.SMTP(self.host, self.port, timeout=timeout)
        try:
            client.ehlo("client.example.test")
            client.starttls(context=self.certificate.client_context())
            client.ehlo("client.example.test")
            if user is not None:
                client.login(user, password if password is not None else self.dovecot.users[user])
        except BaseException:
            client.close()
            raise
        return client

    def queued(self) -> int:
        """Messages in Postfix's queues now (received, waiting, being delivered or deferred)."""
        count = 0
        for name in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _dirpath, _dirs, files in os.walk(self.queue_dir / name):
                count += len(files)
        return count

    def wait_queue_empty(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                raise PostfixError(f"{self.queued()} message(s) still queued after {timeout} s\n"
                                   f"{self.log_tail()}")
            time.sleep(0.02)


# --------------------------------------------------------------------- deliveries at Dovecot

_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def inbox_messages(dovecot: DovecotServer, user: str) -> list[Path]:
    """The message files in ``user``'s INBOX (Maildir ``new`` and ``cur``)."""
    root = dovecot.maildir_root(user)
    files: list[Path] = []
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            files.extend(path for path in (root / sub).iterdir() if path.is_file())
    return files


def _message_id(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    except FileNotFoundError:  # moved from new/ to cur/ meanwhile
        return None
    value = _HEADERS.parsebytes(head + b"\n\n").get("Message-ID")
    return value.strip() if value else None


def count_deliveries(dovecot: DovecotServer, user: str, message_id: str) -> int:
    """How many copies of ``message_id`` (with its ``<>``) are in ``user``'s INBOX now."""
    return sum(1 for path in inbox_messages(dovecot, user) if _message_id(path) == message_id)


def wait_for_delivery(dovecot: DovecotServer, user: str, message_id: str, *, count: int = 1,
                      timeout: float = 20.0) -> None:
    """Wait until at least ``count`` copies of ``message_id`` are in ``user``'s INBOX."""
    deadline = time.monotonic() + timeout
    while True:
        found = count_deliveries(dovecot, user, message_id)
        if found >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message_id} delivered {found} time(s) to {user}'s INBOX, "
                                 f"wanted {count}, after {timeout} s\n{dovecot.log_tail(10)}")
        time.sleep(0.02)


def _main() -> None:
    from .peers import DOVECOT_USERS

    with tempfile.TemporaryDirectory(prefix="imapgate-postfix-debug-") as work, \
            DovecotServer(Path(work) / "dovecot", users=DOVECOT_USERS, enable_lmtp=True,
                          auth_listener=True) as dc, \
            PostfixServer(dc) as pf:
        print(f"Dovecot IMAP {dc.port}, LMTP {dc.lmtp_port}; Postfix submission {pf.host}:{pf.port} "
              f"(STARTTLS, AUTH as any of {', '.join(dc.users)})\n  logs: {pf.log_path}, {dc.log_path}\n"
              "Ctrl-C stops both.")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    _main()
