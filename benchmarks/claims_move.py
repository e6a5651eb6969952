"""Claims on the MOVE path: ``UID MOVE 1:* B`` of 10,000 messages through the gateway in a folder
where the mover holds 1,000 claims (they follow the messages: 1,000 claims re-keyed per move) while
a colleague holds 1,000 more in another folder, against the same MOVE in a folder pair whose 1,000
messages carry the same keywords set at Dovecot without any claim (the hoster's share), in a pair
without either, and Dovecot directly as the reference column — all in the same run.

One Dovecot, one ``imapgate serve`` child process with ``[claims]`` on (as everywhere), four folder
pairs of 10,000 messages each: ``Claimed/A`` → ``Claimed/B`` (alice claimed 1,000 of the messages
with ``UID STORE ... +FLAGS ($Claimed)`` through the gateway before timing), ``Plain/A`` →
``Plain/B`` (no claims there; bob holds 1,000 claims in ``Other``), ``Keyworded/A`` →
``Keyworded/B`` (1,000 messages with ``$Claimed $claimed_alice`` set directly at Dovecot),
``Direct/A`` → ``Direct/B`` moved on a direct Dovecot connection. Each round moves every pair there
and back (A → B, B → A), the order rotating each round; after every move the script waits until the
gateway shows it (its sync of every folder, the Direct pair's too, must not fall into the next
measurement) and a pause; the figures are the median move time and the medians of the per-move
ratios (claimed/plain, and its two factors claimed/keyworded and keyworded/plain). Target: claimed
<= 1.05 x plain.

Run: ``.venv/bin/python benchmarks/claims_move.py [--quick] [--rounds N]`` (~5 min; ``--quick``:
2,000 messages and 200 claims).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time

from common import (
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
    Client,
    GatewayProcess,
    header,
    make_tmp,
    median,
    realistic_bulk,
    start_dovecot,
    verdict,
)

PAIRS = ("Claimed", "Keyworded", "Plain", "Direct")
#: The keywords a claim by alice puts on a message at the hoster.
CLAIM_KEYWORDS = "($Claimed $claimed_alice)"
#: Seconds between two timed moves: the gateway's follow-up syncs of both folders
#: (requested after every move) must not overlap the next measurement.
SETTLE = 1.5


async def claim(port: int, user: str, folder: str, count: int) -> None:
    c = await Client.login(port, user)
    await c.ok(f'SELECT "{folder}"')
    await c.ok(f"UID STORE 1:{count} +FLAGS.SILENT ($Claimed)")
    await c.close()


async def keyword_directly(port: int, folder: str, count: int) -> None:
    """The claims' keywords on ``count`` messages, set at Dovecot without any claim: the
    hoster's cost of moving keyworded mail, apart from the gateway's claim bookkeeping."""
    c = await Client.login(port, UPSTREAM_USER, UPSTREAM_PASSWORD)
    await c.ok(f'SELECT "{folder}"')
    await c.ok(f"UID STORE 1:{count} +FLAGS.SILENT {CLAIM_KEYWORDS}")
    await c.close()


async def move_once(c: Client, src: str, dest: str) -> float:
    await c.ok(f'SELECT "{src}"')
    t0 = time.perf_counter()
    await c.ok(f'UID MOVE 1:* "{dest}"')
    return time.perf_counter() - t0


async def measure(gw_port: int, dc_port: int, rounds: int, n: int, claims: int) -> dict[str, list[float]]:
    await claim(gw_port, "alice", "Claimed/A", claims)
    await claim(gw_port, "bob", "Other", claims)
    await keyword_directly(dc_port, "Keyworded/A", claims)
    clients = {
        "Claimed": await Client.login(gw_port, "alice"),
        "Keyworded": await Client.login(gw_port, "alice"),
        "Plain": await Client.login(gw_port, "alice"),
        "Direct": await Client.login(dc_port, UPSTREAM_USER, UPSTREAM_PASSWORD),
    }
    watcher = await Client.login(gw_port, "bob")
    times: dict[str, list[float]] = {p: [] for p in PAIRS}
    order = list(PAIRS)
    for _ in range(rounds):
        for src, dest in (("A", "B"), ("B", "A")):
            for pair in order:
                seconds = await move_once(clients[pair], f"{pair}/{src}", f"{pair}/{dest}")
                times[pair].append(seconds)
                # The gateway syncs every folder, the Direct pair's too: wait until it
                # shows this move, so its sync is never inside the next measurement.
                await caught_up(watcher, f"{pair}/{dest}", n)
                await asyncio.sleep(SETTLE)
            order = order[1:] + order[:1]  # each pair takes each position in turn
    for c in (*clients.values(), watcher):
        await c.close()
    return times


async def caught_up(c: Client, folder: str, n: int, timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        body = await c.ok(f'STATUS "{folder}" (MESSAGES)')
        if f"MESSAGES {n})".encode() in body:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"the gateway did not show {n} messages in {folder} within {timeout:.0f} s")


def open_claims(gw: GatewayProcess) -> int:
    """The claims in the gateway's store: the mover's must have followed every move."""
    from sqlalchemy import func, select

    from imapgate.config import load
    from imapgate.store.engine import open_engine
    from imapgate.store.schema import claims

    engine = open_engine(load(gw.config).store.url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(claims)).scalar_one())
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 messages, 200 claims, 2 rounds")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    n, claims = (2000, 200) if args.quick else (10_000, 1000)
    rounds = args.rounds or (2 if args.quick else 3)
    header(f"claims_move: UID MOVE of {n} messages, {claims} claims by the mover (+{claims} by a "
           f"colleague elsewhere) vs none, {rounds} rounds x 2 directions")  # fmt: skip
    tmp = make_tmp("claims-move")
    dc = gw = None
    try:
        folders: dict[str, list] = {"Other": realistic_bulk(claims, seed=9)}  # type: ignore[type-arg]
        for i, pair in enumerate(PAIRS):
            folders[f"{pair}/A"] = realistic_bulk(n, seed=i + 1)
            folders[f"{pair}/B"] = []
        dc = start_dovecot(tmp, folders, max_userip_connections=20)
        gw = GatewayProcess(tmp, dc.port, ["alice", "bob"], extra_toml='[claims]\nexpire_after = "0"\n')
        print(f"   gateway ready in {gw.start():.1f} s")
        times = asyncio.run(measure(gw.port, dc.port, rounds, n, claims))
        for name, values in times.items():
            print(
                f"   {name}: median {median(values) * 1000:.0f} ms "
                f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}) over {len(values)} moves"
            )

        # Paired per move (the same round and direction, seconds apart): less exposed
        # to the load of a shared machine than the ratio of two medians.
        def paired(a: str, b: str) -> float:
            return median([x / y for x, y in zip(times[a], times[b], strict=True)])

        bookkeeping, hoster, total = (
            paired("Claimed", "Keyworded"), paired("Keyworded", "Plain"), paired("Claimed", "Plain")
        )  # fmt: skip
        print(f"   paired ratios (median per move): claimed/keyworded {bookkeeping:.3f} (the gateway's "
              f"claim bookkeeping), keyworded/plain {hoster:.3f} (the hoster moving keyworded mail), "
              f"claimed/plain {total:.3f}")  # fmt: skip
        claimed, _keyworded, plain, direct = (median(times[p]) for p in PAIRS)
        ratio = claimed / plain
        print(
            f"RESULT claims_move: with claims {claimed * 1000:.0f} ms, without {plain * 1000:.0f} ms, "
            f"ratio {ratio:.3f}, paired {total:.3f} (target <= 1.05: {'MET' if total <= 1.05 else 'MISSED'})"
        )
        verdict("gateway (no claims) vs dovecot", plain, direct, "s", "for reference", True)
        print(f"   claims still open after the moves: {open_claims(gw)} (expected {2 * claims})")
        errors = gw.error_lines()
        if errors:
            print("   gateway log errors:\n   " + "\n   ".join(errors[:10]))
    finally:
        if gw is not None:
            gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
