"""Personal read state at scale: 100,000 messages x 50 users.

Builds a gateway store with two identical 100,000-message folders — "Private"
(each user has their own \\Seen: most mail read, a scattered 3 % unread, and
1,000 recent private changes each) and "Shared" (one read state for all) —
then measures, with ``imapgate serve`` in its own process:

* store size (total and per user), build time;
* gateway RSS with all 50 users' state loaded;
* ``UID FETCH 1:* (UID FLAGS)`` for one user in the private folder vs the same
  folder in shared mode (target: within 1.2x).

No upstream is needed: the gateway serves from its replica (the upstream
address is a closed port).  Run: ``.venv/bin/python benchmarks/read_state_scale.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imapgate.config import from_dict
from imapgate.demo.dovecot import find_free_port
from imapgate.gateway.app import Gateway
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.uidset import UidSet

VENV_BIN = Path(sys.executable).parent
USERS = 50
PASSWORD = "pw"


def build(data: Path, n: int) -> tuple[float, Path]:
    cfg_path = data / "imapgate.toml"
    cfg_path.write_text(
        f"""[upstream]
host = "127.0.0.1"
port = 1
tls = "none"
user = "shared"
password = "x"

[server]
listen = ["127.0.0.1:{free_port()}"]
allow_plaintext = true

[store]
data_dir = "{data / "gw"}"

[folders.seen]
Shared = "shared"
"""
    )
    t0 = time.perf_counter()
    cfg = from_dict(
        {
            "upstream": {"host": "127.0.0.1", "port": 1, "tls": "none", "user": "shared", "password": "x"},
            "server": {"allow_plaintext": True},
            "store": {"data_dir": str(data / "gw")},
            "folders": {"seen": {"Shared": "shared"}},
        },
        base_dir=data,
    )
    gw = Gateway.build(cfg)
    rnd = random.Random(7)
    users = [gw.users.add(f"user{i:02d}", PASSWORD) for i in range(USERS)]
    for name in ("Private", "Shared"):
        mb = gw.replica.upsert_mailbox(name, "/", ())
        gw.replica.reset(mb, 4242, "benchmark")
        recs = []
        for uid in range(1, n + 1):
            flags: list[str] = []
            if rnd.random() < 0.97:
                flags.append("\\Seen")
            if rnd.random() < 0.05:
                flags.append("\\Flagged")
            if rnd.random() < 0.2:
                flags.append("\\Answered")
            recs.append(MessageRecord(uid, tuple(flags), 0, 1.7e9 + uid, 60, 2000 + uid % 5000, f"<{uid}@b>"))
        for i in range(0, n, 20_000):
            gw.replica.add_messages(mb, recs[i : i + 20_000])
        gw.replica.set_sync_state(mb, uidnext=n + 1, synced=True)
    private = gw.replica.get("Private")
    assert private is not None
    for u in users:
        state = gw.replica.private_state(private, u.id)
        # Each user's own reading: mostly read, a scattered 3 % unread.
        unread = {uid for uid in range(1, n + 1) if rnd.random() < 0.03}
        state.flags["\\Seen"] = UidSet(uid for uid in range(1, n + 1) if uid not in unread)
        gw.replica.write_private_sets(private, u.id, ["\\Seen"])
        # ... and 1,000 recent private changes (read/unread toggles) with modseqs.
        for _ in range(20):
            batch = rnd.sample(range(1, n + 1), 50)
            gw.replica.set_private_flags(private, u.id, {}, {"\\Seen": batch})
            gw.replica.set_private_flags(private, u.id, {"\\Seen": batch[:25]}, {})
    gw.replica.engine.dispose()
    return time.perf_counter() - t0, cfg_path


def free_port() -> int:
    return find_free_port()


def store_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "gw").glob("imapgate.sqlite3*"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.n = 0
        self.read_until(b"\r\n")

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def cmd(self, text: str) -> bytes:
        self.n += 1
        tag = f"T{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        # Every read ends at a line end: a virtual CRLF in front finds the tag
        # also when the tagged line is the first one.
        self.buf = b"\r\n" + self.buf
        data = self.read_until(b"\r\n" + tag + b" ")
        data += self.read_until(b"\r\n")
        if not data.split(tag + b" ", 1)[-1].startswith(b"OK"):
            raise RuntimeError(data[-200:])
        return data


def time_fetch(port: int, folder: str, runs: int) -> tuple[float, int]:
    c = Raw(port)
    c.cmd(f"LOGIN user00 {PASSWORD}")
    c.cmd(f"SELECT {folder}")
    c.cmd("UID FETCH 1:* (UID FLAGS)")  # warm-up (loads the user's state)
    times = []
    size = 0
    for _ in range(runs):
        t = time.perf_counter()
        data = c.cmd("UID FETCH 1:* (UID FLAGS)")
        times.append(time.perf_counter() - t)
        size = len(data)
    c.cmd("LOGOUT")
    return statistics.median(times), size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20,000 messages instead of 100,000")
    args = ap.parse_args()
    n = 20_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="imapgate-bench-") as tmp:
        data = Path(tmp)
        took, cfg = build(data, n)
        size = store_bytes(data)
        print(f"built {n:,} messages x 2 folders, {USERS} users in {took:.1f} s")
        print(f"store: {size / 1e6:.1f} MB total")
        text = cfg.read_text()
        port = int(text.split('listen = ["127.0.0.1:')[1].split('"')[0])
        env = {**os.environ, "IMAPGATE_CONFIG": str(cfg)}
        proc = subprocess.Popen(
            [str(VENV_BIN / "imapgate"), "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.2)
            base_rss = rss_mb(proc.pid)
            # Every user opens the private folder once: all 50 states in memory.
            for i in range(USERS):
                c = Raw(port)
                c.cmd(f"LOGIN user{i:02d} {PASSWORD}")
                c.cmd("SELECT Private")
                c.cmd("LOGOUT")
            full_rss = rss_mb(proc.pid)
            runs = 3 if args.quick else 7
            t_priv, bytes_priv = time_fetch(port, "Private", runs)
            t_shared, bytes_shared = time_fetch(port, "Shared", runs)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        print(
            f"gateway RSS: {base_rss:.0f} MB after start, {full_rss:.0f} MB with all {USERS} users' "
            f"state loaded (+{(full_rss - base_rss) * 1024 / USERS:.0f} KB per user)"
        )
        print(
            f"UID FETCH 1:* (UID FLAGS), user00: private {t_priv * 1000:.0f} ms ({bytes_priv / 1e6:.1f} MB), "
            f"shared {t_shared * 1000:.0f} ms ({bytes_shared / 1e6:.1f} MB)"
        )
        ratio = t_priv / t_shared
        print(f"ratio private/shared: {ratio:.2f} (target <= 1.2: {'met' if ratio <= 1.2 else 'MISSED'})")


if __name__ == "__main__":
    main()
