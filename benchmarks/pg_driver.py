"""The PostgreSQL driver, picked by measurement (issue 16): psycopg 3, synchronous as the store
uses it, against asyncpg, on the round trips a replica commit is made of -- BEGIN; UPDATE one
row; INSERT one row RETURNING id; COMMIT -- 2,000 transactions per round, three rounds
alternating, on the tests' private PostgreSQL.  Prints the median per transaction.

asyncpg is not a dependency of imapgate: install it into the venv for this run
(``.venv/bin/pip install asyncpg``).  Run: ``.venv/bin/python benchmarks/pg_driver.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import psycopg
from tests.support.postgres import PostgresServer

try:
    import asyncpg
except ImportError:
    sys.exit("pg_driver.py compares against asyncpg: .venv/bin/pip install asyncpg first")

N = 2000
SETUP = [
    "CREATE TABLE IF NOT EXISTS t (id bigserial primary key, v text)",
    "CREATE TABLE IF NOT EXISTS c (k int primary key, n bigint)",
    "INSERT INTO c VALUES (1, 0) ON CONFLICT DO NOTHING",
]


def psy(url: str) -> float:
    with psycopg.connect(url) as conn:
        for s in SETUP:
            conn.execute(s)
        conn.commit()
        ts: list[float] = []
        for _i in range(N):
            t = time.perf_counter()
            with conn.transaction():
                conn.execute("UPDATE c SET n = n + 1 WHERE k = %s", (1,))
                conn.execute("INSERT INTO t (v) VALUES (%s) RETURNING id", ("x",)).fetchone()
            ts.append(time.perf_counter() - t)
    return statistics.median(ts)


async def apg(url: str) -> float:
    conn = await asyncpg.connect(url)
    for s in SETUP:
        await conn.execute(s)
    ts: list[float] = []
    for _i in range(N):
        t = time.perf_counter()
        async with conn.transaction():
            await conn.execute("UPDATE c SET n = n + 1 WHERE k = $1", 1)
            await conn.fetchval("INSERT INTO t (v) VALUES ($1) RETURNING id", "x")
        ts.append(time.perf_counter() - t)
    await conn.close()
    return statistics.median(ts)


pg = PostgresServer()
pg.start()
url = pg.create_database("drv").url
res: dict[str, list[float]] = {"psycopg": [], "asyncpg": []}
try:
    for _r in range(3):
        res["psycopg"].append(psy(url))
        res["asyncpg"].append(asyncio.run(apg(url)))
finally:
    pg.close()
for k, v in res.items():
    print(k, " ".join(f"{x * 1e6:.0f}" for x in v), "µs per transaction (median of", N, ")")
print("asyncpg/psycopg", f"{statistics.median(res['asyncpg']) / statistics.median(res['psycopg']):.2f}")
