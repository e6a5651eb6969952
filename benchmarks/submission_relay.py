"""SMTP relay to the hoster: aiosmtplib on the event loop vs the stdlib's smtplib in worker
threads, and a whole submission through the gateway vs the same client sending to the
hoster directly.

Peers: a private Dovecot (LMTP + auth socket) and Postfix (STARTTLS, SASL, LMTP delivery)
from ``tests/support`` (needs root, ``postfix``, ``dovecot-lmtpd``).  Every message is one
client session: connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA (~20 KB), QUIT; ``CONCURRENCY``
sessions at a time.

1. relay only: the gateway's ``HosterSession`` (aiosmtplib) vs ``smtplib.SMTP`` in
   ``asyncio.to_thread`` — messages/s and p50/p99 per message;
2. end to end: smtplib → ``imapgate`` submission (in-process ``GatewayHarness``) → Postfix vs
   smtplib → Postfix; ratio.

    .venv/bin/python benchmarks/submission_relay.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import ssl
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.peers import DOVECOT_USERS
from tests.support.postfix import PostfixServer

from benchmarks.common import header, machine_info, median, percentile, verdict
from imapgate.config import SubmissionUpstreamConfig
from imapgate.demo import DovecotServer
from imapgate.submission.relay import Relay

CONCURRENCY = 10
SENDER = "info@example.test"
RCPT = "customer@customer.test"


def message(mid: str) -> bytes:
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\r\n" * 260)
    return (f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: bench\r\nMessage-ID: {mid}\r\n\r\n{body}").encode()


async def relay_aiosmtplib(relay: Relay, n: int) -> list[float]:
    sem = asyncio.Semaphore(CONCURRENCY)
    times: list[float] = []

    async def one() -> None:
        async with sem:
            t0 = time.perf_counter()
            hoster = relay.session()
            await hoster.mail(SENDER, [])
            await hoster.rcpt(RCPT)
            await hoster.data(message(f"<{uuid.uuid4().hex}@bench>"))
            await hoster.close()
            times.append(time.perf_counter() - t0)

    await asyncio.gather(*(one() for _ in range(n)))
    return times


def smtplib_session(pf: PostfixServer, user: str, password: str, data: bytes) -> float:
    t0 = time.perf_counter()
    with smtplib.SMTP(pf.host, pf.port, timeout=60) as c:
        c.ehlo("bench.example.test")
        c.starttls(context=pf.certificate.client_context())
        c.ehlo("bench.example.test")
        c.login(user, password)
        c.sendmail(SENDER, [RCPT], data)
    return time.perf_counter() - t0


async def relay_smtplib_threads(pf: PostfixServer, n: int) -> list[float]:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(CONCURRENCY)
    try:
        futures = [
            loop.run_in_executor(pool, smtplib_session, pf, "shared", DOVECOT_USERS["shared"],
                                 message(f"<{uuid.uuid4().hex}@bench>"))
            for _ in range(n)
        ]
        return list(await asyncio.gather(*futures))
    finally:
        pool.shutdown()


def one_session(target: tuple[str, int], cert_ctx: ssl.SSLContext, user: str, password: str) -> float:
    t0 = time.perf_counter()
    with smtplib.SMTP(*target, timeout=60) as c:
        c.ehlo("bench.example.test")
        c.starttls(context=cert_ctx)
        c.ehlo("bench.example.test")
        c.login(user, password)
        c.sendmail(SENDER, [RCPT], message(f"<{uuid.uuid4().hex}@bench>"))
    return time.perf_counter() - t0


def run_clients(
    target: tuple[str, int], cert_ctx: ssl.SSLContext, user: str, password: str, n: int
) -> tuple[float, list[float]]:
    def one(_i: int) -> float:
        return one_session(target, cert_ctx, user, password)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        times = list(pool.map(one, range(n)))
    return time.perf_counter() - t0, times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 60 if args.quick else 200
    header(f"submission relay: {n} messages of ~20 KB, {CONCURRENCY} at a time\n{machine_info()}")
    with tempfile.TemporaryDirectory(prefix="imapgate-bench-smtp-") as work, \
            DovecotServer(Path(work) / "dovecot", users=DOVECOT_USERS, enable_lmtp=True, auth_listener=True,
                          max_userip_connections=200, auth_penalty=False) as dc, \
            PostfixServer(dc) as pf:
        os.environ["SSL_CERT_FILE"] = str(pf.certificate.cert)
        cfg = SubmissionUpstreamConfig(host=pf.host, port=pf.port, tls="starttls", user="shared",
                                       password=DOVECOT_USERS["shared"])
        relay = Relay(cfg, hostname="bench.example.test")
        results: dict[str, tuple[float, list[float]]] = {}
        for name in ("aiosmtplib", "smtplib-threads", "aiosmtplib", "smtplib-threads"):
            t0 = time.perf_counter()
            if name == "aiosmtplib":
                times = asyncio.run(relay_aiosmtplib(relay, n))
            else:
                times = asyncio.run(relay_smtplib_threads(pf, n))
            wall = time.perf_counter() - t0
            pf.wait_queue_empty(120)
            results[name] = (wall, times)  # the second (warm) run of each is kept
        for name, (wall, times) in results.items():
            print(f"relay {name:16s} {n / wall:7.1f} msg/s  p50 {median(times) * 1e3:6.1f} ms  "
                  f"p99 {percentile(times, 99) * 1e3:6.1f} ms")
        a = n / results["aiosmtplib"][0]
        s = n / results["smtplib-threads"][0]
        verdict("relay aiosmtplib vs smtplib threads", a, s, "msg/s", ">= 0.8 x", a >= 0.8 * s)

        from tests.support.gateway import GatewayHarness

        with GatewayHarness(
            upstream_port=dc.port, data_dir=Path(work) / "gw", users={"alice": "alice-pw"},
            server={"certificate": str(pf.certificate.cert), "private_key": str(pf.certificate.key)},
            submission={"allowed_from": [SENDER], "allow_plaintext": False,
                        "upstream": {"host": pf.host, "port": pf.port, "tls": "starttls"}},
        ) as gw:
            ctx = pf.certificate.client_context()
            run_clients((gw.host, gw.smtp_port()), ctx, "alice", "alice-pw", 10)  # warm-up
            run_clients((pf.host, pf.port), ctx, "shared", DOVECOT_USERS["shared"], 10)
            g_wall, g_times = run_clients((gw.host, gw.smtp_port()), ctx, "alice", "alice-pw", n)
            d_wall, d_times = run_clients((pf.host, pf.port), ctx, "shared", DOVECOT_USERS["shared"], n)
            pf.wait_queue_empty(120)
            # One at a time: what a team member waits after clicking "send".
            single_g = [one_session((gw.host, gw.smtp_port()), ctx, "alice", "alice-pw") for _ in range(20)]
            single_d = [one_session((pf.host, pf.port), ctx, "shared", DOVECOT_USERS["shared"])
                        for _ in range(20)]
            pf.wait_queue_empty(120)
        print(f"end to end via gateway {n / g_wall:7.1f} msg/s p50 {median(g_times) * 1e3:6.1f} ms; "
              f"direct {n / d_wall:7.1f} msg/s p50 {median(d_times) * 1e3:6.1f} ms")
        verdict("submission via gateway vs direct (10 at a time)", n / g_wall, n / d_wall, "msg/s",
                "report", True)
        verdict("one submission, p50 (connect..QUIT)", median(single_g) * 1e3, median(single_d) * 1e3, "ms",
                "gateway <= direct + 100 ms", median(single_g) <= median(single_d) + 0.1)


if __name__ == "__main__":
    main()
