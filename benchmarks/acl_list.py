"""Folder permissions on the LIST path: ``LIST "" *`` of 1,000 folders through a gateway whose
store holds 200 ACL entries, against the same gateway build without any ACL entry, and Dovecot
directly as the reference column.

Both gateways run in front of the same Dovecot (1,000 empty folders: 20 departments with 49
project folders each, plus INBOX and the special-use folders), each as ``imapgate serve`` in its
own child process.  The ACL side gets a realistic table, written into its store before it starts:
50 project folders with four entries each (``authenticated lr``, ``$staff lrswipkxte``,
``-$interns w``, ``lead<n> lrswipkxtea``) -- 200 entries, 3 groups, 25 users.  The measuring user
is in ``$staff``, so every folder stays visible and both gateways answer the same 1,000+ lines:
the difference is the rights check, not a shorter answer.

Rounds alternate gateway without ACL, gateway with ACL, Dovecot (each side warmed up first), one
command per side per round; the figure is the median of the rounds.
Target: with ACL <= 1.2 x without.

Run: ``.venv/bin/python benchmarks/acl_list.py [--quick] [--rounds N]``  (~1 min; ``--quick``:
300 folders, 9 rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time

from common import (
    PASSWORD,
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
    Client,
    GatewayProcess,
    header,
    make_tmp,
    median,
    start_dovecot,
    verdict,
)

DEPARTMENTS = 20
USERS = [f"user{i}" for i in range(20)] + [f"lead{i}" for i in range(5)]
ACL_FOLDERS = 50  # x 4 entries = 200


def folder_names(total: int) -> list[str]:
    per = total // DEPARTMENTS - 1
    names: list[str] = []
    for d in range(DEPARTMENTS):
        names.append(f"Dept{d:02d}")
        names += [f"Dept{d:02d}/Project{p:03d}" for p in range(per)]
    return names


def write_acl(gw: GatewayProcess, folders: list[str]) -> int:
    """200 entries on ``ACL_FOLDERS`` project folders, straight into the gateway's store (before
    it starts, so the folders need not be known yet: ``folders=None`` skips that check)."""
    from imapgate.config import load
    from imapgate.store.engine import open_engine
    from imapgate.team.acl import rights
    from imapgate.team.acl_store import AclStore

    cfg = load(gw.config)
    engine = open_engine(cfg.store.url)
    store = AclStore(engine)
    default = rights(cfg.acl.default)
    store.add_group("staff")
    store.add_group("interns")
    store.add_group("leads")
    store.add_members("staff", [u for u in USERS if u.startswith("user")])
    store.add_members("interns", ["user15", "user16", "user17"])
    store.add_members("leads", [u for u in USERS if u.startswith("lead")])
    projects = [f for f in folders if "/" in f]
    step = max(1, len(projects) // ACL_FOLDERS)
    entries = 0
    for n, folder in enumerate(projects[::step][:ACL_FOLDERS]):
        # The first set_entry gives the folder "authenticated <default>"; narrow it.
        store.set_entry(folder, "authenticated", "lr", default=default)
        store.set_entry(folder, "$staff", "lrswipkxte", default=default)
        store.set_entry(folder, "-$interns", "w", default=default)
        store.set_entry(folder, f"lead{n % 5}", "lrswipkxtea", default=default)
        entries += 4
    engine.dispose()
    return entries


async def list_once(c: Client) -> tuple[float, int]:
    t0 = time.perf_counter()
    body = await c.ok('LIST "" *')
    return time.perf_counter() - t0, body.count(b"* LIST ")


async def measure(ports: dict[str, tuple[int, str, str]], rounds: int) -> dict[str, list[float]]:
    clients = {name: await Client.login(port, user, pw) for name, (port, user, pw) in ports.items()}
    times: dict[str, list[float]] = {name: [] for name in ports}
    counts: dict[str, int] = {}
    for c in clients.values():  # warm-up: the first LIST of a session pays its own set-up
        for _ in range(3):
            await list_once(c)
    for _ in range(rounds):
        for name, c in clients.items():
            seconds, n = await list_once(c)
            times[name].append(seconds)
            counts[name] = n
    for c in clients.values():
        await c.close()
    print("   folders listed: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    if counts["gateway without ACL"] != counts["gateway with ACL"]:
        raise SystemExit("the two gateways listed different folders: the comparison is void")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 folders, 9 rounds")
    ap.add_argument("--folders", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    total = args.folders or (300 if args.quick else 1000)
    rounds = args.rounds or (9 if args.quick else 21)
    header(f"acl_list: LIST \"\" * of {total} folders, 200 ACL entries vs none, {rounds} rounds")
    tmp = make_tmp("acl-list")
    dc = plain = acl = None
    try:
        names = folder_names(total)
        dc = start_dovecot(tmp, {name: [] for name in names}, max_userip_connections=30)
        plain = GatewayProcess(tmp, dc.port, USERS, name="gateway-plain")
        acl = GatewayProcess(tmp, dc.port, USERS, name="gateway-acl")
        print(f"   ACL entries written: {write_acl(acl, names)}")
        print(f"   gateway without ACL ready in {plain.start():.1f} s")
        print(f"   gateway with ACL ready in {acl.start():.1f} s")
        times = asyncio.run(measure({
            "gateway without ACL": (plain.port, "user0", PASSWORD),
            "gateway with ACL": (acl.port, "user0", PASSWORD),
            "dovecot": (dc.port, UPSTREAM_USER, UPSTREAM_PASSWORD),
        }, rounds))
        for name, values in times.items():
            print(f"   {name}: median {median(values) * 1000:.1f} ms "
                  f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")
        with_acl = median(times["gateway with ACL"])
        without = median(times["gateway without ACL"])
        print(f"   with ACL / Dovecot: {with_acl / median(times['dovecot']):.2f} x; "
              f"without ACL / Dovecot: {without / median(times['dovecot']):.2f} x")
        errors = len(plain.error_lines()) + len(acl.error_lines())
        print(f"   gateway log errors: {errors}")
        verdict("LIST with 200 ACL entries", with_acl * 1000, without * 1000, "ms",
                "with ACL <= 1.2 x without", with_acl <= 1.2 * without and errors == 0)
    finally:
        for gw in (acl, plain):
            if gw is not None:
                gw.stop()
        if dc is not None:
            dc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
