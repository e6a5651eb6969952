"""Mixed load: 20 concurrent clients for 60 s (``--quick``: 15 s), operations per second through
the gateway vs directly against Dovecot.

Each client (its own gateway user; directly, all log in as the shared account) loops over a
random mix of what mail clients do, with a fixed seed per client so both sides get the same mix:

======================  ======  =============================================================
operation               weight  command(s)
======================  ======  =============================================================
select                  10      ``SELECT`` one of two folders (5,000 and 2,000 messages)
fetch-flags             15      ``UID FETCH 1:* (UID FLAGS)`` (a client re-syncing the folder)
fetch-envelopes         20      ``UID FETCH a:a+49 (UID ENVELOPE BODYSTRUCTURE)``
store                   25      ``UID STORE u +FLAGS/-FLAGS (\\Flagged or \\Seen)``
append                  10      ``APPEND`` of a 1 KB message (LITERAL+), to the selected folder
expunge                 10      ``UID STORE u +FLAGS.SILENT (\\Deleted)`` + ``UID EXPUNGE u`` of a
                                message this client appended (two commands, one operation)
idle                    10      ``IDLE``, 20 ms, ``DONE``
======================  ======  =============================================================

Every tagged NO/BAD counts as a protocol error (none is expected: all commands are UID
commands on messages that exist, or on the client's own appended messages).  A short warm-up
precedes each measured window.  Target: gateway >= 0.7 x direct operations/s, zero errors.

``--acl``: folder permissions on the same load.  Two gateways in front of the same Dovecot (which
also gets 50 empty folders ``Other/NN``): one without any ACL entry, one with a realistic table
written into its store before it starts -- on the folders the load uses ``authenticated lr``,
``$bench lrswipkxte`` (every benchmark user is in ``$bench``), ``-$interns x``, and 200 entries
elsewhere (four on each ``Other/NN``: ``authenticated lr``, ``$bench lrs``, ``-$interns s``,
``user<n> lrswipkxtea``).  The two gateways run ABBA (without, with, with, without) so a drift of
the machine's load hits both alike; the figure is the sum over both windows of each.
Target: with ACL >= 1 / 1.05 x the operations/s without (at most 5 % slower).

Run: ``.venv/bin/python benchmarks/gateway_mixed.py [--quick] [--clients N] [--seconds S] [--acl]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    PASSWORD,
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
    Client,
    GatewayProcess,
    Profiler,
    header,
    make_tmp,
    median,
    realistic_bulk,
    start_dovecot,
    tagged_status,
    verdict,
)

from imapgate.demo.sample_mail import SampleMessage

FOLDERS = {"Work": 5000, "Archive": 2000}
WEIGHTS = {
    "select": 10,
    "fetch-flags": 15,
    "fetch-envelopes": 20,
    "store": 25,
    "append": 10,
    "expunge": 10,
    "idle": 10,
}
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")


@dataclass
class Stats:
    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def message(client_id: int, n: int) -> bytes:
    body = ("Zeile %d des Benchmark-Textes, etwas Fülltext für realistische Größe.\r\n" * 14) % tuple(
        range(14)
    )
    return (
        f"From: Client {client_id} <c{client_id}@example.org>\r\nTo: info@example.org\r\n"
        f"Subject: Benchmark {client_id}/{n}\r\nMessage-ID: <bench.{client_id}.{n}.{time.time_ns()}@x>\r\n"
        f"Date: Tue, 10 Sep 2024 09:14:03 +0200\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


class Worker:
    def __init__(self, cid: int, client: Client, stats: Stats) -> None:
        self.cid = cid
        self.c = client
        self.stats = stats
        self.rng = random.Random(1000 + cid)
        self.folder = ""
        self.appended: dict[str, list[int]] = {f: [] for f in FOLDERS}
        self.n = 0

    async def cmd(self, op: str, text: str | bytes, expect_ok: bool = True) -> tuple[bytes, bytes]:
        body, line = await self.c.command(text)
        if expect_ok and tagged_status(line) != b"OK":
            self.stats.errors.append(f"{op}: {line.decode(errors='replace').strip()}")
        return body, line

    async def select(self, name: str) -> None:
        await self.cmd("select", f"SELECT {name}")
        self.folder = name

    async def step(self) -> None:
        ops = list(WEIGHTS)
        op = self.rng.choices(ops, weights=[WEIGHTS[o] for o in ops])[0]
        size = FOLDERS[self.folder]
        t0 = time.perf_counter()
        if op == "select":
            await self.select(self.rng.choice([f for f in FOLDERS if f != self.folder]))
        elif op == "fetch-flags":
            await self.cmd(op, "UID FETCH 1:* (UID FLAGS)")
        elif op == "fetch-envelopes":
            a = self.rng.randint(1, size - 49)
            await self.cmd(op, f"UID FETCH {a}:{a + 49} (UID ENVELOPE BODYSTRUCTURE)")
        elif op == "store":
            u = self.rng.randint(1, size)
            sign = self.rng.choice("+-")
            flag = self.rng.choice(["\\Flagged", "\\Seen"])
            await self.cmd(op, f"UID STORE {u} {sign}FLAGS ({flag})")
        elif op == "append":
            self.n += 1
            data = message(self.cid, self.n)
            _, line = await self.cmd(
                op, b"APPEND %s (\\Seen) {%d+}\r\n%s" % (self.folder.encode(), len(data), data)
            )
            m = _APPENDUID.search(line)
            if m is not None:
                self.appended[self.folder].append(int(m.group(2)))
        elif op == "expunge":
            own = self.appended[self.folder]
            if not own:
                op = "store"
                u = self.rng.randint(1, size)
                await self.cmd(op, f"UID STORE {u} +FLAGS (\\Answered)")
            else:
                u = own.pop(0)
                await self.cmd(op, f"UID STORE {u} +FLAGS.SILENT (\\Deleted)")
                await self.cmd(op, f"UID EXPUNGE {u}")
        elif op == "idle":
            tag = self.c.next_tag()
            self.c.writer.write(f"{tag} IDLE\r\n".encode())
            line = await self.c.readline()
            while not line.startswith(b"+"):
                if line.startswith(tag.encode()):
                    self.stats.errors.append(f"idle: {line.decode(errors='replace').strip()}")
                    return
                line = await self.c.readline()
            await asyncio.sleep(0.02)
            self.c.writer.write(b"DONE\r\n")
            _, line = await self.c.read_response(tag)
            if tagged_status(line) != b"OK":
                self.stats.errors.append(f"idle: {line.decode(errors='replace').strip()}")
        self.stats.times[op].append(time.perf_counter() - t0)
        self.stats.ops[op] += 1


async def run_side(
    port: int | Sequence[int], users: list[str], password: str, warmup: float, seconds: float
) -> Stats:
    """The mix for ``users``; with several ports (nodes_mixed.py: gateway nodes), client i on
    ``ports[i % len(ports)]`` — the same seeds per client whatever the number of nodes."""
    ports = [port] if isinstance(port, int) else list(port)
    clients = [await Client.login(ports[i % len(ports)], u, password) for i, u in enumerate(users)]
    workers = [Worker(i, c, Stats()) for i, c in enumerate(clients)]
    for w in workers:
        await w.select(list(FOLDERS)[w.cid % len(FOLDERS)])
    measured = Stats()
    phase = {"measure": False}

    async def loop(w: Worker, until: float) -> None:
        while time.perf_counter() < until:
            w.stats = measured if phase["measure"] else Stats()
            await w.step()

    t_warm = time.perf_counter() + warmup
    await asyncio.gather(*(loop(w, t_warm) for w in workers))
    phase["measure"] = True
    t0 = time.perf_counter()
    await asyncio.gather(*(loop(w, t0 + seconds) for w in workers))
    elapsed = time.perf_counter() - t0
    measured.times["_elapsed"] = [elapsed]
    # Leave the folders as found: expunge what is still appended.
    for w in workers:
        for folder, uids in w.appended.items():
            if uids:
                await w.select(folder)
                ids = ",".join(map(str, uids))
                await w.cmd("cleanup", f"UID STORE {ids} +FLAGS.SILENT (\\Deleted)")
                await w.cmd("cleanup", f"UID EXPUNGE {ids}")
    for c in clients:
        await c.close()
    return measured


def summary(name: str, st: Stats) -> float:
    elapsed = st.times["_elapsed"][0]
    total = sum(st.ops.values())
    rate = total / elapsed
    per_op = ", ".join(
        f"{op} {st.ops[op]} ({median(st.times[op]) * 1000:.1f} ms)" for op in WEIGHTS if st.ops[op]
    )
    print(f"   {name}: {total} operations in {elapsed:.1f} s = {rate:.1f} ops/s; errors {len(st.errors)}")
    print(f"      count (median latency): {per_op}")
    kinds = Counter(re.sub(r"^(\S+): \S+ ", r"\1: ", e)[:90] for e in st.errors)
    for kind, count in kinds.most_common(10):
        print(f"      error x{count}: {kind}")
    return rate


OTHER_FOLDERS = [f"Other/{n:02d}" for n in range(50)]


def write_acl(gw: GatewayProcess, users: list[str]) -> int:
    """The ``--acl`` table, straight into the gateway's store before it starts."""
    from imapgate.config import load
    from imapgate.store.engine import open_engine
    from imapgate.team.acl import rights
    from imapgate.team.acl_store import AclStore

    cfg = load(gw.config)
    engine = open_engine(cfg.store.url)
    store = AclStore(engine)
    default = rights(cfg.acl.default)
    store.add_group("bench")
    store.add_group("interns")
    store.add_members("bench", users)
    store.add_members("interns", users[-2:])
    entries = 0
    for folder in FOLDERS:
        store.set_entry(folder, "authenticated", "lr", default=default)
        store.set_entry(folder, "$bench", "lrswipkxte", default=default)
        store.set_entry(folder, "-$interns", "x", default=default)
        entries += 3
    for n, folder in enumerate(OTHER_FOLDERS):
        store.set_entry(folder, "authenticated", "lr", default=default)
        store.set_entry(folder, "$bench", "lrs", default=default)
        store.set_entry(folder, "-$interns", "s", default=default)
        store.set_entry(folder, users[n % len(users)], "lrswipkxtea", default=default)
        entries += 4
    engine.dispose()
    return entries


def run_acl(args: argparse.Namespace, seconds: float, warmup: float) -> None:
    """``--acl``: the same load through a gateway with ACL entries and one without."""
    tmp = make_tmp("mixed-acl")
    dc = plain = acl = None
    try:
        folders: dict[str, list[SampleMessage]] = {
            name: realistic_bulk(n, seed=i + 3) for i, (name, n) in enumerate(FOLDERS.items())
        }
        folders.update({name: [] for name in OTHER_FOLDERS})
        dc = start_dovecot(tmp, folders, max_userip_connections=args.clients + 20)
        users = [f"user{i}" for i in range(args.clients)]
        plain = GatewayProcess(tmp, dc.port, users, name="gateway-plain")
        acl = GatewayProcess(tmp, dc.port, users, name="gateway-acl")
        print(
            f"   ACL entries written: {write_acl(acl, users)} "
            f"({len(FOLDERS) * 3} on the load's folders, {len(OTHER_FOLDERS) * 4} elsewhere)"
        )
        print(f"   gateway without ACL ready in {plain.start():.1f} s; with ACL in {acl.start():.1f} s")
        runs: dict[str, list[Stats]] = {"without ACL": [], "with ACL": []}
        abba = (("without ACL", plain), ("with ACL", acl), ("with ACL", acl), ("without ACL", plain))
        for name, gw in abba:
            runs[name].append(asyncio.run(run_side(gw.port, users, PASSWORD, warmup, seconds)))
        d = asyncio.run(run_side(dc.port, [UPSTREAM_USER] * args.clients, UPSTREAM_PASSWORD, warmup, seconds))
        rates: dict[str, float] = {}
        for name, stats in runs.items():
            for i, st in enumerate(stats):
                summary(f"gateway {name} #{i + 1}", st)
            ops = sum(sum(st.ops.values()) for st in stats)
            rates[name] = ops / sum(st.times["_elapsed"][0] for st in stats)
            print(f"   gateway {name}: {rates[name]:.1f} ops/s over both windows")
        d_rate = summary("direct ", d)
        errors = sum(len(st.errors) for stats in runs.values() for st in stats)
        log_errors = len(plain.error_lines()) + len(acl.error_lines())
        print(
            f"   with ACL / direct: {rates['with ACL'] / d_rate:.2f}; "
            f"without ACL / direct: {rates['without ACL'] / d_rate:.2f}; "
            f"protocol errors through the gateways: {errors}; gateway log errors: {log_errors}"
        )
        ok = rates["with ACL"] * 1.05 >= rates["without ACL"] and errors == 0 and log_errors == 0
        # verdict's "gateway" column is the ACL side, its "direct" column the side without.
        verdict(
            "mixed load with ACLs",
            rates["with ACL"],
            rates["without ACL"],
            "ops/s",
            "with ACL >= without / 1.05, 0 errors",
            ok,
        )
    finally:
        for gw in (acl, plain):
            if gw is not None:
                gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="15 s per side")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="py-spy the gateway into this file")
    ap.add_argument("--acl", action="store_true", help="a gateway with ACL entries vs one without")
    args = ap.parse_args()
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    warmup = 3.0 if args.quick else 10.0
    if args.acl:
        header(f"gateway_mixed --acl: {args.clients} clients, {seconds:.0f} s per window, ABBA")
        run_acl(args, seconds, warmup)
        return
    header(f"gateway_mixed: {args.clients} clients, {seconds:.0f} s per side")
    tmp = make_tmp("mixed")
    dc = gw = None
    try:
        dc = start_dovecot(
            tmp,
            {name: realistic_bulk(n, seed=i + 3) for i, (name, n) in enumerate(FOLDERS.items())},
            max_userip_connections=args.clients + 10,
        )
        users = [f"user{i}" for i in range(args.clients)]
        gw = GatewayProcess(tmp, dc.port, users)
        print(f"   gateway ready in {gw.start():.1f} s (4 upstream connections)")
        with Profiler(gw.pid, args.profile):
            g = asyncio.run(run_side(gw.port, users, PASSWORD, warmup, seconds))
        rss = gw.rss_mb()
        d = asyncio.run(run_side(dc.port, [UPSTREAM_USER] * args.clients, UPSTREAM_PASSWORD, warmup, seconds))
        g_rate = summary("gateway", g)
        d_rate = summary("direct ", d)
        print(f"   gateway RSS after the run: {rss:.0f} MB; gateway log errors: {len(gw.error_lines())}")
        for line in gw.error_lines()[:5]:
            print(f"      {line[:200]}")
        errors = len(g.errors) + len(d.errors)
        ok = g_rate >= 0.7 * d_rate and not g.errors
        verdict("mixed load", g_rate, d_rate, "ops/s", "gateway >= 0.7 x direct, 0 errors", ok)
        print(f"   protocol errors: gateway {len(g.errors)}, direct {len(d.errors)} (total {errors})")
    finally:
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
