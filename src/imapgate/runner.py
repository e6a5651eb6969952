"""Running the gateway in the foreground: ``serve``, ``sync`` and ``demo``.

Kept apart from ``cli`` so the command line stays a thin layer of argument
handling, and so tests can drive the same code."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .config import Config, load
from .errors import OperatorError, bind_error
from .gateway.app import Gateway
from .logs import setup_logging
from .server.listener import ImapServer
from .server.tls import tls_context
from .store.lock import StoreLock
from .submission.server import SubmissionServer
from .sync.algorithms import SyncProgress

if TYPE_CHECKING:
    from .web.server import WebServer

__all__ = ["ProgressLog", "run_demo", "serve", "setup_logging"]

log = logging.getLogger("imapgate")


class ProgressLog:
    """Sync progress as log lines: one per mailbox finished, and every 10%
    of a long initial sync."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._reported: set[str] = set()

    def __call__(self, p: SyncProgress) -> None:
        if p.phase == "done":
            self._last.pop(p.mailbox, None)
            if p.mailbox not in self._reported:
                self._reported.add(p.mailbox)
                log.info("sync: %s up to date (%d messages)", p.mailbox, p.total)
            else:
                log.debug("sync: %s up to date (%d messages)", p.mailbox, p.total)
            return
        if p.total >= 5000:
            step = p.done * 10 // max(p.total, 1)
            if self._last.get(p.mailbox, -1) < step:
                self._last[p.mailbox] = step
                log.info("sync: %s %d/%d messages (%d%%)", p.mailbox, p.done, p.total, step * 10)


def _stop_event() -> asyncio.Event:
    """Set on SIGINT/SIGTERM (from the very start: a stop during a long initial
    sync ends it cleanly too)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _unless_stopped(stop: asyncio.Event, coro: asyncio.Future[None]) -> bool:
    """Wait for ``coro``; False (and ``coro`` cancelled) if a signal came first."""
    waiter: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        futures: set[asyncio.Future[Any]] = {coro, waiter}
        done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if coro in done:
        coro.result()
        return True
    coro.cancel()
    with contextlib.suppress(BaseException):
        await coro
    return False


async def serve(
    config: Config,
    *,
    ready: Callable[[ImapServer], None] | None = None,
    command: str = "imapgate serve",
) -> None:
    """Run the gateway until SIGINT/SIGTERM.

    Start-up order, so each mistake is found before it costs anything: the
    TLS certificate and key; the store lock (one writer per store); the
    store is opened and migrated; the listeners are bound (a busy or
    privileged port fails now, not after a long sync) but accept nobody yet;
    interrupted moves are settled and the initial sync runs (a refused
    upstream login, or an unreachable hoster with nothing to serve, ends the
    start: ``Gateway.start``); then clients are accepted.  Each failure is an
    ``OperatorError``."""
    stop = _stop_event()
    for warning in config.warnings:
        log.warning("%s", warning)
    tls = tls_context(config.server)
    web_tls = _web_tls(config, tls)
    with StoreLock(config.store.data_dir, command):
        gw = Gateway.build(config, progress=ProgressLog())
        server = ImapServer(gw, tls=tls)
        submission = SubmissionServer(gw, config.submission) if config.submission else None
        web = _web_server(gw, config, web_tls)
        try:
            await server.bind()
            if submission is not None:
                await submission.bind()
            if web is not None:
                web.bind()
            log.info(
                "upstream %s:%d as %s, at most %d connections",
                config.upstream.host,
                config.upstream.port,
                config.upstream.user,
                config.upstream.max_connections,
            )
            if not await _unless_stopped(stop, asyncio.ensure_future(gw.start())):
                log.info("stopped during start-up")
                return
            await server.start_serving()
            if submission is not None:
                await submission.start_serving()
            if web is not None:
                await web.start()
            log.info(
                "ready: %d folders, %d messages",
                len(gw.replica.names()),
                sum(mb.exists for mb in gw.replica.by_id.values()),
            )
            if ready is not None:
                ready(server)
            await stop.wait()
            log.info("shutting down")
        finally:
            if submission is not None:
                await submission.stop()
            if web is not None:
                await web.stop()
            await server.stop()
            await gw.stop()


# --- the web dashboard ([web] listen): built here, started after the IMAP listeners ----------


def _web_tls(config: Config, server_tls: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """The web listener's TLS context: the IMAP one when the files are the same."""
    web = config.web
    if not web.listen or web.tls == "off" or web.certificate is None:
        return None
    if (web.certificate, web.private_key) == (config.server.certificate, config.server.private_key):
        return server_tls
    try:
        own = dataclasses.replace(config.server, certificate=web.certificate, private_key=web.private_key)
        return tls_context(own)
    except OperatorError as exc:
        raise OperatorError(str(exc).replace("[server]", "[web]")) from None


def _web_server(gw: Gateway, config: Config, tls: ssl.SSLContext | None) -> WebServer | None:
    if not config.web.listen:
        return None
    from .web.server import WebServer

    return WebServer(gw, config, tls=tls)


# --- demo ----------------------------------------------------------------------------------

DEMO_USERS = ("alice", "bob", "carol")
#: The demo's folder permissions (docs/permissions.md's recipes): carol is the admin,
#: the invoices folder is for the accounting group only, the archive is read-only.
DEMO_ADMIN = "carol"
DEMO_GROUP = ("buchhaltung", ("alice", "carol"))
DEMO_ACL = (
    ("Rechnungen", "$buchhaltung", "lrswipkxte"),
    ("Rechnungen", "authenticated", ""),
    ("Archive", "authenticated", "lrs"),
)


def _demo_permissions(gw: Gateway) -> str:
    """Set the demo's permissions once (a kept store keeps what it has); what to print."""
    from .team.acl import rights as acl_rights
    from .team.acl_store import AclStore

    store = AclStore(gw.replica.engine)
    if not store.admins():
        store.set_admin(DEMO_ADMIN, True)
        group, members = DEMO_GROUP
        store.add_group(group)
        store.add_members(group, members)
        default = acl_rights(gw.config.acl.default)
        # Before the first sync (the replica is empty yet): the names are the
        # sample mailbox's, so they are not checked against the replica.
        for folder, identifier, granted in DEMO_ACL:
            store.set_entry(folder, identifier, granted, default=default)
    return (
        f"Permissions: {DEMO_ADMIN} is the admin; Rechnungen is for the group "
        f"${DEMO_GROUP[0]} ({', '.join(DEMO_GROUP[1])}) only, bob does not see it;\n"
        "Archive is read-only for everyone but the admin.\n"
    )


def _check_port_free(host: str, port: int) -> None:
    """Fail before anything is set up when the demo's port is taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            err = bind_error(f"{host}:{port}", exc)
            if exc.errno == errno.EADDRINUSE:
                err = OperatorError(f"{err} -- pick another with imapgate demo --port N")
            raise err from None


@dataclass
class _Created:
    """What the demo made (and removes at exit unless ``--keep``)."""

    paths: list[Path] = field(default_factory=list)

    def new(self, path: Path) -> Path:
        if not path.exists():
            self.paths.append(path)
        return path

    def remove(self) -> None:
        for path in reversed(self.paths):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


#: The demo's dashboard port when free (else any free port).
DEMO_WEB_PORT = 8080


def _demo_web_port() -> int:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", DEMO_WEB_PORT))
            return DEMO_WEB_PORT
        except OSError:
            from .demo.dovecot import find_free_port

            return find_free_port()


def _demo_store(base: Path, created: _Created, store_url: str | None) -> str:
    """The demo's ``[store]`` lines: SQLite in the data folder, or ``store_url`` (PostgreSQL,
    several nodes: issue 16) with its password moved into a file of its own."""
    if not store_url:
        return 'data_dir = "gateway"\n'
    scheme, _, rest = store_url.partition("://")
    user, at, host = rest.rpartition("@")
    name, _, password = user.partition(":")
    if not at or not password:
        return f'data_dir = "gateway"\nurl = "{store_url}"\n'
    pw = created.new(base / "store.password")
    pw.write_text(unquote(password) + "\n", encoding="utf-8")
    pw.chmod(0o600)
    return f'data_dir = "gateway"\nurl = "{scheme}://{name}@{host}"\npassword_file = "store.password"\n'


def _demo_config(
    base: Path, host_port: int, port: int, created: _Created, web_port: int, store_url: str | None = None
) -> Path:
    pw_file = created.new(base / "upstream.password")
    cfg = created.new(base / "imapgate.toml")
    # The hoster is new at every run, with a new password.
    pw_file.write_text(secrets.token_urlsafe(12) + "\n", encoding="utf-8")
    pw_file.chmod(0o600)
    cfg.write_text(
        f"""# Written by `imapgate demo`: the gateway in front of the demo's own "hoster".
# Try the admin commands against it:  export IMAPGATE_CONFIG={cfg}

[upstream]
host = "127.0.0.1"
port = {host_port}
tls = "none"                         # the demo hoster runs on this machine
user = "shared"
password_file = "upstream.password"

[server]
listen = ["127.0.0.1:{port}"]
allow_plaintext = true               # localhost only; configure a certificate in production

[store]
{_demo_store(base, created, store_url)}
[web]
listen = ["127.0.0.1:{web_port}"]      # the team dashboard (plain HTTP: localhost only)

[audit]
retention = "30d"                    # the audit journal (imapgate audit); 365d by default

[claims]                             # tag a mail $Claimed: colleagues cannot move or delete it
expire_after = "8h"                  # a working day
release_on_move_to = ["Archive"]     # moving it to Archive means "done"
claim_on_draft = true                # saving a reply draft claims the original
folder_name = "Claimed by me"        # for clients that show no tags (Outlook, K-9)

[recovery]
enabled = true                       # every delete recoverable: see the "Recovered" folder
retention = "7d"                     # the demo hoster is gone at exit anyway
""",
        encoding="utf-8",
    )
    return cfg


def run_demo(data_dir: Path | None, port: int, *, keep: bool = False, store_url: str | None = None) -> None:
    from .demo.sample_mail import generate_mailbox

    _check_port_free("127.0.0.1", port)
    created = _Created()
    if data_dir is None:
        base = Path(tempfile.mkdtemp(prefix="imapgate-demo-"))
        created.paths.append(base)
    else:
        base = created.new(data_dir.resolve())
        base.mkdir(parents=True, exist_ok=True)
    hoster: object = None
    try:
        hoster_dir = base / "hoster"
        # The hoster is always new (a kept gateway store then sees a rebuilt
        # mailbox and re-attaches everyone's read state by Message-ID).
        shutil.rmtree(hoster_dir, ignore_errors=True)
        use_dovecot = bool(shutil.which("dovecot")) and os.geteuid() == 0
        from .demo.dovecot import find_free_port

        host_port = find_free_port()
        web_port = _demo_web_port()
        cfg_path = _demo_config(base, host_port, port, created, web_port, store_url)
        config = load(cfg_path)
        upstream_password = config.upstream.password
        mailbox = generate_mailbox()
        total = sum(len(v) for v in mailbox.values())
        if use_dovecot:
            from .demo.dovecot import DovecotServer

            created.new(hoster_dir)
            dc = DovecotServer(hoster_dir, port=host_port, users={"shared": upstream_password})
            hoster = dc
            dc.populate("shared", mailbox)
            dc.start()
            kind = "Dovecot"
        else:
            from .demo.pymap_server import PymapServer

            pm = PymapServer(port=host_port, user="shared", password=upstream_password, demo_data=False)
            hoster = pm
            pm.start()
            pm.populate(mailbox)
            kind = "pymap (Dovecot not installed or not root)"
        created.new(config.store.data_dir)
        gw = Gateway.build(config)
        passwords: dict[str, str | None] = {}
        for name in DEMO_USERS:
            if gw.users.get(name) is None:
                pw = f"{name}-{secrets.token_hex(3)}"
                gw.users.add(name, pw)
                passwords[name] = pw
            else:
                passwords[name] = None
        acl_note = _demo_permissions(gw)
        gw.replica.engine.dispose()
        data_note = "kept at exit (--keep)" if keep else "removed at exit; --keep keeps it"

        def ready(server: ImapServer) -> None:
            host, bound, _ = server.addresses[0]
            logins = "\n".join(
                f"  {n:<6} password {p}" if p else f"  {n:<6} (password from an earlier run)"
                for n, p in passwords.items()
            )
            print(
                f"""
imapgate demo is running.

  The "hoster": {kind} on 127.0.0.1:{host_port}, one shared account with {total} sample mails
  The gateway:  IMAP on {host}:{bound} (plain IMAP, localhost only)
  Dashboard:    http://127.0.0.1:{web_port}/  (log in with the same names and passwords)
  Admin pages:  http://127.0.0.1:{web_port}/admin  (log in as {DEMO_ADMIN}: users, groups, ACLs, sessions)
  Data:         {base} ({data_note})

Log in with any IMAP client (server {host}, port {bound}, no encryption, normal password):
{logins}

  e.g.  neomutt -f imap://alice@{host}:{bound}/INBOX  (or Thunderbird, K-9, Apple Mail ...)

Each person has their own read state; changes reach every other client at once.
Move a mail that a colleague's client also shows and then act on it there: that client
is told who moved it where and when (NO [EXPUNGEISSUED], docs/conflicts.md).
{acl_note}
The admin commands work against this demo from another terminal:

  export IMAPGATE_CONFIG={cfg_path}
  imapgate user list; imapgate folder list; imapgate check
  imapgate acl get Rechnungen; imapgate acl rights bob Archive; imapgate group list
  imapgate audit --since 1h      (who did what: every change, login and refusal)

Press Ctrl-C to stop.
""",
                flush=True,
            )

        asyncio.run(serve(config, ready=ready, command="imapgate demo"))
    finally:
        close = getattr(hoster, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        if not keep:
            created.remove()
