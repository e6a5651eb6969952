"""Recoverable deletes under real crashes: ``imapgate serve`` (``[recovery] enabled``) as a
child process in front of a real Dovecot, SIGKILL at a random moment during a burst of
expunges, a move without MOVE, folder DELETEs, and restores; restart on the same store (the
open intents are settled at start); then, checked at Dovecot directly:

* every Message-ID there at the start is exactly once in one of the folders or exactly
  once in the hidden recovery folder — never gone, never twice;
* what is in the hidden folder is exactly what the store lists as recoverable (``kept``),
  one item each; what is in a folder is not listed; no intent is left open;
* the journal agrees: each kept or restored item's removal is journaled (an ``expunged``
  entry naming its Message-ID, or a ``folder_deleted`` entry of its folder — by the member,
  or "at the hoster" when the kill came between the hoster's answer and the gateway's
  commit), and each restored item's restore (a ``restored`` entry naming it).

The kill delays come from a seeded RNG (printed; ``CRASH_SEED`` replays, ``CRASH_ROUNDS``
runs more rounds), as in test_crash_recovery.py, whose gateway process and listings this
reuses.
"""

from __future__ import annotations

import contextlib
import imaplib
import random
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer, SampleMessage
from tests.support.imap import ok, quote, session, upstream_login

from .test_crash_recovery import IMAPGATE, GatewayProcess, _rounds, _seed, relay_hiding_move, upstream_listing

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HIDDEN = "imapgate-recovery"
DovecotFactory = Callable[..., DovecotServer]


class RecoveringGateway(GatewayProcess):
    """The crash tests' gateway process with recovery on."""

    def __init__(self, base: Path, upstream_port: int) -> None:
        super().__init__(base, upstream_port)
        self.config.write_text(self.config.read_text() + '\n[recovery]\nenabled = true\nretention = "1h"\n')

    def items(self) -> list[tuple[str | None, str]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as db:
            return list(db.execute("SELECT message_id, state FROM recovery_items"))

    def journal_disagreements(self) -> list[str]:
        """Recovery items whose removal or restore the journal does not record."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as db:
            items = list(db.execute("SELECT id, state, mailbox, message_id FROM recovery_items"))
            named = set(
                db.execute(
                    "SELECT j.action, m.message_id"
                    " FROM journal j JOIN journal_messages m ON m.entry_id = j.id WHERE j.result = 'OK'"
                )
            )
            deleted = {
                row[0] for row in db.execute("SELECT mailbox FROM journal WHERE action = 'folder_deleted'")
            }
        wrong = []
        for item_id, state, mailbox, mid in items:
            if state not in ("kept", "restored") or mid is None:
                continue
            if ("expunged", mid) not in named and mailbox not in deleted:
                wrong.append(f"item {item_id} ({mid}, {state}): its removal from {mailbox} is not journaled")
            if state == "restored" and ("restored", mid) not in named:
                wrong.append(f"item {item_id} ({mid}): restored, but no 'restored' entry names it")
        return wrong


def folders_of(port: int) -> list[str]:
    with session(upstream_login("127.0.0.1", port)) as c:
        names = []
        for line in ok(c.list()):
            text = line.decode() if isinstance(line, bytes) else str(line)
            names.append(text.rsplit(" ", 1)[-1].strip('"'))
    return names


def places(port: int) -> tuple[Counter[str], Counter[str]]:
    """(Message-ID counts in the team's folders, in the hidden folder) at Dovecot."""
    team: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    for folder in folders_of(port):
        try:
            listing = upstream_listing(port, folder)
        except AssertionError:
            continue  # a level that is no folder (\\Noselect)
        into = hidden if folder == HIDDEN else team
        for uid, mid in listing.mid.items():
            # A message flagged \\Deleted but not expunged (the kill came between) is still there.
            into[mid or f"(none {folder} {uid})"] += 1
    return team, hidden


def check(
    gw: RecoveringGateway,
    port: int,
    originals: set[str],
    seed: int,
    *,
    moves_only: bool = False,
) -> None:
    team, hidden = places(port)
    for mid in originals:
        assert team[mid] + hidden[mid] == 1, f"seed {seed}: {mid}: {team[mid]} in folders, {hidden[mid]} kept"
    kept = Counter(mid for mid, state in gw.items() if state == "kept")
    assert kept == Counter({m: n for m, n in hidden.items() if m in originals}), (
        f"seed {seed}: kept items {dict(kept)} != hidden folder {dict(hidden)}"
    )
    if moves_only:
        assert not hidden, f"seed {seed}: a move kept copies: {dict(hidden)}"
    assert gw.open_intents() == [], f"seed {seed}: open intents after restart"
    assert gw.log_problems() == [], f"seed {seed}: {gw.log_problems()}"
    # The sync's pass at start may journal what the kill left unjournaled: give it a moment.
    deadline = time.monotonic() + 15
    while gw.journal_disagreements() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gw.journal_disagreements() == [], f"seed {seed}: the journal disagrees"


def originals_of(port: int) -> set[str]:
    team, hidden = places(port)
    assert not hidden and all(n == 1 for n in team.values())
    return set(team)


def _burst(
    gw: RecoveringGateway,
    work: Callable[[imaplib.IMAP4], None],
    stop: threading.Event,
    started: threading.Event,
) -> None:
    try:
        with session(gw.login()) as c:
            started.set()  # the login is slow on purpose (argon2): kills land after it
            while not stop.is_set():
                work(c)
    except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error, EOFError, AssertionError):
        pass  # the kill
    finally:
        started.set()


def run_rounds(
    gw: RecoveringGateway,
    port: int,
    work: Callable[[imaplib.IMAP4], None],
    rounds: int,
    seed: int,
    *,
    moves_only: bool = False,
    delay: tuple[float, float] = (0.05, 0.6),
) -> None:
    rng = random.Random(seed)
    gw.start()
    originals = originals_of(port)
    for r in range(rounds):
        stop, started = threading.Event(), threading.Event()
        thread = threading.Thread(target=_burst, args=(gw, work, stop, started))
        thread.start()
        assert started.wait(30)
        wait = rng.uniform(*delay)
        time.sleep(wait)
        gw.kill()
        stop.set()
        thread.join(30)
        gw.start()
        check(gw, port, originals, seed, moves_only=moves_only)
        print(f"round {r}: killed after {wait * 1000:.0f} ms; items {Counter(s for _, s in gw.items())}")


def expunge_some(folder: str) -> Callable[[imaplib.IMAP4], None]:
    def work(c: imaplib.IMAP4) -> None:
        ok(c.select(quote(folder)))
        _t, data = c.uid("SEARCH", "ALL")
        uids = data[0].split()[:3] if data and data[0] else []
        if not uids:
            time.sleep(0.05)
            return
        which = b",".join(uids).decode()
        ok(c.uid("STORE", which, "+FLAGS.SILENT", "(\\Deleted)"))
        ok(c.uid("EXPUNGE", which))

    return work


@pytest.fixture
def upstream(fresh_dovecot: DovecotFactory, sample_mailbox: dict[str, list[SampleMessage]]) -> DovecotServer:
    inbox = sample_mailbox["INBOX"][:60]
    return fresh_dovecot(
        folders={
            "INBOX": inbox[:40],
            "Archive": [],
            **{f"Projects/P{i}": inbox[40 + 4 * i : 44 + 4 * i] for i in range(5)},
        }
    )


def test_kill_during_a_burst_of_expunges(upstream: DovecotServer, tmp_path: Path) -> None:
    seed = _seed()
    gw = RecoveringGateway(tmp_path, upstream.port)
    try:
        run_rounds(gw, upstream.port, expunge_some("INBOX"), _rounds(4), seed)
        states = Counter(s for _, s in gw.items())
    finally:
        gw.stop()
    assert states["kept"] >= 3, f"seed {seed}: the expunges barely ran: {states}"


def test_kill_during_moves_without_move(upstream: DovecotServer, tmp_path: Path) -> None:
    """The expunge half of a move whose copies arrived keeps nothing, also across kills."""
    seed = _seed()

    def work(c: imaplib.IMAP4) -> None:
        ok(c.select("INBOX"))
        _t, data = c.uid("SEARCH", "ALL")
        uids = data[0].split()[:2] if data and data[0] else []
        if uids:
            ok(c.uid("MOVE", b",".join(uids).decode(), "Archive"))

    with relay_hiding_move(upstream.port) as relay:
        gw = RecoveringGateway(tmp_path, relay.port)
        try:
            run_rounds(gw, upstream.port, work, _rounds(4), seed, moves_only=True)
        finally:
            gw.stop()
    assert upstream_listing(upstream.port, "Archive").mid, f"seed {seed}: no move ran"


def test_kill_during_folder_deletes(upstream: DovecotServer, tmp_path: Path) -> None:
    seed = _seed()

    def work(c: imaplib.IMAP4) -> None:
        for i in range(5):
            typ, _ = c.delete(f"Projects/P{i}")
            if typ == "OK":
                return
        time.sleep(0.05)

    gw = RecoveringGateway(tmp_path, upstream.port)
    try:
        # The journal too: a folder a DELETE in flight removes is left to that DELETE's
        # commit by the sync (a kill before it once left the folder's end unjournaled).
        run_rounds(gw, upstream.port, work, _rounds(3), seed, delay=(0.02, 0.4))
        states = Counter(s for _, s in gw.items())
    finally:
        gw.stop()
    assert states["kept"] >= 4, f"seed {seed}: no folder was deleted: {states}"


def test_kill_during_restores(upstream: DovecotServer, tmp_path: Path) -> None:
    seed = _seed()
    rng = random.Random(seed)
    port = upstream.port
    gw = RecoveringGateway(tmp_path, port)
    try:
        gw.start()
        originals = originals_of(port)
        with session(gw.login()) as c:
            for _ in range(6):
                expunge_some("INBOX")(c)
        for r in range(_rounds(3)):
            restore = subprocess.Popen(
                [*IMAPGATE, "--config", str(gw.config), "recovery", "restore", "--user", "alice"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            wait = rng.uniform(0.2, 1.5)
            time.sleep(wait)
            gw.kill()
            out = restore.communicate(timeout=60)[0].decode(errors="replace")
            gw.start()
            check(gw, port, originals, seed)
            print(f"round {r}: killed after {wait * 1000:.0f} ms; restore said: {out.strip()[-200:]}")
            with session(gw.login()) as c:
                expunge_some("INBOX")(c)  # more to restore in the next round
        states = Counter(s for _, s in gw.items())
    finally:
        gw.stop()
    assert states["restored"] >= 1, f"seed {seed}: no restore ran: {states}"
