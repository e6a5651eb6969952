"""Logins through the real IMAP listener: transcripts of every answer, and many
clients at once (parallel guesses, the right password inside a burst, other
members at the same address, a password changed by the CLI process while the
gateway runs).

Clients connect from different loopback addresses (127.0.0.x) where a test
needs several client addresses.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from imapgate.gateway import auth as auth_module
from imapgate.gateway.verifier import BoundedVerifier
from imapgate.server.listener import ImapServer
from imapgate.team.users import PasswordCheckError

from .harness import Client, make_gateway, running

FAILED = b"NO [AUTHENTICATIONFAILED] invalid user name or password"
LOCKED = re.compile(rb"NO \[UNAVAILABLE\] too many failed logins; try again in \d+ seconds")


@asynccontextmanager
async def client_from(server: ImapServer, source: str = "127.0.0.1") -> AsyncIterator[Client]:
    host, port, _ = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    c = Client(reader, writer)
    assert (await c.line()).startswith(b"* OK [CAPABILITY ")
    try:
        yield c
    finally:
        await c.close()


async def login(server: ImapServer, user: str, password: str, source: str = "127.0.0.1") -> bytes:
    """Connect, LOGIN, LOGOUT; the tagged LOGIN answer without its tag."""
    async with client_from(server, source) as c:
        await c.send(f'L LOGIN {user} "{password}"'.encode())
        answer = (await c.until_tagged(b"L", timeout=60))[-1]
        await c.send(b"Z LOGOUT")
        return answer.removeprefix(b"L ")


def _argon2_out_of_memory(stored: str | None, password: str) -> bool:
    raise PasswordCheckError("argon2 could not run: Memory allocation error")


async def test_login_answers_transcript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = make_gateway(tmp_path)
    async with running(gw) as server, client_from(server) as c:
        await c.exchange(b"a1 LOGIN alice wrong", b"a1 " + FAILED)
        await c.exchange(b"a2 LOGIN nobody alice-pw", b"a2 " + FAILED)
        for i in range(3, 7):
            await c.exchange(b"a%d LOGIN alice wrong%d" % (i, i), b"a%d " % i + FAILED)
        # The fifth failure locked alice at this address; even the right password is refused.
        await c.exchange(b"a7 LOGIN alice alice-pw", re.compile(b"a7 " + LOCKED.pattern))
        await c.exchange(b"a8 LOGIN bob bob-pw", re.compile(rb"a8 OK \[CAPABILITY IMAP4rev1 .*\] logged in"))
    async with running(make_gateway(tmp_path / "2")) as server, client_from(server) as c:
        monkeypatch.setattr(
            auth_module,
            "check_password",
            _argon2_out_of_memory,
        )
        await c.exchange(
            b"b1 LOGIN alice alice-pw",
            b"b1 NO [UNAVAILABLE] the login cannot be checked just now; try again in a moment",
        )
        monkeypatch.undo()
        await c.exchange(b"b2 LOGIN alice alice-pw", re.compile(rb"b2 OK \[CAPABILITY .*\] logged in"))


async def test_busy_verifier_answers_unavailable_at_once(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.auth.verifier.close()
    gw.auth.verifier = BoundedVerifier(workers=1, max_waiting=1)
    async with running(gw) as server:
        gate = threading.Event()
        blocker = asyncio.create_task(gw.auth.verifier.run(gate.wait))  # the only worker is busy
        t0 = time.monotonic()
        tasks = [
            asyncio.create_task(login(server, "alice", f"guess{i}", f"127.0.0.{10 + i}")) for i in range(6)
        ]
        deadline = time.monotonic() + 30
        while sum(t.done() for t in tasks) < 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        assert time.monotonic() - t0 < 10, "refused at once, not queued"
        gate.set()
        answers = await asyncio.gather(*tasks)
        await blocker
        busy = b"NO [UNAVAILABLE] too many logins are being checked at once; try again in a few seconds"
        assert answers.count(busy) == 5 and answers.count(FAILED) == 1, answers


async def test_parallel_guesses_through_the_listener(tmp_path: Path) -> None:
    """The issue's attack: 30 simultaneous wrong passwords for alice cost 5
    checks; the right one sent while they run is refused; bob at the same
    address and alice from elsewhere log in."""
    gw = make_gateway(tmp_path)
    async with running(gw) as server:
        guesses = [asyncio.create_task(login(server, "alice", f"guess-{i}")) for i in range(30)]
        deadline = time.monotonic() + 60
        while gw.auth.stats.verifications + gw.auth.throttle.pending("alice", "127.0.0.1") < 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        right = await login(server, "alice", "alice-pw")
        answers = await asyncio.gather(*guesses)
        assert LOCKED.fullmatch(right), right
        assert answers.count(FAILED) == 5 and sum(bool(LOCKED.fullmatch(a)) for a in answers) == 25, answers
        assert gw.auth.stats.verifications == 5
        assert (await login(server, "bob", "bob-pw")).startswith(b"OK ")
        assert (await login(server, "alice", "alice-pw", "127.0.0.2")).startswith(b"OK ")
        assert LOCKED.fullmatch(await login(server, "alice", "alice-pw"))


async def test_member_at_a_sprayed_address_is_not_locked_out(tmp_path: Path) -> None:
    """Someone at the office sprays names (locking the address for names not
    known there); bob, who logged in from the office before, is not locked out."""
    gw = make_gateway(tmp_path)
    async with running(gw) as server:
        assert (await login(server, "bob", "bob-pw", "127.0.0.3")).startswith(b"OK ")
        sprays = await asyncio.gather(*(login(server, f"name{i}", "guess", "127.0.0.3") for i in range(25)))
        assert sprays.count(FAILED) == 25
        assert LOCKED.fullmatch(await login(server, "alice", "alice-pw", "127.0.0.3"))
        assert (await login(server, "bob", "bob-pw", "127.0.0.3")).startswith(b"OK ")
        assert (await login(server, "alice", "alice-pw", "127.0.0.4")).startswith(b"OK ")


async def test_cached_login_and_authenticate_plain(tmp_path: Path) -> None:
    import base64

    gw = make_gateway(tmp_path)
    async with running(gw) as server:
        assert (await login(server, "alice", "alice-pw")).startswith(b"OK ")
        async with client_from(server) as c:
            plain = base64.b64encode(b"\0alice\0alice-pw")
            await c.exchange(
                b"p1 AUTHENTICATE PLAIN " + plain, re.compile(rb"p1 OK \[CAPABILITY .*\] logged in")
            )
        assert gw.auth.stats.verifications == 1 and gw.auth.stats.cache_hits == 1
        async with client_from(server) as c:
            wrong = base64.b64encode(b"\0alice\0alice-pw2")
            await c.exchange(b"p2 AUTHENTICATE PLAIN " + wrong, b"p2 " + FAILED)
        assert gw.auth.stats.verifications == 2


async def test_cli_passwd_disable_remove_while_the_gateway_runs(tmp_path: Path) -> None:
    """`imapgate user passwd` / `user remove` run as their own process against
    the same store: the cached password stops working at once."""
    gw = make_gateway(tmp_path)
    config = tmp_path / "imapgate.toml"
    config.write_text(
        '[upstream]\nhost = "127.0.0.1"\nport = 1\ntls = "none"\nuser = "shared"\npassword = "x"\n'
        f'[server]\nallow_plaintext = true\n[store]\ndata_dir = "{tmp_path / "gw"}"\n'
    )
    imapgate = str(Path(sys.executable).parent / "imapgate")

    def cli(*args: str, stdin: str = "") -> None:
        subprocess.run(
            [imapgate, "--config", str(config), *args],
            input=stdin,
            text=True,
            check=True,
            capture_output=True,
        )

    async with running(gw) as server:
        for _ in range(2):
            assert (await login(server, "alice", "alice-pw")).startswith(b"OK ")
            assert (await login(server, "bob", "bob-pw")).startswith(b"OK ")
        assert gw.auth.stats.cache_hits == 2
        await asyncio.to_thread(cli, "user", "passwd", "alice", "--password-stdin", stdin="alice-new\n")
        assert await login(server, "alice", "alice-pw") == FAILED
        assert (await login(server, "alice", "alice-new")).startswith(b"OK ")
        gw.users.set_disabled("alice", True)  # the directory method the `user disable` command uses
        assert await login(server, "alice", "alice-new") == FAILED
        await asyncio.to_thread(cli, "user", "remove", "bob", "--yes")
        assert await login(server, "bob", "bob-pw") == FAILED
        assert gw.auth.stats.cache_hits == 2, "no refused login was answered from the cache"


async def test_a_team_logging_in_at_once_is_served_within_the_memory_bound(tmp_path: Path) -> None:
    """Sessions of many members connecting at once from one address (an office
    after a gateway restart, cache cold): all log in, and never more argon2
    checks (64 MiB each) run at once than the verifier has workers."""
    gw = make_gateway(tmp_path)
    team = {f"member{i}": f"member{i}-pw" for i in range(12)}
    for name, pw in team.items():
        gw.users.add(name, pw)
    async with running(gw) as server:
        answers = await asyncio.gather(
            *(login(server, name, pw, "127.0.0.5") for name, pw in team.items() for _ in range(3))
        )
        assert all(a.startswith(b"OK ") for a in answers), answers
        assert gw.auth.verifier.peak_running <= gw.auth.verifier.workers
        assert gw.auth.stats.verifications == len(team), "each member's parallel connections cost one check"
