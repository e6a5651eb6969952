"""Small helpers around ``imaplib`` shared by the integration tests: direct upstream
connections, parsing of FETCH/LIST answers, and a raw socket client for wire-level checks."""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

from imapgate.demo import DovecotServer

UPSTREAM_USER = "shared"
UPSTREAM_PASSWORD = "shared-secret"


def upstream_login(
    host: str, port: int, user: str = UPSTREAM_USER, password: str = UPSTREAM_PASSWORD
) -> imaplib.IMAP4:
    client = imaplib.IMAP4(host, port, timeout=30)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    typ, data = client.login(user, password)
    assert typ == "OK", data
    return client


def dovecot_login(dc: DovecotServer) -> imaplib.IMAP4:
    return upstream_login(dc.host, dc.port)


@contextlib.contextmanager
def session(client: imaplib.IMAP4) -> Iterator[imaplib.IMAP4]:
    """Log the client out at the end, whatever happened."""
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def ok(result: tuple[str, Sequence[Any]]) -> list[Any]:
    """The data of an imaplib answer, asserting it was OK."""
    typ, data = result
    assert typ == "OK", data
    return list(data)


_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


def uid_flags(client: imaplib.IMAP4, uids: str = "1:*") -> dict[int, set[str]]:
    """UID -> flags of the selected mailbox (``UID FETCH uids (FLAGS)``)."""
    data = ok(client.uid("FETCH", uids, "(FLAGS)"))
    out: dict[int, set[str]] = {}
    for item in data:
        if not isinstance(item, bytes):
            continue
        u = _UID.search(item)
        f = _FLAGS.search(item)
        if u and f:
            out[int(u.group(1))] = set(f.group(1).decode().split())
    return out


def upstream_flags(host: str, port: int, mailbox: str, uids: str = "1:*") -> dict[int, set[str]]:
    """Flags as the upstream server holds them (read-only EXAMINE in a fresh session)."""
    with session(upstream_login(host, port)) as c:
        ok(c.select(quote(mailbox), readonly=True))
        return uid_flags(c, uids)


def upstream_uids(host: str, port: int, mailbox: str) -> list[int]:
    with session(upstream_login(host, port)) as c:
        ok(c.select(quote(mailbox), readonly=True))
        data = ok(c.uid("SEARCH", None, "ALL"))
        return [int(x) for x in (data[0] or b"").split()]  # type: ignore[union-attr]


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def search_ids(data: Sequence[Any]) -> list[int]:
    first = data[0] if data else b""
    assert isinstance(first, bytes)
    return [int(x) for x in first.split()]


def fetch_literals(data: Sequence[Any]) -> dict[int, bytes]:
    """UID -> the literal of a FETCH answer with one literal item per message."""
    out: dict[int, bytes] = {}
    for item in data:
        if isinstance(item, tuple):
            m = _UID.search(item[0])
            assert m, item[0]
            out[int(m.group(1))] = item[1]
    return out


class RawClient:
    """A line-level IMAP client on a socket: for answers imaplib would hide or reject."""

    def __init__(self, host: str, port: int, timeout: float = 15, *, source: str | None = None) -> None:
        # ``source``: another loopback address (127.0.0.7) to connect from, so a test can
        # tell the client's address from a proxy's.
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.greeting = self.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; partial: {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def read_until_tagged(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.read_until_tagged(tag)

    def read_for(self, seconds: float) -> list[bytes]:
        """Lines that arrive within ``seconds`` (for unsolicited responses)."""
        deadline = time.monotonic() + seconds
        lines: list[bytes] = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                lines.append(self.readline())
            except TimeoutError:
                break
        self.sock.settimeout(15)
        return lines

    def wait_for(self, pattern: bytes, timeout: float) -> tuple[list[bytes], float]:
        """Read lines until one matches ``pattern`` (a regex); the lines read and the seconds
        it took.  Raises AssertionError when nothing matched within ``timeout``."""
        start = time.monotonic()
        lines: list[bytes] = []
        rx = re.compile(pattern)
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got {lines!r}")
            self.sock.settimeout(left)
            try:
                line = self.readline()
            except TimeoutError:
                continue
            finally:
                self.sock.settimeout(15)
            lines.append(line)
            if rx.search(line):
                return lines, time.monotonic() - start

    def login(self, user: str, password: str) -> None:
        lines = self.command(b"L1", f"LOGIN {user} {password}".encode())
        assert lines[-1].startswith(b"L1 OK"), lines

    def idle(self) -> None:
        self.send(b"I1 IDLE\r\n")
        line = self.readline()
        assert line.startswith(b"+"), line

    def done(self) -> list[bytes]:
        self.send(b"DONE\r\n")
        lines = self.read_until_tagged(b"I1")
        assert lines[-1].startswith(b"I1 OK"), lines
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def flatten(data: Sequence[Any]) -> bytes:
    """imaplib's answer data back as one byte string (literals inline, lines joined by LF)."""
    out: list[bytes] = []
    for item in data:
        if isinstance(item, tuple):
            out.append(item[0] + b"\r\n" + item[1])
        elif isinstance(item, bytes):
            out.append(item)
    return b"\n".join(out)


def tagged(client: imaplib.IMAP4, *args: str) -> tuple[str, list[bytes]]:
    """Run a command through imaplib and return the *tagged* answer (with its response code,
    e.g. ``[COPYUID ...]``) — imaplib's public methods hide it for COPY and friends."""
    typ, data = client._simple_command(*args)
    return typ, [d for d in data if isinstance(d, bytes)]


def mailbox_names(client: imaplib.IMAP4, command: str = "LIST") -> dict[str, set[str]]:
    """name (as sent, modified UTF-7) -> attributes from LIST/LSUB "" "*"."""
    typ, data = client.list() if command == "LIST" else client.lsub()
    assert typ == "OK", data
    out: dict[str, set[str]] = {}
    for line in data:
        assert isinstance(line, bytes), line
        m = re.match(rb'^\((?P<attrs>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$', line)
        assert m, line
        out[m["name"].strip(b'"').decode("ascii")] = {a.lower() for a in m["attrs"].decode().split()}
    return out
