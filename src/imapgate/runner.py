"""Running the gateway in the foreground: ``serve``, ``sync`` and ``demo``.

Kept apart from ``cli`` so the command line stays a thin layer of argument
handling, and so tests can drive the same code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .config import Config, from_dict
from .gateway.app import Gateway
from .replica.sync import SyncProgress
from .server.listener import ImapServer
from .submission.server import SubmissionServer

log = logging.getLogger("imapgate")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


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


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(config: Config, *, ready: Callable[[ImapServer], None] | None = None) -> None:
    gw = Gateway.build(config, progress=ProgressLog())
    log.info(
        "upstream %s:%d as %s, at most %d connections",
        config.upstream.host,
        config.upstream.port,
        config.upstream.user,
        config.upstream.max_connections,
    )
    server = ImapServer(gw)
    submission = SubmissionServer(gw, config.submission) if config.submission else None
    try:
        await gw.start()
        await server.start()
        if submission is not None:
            await submission.start()
        log.info(
            "ready: %d folders, %d messages",
            len(gw.replica.names()),
            sum(mb.exists for mb in gw.replica.by_id.values()),
        )
        if ready is not None:
            ready(server)
        await _until_signalled()
        log.info("shutting down")
    finally:
        if submission is not None:
            await submission.stop()
        await server.stop()
        await gw.stop()


async def sync_once(config: Config, progress: Callable[[SyncProgress], None]) -> Gateway:
    gw = Gateway.build(config, progress=progress)
    try:
        await gw.sync.initial_sync()
    finally:
        await gw.pool.close()
    return gw


# --- demo ----------------------------------------------------------------------------------

DEMO_USERS = ("alice", "bob", "carol")


def run_demo(data_dir: Path | None, port: int) -> None:
    from .demo.sample_mail import generate_mailbox

    base = data_dir or Path(tempfile.mkdtemp(prefix="imapgate-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    upstream_password = secrets.token_urlsafe(12)
    mailbox = generate_mailbox()
    total = sum(len(v) for v in mailbox.values())
    hoster: object
    if shutil.which("dovecot") and os.geteuid() == 0:
        from .demo.dovecot import DovecotServer

        dc = DovecotServer(base / "hoster", users={"shared": upstream_password})
        dc.populate("shared", mailbox)
        dc.start()
        hoster, host_port, kind = dc, dc.port, "Dovecot"
        upstream_user = "shared"
    else:
        from .demo.pymap_server import PymapServer

        pm = PymapServer(user="shared", password=upstream_password, demo_data=False)
        pm.start()
        pm.populate(mailbox)
        hoster, host_port, kind = pm, pm.port, "pymap (Dovecot not installed or not root)"
        upstream_user = "shared"
    config = from_dict(
        {
            "upstream": {
                "host": "127.0.0.1",
                "port": host_port,
                "tls": "none",
                "user": upstream_user,
                "password": upstream_password,
            },
            # The demo listens on localhost only; plaintext login is acceptable there.
            "server": {"listen": [f"127.0.0.1:{port}"], "allow_plaintext": True},
            "store": {"data_dir": str(base / "gateway")},
        },
        base_dir=base,
    )
    gw = Gateway.build(config)
    passwords = {}
    for name in DEMO_USERS:
        if gw.users.get(name) is None:
            pw = f"{name}-{secrets.token_hex(3)}"
            gw.users.add(name, pw)
            passwords[name] = pw
    gw.replica.engine.dispose()

    def ready(server: ImapServer) -> None:
        host, bound, _ = server.addresses[0]
        print(
            f"""
imapgate demo is running.

  The "hoster": {kind} on 127.0.0.1:{host_port}, one shared account with {total} sample mails
  The gateway:  IMAP on {host}:{bound} (plain IMAP, localhost only)
  Data:         {base}

Log in with any IMAP client (server {host}, port {bound}, no encryption, normal password):
"""
            + "\n".join(f"  {n:<6} password {p}" for n, p in passwords.items())
            + f"""

  e.g.  neomutt -f imap://alice@{host}:{bound}/INBOX  (or Thunderbird, K-9, Apple Mail ...)

Each person has their own read state; changes reach every other client at once.
Press Ctrl-C to stop.
""",
            flush=True,
        )

    try:
        setup_logging()
        asyncio.run(serve(config, ready=ready))
    finally:
        stop = getattr(hoster, "stop", None)
        if stop is not None:
            stop()
