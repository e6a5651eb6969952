"""Shared helpers of the gateway-core benchmarks (``benchmarks/gateway_*.py``).

* :func:`start_dovecot`: a private Dovecot with the wanted folders, indexed before any timing;
* :class:`GatewayProcess`: ``imapgate serve`` in a child process (the load client must not share
  the gateway's event loop, nor its CPU time), with its RSS and store size;
* :class:`Client`: a minimal raw asyncio IMAP client.  It never parses responses: it scans the
  bytes for literals and for the tagged completion, so it is never the bottleneck (about 1 GB/s
  of scanning), and the same code measures the gateway and Dovecot;
* :func:`run_relay`: an asyncio TCP relay that holds each chunk ``delay`` seconds per direction
  (no netem on these machines);
* timing statistics and the machine description printed by every script.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from imapgate.demo.dovecot import DovecotServer, find_free_port
from imapgate.demo.sample_mail import SampleMessage, generate_bulk

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
UPSTREAM_USER = "shared"
UPSTREAM_PASSWORD = "pw"
PASSWORD = "pw"


# --------------------------------------------------------------------------- machine / output
#: ``imapgate index status``: its count of indexed messages.
_INDEXED = re.compile(r"^(\d+) of (\d+) messages indexed", re.M)


def machine_info() -> str:
    model = "?"
    with contextlib.suppress(Exception):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    ram = "?"
    with contextlib.suppress(Exception), open("/proc/meminfo") as fh:
        kb = int(fh.readline().split()[1])
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    dovecot = "?"
    with contextlib.suppress(Exception):
        dovecot = subprocess.run(
            [shutil.which("dovecot") or "/usr/sbin/dovecot", "--version"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return (
        f"CPU {model}, {os.cpu_count()} cores, RAM {ram}, Python {platform.python_version()}, "
        f"Dovecot {dovecot}, {platform.machine()}"
    )


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   {machine_info()}")
    print(f"   {time.strftime('%Y-%m-%d %H:%M:%S')}")
    sys.stdout.flush()


def verdict(name: str, gateway: float, direct: float, unit: str, target: str, met: bool) -> None:
    """One result line: gateway figure, direct figure, ratio and the target."""
    ratio = gateway / direct if direct else float("inf")
    print(
        f"RESULT {name}: gateway {gateway:.4g} {unit}, direct {direct:.4g} {unit}, "
        f"ratio {ratio:.2f} (target {target}: {'MET' if met else 'MISSED'})"
    )
    sys.stdout.flush()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


# --------------------------------------------------------------------------- mail
def realistic_bulk(n: int, seed: int = 1) -> list[SampleMessage]:
    """``generate_bulk(n)`` with the flags of a long-lived team mailbox: about 90 % \\Seen,
    8 % \\Answered, 4 % \\Flagged, the unread ones mostly recent."""
    rng = random.Random(seed * 7919)
    out = []
    for i, m in enumerate(generate_bulk(n, seed)):
        recent = i >= n - max(1, n // 50)
        flags: list[str] = []
        if rng.random() < (0.6 if recent else 0.92):
            flags.append("\\Seen")
            if rng.random() < 0.09:
                flags.append("\\Answered")
        if rng.random() < 0.04:
            flags.append("\\Flagged")
        out.append(dataclasses.replace(m, flags=tuple(flags)))
    return out


def start_dovecot(
    tmp: Path,
    folders: Mapping[str, Sequence[SampleMessage]],
    *,
    max_userip_connections: int = 10,
) -> DovecotServer:
    """A running Dovecot with ``folders`` in the ``shared`` account, indexed (so neither side of
    a comparison pays Dovecot's first index build)."""
    dc = DovecotServer(
        tmp / "dovecot",
        users={UPSTREAM_USER: UPSTREAM_PASSWORD},
        max_userip_connections=max_userip_connections,
    )
    dc.populate(UPSTREAM_USER, folders)
    dc.start()
    for name in folders:
        dc.index(UPSTREAM_USER, name)
    return dc


def make_tmp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"imapgate-bench-{prefix}-"))


# --------------------------------------------------------------------------- gateway process
class GatewayProcess:
    """``imapgate serve --config FILE`` in a child process, listening on 127.0.0.1."""

    def __init__(
        self,
        tmp: Path,
        upstream_port: int,
        users: Sequence[str],
        *,
        max_connections: int = 4,
        extra_toml: str = "",
        imapgate: Path | None = None,
        name: str = "gateway",
    ) -> None:
        #: The ``imapgate`` to run (default: this venv's); another build's for an A/B run.
        self.exe = imapgate or VENV_BIN / "imapgate"
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = find_free_port()
        self.config = self.dir / "imapgate.toml"
        self.config.write_text(
            "[upstream]\n"
            f'host = "127.0.0.1"\nport = {upstream_port}\ntls = "none"\n'
            f'user = "{UPSTREAM_USER}"\npassword = "{UPSTREAM_PASSWORD}"\n'
            f"max_connections = {max_connections}\n"
            "[server]\n"
            f'listen = ["127.0.0.1:{self.port}"]\nallow_plaintext = true\n'
            "[store]\n"
            f'data_dir = "{self.dir / "data"}"\n' + extra_toml,
            encoding="utf-8",
        )
        self.log_path = self.dir / "gateway.log"
        self.users = list(users)
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self._add_users()

    def _add_users(self) -> None:
        # In this process, not one `imapgate user add` per user: same code path, no per-user start-up.
        from imapgate.config import load
        from imapgate.store.engine import open_engine
        from imapgate.team.users import UserDirectory

        cfg = load(self.config)
        cfg.store.data_dir.mkdir(parents=True, exist_ok=True)
        engine = open_engine(cfg.store.url)
        directory = UserDirectory(engine)
        for name in self.users:
            if directory.get(name) is None:
                directory.add(name, PASSWORD)
        engine.dispose()

    def start(self, timeout: float = 900.0) -> float:
        """Start and wait until the listener greets; returns the seconds it took (initial sync
        included: ``serve`` syncs every folder before it listens)."""
        t0 = time.perf_counter()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.exe), "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                    if sock.recv(256).startswith(b"* OK"):
                        break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"gateway did not start in {timeout} s:\n{self.log_tail()}")
        self.startup_seconds = time.perf_counter() - t0
        return self.startup_seconds

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def store_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.dir / "data").glob("imapgate.sqlite3*"))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.error_lines():
            # The temporary directory goes away: keep the evidence.
            kept = Path(tempfile.gettempdir()) / f"imapgate-bench-gateway-{self.pid}.log"
            shutil.copyfile(self.log_path, kept)
            print(f"   gateway log with errors kept: {kept}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def wait_indexed(self, messages: int, timeout: float = 3600) -> float:
        """Seconds until ``imapgate index status`` counts ``messages`` indexed (a node's own
        file beside PostgreSQL, the store on SQLite): measure the steady state, not indexing."""
        t0 = time.perf_counter()
        while True:
            out = subprocess.run(
                [str(self.exe), "index", "status", "--config", str(self.config)],
                capture_output=True,
                text=True,
            )
            m = _INDEXED.search(out.stdout)
            if out.returncode != 0:
                raise RuntimeError(f"index status failed: {out.stderr.strip()}")
            if m is not None and int(m.group(1)) >= messages:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(
                    f"{self.dir.name}: index not complete after {timeout} s: {out.stdout[-300:]}"
                )
            time.sleep(1.0)

    def error_lines(self) -> list[str]:
        """ERROR/exception lines of the gateway log (a benchmark run must not produce any)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln]


class Profiler:
    """``py-spy record`` of a process while a ``with`` block runs (``pip install py-spy``); writes
    collapsed stacks (``--format raw``) for :func:`top_frames` and flame-graph tools."""

    def __init__(self, pid: int, out: Path | None, rate: int = 250) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        exe = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
        if self.out is not None and exe:
            self.proc = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(self.pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "-o",
                    str(self.out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
        elif self.out is not None:
            print("   (py-spy not installed: no profile)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            if self.out is not None and self.out.exists():
                print(f"   profile: {self.out}")
                for line in top_frames(self.out):
                    print(f"      {line}")


def top_frames(path: Path, n: int = 15) -> list[str]:
    """Self and inclusive sample shares of the hottest frames in a collapsed-stack file."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        k = int(count)
        total += k
        frames = stack.split(";")
        for f in set(frames):
            inclusive[f] += k
        own[frames[-1]] += k
    if not total:
        return []
    out = [f"{total} samples; self time:"]
    out += [f"{v / total:6.1%}  {f}" for f, v in own.most_common(n)]
    out.append("inclusive:")
    out += [f"{v / total:6.1%}  {f}" for f, v in inclusive.most_common(n + 10)]
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- raw client
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n")


class ImapError(Exception):
    pass


class Client:
    """A raw IMAP client: sends command lines, returns the whole response as bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._n = 0
        self.buf = bytearray()
        self.greeting = b""

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> Client:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = cls(reader, writer)
        c.greeting = await c.readline()
        return c

    @classmethod
    async def login(cls, port: int, user: str, password: str = PASSWORD) -> Client:
        c = await cls.connect(port)
        await c.ok(f"LOGIN {user} {password}")
        return c

    def next_tag(self) -> str:
        self._n += 1
        return f"T{self._n}"

    async def _fill(self) -> None:
        data = await self.reader.read(1 << 20)
        if not data:
            raise ImapError("connection closed")
        self.buf += data

    async def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[: i + 2])
                del self.buf[: i + 2]
                return line
            await self._fill()

    async def command(self, text: str | bytes) -> tuple[bytes, bytes]:
        """Send one command; return (untagged data, tagged status line)."""
        tag = self.next_tag()
        data = text.encode() if isinstance(text, str) else text
        self.writer.write(tag.encode() + b" " + data + b"\r\n")
        return await self.read_response(tag)

    async def read_response(self, tag: str) -> tuple[bytes, bytes]:
        """Bytes up to and including the tagged line of ``tag``; literals are skipped whole."""
        mark = b"\r\n" + tag.encode() + b" "
        buf = self.buf
        pos = 0
        # A response may start with the tagged line itself.
        start_mark = tag.encode() + b" "
        while True:
            if pos == 0 and buf.startswith(start_mark):
                end = buf.find(b"\r\n")
                if end >= 0:
                    line = bytes(buf[: end + 2])
                    del buf[: end + 2]
                    return b"", line
                await self._fill()
                continue
            m = _LITERAL.search(buf, pos)
            t = buf.find(mark, pos)
            if t >= 0 and (m is None or t < m.start()):
                end = buf.find(b"\r\n", t + 2)
                if end >= 0:
                    body = bytes(buf[: t + 2])
                    line = bytes(buf[t + 2 : end + 2])
                    del buf[: end + 2]
                    return body, line
                pos = t
            elif m is not None:
                lit_end = m.end() + int(m.group(1))
                if len(buf) >= lit_end:
                    pos = lit_end  # skip the literal whole: its bytes are never a tagged line
                    continue
                pos = m.start()
            else:
                pos = max(pos, len(buf) - 64)
            await self._fill()

    async def ok(self, text: str | bytes) -> bytes:
        body, line = await self.command(text)
        status = line.split(b" ", 2)[1] if b" " in line else b""
        if status != b"OK":
            raise ImapError(f"{text!r}: {line!r}")
        return body

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"Z LOGOUT\r\n")
            await self.writer.drain()
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)


def tagged_status(line: bytes) -> bytes:
    parts = line.split(b" ", 2)
    return parts[1] if len(parts) > 1 else b""


# --------------------------------------------------------------------------- delay relay
async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, bandwidth: float | None
) -> None:
    """Copy reader -> writer, each chunk released ``delay`` s after it arrived (order kept), and
    no faster than ``bandwidth`` bytes/s when given."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def sender() -> None:
        free_at = 0.0
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            if bandwidth:
                free_at = max(free_at, due) + len(chunk) / bandwidth
                due = free_at
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.write_eof()

    task = asyncio.create_task(sender())
    try:
        while True:
            chunk = await reader.read(1 << 16)
            queue.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
        await task
    except (ConnectionError, OSError):
        task.cancel()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _relay_main(listen_port: int, target_port: int, delay: float, bandwidth: float | None) -> None:
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cw.close()
            return
        for w in (cw, uw):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            _pump(cr, uw, delay, bandwidth), _pump(ur, cw, delay, bandwidth), return_exceptions=True
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)
    async with server:
        await server.serve_forever()


def run_relay(listen_port: int, target_port: int, delay: float, bandwidth: float | None = None) -> None:
    """Entry point of the relay process (``multiprocessing``)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_relay_main(listen_port, target_port, delay, bandwidth))


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")
