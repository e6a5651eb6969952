"""The Authenticator: verified-credentials cache, bounded verifier, throttle,
with a real SQLite store and real argon2id checks.

What must hold: a wrong password is never answered from the cache; password
changes, disabling and removal (also made through another engine, as the CLI
process does) take effect at the next login; parallel guesses cost at most the
limit's worth of checks; known-good logins never wait behind a flood; a check
that could not be made is never reported as a wrong password.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from imapgate.gateway import auth as auth_module
from imapgate.gateway.auth import Authenticator, Outcome
from imapgate.gateway.throttle import BASE_LOCKOUT
from imapgate.gateway.verifier import BoundedVerifier
from imapgate.store.engine import open_engine
from imapgate.store.schema import users
from imapgate.team.users import PasswordCheckError, UserDirectory, upgraded_hash

OFFICE = "198.51.100.10"
ELSEWHERE = "192.0.2.20"
ATTACKER = "203.0.113.66"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite3'}"


@pytest.fixture
def directory(db_url: str) -> UserDirectory:
    d = UserDirectory(open_engine(db_url))
    d.add("alice", "alice-pw")
    d.add("bob", "bob-pw")
    return d


def make_auth(directory: UserDirectory, **kw: object) -> Authenticator:
    kw.setdefault("failure_delay", 0.0)
    return Authenticator(directory, **kw)  # type: ignore[arg-type]


async def test_right_password_is_cached_wrong_ones_never_are(directory: UserDirectory) -> None:
    auth = make_auth(directory)
    r = await auth.authenticate("alice", "alice-pw", OFFICE)
    assert r.ok and r.user is not None and r.user.name == "alice"
    assert auth.stats.verifications == 1
    for _ in range(3):
        assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    assert auth.stats.verifications == 1 and auth.stats.cache_hits == 3
    # Near misses of the cached password, and the cached password under another
    # name spelling, are each checked with argon2 and refused.
    for name, pw in [
        ("alice", "alice-p"),
        ("alice", "alice-pw "),
        ("alice", "ALICE-PW"),
        ("Alice", "alice-pw"),
    ]:
        before = auth.stats.verifications
        assert (await auth.authenticate(name, pw, ELSEWHERE)).outcome is Outcome.FAILED, (name, pw)
        assert auth.stats.verifications == before + 1, "a wrong password was answered without a check"
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    assert auth.close() is None


async def test_passwd_disable_remove_take_effect_at_once_from_another_process(
    directory: UserDirectory, db_url: str
) -> None:
    auth = make_auth(directory)
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    assert auth.stats.cache_hits == 1
    # The admin CLI is another process with its own engine: nothing notifies the gateway.
    cli = UserDirectory(open_engine(db_url))
    cli.set_password("alice", "new-alice-pw")
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).outcome is Outcome.FAILED
    assert (await auth.authenticate("alice", "new-alice-pw", OFFICE)).ok
    assert (await auth.authenticate("alice", "new-alice-pw", OFFICE)).ok  # cached again
    cli.set_disabled("alice", True)
    assert (await auth.authenticate("alice", "new-alice-pw", OFFICE)).outcome is Outcome.FAILED
    cli.set_disabled("alice", False)
    assert (await auth.authenticate("alice", "new-alice-pw", OFFICE)).ok
    cli.remove("alice")
    assert (await auth.authenticate("alice", "new-alice-pw", OFFICE)).outcome is Outcome.FAILED
    # Re-created with the same name and password: a new account, checked afresh.
    cli.add("alice", "new-alice-pw")
    checks = auth.stats.verifications
    assert (await auth.authenticate("alice", "new-alice-pw", OFFICE)).ok
    assert auth.stats.verifications == checks + 1
    auth.close()


async def test_cache_ttl_and_off(directory: UserDirectory) -> None:
    clock = Clock()
    auth = make_auth(directory, cache_ttl=60.0, clock=clock)
    assert (await auth.authenticate("bob", "bob-pw", OFFICE)).ok
    clock.t += 59
    assert (await auth.authenticate("bob", "bob-pw", OFFICE)).ok
    assert auth.stats.verifications == 1
    clock.t += 2
    assert (await auth.authenticate("bob", "bob-pw", OFFICE)).ok
    assert auth.stats.verifications == 2
    auth.close()
    off = make_auth(directory, cache_ttl=0.0)
    for _ in range(2):
        assert (await off.authenticate("bob", "bob-pw", OFFICE)).ok
    assert off.stats.verifications == 2 and len(off.cache) == 0
    off.close()


async def test_cache_keys_are_keyed_hashes_not_passwords(directory: UserDirectory) -> None:
    auth = make_auth(directory)
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    (key,) = list(auth.cache._entries)
    entry = auth.cache._entries[key]
    assert len(key) == 32 and b"alice" not in key and b"alice-pw" not in key
    assert "alice-pw" not in repr(entry) and "alice-pw" not in repr(auth.cache)
    other = make_auth(directory)
    assert other.cache.key("alice", "alice-pw") != key, "the HMAC key is per process (per authenticator)"
    assert auth.cache.key("ab", "c") != auth.cache.key("a", "bc")
    auth.close()
    other.close()


async def test_thirty_parallel_wrong_guesses_cost_at_most_the_limit(directory: UserDirectory) -> None:
    auth = make_auth(directory, max_failed_logins=5)
    results = await asyncio.gather(*(auth.authenticate("alice", f"guess-{i}", ATTACKER) for i in range(30)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.FAILED) == 5 and outcomes.count(Outcome.LOCKED) == 25
    assert auth.stats.verifications == 5
    # alice herself, from her own address, and bob from the attacker's address are not locked out.
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    assert (await auth.authenticate("bob", "bob-pw", ATTACKER)).ok
    auth.close()


async def test_right_password_inside_a_burst_of_wrong_ones_is_refused(directory: UserDirectory) -> None:
    clock = Clock()
    auth = make_auth(directory, max_failed_logins=5, clock=clock)
    wrong = [asyncio.create_task(auth.authenticate("alice", f"guess-{i}", ATTACKER)) for i in range(39)]
    deadline = time.monotonic() + 30
    while auth.throttle.pending("alice", ATTACKER) < 5 and auth.stats.verifications < 5:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    # The burst holds its five slots (or has used them): the right password is refused.
    right = await auth.authenticate("alice", "alice-pw", ATTACKER)
    assert right.outcome is Outcome.LOCKED and right.retry_after >= 1
    results = await asyncio.gather(*wrong)
    assert not any(r.ok for r in results)
    assert auth.stats.verifications == 5
    assert (await auth.authenticate("alice", "alice-pw", ATTACKER)).outcome is Outcome.LOCKED
    clock.t += BASE_LOCKOUT + 1
    assert (await auth.authenticate("alice", "alice-pw", ATTACKER)).ok
    auth.close()


async def test_identical_attempts_in_flight_share_one_check(directory: UserDirectory) -> None:
    auth = make_auth(directory, max_failed_logins=5)
    # A client opening 8 connections at once with a cold cache: one argon2 check.
    results = await asyncio.gather(*(auth.authenticate("alice", "alice-pw", OFFICE) for _ in range(8)))
    assert all(r.ok for r in results)
    assert auth.stats.verifications == 1 and auth.stats.joined == 7
    # The same wrong guess repeated in parallel is one guess: one check, one failure.
    results = await asyncio.gather(*(auth.authenticate("bob", "same-guess", ATTACKER) for _ in range(8)))
    assert all(r.outcome is Outcome.FAILED for r in results)
    assert auth.stats.verifications == 2
    assert auth.throttle.retry_after("bob", ATTACKER) == 0
    auth.close()


async def test_failure_delay_holds_no_slot_and_no_thread(directory: UserDirectory) -> None:
    auth = make_auth(directory, failure_delay=0.6)
    task = asyncio.create_task(auth.authenticate("alice", "wrong", ATTACKER))
    deadline = time.monotonic() + 30
    while auth.stats.verifications == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert not task.done(), "the answer waits for the failure delay"
    assert auth.throttle.pending("alice", ATTACKER) == 0 and auth.verifier.running == 0
    t0 = time.monotonic()
    assert (await task).outcome is Outcome.FAILED
    assert time.monotonic() - t0 > 0.3
    auth.close()


async def occupy(verifier: BoundedVerifier) -> tuple[threading.Event, asyncio.Task[bool]]:
    """Hold the verifier's only worker until the event is set."""
    gate = threading.Event()
    task = asyncio.create_task(verifier.run(gate.wait))
    deadline = time.monotonic() + 10
    while verifier.running == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    return gate, task


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.002)


async def test_cache_hits_and_trusted_logins_do_not_wait_behind_a_flood(directory: UserDirectory) -> None:
    auth = make_auth(directory, verifier=BoundedVerifier(workers=1, max_waiting=100))
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok  # cached, and alice trusted at OFFICE
    assert (await auth.authenticate("bob", "bob-pw", OFFICE)).ok
    gate, blocker = await occupy(auth.verifier)
    finished: list[str] = []

    async def guess(i: int) -> None:
        await auth.authenticate(f"nobody{i}", "x", f"203.0.113.{i}")
        finished.append(f"guess{i}")

    flood = [asyncio.create_task(guess(i)) for i in range(12)]
    await wait_until(lambda: auth.verifier.waiting == 12, "the flood queues behind the busy worker")
    t0 = time.monotonic()
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    assert time.monotonic() - t0 < 5 and auth.verifier.waiting == 12, "a cache hit needs no argon2"
    # bob's cache entry is gone (its TTL ran out, say); he is trusted at
    # OFFICE, so his check runs before the twelve waiting guesses.
    auth.cache.clear()

    async def bob() -> None:
        assert (await auth.authenticate("bob", "bob-pw", OFFICE)).ok
        finished.append("bob")

    bob_task = asyncio.create_task(bob())
    await wait_until(lambda: auth.verifier.waiting == 13, "bob's check waits too")
    gate.set()
    await asyncio.gather(blocker, bob_task, *flood)
    assert finished[0] == "bob", finished
    auth.close()


async def test_too_many_waiting_checks_refuse_at_once_and_count_nothing(
    directory: UserDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    auth = make_auth(directory, verifier=BoundedVerifier(workers=1, max_waiting=3))
    gate, blocker = await occupy(auth.verifier)
    t0 = time.monotonic()
    tasks = [
        asyncio.create_task(auth.authenticate("alice", f"guess-{i}", f"203.0.113.{i}")) for i in range(10)
    ]
    await wait_until(lambda: sum(t.done() for t in tasks) == 7, "seven refused at once")
    assert time.monotonic() - t0 < 10
    gate.set()
    outcomes = [r.outcome for r in await asyncio.gather(*tasks)]
    await blocker
    assert outcomes.count(Outcome.BUSY) == 7 and outcomes.count(Outcome.FAILED) == 3, outcomes
    assert caplog.text.count("refused since the last report") == 1, "one warning, not one per refusal"
    assert auth.verifier.peak_running == 1
    assert all(auth.throttle.pending("alice", f"203.0.113.{i}") == 0 for i in range(10))
    assert (await auth.authenticate("alice", "alice-pw", "203.0.113.9")).ok, "a refusal is not a failure"
    auth.close()


async def test_memory_bound_concurrent_checks_never_exceed_the_workers(directory: UserDirectory) -> None:
    for i in range(10):
        directory.add(f"user{i}", f"pw{i}")
    auth = make_auth(directory, verifier=BoundedVerifier(workers=2))
    results = await asyncio.gather(*(auth.authenticate(f"user{i}", f"pw{i}", OFFICE) for i in range(10)))
    assert all(r.ok for r in results), "a team logging in at once from one address is served"
    assert auth.verifier.peak_running == 2 and auth.stats.verifications == 10
    auth.close()


async def test_argon2_failure_is_not_a_wrong_password(
    directory: UserDirectory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The 'correct LOGIN answered AUTHENTICATIONFAILED under load' race: argon2
    raises VerificationError for a failed 64 MiB allocation or thread start
    (see tests/team/test_users.py for the real thing under an address-space
    limit); that must answer UNAVAILABLE and count nothing."""
    auth = make_auth(directory, max_failed_logins=2)

    def out_of_memory(stored: str | None, password: str) -> bool:
        raise PasswordCheckError("argon2 could not run: Memory allocation error")

    monkeypatch.setattr(auth_module, "check_password", out_of_memory)
    for _ in range(5):
        assert (await auth.authenticate("alice", "alice-pw", OFFICE)).outcome is Outcome.UNAVAILABLE
    assert "could not check the password of alice" in caplog.text
    monkeypatch.undo()
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok, "nothing was counted as a failure"
    auth.close()


async def test_corrupt_stored_hash_is_unavailable_and_logged(
    directory: UserDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    with directory.engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == "bob").values(password_hash="not-a-hash"))
    auth = make_auth(directory)
    assert (await auth.authenticate("bob", "bob-pw", OFFICE)).outcome is Outcome.UNAVAILABLE
    assert "not a valid argon2 hash" in caplog.text
    auth.close()


async def test_store_error_is_unavailable_without_the_name_in_the_log(
    directory: UserDirectory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    def locked(name: str) -> None:
        raise OperationalError(
            "SELECT ... WHERE name = ?", (name,), sqlite3.OperationalError("database is locked")
        )

    auth = make_auth(directory)
    monkeypatch.setattr(directory, "credentials", locked)
    r = await auth.authenticate("Typed-Password-As-Name", "pw", OFFICE)
    assert r.outcome is Outcome.UNAVAILABLE
    assert "database is locked" in caplog.text and "Typed-Password-As-Name" not in caplog.text
    auth.close()


async def test_outdated_hash_is_upgraded_with_compare_and_set(directory: UserDirectory) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    with directory.engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == "alice").values(password_hash=weak.hash("alice-pw")))
    auth = make_auth(directory)
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    cred = directory.credentials("alice")
    assert cred is not None and upgraded_hash(cred.password_hash, "alice-pw") is None, "upgraded"
    assert (await auth.authenticate("alice", "alice-pw", OFFICE)).ok
    assert auth.stats.cache_hits == 1, "cached against the upgraded hash"
    auth.close()


async def test_failed_login_log_lines(directory: UserDirectory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = make_auth(directory, max_failed_logins=2)
    await auth.authenticate("alice", "Secret-Guess-1", ATTACKER)
    await auth.authenticate("alice", "Secret-Guess-2", ATTACKER)
    await auth.authenticate("alice", "Secret-Guess-3", ATTACKER)  # locked: not checked
    await auth.authenticate("Typed-Password-9", "x", ATTACKER)
    directory.set_disabled("bob", True)
    await auth.authenticate("bob", "bob-pw", OFFICE)
    text = caplog.text
    assert f"failed login for alice from {ATTACKER}" in text
    assert "too many failed logins (user and address: alice from" in text
    assert "failed login for unknown user [ref " in text and "Typed-Password-9" not in text
    assert "login refused for bob from" in text and "account disabled" in text
    assert "Secret-Guess" not in text and "bob-pw" not in text
    auth.close()


async def test_logins_are_journaled_never_a_password_nor_an_unknown_name(directory: UserDirectory) -> None:
    from imapgate.team.audit import AuditQuery, search
    from imapgate.team.journal import Journal

    engine = directory.engine
    auth = make_auth(directory, journal=Journal(engine), max_failed_logins=2)
    assert (await auth.authenticate("alice", "alice-pw", OFFICE, client_id="Thunderbird 128")).ok
    assert not (await auth.authenticate("bob", "guess-1", ATTACKER, via="web")).ok
    assert not (await auth.authenticate("hunter2-typed-as-name", "x", ATTACKER)).ok
    for _ in range(3):  # bob's pair gets locked: those are failed logins too
        await auth.authenticate("bob", "guess-2", ATTACKER)
    entries = [r.entry for r in reversed(search(engine, AuditQuery(limit=100)))]
    login = entries[0]
    assert (login.action_word, login.user, login.client_id, login.address) == (
        "login", "alice", "Thunderbird 128", OFFICE,
    )  # fmt: skip
    assert login.client == f"Thunderbird 128 from {OFFICE}" and login.detail == "via imap"
    failed = entries[1:]
    assert all(e.action_word == "login_failed" and e.result == "NO" for e in failed), failed
    assert failed[0].user == "bob" and failed[0].detail == "via web: wrong name or password"
    assert failed[1].user is not None and failed[1].user.startswith("unknown user [ref ")
    locked = [e for e in failed[2:] if e.detail == "via imap: too many failed logins"]
    assert locked and all(e.user == "bob" for e in locked), failed
    text = repr(entries)
    assert "hunter2-typed-as-name" not in text and "guess-" not in text and "alice-pw" not in text
