"""The audit journal at scale: 1,000,000 entries, ``imapgate audit --user X --since 7d``.

Fills a store (SQLite, WAL, opened and migrated as the gateway opens it) with
``--entries`` journal entries of a year of a 50-member team (most with one
message row, bulk ones with several, some logins and admin entries without),
then times the query ``imapgate audit`` runs (``AdminService.audit`` →
``team.audit.search``: the newest 100 of one user's last 7 days, with their
message rows) and ``--message-id M``.  The reference, in the same run on the
same file: the same SQL as a plain full scan (``NOT INDEXED``, sqlite3), the
query a journal without these indexes would run.  Also the store's growth per
entry (file bytes after a checkpoint / entries).

Run: ``python benchmarks/audit_query.py [--entries N]``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.gateway_setup import gateway_config

from benchmarks.common import header, make_tmp, verdict
from imapgate.gateway.admin import AdminService, AuditQuery
from imapgate.store.engine import open_engine
from imapgate.store.schema import journal, journal_messages

DAY = 86400.0
USERS = [f"user{i:02d}" for i in range(50)]
FOLDERS = ["INBOX", "Support", "Rechnungen", "Archive", "Sent", "Trash", "Projekte/Website"]
#: (command, detail, action, weight): a team's day.
KINDS = [
    ("STORE", "add \\Seen", "read", 40),
    ("STORE", "add \\Flagged", "flagged", 8),
    ("STORE", "add \\Deleted", "deleted", 8),
    ("EXPUNGE", None, "expunged", 8),
    ("MOVE", "to Archive", "moved", 10),
    ("COPY", "to Archive", "copied", 3),
    ("APPEND", "1 message(s)", "appended", 5),
    ("LOGIN", "via imap", "login", 12),
    ("ARRIVED", "1 message(s)", "arrived", 6),
]
BATCH = 20_000


def fill(db: Path, n: int, now: float, rng: random.Random) -> tuple[str, float]:
    """Write ``n`` entries (the gateway's columns, through sqlite3's executemany: filling
    is not what is measured); returns a Message-ID in the journal and the seconds it took."""
    weights = [k[3] for k in KINDS]
    sample_mid = ""
    t0 = time.perf_counter()
    entry_id = 0
    conn = sqlite3.connect(db)
    entry_sql, message_sql = (
        f"INSERT INTO {t.name} ({', '.join(c.name for c in t.columns if c.name != 'id' or t is journal)}) "
        f"VALUES ({', '.join(':' + c.name for c in t.columns if c.name != 'id' or t is journal)})"
        for t in (journal, journal_messages)
    )
    with conn:
        for start in range(0, n, BATCH):
            rows, msgs = [], []
            for _ in range(min(BATCH, n - start)):
                entry_id += 1
                command, detail, action, _w = rng.choices(KINDS, weights)[0]
                ts = now - rng.random() * 365 * DAY
                user = None if action == "arrived" else rng.choice(USERS)
                folder = rng.choice(FOLDERS)
                rows.append({
                    "id": entry_id, "ts": ts, "user_name": user,
                    "client": "at the hoster" if user is None else "Thunderbird 128.3 from 10.0.0.17",
                    "command": command, "mailbox": None if action == "login" else folder,
                    "uids": str(rng.randrange(1, 100_000)), "result": "OK", "detail": detail,
                    "action": action, "client_id": None if user is None else "Thunderbird 128.3",
                    "address": None if user is None else "10.0.0.17",
                    "origin": "hoster" if user is None else "gateway",
                })  # fmt: skip
                if action == "login":
                    continue
                count = 1 if rng.random() < 0.95 else rng.randrange(2, 20)  # some bulk changes
                for _ in range(count):
                    mid = f"<{rng.getrandbits(64):016x}.{entry_id}@mail.example.org>"
                    msgs.append({
                        "entry_id": entry_id, "mailbox": folder, "uid": rng.randrange(1, 100_000),
                        "message_id": mid, "subject": f"Rechnung {rng.randrange(10_000)} Lieferant X",
                    })  # fmt: skip
                    sample_mid = sample_mid or mid
            conn.executemany(entry_sql, rows)
            conn.executemany(message_sql, msgs)
    elapsed = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sample_mid, elapsed


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    header(f"audit journal: {args.entries:,} entries, `imapgate audit --user X --since 7d`")
    tmp = make_tmp("audit")
    db = tmp / "imapgate-data" / "imapgate.sqlite3"
    db.parent.mkdir(parents=True)
    url = f"sqlite:///{db}"
    open_engine(url).dispose()
    empty = store_bytes(db)
    now = time.time()
    rng = random.Random(13)
    mid, fill_s = fill(db, args.entries, now, rng)
    grown = store_bytes(db) - empty
    per_entry = grown / args.entries
    print(f"filled in {fill_s:.1f} s; store grew {grown / 1e6:.1f} MB: {per_entry:.0f} bytes per entry")

    config = gateway_config(data_dir=db.parent)
    admin = AdminService(config)
    opened = timed(lambda: admin.engine, 1)[0]  # what `imapgate audit` pays first: open + migration check
    user = "user07"
    since = now - 7 * DAY
    query = AuditQuery(user=user, since=since, limit=100)
    first = timed(lambda: admin.audit(query), 1)[0]
    ours = timed(lambda: admin.audit(query), args.runs)
    found = admin.audit(query)
    by_mid = timed(lambda: admin.audit(AuditQuery(message_id=mid)), args.runs)
    assert admin.audit(AuditQuery(message_id=mid)), "the sample Message-ID is in the journal"
    admin.close()

    # Reference: the same query without the indexes, as a plain full scan (sqlite3, same file).
    ref = sqlite3.connect(db)
    sql = (
        "SELECT * FROM journal NOT INDEXED WHERE user_name = ? AND ts >= ? "
        "ORDER BY ts DESC, id DESC LIMIT 100"
    )
    scan_rows = ref.execute(sql, (user, since)).fetchall()
    reference = timed(lambda: ref.execute(sql, (user, since)).fetchall(), max(3, args.runs // 4))
    ref.close()
    assert [r[0] for r in scan_rows] == [r.id for r in found], "the index answers what the scan answers"

    med, ref_med = statistics.median(ours), statistics.median(reference)
    print(f"opening the store (engine + migration check): {opened:.1f} ms")
    print(f"--user {user} --since 7d: {len(found)} entries; first run {first:.1f} ms, "
          f"median {med:.2f} ms, max {max(ours):.2f} ms (of {args.runs})")  # fmt: skip
    print(f"--message-id: median {statistics.median(by_mid):.2f} ms")
    print(f"reference full scan (NOT INDEXED, sqlite3): median {ref_med:.1f} ms")
    print(f"ratio full scan / indexed: {ref_med / med:.0f}x")
    verdict("audit --user X --since 7d", med, ref_med, "ms", "<= 200 ms", max(ours) <= 200 and first <= 200)
    print(f"RESULT store growth: {grown / args.entries:.0f} bytes per entry")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
