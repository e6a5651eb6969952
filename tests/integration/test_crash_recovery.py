"""Real crashes: ``imapgate serve`` as a child process in front of a real Dovecot, a client
writing through it, SIGKILL at a random moment, restart on the same store, then the promise
"no mail lost or duplicated" is checked against Dovecot directly:

* every Message-ID ever appended (with OK) or there from the start is upstream exactly once,
  unless its expunge was answered OK (then nowhere); an operation cut by the kill may have gone
  either way — "moved or not", "expunged or not", "appended or not" — but never both, never
  neither;
* the restarted gateway's view (SELECT, UID FETCH 1:* (FLAGS)) equals upstream's listing;
* no intent is left open, and the logs hold no ERROR or Traceback.

``CRASH_ROUNDS=<n>`` runs n kills per scenario instead of the suite's 4-5 (a longer hunt).

Scenarios: MOVE with Dovecot's MOVE; MOVE hidden from the gateway (its intents path: COPY,
\\Deleted, UID EXPUNGE, settled at the next start); a 2 MB APPEND cut at random moments.

The kill points come from a seeded RNG; the seed is printed (``-s`` shows it) and part of every
failure message.  ``CRASH_SEED=<n>`` replays a seed (the kill delays, not the scheduler).
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo import DovecotServer, SampleMessage
from imapgate.demo.dovecot import find_free_port
from imapgate.replica.events import EventHub
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine
from imapgate.team.users import UserDirectory
from tests.gateway.relay import FaultRelay
from tests.support.imap import RawClient, ok, quote, session, upstream_login

pytestmark = pytest.mark.integration

IMAPGATE = [sys.executable, "-m", "imapgate.cli"]
USER, PASSWORD = "alice", "alice-pw"
FOLDERS = ("INBOX", "Archive")
DovecotFactory = Callable[..., DovecotServer]
#: A Message-ID's possible places: a folder, or None for "nowhere" (expunged / never arrived).
Place = str | None


def _rounds(default: int) -> int:
    """Kills per scenario; ``CRASH_ROUNDS=<n>`` for a longer hunt than the suite's."""
    return int(os.environ.get("CRASH_ROUNDS", "0")) or default


def _seed() -> int:
    seed = int(os.environ.get("CRASH_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    print(f"crash-recovery seed: {seed} (CRASH_SEED={seed} to replay)")
    return seed


# --- the gateway as a child process ---------------------------------------------------------


class GatewayProcess:
    """``imapgate serve`` on a fixed port and store; every (re)start logs to a file of its own."""

    def __init__(self, base: Path, upstream_port: int) -> None:
        self.base = base
        self.port = find_free_port()
        self.data_dir = base / "store"
        self.db = self.data_dir / "imapgate.sqlite3"
        (base / "upstream.pw").write_text("shared-secret\n")
        (base / "upstream.pw").chmod(0o600)
        self.config = base / "imapgate.toml"
        self.config.write_text(
            f"""
[upstream]
host = "127.0.0.1"
port = {upstream_port}
tls = "none"
user = "shared"
password_file = "upstream.pw"

[server]
listen = ["127.0.0.1:{self.port}"]
allow_plaintext = true

[store]
data_dir = "{self.data_dir}"

[folders]
# Shared read state: the gateway's flags and upstream's must match exactly.
default_seen = "shared"
"""
        )
        engine = open_engine(f"sqlite:///{self.db}")
        UserDirectory(engine).add(USER, PASSWORD)
        engine.dispose()
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self, timeout: float = 60) -> None:
        log = self.base / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [*IMAPGATE, "--config", str(self.config), "serve"], stdout=fh, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while "imapgate: ready:" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"imapgate serve did not get ready:\n{log.read_text(errors='replace')}")
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def login(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ok(client.login(USER, PASSWORD))
        return client

    def open_intents(self) -> list[tuple[int, str, str]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as db:
            return list(db.execute("SELECT id, kind, payload FROM intents WHERE state = 'open'"))

    def intent_states(self) -> list[str]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as db:
            return [row[0] for row in db.execute("SELECT state FROM intents ORDER BY id")]

    def log_problems(self) -> list[str]:
        bad = []
        for log in self.logs:
            for line in log.read_text(errors="replace").splitlines():
                if " ERROR " in line or "Traceback" in line or " CRITICAL " in line:
                    bad.append(f"{log.name}: {line}")
        return bad


@contextlib.contextmanager
def relay_hiding_move(upstream_port: int) -> Iterator[FaultRelay]:
    """A :class:`FaultRelay` in front of Dovecot that removes MOVE from its capabilities, on an
    event loop of its own (the gateway is another process; the relay outlives its kills)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="relay-loop", daemon=True)
    thread.start()
    relay = FaultRelay(upstream_port, hide_capabilities=(b"MOVE",))
    asyncio.run_coroutine_threadsafe(relay.start(), loop).result(10)
    try:
        yield relay
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(relay.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --- upstream, as Dovecot holds it ----------------------------------------------------------

_MID = re.compile(rb"^message-id:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_ITEM = re.compile(rb"UID (\d+)|FLAGS \(([^)]*)\)|RFC822\.SIZE (\d+)")


@dataclass
class Listing:
    """One folder: UID -> (flags without \\Recent, size, Message-ID)."""

    flags: dict[int, frozenset[str]] = field(default_factory=dict)
    size: dict[int, int] = field(default_factory=dict)
    mid: dict[int, str | None] = field(default_factory=dict)


def _parse_fetch(data: list[Any]) -> Listing:
    out = Listing()
    for item in data:
        head, literal = (item[0], item[1]) if isinstance(item, tuple) else (item, b"")
        if not isinstance(head, bytes) or b"UID" not in head:
            continue
        uid = flags = size = None
        for m in _ITEM.finditer(head):
            if m.group(1):
                uid = int(m.group(1))
            elif m.group(3):
                size = int(m.group(3))
            else:
                flags = frozenset(f for f in m.group(2).decode().split() if f != "\\Recent")
        assert uid is not None and flags is not None, head
        out.flags[uid] = flags
        out.size[uid] = size or 0
        found = _MID.search(literal)
        out.mid[uid] = found.group(1).decode() if found else None
    return out


def upstream_listing(port: int, folder: str) -> Listing:
    with session(upstream_login("127.0.0.1", port)) as c:
        ok(c.select(quote(folder), readonly=True))
        data = ok(c.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
    return _parse_fetch(data)


def gateway_flags(gw: GatewayProcess) -> dict[str, dict[int, frozenset[str]]]:
    """UID -> flags of every folder of ``FOLDERS`` as the gateway shows them (one session:
    a team member's LOGIN is deliberately slow)."""
    out: dict[str, dict[int, frozenset[str]]] = {}
    with session(gw.login()) as c:
        for folder in FOLDERS:
            ok(c.select(quote(folder)))
            data = ok(c.uid("FETCH", "1:*", "(UID FLAGS)"))
            out[folder] = _parse_fetch(data).flags if data != [None] else {}
    return out


# --- what the client was told ---------------------------------------------------------------


class Ledger:
    """Per Message-ID, the places it may be in given the answers the clients got."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.allowed: dict[str, set[Place]] = {}
        self.refusals: list[str] = []

    def expect(self, mid: str, *places: Place) -> None:
        self.allowed[mid] = set(places)

    def verify(self, port: int) -> dict[str, list[tuple[str, int]]]:
        """Check upstream against the ledger; then the ledger holds what upstream holds (an
        operation cut by the kill is settled one way or the other from here on)."""
        where: dict[str, list[tuple[str, int]]] = {}
        for folder in FOLDERS:
            listing = upstream_listing(port, folder)
            for uid, mid in listing.mid.items():
                assert mid is not None, (folder, uid)
                where.setdefault(mid, []).append((folder, uid))
        problems = []
        for mid in sorted(set(where) | set(self.allowed)):
            places = where.get(mid, [])
            allowed = self.allowed.get(mid, set())
            if len(places) > 1:
                problems.append(f"{mid}: DUPLICATED at {places} (allowed {allowed})")
            elif (places[0][0] if places else None) not in allowed:
                what = "LOST" if not places else f"at {places}"
                problems.append(f"{mid}: {what}, allowed {allowed}")
        assert not problems, f"seed {self.seed}: " + "; ".join(problems[:20])
        for mid, places in where.items():
            self.allowed[mid] = {places[0][0]}
        for mid in [m for m, p in self.allowed.items() if m not in where]:
            self.allowed[mid] = {None}
        return where


def check_after_restart(gw: GatewayProcess, ledger: Ledger, upstream_port: int) -> None:
    """The invariants after a restart (upstream is quiet: only the gateway writes to it)."""
    ledger.verify(upstream_port)
    assert gw.open_intents() == [], f"seed {ledger.seed}: open intents after restart"
    seen_by_gateway = gateway_flags(gw)
    for folder in FOLDERS:
        want = upstream_listing(upstream_port, folder).flags
        got = seen_by_gateway[folder]
        if got != want:
            diff = {u: (got.get(u), want.get(u)) for u in set(got) | set(want) if got.get(u) != want.get(u)}
            raise AssertionError(f"seed {ledger.seed}: {folder}: gateway != upstream (gw, up): {diff}")
    assert gw.log_problems() == [], f"seed {ledger.seed}: {gw.log_problems()}"


# --- scenarios 1 and 2: MOVE, APPEND, STORE \Deleted + UID EXPUNGE --------------------------


def _small_message(mid: str) -> bytes:
    return (
        f"From: crash@example.test\r\nTo: team@example.test\r\nSubject: crash test {mid}\r\n"
        f"Message-ID: {mid}\r\n\r\nbody of {mid}\r\n"
    ).encode()


_APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")
#: Clients writing at once: more operations in flight at each kill.
WRITERS = 2


@dataclass
class Writer:
    """One client writing through the gateway until the connection dies (the kill).  Before
    each command the ledger allows both outcomes; after its OK, only the new one."""

    gw: GatewayProcess
    ledger: Ledger
    inbox: dict[int, str]  # UID -> Message-ID of the INBOX messages this writer may touch
    rng: random.Random
    tag: str
    started: threading.Event = field(default_factory=threading.Event)
    in_flight: str | None = None
    done: int = 0
    appended: int = 0

    def run(self) -> None:
        try:
            client = self.gw.login()
            ok(client.select("INBOX"))
        finally:
            self.started.set()
        with contextlib.suppress(imaplib.IMAP4.abort, OSError, EOFError):
            while True:
                op = self.rng.choice(("move", "move", "append", "expunge")) if self.inbox else "append"
                if op == "append":
                    self.append(client)
                else:
                    uid = self.rng.choice(sorted(self.inbox))
                    if op == "move":
                        self.move(client, uid)
                    else:
                        self.expunge(client, uid)
                self.in_flight = None

    def refused(self, what: str, typ: str, data: list[Any]) -> None:
        self.ledger.refusals.append(f"{what}: {typ} {data}")

    def append(self, client: imaplib.IMAP4) -> None:
        self.appended += 1
        mid = f"<crash-{self.tag}-{self.appended}@imapgate.test>"
        self.ledger.expect(mid, "INBOX", None)
        self.in_flight = f"APPEND {mid}"
        typ, data = client.append("INBOX", "", None, _small_message(mid))
        found = _APPENDUID.search(data[0] or b"") if typ == "OK" else None
        if found is None:
            return self.refused(self.in_flight, typ, data)
        self.ledger.expect(mid, "INBOX")
        self.inbox[int(found.group(1))] = mid
        self.done += 1

    def move(self, client: imaplib.IMAP4, uid: int) -> None:
        mid = self.inbox.pop(uid)
        self.ledger.expect(mid, "INBOX", "Archive")
        self.in_flight = f"UID MOVE {uid} ({mid})"
        typ, data = client.uid("MOVE", str(uid), "Archive")
        if typ != "OK":
            return self.refused(self.in_flight, typ, data)
        self.ledger.expect(mid, "Archive")
        self.done += 1

    def expunge(self, client: imaplib.IMAP4, uid: int) -> None:
        mid = self.inbox.pop(uid)
        self.in_flight = f"UID STORE {uid} +FLAGS (\\Deleted) ({mid})"
        typ, data = client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        if typ != "OK":
            return self.refused(self.in_flight, typ, data)
        self.ledger.expect(mid, "INBOX", None)
        self.in_flight = f"UID EXPUNGE {uid} ({mid})"
        typ, data = client.uid("EXPUNGE", str(uid))
        if typ != "OK":
            return self.refused(self.in_flight, typ, data)
        self.ledger.expect(mid, None)
        self.done += 1


def run_move_rounds(gw: GatewayProcess, upstream_port: int, rounds: int, seed: int) -> int:
    """``rounds`` kills of ``gw`` under ``WRITERS`` clients; returns the operations answered OK."""
    rng = random.Random(seed)
    ledger = Ledger(seed)
    gw.start()
    for mid, places in _initial_places(upstream_port).items():
        ledger.expect(mid, *places)
    check_after_restart(gw, ledger, upstream_port)
    done = 0
    for r in range(rounds):
        listing = upstream_listing(upstream_port, "INBOX")
        inbox = {u: m for u, m in listing.mid.items() if m and "\\Deleted" not in listing.flags[u]}
        writers = [
            Writer(
                gw,
                ledger,
                {u: m for u, m in inbox.items() if u % WRITERS == w},
                random.Random(rng.random()),
                f"{seed}-{r}-{w}",
            )
            for w in range(WRITERS)
        ]
        threads = [threading.Thread(target=w.run) for w in writers]
        for t in threads:
            t.start()
        for w in writers:
            assert w.started.wait(30)
        delay = rng.uniform(0.05, 0.5)
        time.sleep(delay)
        gw.kill()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        done += sum(w.done for w in writers)
        print(
            f"round {r}: killed after {delay * 1000:.0f} ms, {done} operations answered OK so far; "
            f"in flight: {[w.in_flight for w in writers]}"
        )
        gw.start()
        check_after_restart(gw, ledger, upstream_port)
    assert ledger.refusals == [], f"seed {seed}: {ledger.refusals}"
    return done


def _initial_places(port: int) -> dict[str, set[Place]]:
    out: dict[str, set[Place]] = {}
    for folder in FOLDERS:
        for mid in upstream_listing(port, folder).mid.values():
            assert mid is not None
            out[mid] = {folder}
    return out


@pytest.fixture
def small_upstream(
    fresh_dovecot: DovecotFactory, sample_mailbox: dict[str, list[SampleMessage]]
) -> DovecotServer:
    """Dovecot with INBOX and Archive of the sample mailbox (108 messages): quick restarts."""
    return fresh_dovecot(folders={f: sample_mailbox[f] for f in FOLDERS})


def test_kill_during_moves_with_upstream_move(small_upstream: DovecotServer, tmp_path: Path) -> None:
    seed = _seed()
    gw = GatewayProcess(tmp_path, small_upstream.port)
    try:
        done = run_move_rounds(gw, small_upstream.port, rounds=_rounds(4), seed=seed)
    finally:
        gw.stop()
    assert done >= 8, f"seed {seed}: the writers barely ran ({done} operations)"


def test_kill_during_moves_through_intents(small_upstream: DovecotServer, tmp_path: Path) -> None:
    seed = _seed()
    with relay_hiding_move(small_upstream.port) as relay:
        gw = GatewayProcess(tmp_path, relay.port)
        try:
            done = run_move_rounds(gw, small_upstream.port, rounds=_rounds(5), seed=seed)
            states = gw.intent_states()
        finally:
            gw.stop()
    print(f"intents: {len(states)}, settled at a restart: {[s for s in states if s != 'done']}")
    # The gateway really took the intents path (one intent per move).
    assert states and all(s != "open" for s in states), states
    assert done >= 8, f"seed {seed}: the writers barely ran ({done} operations)"


# --- scenario 3: a large APPEND cut at random moments ---------------------------------------

LARGE = 2 * 1024 * 1024
CHUNK = 64 * 1024


def _large_message(mid: str, rng: random.Random) -> bytes:
    head = (
        f"From: crash@example.test\r\nTo: team@example.test\r\nSubject: large {mid}\r\n"
        f"Message-ID: {mid}\r\nContent-Type: text/plain\r\n\r\n"
    ).encode()
    line_count = (LARGE - len(head)) // 78 + 1
    body = b"".join(rng.randbytes(38).hex().encode() + b"\r\n" for _ in range(line_count))
    return head + body


@dataclass
class LargeAppend:
    """One APPEND of ``message`` on a raw connection, the literal sent in chunks (so a kill can
    land while the gateway is still receiving it).  ``answer``: the tagged line, if any."""

    gw: GatewayProcess
    message: bytes
    sending: threading.Event = field(default_factory=threading.Event)
    answer: bytes | None = None
    seconds: float = 0.0

    def run(self) -> None:
        raw = RawClient("127.0.0.1", self.gw.port, timeout=30)
        try:
            raw.login(USER, PASSWORD)
            start = time.monotonic()
            self.sending.set()
            raw.send(b"A1 APPEND INBOX {%d}\r\n" % len(self.message))
            assert raw.readline().startswith(b"+")
            for i in range(0, len(self.message), CHUNK):
                raw.send(self.message[i : i + CHUNK])
                time.sleep(0.001)
            raw.send(b"\r\n")
            self.answer = raw.read_until_tagged(b"A1")[-1]
            self.seconds = time.monotonic() - start
        except (OSError, ConnectionError):
            pass
        finally:
            self.sending.set()
            raw.close()


def test_kill_during_large_append(small_upstream: DovecotServer, tmp_path: Path) -> None:
    seed = _seed()
    rng = random.Random(seed)
    port = small_upstream.port
    ledger = Ledger(seed)
    gw = GatewayProcess(tmp_path, port)
    outcomes: list[str] = []
    try:
        gw.start()
        for mid, places in _initial_places(port).items():
            ledger.expect(mid, *places)
        # Round 0 is not cut: it measures how long a 2 MB APPEND takes, so that the kills
        # below land anywhere from the first literal byte to just after the answer.
        mid = f"<large-{seed}-0@imapgate.test>"
        first = LargeAppend(gw, _large_message(mid, rng))
        first.run()
        assert first.answer is not None and first.answer.startswith(b"A1 OK"), first.answer
        ledger.expect(mid, "INBOX")
        print(f"uncut 2 MB APPEND: {first.seconds * 1000:.0f} ms")
        for r in range(1, _rounds(5) + 1):
            mid = f"<large-{seed}-{r}@imapgate.test>"
            job = LargeAppend(gw, _large_message(mid, rng))
            ledger.expect(mid, "INBOX", None)
            thread = threading.Thread(target=job.run)
            thread.start()
            assert job.sending.wait(30)
            delay = rng.uniform(0.0, first.seconds * 1.2)
            time.sleep(delay)
            gw.kill()
            thread.join(30)
            if job.answer is not None:
                assert job.answer.startswith(b"A1 OK"), f"seed {seed}: {job.answer!r}"
                ledger.expect(mid, "INBOX")
            gw.start()
            where = ledger.verify(port)
            arrived = where.get(mid, [])
            outcomes.append(f"{'OK' if job.answer else 'cut'}/{'stored' if arrived else 'absent'}")
            print(f"round {r}: killed after {delay * 1000:.0f} ms: {outcomes[-1]}")
            if arrived:
                # Never a truncated message: what is upstream is all of it.
                ((folder, uid),) = arrived
                size = upstream_listing(port, folder).size[uid]
                assert size == len(job.message), f"seed {seed}: {mid} stored with {size} bytes"
            check_after_restart(gw, ledger, port)
    finally:
        gw.stop()
    print(f"outcomes: {outcomes}")


# --- the window behind the first bug these tests found --------------------------------------


def test_unrecorded_uid_below_a_recorded_one_is_found_after_restart(
    small_upstream: DovecotServer, tmp_path: Path
) -> None:
    """Two concurrent APPENDs get UIDs n and n+1; the gateway records n+1 from its APPENDUID
    and is killed before recording n.  Found by the MOVE/APPEND kills above (seed 1524772634,
    round 6): after the restart the gateway never showed UID n, since syncs fetched new mail
    only above the highest UID it knew.  Here the window is made deterministic."""
    port = small_upstream.port
    gw = GatewayProcess(tmp_path, port)
    gw.start()
    gw.stop()
    with session(upstream_login("127.0.0.1", port)) as c:
        for n in (1, 2):
            ok(c.append("INBOX", "", None, _small_message(f"<gap-{n}@imapgate.test>")))
    listing = upstream_listing(port, "INBOX")
    first, second = sorted(listing.mid)[-2:]
    assert listing.mid[first] == "<gap-1@imapgate.test>"
    # What MailService.append writes for the second APPEND's APPENDUID (the first one's
    # record never came: the process died).
    engine = open_engine(f"sqlite:///{gw.db}")
    replica = Replica(engine, EventHub())
    replica.load()
    inbox = replica.get("INBOX")
    assert inbox is not None and first not in inbox.records
    replica.add_messages(
        inbox, [MessageRecord(second, (), 0, time.time(), 0, listing.size[second], listing.mid[second])]
    )
    engine.dispose()
    gw.start()
    try:
        got = gateway_flags(gw)["INBOX"]
    finally:
        gw.stop()
    assert sorted(got) == sorted(listing.flags), sorted(set(listing.flags) - set(got))
    assert gw.log_problems() == []
