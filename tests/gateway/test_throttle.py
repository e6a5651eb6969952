"""Login throttle: atomic check-and-count, the three counters, trusted pairs,
lock-out growth and expiry (fake clock), real threads racing for slots."""

from __future__ import annotations

import threading

import pytest

from imapgate.gateway import throttle as throttle_module
from imapgate.gateway.throttle import (
    ADDRESS_FACTOR,
    BASE_LOCKOUT,
    MAX_LOCKOUT,
    USER_FACTOR,
    WINDOW,
    LoginThrottle,
    Refused,
    Reservation,
    address_key,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(t: LoginThrottle, user: str, address: str) -> None:
    r = t.reserve(user, address)
    assert isinstance(r, Reservation), r
    r.failed()


def test_reservations_in_flight_count_against_the_limit(clock: Clock) -> None:
    t = LoginThrottle(5, clock=clock)
    slots = [t.reserve("alice", "10.0.0.1") for _ in range(30)]
    granted = [r for r in slots if isinstance(r, Reservation)]
    assert len(granted) == 5, "30 parallel guesses may start at most the limit's worth of checks"
    assert all(isinstance(r, Refused) and not r.busy for r in slots[5:])
    # The right password arriving while the five are in flight is refused like the rest.
    assert isinstance(t.reserve("alice", "10.0.0.1"), Refused)
    for r in granted:
        r.failed()
    assert t.retry_after("alice", "10.0.0.1") == pytest.approx(BASE_LOCKOUT)


def test_release_gives_the_slot_back_and_is_not_a_failure(clock: Clock) -> None:
    t = LoginThrottle(2, clock=clock)
    for _ in range(10):
        r = t.reserve("alice", "10.0.0.1")
        assert isinstance(r, Reservation)
        r.release()
        r.failed()  # settling twice does nothing
    assert t.retry_after("alice", "10.0.0.1") == 0
    assert t.pending("alice", "10.0.0.1") == 0


def test_real_threads_never_get_more_slots_than_the_limit(clock: Clock) -> None:
    t = LoginThrottle(5, clock=clock)
    granted: list[Reservation] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def guesser() -> None:
        barrier.wait()
        for _ in range(200):
            r = t.reserve("alice", "10.0.0.1")
            if isinstance(r, Reservation):
                with lock:
                    granted.append(r)

    threads = [threading.Thread(target=guesser) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(granted) == 5


def test_lockout_doubles_and_is_capped_and_expires(clock: Clock) -> None:
    t = LoginThrottle(3, clock=clock)
    for _ in range(3):
        fail(t, "alice", "10.0.0.1")
    assert t.retry_after("alice", "10.0.0.1") == pytest.approx(BASE_LOCKOUT)
    clock.t += BASE_LOCKOUT
    fail(t, "alice", "10.0.0.1")
    assert t.retry_after("alice", "10.0.0.1") == pytest.approx(2 * BASE_LOCKOUT)
    for _ in range(12):
        clock.t += MAX_LOCKOUT
        fail(t, "alice", "10.0.0.1")
        assert t.retry_after("alice", "10.0.0.1") <= MAX_LOCKOUT
    clock.t += MAX_LOCKOUT + WINDOW
    assert t.retry_after("alice", "10.0.0.1") == 0
    fail(t, "alice", "10.0.0.1")  # old failures have left the window: no lock for one more
    assert t.retry_after("alice", "10.0.0.1") == 0


def test_guesses_lock_the_pair_not_the_user_elsewhere_nor_the_address(clock: Clock) -> None:
    t = LoginThrottle(5, clock=clock)
    for _ in range(5):
        fail(t, "alice", "10.0.0.66")
    assert t.retry_after("alice", "10.0.0.66") > 0
    assert t.retry_after("ALICE", "10.0.0.66") > 0  # names count case-insensitively
    assert t.retry_after("alice", "192.0.2.7") == 0  # alice from anywhere else
    assert t.retry_after("bob", "10.0.0.66") == 0  # bob from the attacker's address


def test_address_limit_spares_trusted_pairs(clock: Clock) -> None:
    t = LoginThrottle(5, clock=clock)
    t.succeeded("bob", "10.0.0.9")  # bob logged in from the office before
    for i in range(5 * ADDRESS_FACTOR):
        fail(t, f"name{i}", "10.0.0.9")  # someone at the office sprays names
    assert t.retry_after("carol", "10.0.0.9") > 0, "the address is locked for names not known there"
    assert t.retry_after("bob", "10.0.0.9") == 0, "a member who logged in from there is not"
    assert isinstance(t.reserve("bob", "10.0.0.9"), Reservation)
    assert t.retry_after("carol", "192.0.2.1") == 0


def test_user_limit_over_many_addresses_spares_trusted_pairs(clock: Clock) -> None:
    t = LoginThrottle(5, clock=clock)
    t.succeeded("alice", "198.51.100.4")  # alice's usual address
    for i in range(5 * USER_FACTOR):
        fail(t, "alice", f"203.0.113.{i}")  # a distributed attack, one guess per address
    assert t.retry_after("alice", "192.0.2.200") > 0, "new addresses are refused for the attacked name"
    assert t.retry_after("alice", "198.51.100.4") == 0, "alice's own address is not"
    assert t.retry_after("bob", "192.0.2.200") == 0


def test_success_clears_the_pair_only_and_trust_expires(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = LoginThrottle(5, clock=clock)
    for _ in range(4):
        fail(t, "alice", "10.0.0.1")
    t.succeeded("alice", "10.0.0.1")
    for _ in range(4):
        fail(t, "alice", "10.0.0.1")
    assert t.retry_after("alice", "10.0.0.1") == 0, "the success cleared the pair's failures"
    assert t.is_trusted("alice", "10.0.0.1")
    clock.t += throttle_module.TRUST_WINDOW
    assert not t.is_trusted("alice", "10.0.0.1")


def test_an_office_logs_in_at_once_from_one_address(clock: Clock) -> None:
    t = LoginThrottle(5, clock=clock)
    got = [t.reserve(f"member{i}", "10.0.0.1") for i in range(50)]
    assert all(isinstance(r, Reservation) for r in got), "reservations do not count against the address"


def test_in_flight_cap_per_address(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle_module, "MAX_PENDING_PER_ADDRESS", 8)
    t = LoginThrottle(5, clock=clock)
    got = [t.reserve(f"user{i}", "10.0.0.1") for i in range(10)]
    assert sum(isinstance(r, Reservation) for r in got) == 8
    assert isinstance(got[9], Refused) and got[9].busy
    first = got[0]
    assert isinstance(first, Reservation)
    first.release()
    assert isinstance(t.reserve("user9", "10.0.0.1"), Reservation)


def test_memory_is_bounded(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle_module, "MAX_TRACKED", 50)
    monkeypatch.setattr(throttle_module, "MAX_TRUSTED", 10)
    t = LoginThrottle(5, clock=clock)
    for i in range(200):
        fail(t, f"u{i}", f"10.0.{i}.1")
        t.succeeded(f"u{i}", f"10.1.{i}.1")
    assert len(t._counters) <= 50 and len(t._trusted) <= 10


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("unknown", "unknown"),
    ],
)
def test_address_key(address: str, key: str) -> None:
    assert address_key(address) == key


def test_ipv6_hosts_of_one_64_share_the_pair_counter(clock: Clock) -> None:
    t = LoginThrottle(5, clock=clock)
    for i in range(5):
        fail(t, "alice", f"2001:db8::{i + 1}")
    assert t.retry_after("alice", "2001:db8::ffff") > 0
    assert t.retry_after("alice", "2001:db8:0:1::1") == 0
