"""What a replica transition's commit costs on the event loop's thread.

Times ``StoreRepository.commit`` (the SQL of one transition, SQLite file in
WAL with synchronous=NORMAL, as the gateway opens it) for the transitions
the write path makes per client command, in a folder of ``--messages``
messages.  Run: ``python benchmarks/commit_cost.py [--messages N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from imapgate.replica.mailbox import MessageRecord
from imapgate.replica.replica import Replica
from imapgate.store.engine import open_engine
from imapgate.store.repository import StoreRepository
from imapgate.team.journal import JournalEntry
from imapgate.team.users import UserDirectory


class TimedRepository(StoreRepository):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.times: list[float] = []

    def commit(self, changes, hook=None):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return super().commit(changes, hook)
        finally:
            self.times.append(time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        engine = open_engine(f"sqlite:///{Path(d) / 's.sqlite3'}")
        alice = UserDirectory(engine).add("alice", "pw")
        repo = TimedRepository(engine)
        replica = Replica(engine, repository=repo)
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
        for name, fn in cases.items():
            repo.times.clear()
            for k in range(args.rounds):
                fn(k)
            t = sorted(repo.times)
            print(
                f"{name}: median {statistics.median(t) * 1e6:.0f} µs, "
                f"p99 {t[int(len(t) * 0.99)] * 1e6:.0f} µs ({len(t)} commits)"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
