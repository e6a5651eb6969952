"""A minimal second upstream: pymap's in-memory ``dict`` backend as a subprocess.

pymap (``pip install pymap``) is a small asyncio IMAP server.  Compared with Dovecot it offers
no CONDSTORE, QRESYNC, NOTIFY, ESEARCH, SPECIAL-USE or NAMESPACE, so the gateway's fallback
paths (full ``UID FETCH 1:* (FLAGS)`` resyncs, IDLE-only change notification, plain LIST) get
exercised against a server nobody on this team wrote.

Facts about pymap 0.36 that this wrapper relies on (verified, not guessed):

* ``pymap --host H --port N dict [--demo-data] [--demo-user U] [--demo-password P]``; the dict
  backend has exactly **one** login, ``demouser`` / ``demopass`` unless overridden;
* ``--demo-data`` loads INBOX (4 messages, UIDs 101–104), Sent and Trash; without it only an
  empty INBOX exists;
* plain-text LOGIN works without TLS although the greeting still lists ``STARTTLS``;
* post-login capabilities: ``IMAP4rev1 LITERAL+ ID STARTTLS BINARY UIDPLUS MOVE CHILDREN
  APPENDLIMIT=… IDLE OBJECTID MULTIAPPEND``; hierarchy separator ``/``;
* all state is in memory: it is gone when the process stops.

This module is part of the standalone demo/test helper layer: it imports nothing else from
imapgate.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from .dovecot import find_free_port, mutf7_encode
from .sample_mail import SampleMessage

__all__ = ["PymapError", "PymapServer"]

# Services that need optional extras (gRPC admin, ManageSieve on 4190, SWIM cluster) would
# listen on fixed ports and collide between instances; the IMAP service is all we want.
_SKIPPED_SERVICES = ("admin", "managesieve", "swim")

_LAUNCHER = "import sys; from pymap.main import main; sys.argv[0] = 'pymap'; sys.exit(main())"


class PymapError(RuntimeError):
    """pymap failed to start or to accept test data."""


class PymapServer:
    """pymap (dict backend) on ``127.0.0.1:port``, one user, no TLS."""

    def __init__(
        self,
        *,
        port: int | None = None,
        user: str = "demouser",
        password: str = "demopass",
        demo_data: bool = True,
        host: str = "127.0.0.1",
        log_path: str | os.PathLike[str] | None = None,
        debug: bool = False,
    ) -> None:
        self.host = host
        self.port = port if port is not None else find_free_port(host)
        self.user = user
        self.password = password
        self.demo_data = demo_data
        self.debug = debug
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="pymap-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The argv used to run pymap (with the venv's interpreter, so no PATH lookup)."""
        cmd = [sys.executable, "-c", _LAUNCHER]
        if self.debug:
            cmd.append("--debug")
        for name in _SKIPPED_SERVICES:
            cmd += ["--no-service", name]
        # Only used when the optional `pid` package is installed; keeps instances apart.
        cmd += ["--pid-file", f"imapgate-pymap-{self.port}.pid"]
        cmd += ["--host", self.host, "--port", str(self.port), "dict",
                "--demo-user", self.user, "--demo-password", self.password]
        if self.demo_data:
            cmd.append("--demo-data")
        return cmd

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20.0) -> None:
        """Start pymap and wait until it sends its ``* OK`` greeting."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PymapError(f"pymap exited with status {self._proc.returncode}\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    greeting = sock.recv(512)
                if greeting.startswith(b"* OK"):
                    return
                last_error = f"unexpected greeting {greeting!r}"
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.05)
        self.stop()
        raise PymapError(f"pymap did not greet on {self.host}:{self.port}: {last_error}\n{self.log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (pymap shuts down cleanly on it), SIGKILL the session if that is not enough."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=timeout)
        self._proc = None

    def close(self) -> None:
        self.stop()
        if self._own_log:
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()

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
        if not self.log_path.exists():
            return "(no log output)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "\n".join(text) or "(no log output)"

    def connect(self) -> imaplib.IMAP4:
        """An ``imaplib`` client, already logged in."""
        client = imaplib.IMAP4(self.host, self.port)
        # imaplib writes a literal and its closing CRLF separately; with Nagle on, each APPEND
        # then waits for the server's delayed ACK (~40 ms).
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.login(self.user, self.password)
        return client

    def populate(self, folders: Mapping[str, Sequence[SampleMessage]]) -> None:
        """Load messages by IMAP APPEND (the dict backend lives in the server's memory).

        Missing folders are created.  Slow compared with Dovecot's Maildir writes (a few hundred
        messages per second): meant for the sample mailbox, not for 100k benchmarks.
        """
        client = self.connect()
        try:
            _typ, data = client.list()
            existing = {line.rsplit(b' "/" ', 1)[-1].strip(b'"').decode("ascii")
                        for line in data if isinstance(line, bytes)}
            for folder, messages in folders.items():
                wire_name = "INBOX" if folder.upper() == "INBOX" else mutf7_encode(folder)
                if wire_name not in existing:
                    # Parents first: pymap (like RFC 3501 servers generally) may not invent them.
                    parts = folder.split("/")
                    for depth in range(1, len(parts) + 1):
                        name = mutf7_encode("/".join(parts[:depth]))
                        if name not in existing:
                            _check(client.create(_quoted(name)), f"CREATE {name}")
                            existing.add(name)
                for message in messages:
                    flags = " ".join(f for f in message.flags if f.lower() != "\\recent")
                    _check(
                        client.append(_quoted(wire_name), f"({flags})",
                                      imaplib.Time2Internaldate(message.internal_date), message.raw),
                        f"APPEND to {folder}",
                    )
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()


def _quoted(name: str) -> str:
    # imaplib sends mailbox names verbatim; quote so names with spaces survive.
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(result: tuple[str, Sequence[object]], what: str) -> None:
    typ, data = result
    if typ != "OK":
        raise PymapError(f"{what} failed: {typ} {data!r}")
