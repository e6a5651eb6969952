"""Faults and bad input against the running gateway (in front of a real Dovecot).

* 1,000 garbage connections (random bytes, half-open, 100 KB lines without CRLF) while a normal
  client keeps working — with a bounded run time, and the garbage sessions all closed after;
* an oversized literal gets a tagged BAD/NO ``[TOOBIG]`` and the session goes on;
* login throttling: after 6 wrong passwords for alice, her further attempts are refused with a
  clear message even with the right password; bob, from the same address, can still log in;
* upstream killed: commands that need it answer ``NO [UNAVAILABLE]`` with a clear text, quickly,
  while cached data (FLAGS, SEARCH on flags, a body fetched before) is still served;
* no password (team member's or upstream's) appears in any log record of a whole session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import time
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient, fetch_literals, ok, session

pytestmark = pytest.mark.integration

GARBAGE_CONNECTIONS = 1000


async def _garbage(host: str, port: int, kind: str, rng: random.Random) -> bool:
    """One bad client; True when it got connected."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except (OSError, TimeoutError):
        return False
    try:
        if kind == "random":
            writer.write(rng.randbytes(rng.randrange(1, 4000)))
        elif kind == "huge":
            writer.write(b"a1 LOGIN " + b"x" * 100_000)  # no CRLF, longer than any command line
        elif kind == "half-open":
            writer.write(b"a1 LOGIN alice {5}\r\nal")  # then nothing: the literal never completes
        elif kind == "crlf-storm":
            writer.write(b"\r\n" * 5000 + b"* * *\r\n" * 100)
        await writer.drain()
        if kind == "half-open":
            await asyncio.sleep(0.5)
        else:
            # Read what the gateway says (BAD/BYE) for a moment, then go.
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(reader.read(65536), 0.5)
    except OSError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return True


async def _garbage_storm(host: str, port: int) -> int:
    rng = random.Random(7)
    kinds = ["random"] * 5 + ["huge"] * 2 + ["half-open"] * 2 + ["crlf-storm"]
    sem = asyncio.Semaphore(100)

    async def one(i: int) -> bool:
        async with sem:
            return await _garbage(host, port, kinds[i % len(kinds)], rng)

    return sum(await asyncio.gather(*(one(i) for i in range(GARBAGE_CONNECTIONS))))


def test_garbage_connections_do_not_disturb_a_normal_client(gateway: GatewayHarness) -> None:
    latencies: list[float] = []
    stop = False

    def normal_client() -> int:
        done = 0
        with session(gateway.imaplib_login("alice", "alice-pw")) as c:
            ok(c.select("INBOX"))
            while not stop:
                start = time.monotonic()
                data = ok(c.uid("FETCH", "1:20", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
                assert len(fetch_literals(data)) == 20
                ok(c.noop())
                latencies.append(time.monotonic() - start)
                done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(normal_client)
        start = time.monotonic()
        connected = asyncio.run(asyncio.wait_for(_garbage_storm(gateway.host, gateway.port), 120))
        storm = time.monotonic() - start
        stop = True
        rounds = fut.result(60)
    assert storm < 120
    assert connected >= GARBAGE_CONNECTIONS * 0.99, connected
    assert rounds >= 5, rounds
    assert max(latencies) < 5.0, max(latencies)  # never starved for long
    # Every garbage session is gone (half-open ones closed by us; none lingers).
    gateway.wait_for(lambda: len(gateway.server.sessions) == 0, timeout=20, what="garbage sessions closed")
    with session(gateway.imaplib_login("bob", "bob-pw")) as c:
        ok(c.select("INBOX"))


def test_oversized_literal_gets_toobig_and_session_goes_on(gateway: GatewayHarness) -> None:
    raw = RawClient(gateway.host, gateway.port)
    try:
        raw.send(b"a0 LOGIN alice {2000000}\r\n")  # a 2 MB password literal
        line = raw.readline()
        assert line.startswith(b"a0 BAD [TOOBIG]") or line.startswith(b"a0 NO [TOOBIG]"), line
        lines = raw.command(b"a1", b"NOOP")
        assert lines[-1].startswith(b"a1 OK"), lines
        raw.login("alice", "alice-pw")
        raw.send(b"a2 APPEND INBOX {999999999999}\r\n")
        line = raw.readline()
        assert line.startswith(b"a2 BAD [TOOBIG]") or line.startswith(b"a2 NO [TOOBIG]"), line
        lines = raw.command(b"s0", b"SELECT INBOX")
        assert lines[-1].startswith(b"s0 OK"), lines
        # A non-synchronizing (LITERAL+) literal beyond the 1 MiB limit of non-APPEND literals:
        # the client sends it anyway; the gateway reads and drops it, then says TOOBIG.
        raw.send(b"a3 SEARCH TEXT {2000000+}\r\n" + b"z" * 2_000_000 + b"\r\n")
        line = raw.readline()
        assert line.startswith(b"a3 BAD [TOOBIG]") or line.startswith(b"a3 NO [TOOBIG]"), line
        # The session still works and can append a normal message.
        lines = raw.command(b"a4", b"SELECT INBOX")
        assert lines[-1].startswith(b"a4 OK"), lines
        msg = b"Subject: small\r\n\r\nhello\r\n"
        raw.send(b"a5 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
        lines = raw.read_until_tagged(b"a5")
        assert lines[-1].startswith(b"a5 OK [APPENDUID"), lines
    finally:
        raw.close()


def test_login_throttling_per_user(gateway: GatewayHarness) -> None:
    # Six different guesses in parallel (the same guess sent in parallel is one
    # guess: one check, one failure; see docs/architecture.md#logins).
    def wrong(i: int) -> bytes:
        raw = RawClient(gateway.host, gateway.port)
        try:
            return raw.command(b"x", b"LOGIN alice wrong-password-%d" % i)[-1]
        finally:
            raw.close()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(wrong, range(6)))
    assert all(a.startswith(b"x NO") for a in answers), answers
    assert sum(b"AUTHENTICATIONFAILED" in a for a in answers) == 5, "the limit's worth checked, no more"
    raw = RawClient(gateway.host, gateway.port)
    try:
        line = raw.command(b"y", b"LOGIN alice alice-pw")[-1]
        assert line.startswith(b"y NO [UNAVAILABLE]"), line
        assert b"too many failed logins" in line and b"try again in" in line, line
    finally:
        raw.close()
    # Another team member behind the same address is not locked out by alice's typos.
    with session(gateway.imaplib_login("bob", "bob-pw")) as c:
        ok(c.noop())


def test_upstream_down_unavailable_but_cache_served(gateway: GatewayHarness, upstream: DovecotServer) -> None:
    raw = RawClient(gateway.host, gateway.port)
    try:
        raw.login("alice", "alice-pw")
        assert raw.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
        before = raw.command(b"f0", b"UID FETCH 1 (BODY.PEEK[])")
        assert before[-1].startswith(b"f0 OK"), before
        index = gateway.gw.index
        inbox = gateway.gw.replica.get("INBOX")
        covered = bool(index and inbox and len(index.covered(inbox, 1) or ()) == inbox.exists)
        upstream.stop()
        time.sleep(0.3)
        timings = {}

        def timed(tag: bytes, text: bytes) -> list[bytes]:
            start = time.monotonic()
            lines = raw.command(tag, text)
            timings[tag] = time.monotonic() - start
            return lines

        # From the replica / content cache:
        lines = timed(b"f1", b"FETCH 1:3 (FLAGS)")
        assert lines[-1].startswith(b"f1 OK") and len(lines) == 4, lines
        assert timed(b"f2", b"UID FETCH 1 (BODY.PEEK[])") == [*before[:-1], before[-1].replace(b"f0", b"f2")]
        lines = timed(b"s1", b"SEARCH UNSEEN")
        assert lines[-1].startswith(b"s1 OK"), lines
        if covered:
            # Text searches the search index covers are answered while the hoster is down.
            lines = timed(b"s3", b"SEARCH SUBJECT Rechnung")
            assert lines[-1].startswith(b"s3 OK") and lines[0].startswith(b"* SEARCH "), lines
        # Needing upstream: a clear NO [UNAVAILABLE] (a two-character string is never
        # looked up in the index).
        for tag, text in (
            (b"f3", b"UID FETCH 2 (BODY.PEEK[])"),
            (b"st", b"UID STORE 1 +FLAGS (\\Flagged)"),
            (b"s2", b"SEARCH SUBJECT Re"),
            (b"cp", b"UID COPY 1 Archive"),
        ):
            lines = timed(tag, text)
            assert lines[-1].startswith(tag + b" NO [UNAVAILABLE]"), lines
            assert b"unreachable" in lines[-1], lines
        assert not any(line.startswith(b"* 1 FETCH") and b"\\Flagged" in line for line in lines)
        assert max(timings.values()) < 10, timings
        # The STORE changed nothing locally either.
        lines = raw.command(b"f4", b"UID FETCH 1 (FLAGS)")
        assert b"\\Flagged" not in lines[0], lines
    finally:
        raw.close()


def test_no_password_in_any_log_record(
    upstream: DovecotServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ["shared-secret", "alice-pw-7Hq", "wrong-pw-Zx9", "bob-pw-3Kd"]
    with GatewayHarness(
        upstream_port=upstream.port,
        data_dir=tmp_path / "gw",
        users={"alice": "alice-pw-7Hq", "bob": "bob-pw-3Kd"},
    ) as gw:
        raw = RawClient(gw.host, gw.port)
        try:
            assert raw.command(b"a", b"LOGIN alice wrong-pw-Zx9")[-1].startswith(b"a NO")
            raw.login("alice", "alice-pw-7Hq")
            raw.command(b"b", b"SELECT INBOX")
            raw.command(b"c", b"UID FETCH 1:3 (BODY.PEEK[] FLAGS)")
            raw.command(b"d", b"UID STORE 2 +FLAGS (\\Flagged)")
            raw.command(b"e", b"LOGOUT")
        finally:
            raw.close()
        auth = RawClient(gw.host, gw.port)
        try:
            import base64

            plain = base64.b64encode(b"\0bob\0bob-pw-3Kd")
            assert auth.command(b"p", b"AUTHENTICATE PLAIN " + plain)[-1].startswith(b"p OK")
        finally:
            auth.close()
        # A reconnect to upstream (new pool connection, new LOGIN) is logged too.
        gw.call(gw.gw.sync.sync_mailbox("Support"))
    records = caplog.records
    assert len(records) > 10  # the session really was logged
    for rec in records:
        text = rec.getMessage() + " " + repr(rec.args) + " " + (rec.exc_text or "")
        for secret in secrets:
            assert secret not in text, (rec.name, rec.levelname, text[:300])
