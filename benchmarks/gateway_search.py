"""Text search of a large folder: the gateway's search index vs Dovecot without FTS plugin.

One Dovecot folder of N messages (``realistic_bulk``, 100,000 by default, as in issue 17's
measurement); ``imapgate serve`` in its own process with ``[search] index = "on"``.

1. Indexing: time from the gateway listening to every message indexed (header fields first,
   then whole messages), messages/s, and the index size on disk (per 100,000 messages).
2. Search: ``UID SEARCH CHARSET UTF-8 <key> <string>`` for SUBJECT, FROM, BODY and TEXT, each with
   a selective string (few hits) and a broad one (a fifth to a third of the folder), median of
   several runs after warm-up, through the gateway and directly, interleaved, same client; the
   hit sets must be equal.  Target: each <= 50 ms through the gateway, and for BODY/TEXT >= 20 x
   faster than Dovecot.
3. Clients while indexing: an IDLE push (alice STOREs, bob in IDLE hears it: p50/p99) and a flag
   sync (``UID FETCH 1:* (UID FLAGS)``, median), once with the index complete and once while the
   gateway re-indexes the folder (``imapgate index rebuild``).  Target: unchanged within noise.

Run: ``.venv/bin/python benchmarks/gateway_search.py [--quick] [--messages N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import time

from common import (
    PASSWORD,
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
    VENV_BIN,
    Client,
    GatewayProcess,
    header,
    make_tmp,
    median,
    percentile,
    realistic_bulk,
    start_dovecot,
    verdict,
)

from imapgate.index.report import folder_reports, index_sizes
from imapgate.store.engine import open_engine

FOLDER = "Bulk"
#: (key, selective string, broad string) for the bulk messages of sample_mail.generate_bulk.
#: (key, selective string, broad string) for the bulk messages of sample_mail.generate_bulk; the
#: selective BODY string is message 4711's reference number (set in main()).
QUERIES = [
    ("SUBJECT", "#4711", "Rückfrage"),
    ("FROM", "Élodie Dubois", "monitoring@"),
    ("BODY", "Referenz: ", "übermorgen"),
    ("TEXT", "bulk.1.4711@", "nightly backup"),
]
_SEARCH = re.compile(rb"\* SEARCH([ 0-9]*)\r\n")
IDLE_SAMPLES = 200


def literal(text: str) -> bytes:
    data = text.encode()
    return b"{%d+}\r\n" % len(data) + data


async def search(c: Client, key: str, value: str) -> tuple[float, set[int]]:
    t0 = time.perf_counter()
    body, line = await c.command(b"UID SEARCH CHARSET UTF-8 " + key.encode() + b" " + literal(value))
    dt = time.perf_counter() - t0
    if line.split(b" ")[1] != b"OK":
        raise RuntimeError(f"SEARCH failed: {line!r}")
    m = _SEARCH.search(body)
    return dt, {int(x) for x in m.group(1).split()} if m else set()


async def compare_searches(gw_port: int, dc_port: int, runs: int) -> list[tuple[str, str, float, float, int]]:
    gw = await Client.login(gw_port, "alice", PASSWORD)
    dc = await Client.login(dc_port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    await gw.ok(f"SELECT {FOLDER}")
    await dc.ok(f"SELECT {FOLDER}")
    out = []
    for key, selective, broad in QUERIES:
        for value in (selective, broad):
            g_hits = (await search(gw, key, value))[1]
            d_hits = (await search(dc, key, value))[1]
            if g_hits != d_hits:
                raise RuntimeError(f"{key} {value!r}: gateway {len(g_hits)} hits, Dovecot {len(d_hits)}")
            g: list[float] = []
            d: list[float] = []
            for _ in range(runs):
                g.append((await search(gw, key, value))[0])
                d.append((await search(dc, key, value))[0])
            out.append((key, value, median(g), median(d), len(g_hits)))
    await gw.close()
    await dc.close()
    return out


# --- clients while indexing ------------------------------------------------------------------
class Idler:
    def __init__(self, c: Client) -> None:
        self.c = c
        self.seen: dict[tuple[int, bool], float] = {}
        self.event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.c.writer.write(b"I IDLE\r\n")
        if not (await self.c.readline()).startswith(b"+"):
            raise RuntimeError("IDLE refused")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        pat = re.compile(rb"\* (\d+) FETCH \(([^\r\n]*)\)\r\n")
        while True:
            line = await self.c.readline()
            m = pat.match(line)
            if m:
                self.seen.setdefault((int(m.group(1)), b"\\Flagged" in m.group(2)), time.perf_counter())
                self.event.set()

    async def wait(self, key: tuple[int, bool], timeout: float = 5.0) -> float | None:
        deadline = time.perf_counter() + timeout
        while key not in self.seen:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), left)
            except TimeoutError:
                return None
        return self.seen.pop(key)


async def client_latency(port: int, messages: int) -> tuple[list[float], list[float]]:
    """(IDLE push latencies, flag sync times)."""
    alice = await Client.login(port, "alice", PASSWORD)
    bob = await Client.login(port, "bob", PASSWORD)
    await alice.ok(f"SELECT {FOLDER}")
    await bob.ok(f"SELECT {FOLDER}")
    idler = Idler(bob)
    await idler.start()
    pushes: list[float] = []
    for i in range(IDLE_SAMPLES):
        uid = 1 + i % 100
        add = (i // 100) % 2 == 0
        t0 = time.perf_counter()
        await alice.ok(f"UID STORE {uid} {'+' if add else '-'}FLAGS (\\Flagged)")
        got = await idler.wait((uid, add))
        if got is not None:
            pushes.append(got - t0)
        await asyncio.sleep(0.005)
    if idler.task is not None:
        idler.task.cancel()
    await bob.close()
    syncs: list[float] = []
    for _ in range(5):
        t0 = time.perf_counter()
        body, _line = await alice.command("UID FETCH 1:* (UID FLAGS)")
        syncs.append(time.perf_counter() - t0)
        if body.count(b" FETCH ") != messages:
            raise RuntimeError("flag sync incomplete")
    await alice.close()
    return pushes, syncs


async def sync_header_cost(dc_port: int, messages: int) -> tuple[float, float]:
    """Seconds the initial sync's new-message fetch takes directly at Dovecot (batches of
    5,000 as replica/sync.py does) with Message-ID only, and with the fields SUBJECT, FROM,
    TO, CC and BCC search too: whether the sync should fetch them for the index."""
    c = await Client.login(dc_port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    await c.ok(f"EXAMINE {FOLDER}")
    out = []
    for fields in ("MESSAGE-ID", "MESSAGE-ID SUBJECT FROM TO CC BCC"):
        t0 = time.perf_counter()
        for a in range(1, messages + 1, 5000):
            await c.ok(f"UID FETCH {a}:{a + 4999} (UID FLAGS INTERNALDATE RFC822.SIZE "
                       f"BODY.PEEK[HEADER.FIELDS ({fields})])")
        out.append(time.perf_counter() - t0)
    await c.close()
    return out[0], out[1]


def wait_indexed(engine_url: str, messages: int, timeout: float) -> tuple[float, float]:
    """Seconds until the header fields, then whole messages, of FOLDER are indexed."""
    engine = open_engine(engine_url, migrate=False)
    t0 = time.perf_counter()
    headers_at = 0.0
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        r = next((r for r in folder_reports(engine) if r.name == FOLDER), None)
        if r is not None:
            if not headers_at and r.headers >= messages:
                headers_at = time.perf_counter() - t0
            if r.indexed >= messages:
                engine.dispose()
                return headers_at or time.perf_counter() - t0, time.perf_counter() - t0
        time.sleep(0.2)
    raise RuntimeError(f"index not complete after {timeout} s")


def indexing(engine_url: str, messages: int) -> bool:
    engine = open_engine(engine_url, migrate=False)
    r = next((r for r in folder_reports(engine) if r.name == FOLDER), None)
    engine.dispose()
    return r is not None and r.indexed < messages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 messages, fewer runs")
    ap.add_argument("--messages", type=int, default=0)
    ap.add_argument("--runs", type=int, default=0)
    args = ap.parse_args()
    n = args.messages or (20_000 if args.quick else 100_000)
    runs = args.runs or (3 if args.quick else 7)
    header(f"search index: {n} messages")
    tmp = make_tmp("search")
    dc = gw = None
    try:
        mail = realistic_bulk(n)
        ref = re.search(rb"Referenz: [0-9a-f]{8}", mail[min(4710, n - 1)].raw)
        assert ref is not None
        QUERIES[2] = ("BODY", ref.group().decode(), "übermorgen")
        dc = start_dovecot(tmp, {FOLDER: mail}, max_userip_connections=50)
        gw = GatewayProcess(tmp, dc.port, ["alice", "bob"], extra_toml='[search]\nindex = "on"\n')
        startup = gw.start()
        url = f"sqlite:///{gw.dir / 'data' / 'imapgate.sqlite3'}"
        print(f"   gateway up after {startup:.1f} s (initial sync included)")
        head_s, full_s = wait_indexed(url, n, timeout=3600)
        print(f"   indexing: header fields {head_s:.1f} s, whole messages {full_s:.1f} s after start: "
              f"{n / full_s:.0f} messages/s overall")
        sizes = index_sizes(open_engine(url, migrate=False))
        disk = sizes["fts_bytes"] + sizes["doc_bytes"]
        print(f"   index size: {disk / 1e6:.1f} MB on disk (FTS {sizes['fts_bytes'] / 1e6:.1f} MB, "
              f"stored texts {sizes['doc_bytes'] / 1e6:.1f} MB) for {sizes['text_bytes'] / 1e6:.1f} MB of "
              f"text: {disk / n * 100_000 / 1e6:.0f} MB per 100,000 messages; whole store "
              f"{gw.store_bytes() / 1e6:.0f} MB")

        bare, wide = asyncio.run(sync_header_cost(dc.port, n))
        print(f"   initial sync's fetch at Dovecot: Message-ID only {bare:.2f} s, with SUBJECT FROM TO CC "
              f"BCC {wide:.2f} s (+{(wide - bare) / bare * 100:.0f} %)")

        results = asyncio.run(compare_searches(gw.port, dc.port, runs))
        for key, value, g, d, hits in results:
            text = key in ("BODY", "TEXT")
            met = g <= 0.050 and (not text or d / g >= 20)
            print(f"   {key} {value!r}: {hits} hits")
            verdict(f"{key} {value!r}", g * 1000, d * 1000, "ms",
                    "<= 50 ms" + (", >= 20 x faster" if text else ""), met)

        base_push, base_sync = asyncio.run(client_latency(gw.port, n))
        subprocess.run([str(VENV_BIN / "imapgate"), "index", "rebuild", FOLDER, "--config", str(gw.config)],
                       check=True, capture_output=True)
        deadline = time.perf_counter() + 60
        while not indexing(url, n):
            if time.perf_counter() > deadline:
                raise RuntimeError("the gateway did not start re-indexing")
            time.sleep(0.2)
        t0 = time.perf_counter()
        load_push, load_sync = asyncio.run(client_latency(gw.port, n))
        still = indexing(url, n)
        took = time.perf_counter() - t0
        print(f"   measured while re-indexing for {took:.1f} s"
              + ("" if still else " (indexing finished during the measurement)"))
        for name, base, load in (("IDLE push", base_push, load_push), ("flag sync", base_sync, load_sync)):
            b99 = percentile(base, 99) if name == "IDLE push" else median(base)
            l99 = percentile(load, 99) if name == "IDLE push" else median(load)
            what = "p99" if name == "IDLE push" else "median"
            idle_part = f"index idle p50 {percentile(base, 50) * 1000:.1f} ms {what} {b99 * 1000:.1f} ms"
            load_part = f"while indexing p50 {percentile(load, 50) * 1000:.1f} ms {what} {l99 * 1000:.1f} ms"
            print(f"   {name}: {idle_part}; {load_part}")
            verdict(f"{name} while indexing ({what})", l99 * 1000, b99 * 1000, "ms", "unchanged within noise",
                    l99 <= b99 * 1.5 + 0.005)
        _head2, full2 = wait_indexed(url, n, timeout=3600)
        print(f"   re-indexing done {full2:.1f} s after the measurement ({n / (took + full2):.0f} messages/s "
              "with clients busy)")
        errors = gw.error_lines()
        if errors:
            print("   gateway errors:", *errors[:5], sep="\n   ")
    finally:
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()


