"""What a replica transition's commit costs on the event loop's thread.

Times ``StoreRepository.commit`` (the SQL of one transition, SQLite file in
WAL with synchronous=NORMAL, as the gateway opens it) for the transitions
the write path makes per client command, in a folder of ``--messages``
messages.  ``--store postgresql``: the same on the tests' private PostgreSQL
server (tests/support/postgres.py), wired as a gateway node wires it (the
change-log bus writing in the commit, shared modseq allocator), with the
statements and connection checkouts each commit costs -- on PostgreSQL every
statement is a round trip the event loop waits for.
Run: ``python benchmarks/commit_cost.py [--messages N] [--store postgresql]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, event

from imapgate.replica.coordination import SharedMailboxIdAllocator, SharedModseqAllocator
from imapgate.replica.logbus import LogChangeBus
from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine
from imapgate.store.repository import StoreRepository
from imapgate.team.journal import JournalEntry
from imapgate.team.users import UserDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.postgres import PostgresServer


class TimedRepository(StoreRepository):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.times: list[float] = []

    def commit(self, changes, hook=None, *, last=None):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return super().commit(changes, hook, last=last)
        finally:
            self.times.append(time.perf_counter() - t)


class Counter:
    """Statements and pool checkouts on ``engine`` (SQLAlchemy events)."""

    def __init__(self, engine: Engine) -> None:
        self.statements = self.checkouts = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, *_: object) -> None:
        self.statements += 1

    def _checkout(self, *_: object) -> None:
        self.checkouts += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    pg: PostgresServer | None = None
    with tempfile.TemporaryDirectory() as d:
        if args.store == "postgresql":
            pg = PostgresServer()
            pg.start()
            engine = open_engine(pg.create_database("commits").url)
            parts: dict[str, object] = {
                "bus": LogChangeBus(engine, "bench"),
                "modseqs": SharedModseqAllocator(engine),
                "mailbox_ids": SharedMailboxIdAllocator(engine),
            }
        else:
            engine = open_engine(f"sqlite:///{Path(d) / 's.sqlite3'}")
            parts = {}
        alice = UserDirectory(engine).add("alice", "pw")
        repo = TimedRepository(engine)
        replica = Replica(engine, repository=repo, **parts)  # type: ignore[arg-type]
        mb = replica.upsert_mailbox("INBOX", "/", ())
        replica.reset(mb, 1, "initial")
        n = args.messages
        for i in range(1, n + 1, 5000):
            replica.add_messages(
                mb,
                [MessageRecord(u, (), 0, 1.7e9, 0, 2000, f"<{u}@b>") for u in range(i, min(i + 5000, n + 1))],
            )
        replica.private_state(mb, alice.id)
        cases = {
            "STORE +FLAGS \\Flagged, 1 message, with journal entry": lambda k: replica.set_shared_flags(
                mb,
                {1 + k % n: ("\\Flagged",) if k % 2 == 0 else ()},
                hook=JournalEntry("alice", "b", "STORE", "INBOX", "1").writer(),
            ),
            "private \\Seen, 1 message": lambda k: replica.set_private_flags(
                mb,
                alice.id,
                {"\\Seen": [1 + k % n]} if k % 2 == 0 else {},
                {} if k % 2 == 0 else {"\\Seen": [1 + (k - 1) % n]},
            ),
            "APPEND, 1 new message": lambda k: replica.add_messages(
                mb, [MessageRecord(n + 1 + k, (), 0, 1.7e9, 0, 2000, None)]
            ),
        }
        # Counting costs ~50 us a commit in SQLAlchemy's event dispatch: on PostgreSQL only,
        # where the statements are round trips worth counting.
        counter = Counter(engine) if args.store == "postgresql" else None
        print(f"store: {args.store}, {n} messages")
        for name, fn in cases.items():
            repo.times.clear()
            if counter is not None:
                counter.statements = counter.checkouts = 0
            for k in range(args.rounds):
                fn(k)
            t = sorted(repo.times)
            counted = (
                f"; per commit {counter.statements / len(t):.1f} statements, "
                f"{counter.checkouts / len(t):.1f} checkouts"
                if counter is not None
                else ""
            )
            print(
                f"{name}: median {statistics.median(t) * 1e6:.0f} µs, "
                f"p99 {t[int(len(t) * 0.99)] * 1e6:.0f} µs ({len(t)} commits{counted})"
            )
        engine.dispose()
    if pg is not None:
        pg.close()


if __name__ == "__main__":
    main()
