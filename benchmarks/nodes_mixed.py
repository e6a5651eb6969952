"""Mixed load on one gateway node vs two nodes on one PostgreSQL (issue 16), same total clients.

The mix is ``gateway_mixed.py``'s (select, fetch-flags, fetch-envelopes, store, append, expunge,
idle; same weights, same seeds per client), on the same two folders (5,000 and 2,000 messages).
Three sides in one run, each for the same window:

1. one ``imapgate serve`` node on PostgreSQL, all N clients on it (the second node not running);
2. two nodes on the same PostgreSQL, client i on node i % 2 (N/2 each), as a balancer with
   ``leastconn`` would spread them;
3. every client directly at Dovecot (the reference, as in ``gateway_mixed.py``).

Before the sides, every message's envelope is fetched once through each node, and each node's
search index is complete (the content cache and the index are each node's own, in its data_dir:
else the side that runs first, or the node started last, pays for filling them).  Both nodes share one
upstream connection budget (``[upstream] max_connections``, default 4: the leases in
PostgreSQL), so two nodes do not get twice the hoster.  Printed: operations/s of each
side, the ratios 2 nodes / 1 node and each / direct, protocol errors, log errors of the nodes.
Target (issue 16: a team that outgrows one node adds one): 2 nodes >= 1 node, 0 errors.

The PostgreSQL server is the tests' private one (tests/support/postgres.py), never the machine's.

Run: ``.venv/bin/python benchmarks/nodes_mixed.py [--quick] [--clients N] [--seconds S] [--two-first]``
(``--two-first``: the 2-node side first, then node B stopped and the 1-node side).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

from common import (
    PASSWORD,
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
    Client,
    GatewayProcess,
    header,
    make_tmp,
    realistic_bulk,
    start_dovecot,
    verdict,
)
from gateway_mixed import FOLDERS, run_side, summary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.postgres import PostgresServer


async def warm(port: int, user: str) -> None:
    """Every message's envelope and structure once through a node: the content cache is the
    node's own, so without this the side that runs first pays for filling it (measured:
    fetch-envelopes 130-240 ms median on the first side, 20-30 ms on the second)."""
    c = await Client.login(port, user, PASSWORD)
    for folder in FOLDERS:
        await c.command(f"SELECT {folder}")
        _, line = await c.command("UID FETCH 1:* (UID ENVELOPE BODYSTRUCTURE)")
        if b" OK" not in line:
            raise RuntimeError(f"warm-up FETCH failed: {line!r}")
    await c.close()


def ready(node: GatewayProcess, user: str) -> None:
    """``node``'s content cache warm and its search index complete (its own, in its data_dir)."""
    t0 = time.perf_counter()
    asyncio.run(warm(node.port, user))
    indexed = node.wait_indexed(sum(FOLDERS.values()))
    took = time.perf_counter() - t0
    print(f"   {node.dir.name}: cache warm, search index complete in {took:.1f} s (index: {indexed:.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="15 s per side")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--two-first", action="store_true", help="2 nodes first, then node B stopped")
    ap.add_argument("--max-connections", type=int, default=4, help="[upstream] max_connections (shared)")
    args = ap.parse_args()
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    warmup = 3.0 if args.quick else 10.0
    header(
        f"nodes_mixed: {args.clients} clients, {seconds:.0f} s per side: 1 node vs 2 nodes on PostgreSQL, "
        f"{args.max_connections} upstream connections in all"
    )
    tmp = make_tmp("nodes-mixed")
    dc = pg = None
    gws: list[GatewayProcess] = []
    try:
        dc = start_dovecot(
            tmp,
            {name: realistic_bulk(n, seed=i + 3) for i, (name, n) in enumerate(FOLDERS.items())},
            max_userip_connections=args.clients + 10,
        )
        pg = PostgresServer()
        pg.start()
        extra = f'url = "{pg.create_database("bench").url}"\n'
        users = [f"user{i}" for i in range(args.clients)]
        node_a = GatewayProcess(
            tmp, dc.port, users, extra_toml=extra, name="node-a", max_connections=args.max_connections
        )
        gws.append(node_a)
        print(f"   node A ready in {node_a.start():.1f} s (initial sync into PostgreSQL included)")
        ready(node_a, users[0])
        load_before = os.getloadavg()
        node_b = GatewayProcess(
            tmp, dc.port, [], extra_toml=extra, name="node-b", max_connections=args.max_connections
        )
        gws.append(node_b)
        if args.two_first:  # the other order: a drift of the machine's load then favours 1 node
            print(f"   node B ready in {node_b.start():.1f} s")
            ready(node_b, users[0])
            two = asyncio.run(run_side([node_a.port, node_b.port], users, PASSWORD, warmup, seconds))
            node_b.stop()
            one = asyncio.run(run_side([node_a.port], users, PASSWORD, warmup, seconds))
        else:
            one = asyncio.run(run_side([node_a.port], users, PASSWORD, warmup, seconds))
            print(f"   node B ready in {node_b.start():.1f} s")
            ready(node_b, users[0])
            two = asyncio.run(run_side([node_a.port, node_b.port], users, PASSWORD, warmup, seconds))
        direct = asyncio.run(
            run_side([dc.port], [UPSTREAM_USER] * args.clients, UPSTREAM_PASSWORD, warmup, seconds)
        )
        load_after = os.getloadavg()
        r1 = summary("1 node ", one)
        r2 = summary("2 nodes", two)
        rd = summary("direct ", direct)
        log_errors = sum(len(gw.error_lines()) for gw in gws)
        for gw in gws:
            for line in gw.error_lines()[:5]:
                print(f"      {gw.dir.name}: {line[:200]}")
        errors = len(one.errors) + len(two.errors)
        print(
            f"   2 nodes / 1 node: {r2 / r1:.2f}; 1 node / direct: {r1 / rd:.2f}; "
            f"2 nodes / direct: {r2 / rd:.2f}"
        )
        print(
            f"   protocol errors through the nodes: {errors} (direct {len(direct.errors)}); "
            f"node log errors: {log_errors}"
        )
        print(
            "   load average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}".format(
                *load_before, *load_after
            )
        )
        verdict(
            "mixed load, 2 nodes vs 1",
            r2,
            r1,
            "ops/s",
            "2 nodes >= 1 node, 0 errors",
            r2 >= r1 and not errors,
        )
    finally:
        for gw in gws:
            gw.stop()
        if dc is not None:
            dc.close()
        if pg is not None:
            pg.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
