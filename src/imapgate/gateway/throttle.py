"""Login throttling: slow and stop password guessing, not the team.

Theory of operation.  Every login attempt that needs a password check first
*reserves* a slot (``reserve``) in three counters, in one step under a lock,
before any argon2 work starts; the check's outcome then turns the reservation
into a failure (``Reservation.failed``), clears it (``succeeded``) or gives it
back (``release``: the check could not be made).  The pair and user counters
block when their failures plus reservations in flight reach the limit, so N
parallel guesses for one name cost at most the limit's worth of checks, and a right password sent inside a
burst of wrong ones is refused like the rest while the burst blocks.  (After a
lock-out has ended, while the failures are still in the window, one check at
a time is allowed; its failure locks again for twice as long.)

    counter                 limit (failures in WINDOW)     applies to
    ----------------------  -----------------------------  --------------------------------
    (user, address)         max_failures                   every attempt of that pair
    address                 ADDRESS_FACTOR x max_failures  pairs not trusted at the address
    user (any address)      USER_FACTOR x max_failures     pairs not trusted at the address

A pair (user, address) is *trusted* for ``TRUST_WINDOW`` after a successful
login from that address.  Guesses from elsewhere, or for other names from the
same address, never lock a trusted pair out: only failures of that very pair
do (an attacker sharing alice's address and guessing alice's password can
lock alice out there, at most for ``MAX_LOCKOUT``; nobody can lock a member out
everywhere).  The user counter caps a guessing attack on one name spread over
many addresses; the address counter one address spraying many names.

At the limit a counter locks for ``BASE_LOCKOUT``, doubling with every further
failure up to ``MAX_LOCKOUT``.  Refused attempts are not counted (they cost no
check).  A success clears its pair's failures, not the address's or the
user's (an attacker cannot reset them by waiting for the member to log in).

The address counter blocks on failures only: a whole office behind one NAT
address logs in at once after a gateway restart.  Instead an address may have
at most ``MAX_PENDING_PER_ADDRESS`` checks in flight (the office fits; a burst
spraying names gets that many checks, at most ``max_failures`` per name, before
its failures lock the address).

IPv6 addresses are counted per /64: one host commonly owns a whole /64.
Everything lives in memory and is bounded (``MAX_TRACKED``, ``MAX_TRUSTED``);
a restart clears it.  The class is thread-safe (one lock), so front ends on
other threads can share it.

Several nodes (one PostgreSQL): each node's failures and the successes that
change something (a pair that had failures, or was not trusted yet) go out to
the other nodes (``on_outcome``, sent by ``gateway/nodes.py`` as a NOTIFY) and
are counted there as if seen locally (``apply_remote``): a guesser spread over
the nodes behind a balancer gets the limit once, not once per node, and a
member's success on one node clears their failures on all.  Reservations in
flight stay per node (a check in flight on another node is not waited for).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Seconds over which failures are counted.
WINDOW = 15 * 60.0
#: First lock-out after the limit; doubles with every further failure.
BASE_LOCKOUT = 30.0
#: Longest lock-out: an attacker cannot lock a pair out for longer.
MAX_LOCKOUT = 15 * 60.0
#: An address may fail this many times more than one (user, address) pair: an
#: office behind one NAT address is not locked out by one colleague's client
#: retrying an old password.
ADDRESS_FACTOR = 5
#: A user name may fail this many times more than one pair, summed over all
#: addresses, before untrusted addresses are refused for it: caps a guessing
#: attack spread over many addresses.
USER_FACTOR = 10
#: Checks in flight per address at most: more than a team of 50 logging in at
#: once after a restart, far less than a guessing burst.
MAX_PENDING_PER_ADDRESS = 64
#: How long a successful login keeps a (user, address) pair trusted.
TRUST_WINDOW = 30 * 86400.0
#: A success of a pair trusted for longer than this is told to the other nodes again (so
#: their trust does not run out while the member only logs in on this node).
TRUST_REFRESH = 86400.0
#: Counters kept at most (least recently used forgotten first): bounded memory
#: under a distributed guessing attack.
MAX_TRACKED = 100_000
#: Trusted pairs kept at most (least recently used forgotten first).
MAX_TRUSTED = 100_000
#: Failure times kept per counter beyond its limit: enough to compute any
#: lock-out (2**16 x BASE_LOCKOUT is far beyond MAX_LOCKOUT).
_EXTRA_FAILURE_TIMES = 16

_Key = tuple[str, ...]
#: (counter key, limit, what it counts) for the three counters of an attempt.
_Keys = list[tuple[_Key, int, str]]


@dataclass
class _Counter:
    failures: deque[float] = field(default_factory=deque)
    pending: int = 0
    locked_until: float = 0.0


def address_key(address: str) -> str:
    """The unit an address is counted in: IPv4 as is, IPv6 per /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Lock:
    """A counter that became locked (for the log)."""

    kind: str  # "user and address", "address", "user"
    seconds: float


class Reservation:
    """One check in flight: settle it exactly once."""

    __slots__ = ("_addr", "_keys", "_settled", "_throttle", "address", "user")

    def __init__(self, throttle: LoginThrottle, keys: _Keys, addr: str, user: str, address: str) -> None:
        self._throttle = throttle
        self._keys = keys
        self._addr = addr
        self._settled = False
        self.user = user
        self.address = address

    @property
    def settled(self) -> bool:
        return self._settled

    def failed(self) -> list[Lock]:
        """The password was wrong (or the account disabled): count a failure."""
        if self._settled:
            return []
        self._settled = True
        locks = self._throttle._fail(self._keys, self._addr)
        if self._throttle.on_outcome is not None:
            self._throttle.on_outcome(self.user, self.address, False)
        return locks

    def succeeded(self) -> None:
        if self._settled:
            return
        self._settled = True
        self._throttle._release(self._keys, self._addr)
        self._throttle.succeeded(self.user, self.address)

    def release(self) -> None:
        """No outcome (the check could not be made): give the slot back."""
        if self._settled:
            return
        self._settled = True
        self._throttle._release(self._keys, self._addr)


@dataclass(frozen=True)
class Refused:
    """``reserve`` said no: retry after ``seconds``; ``busy`` when only the
    in-flight cap of the address was hit (no failure involved)."""

    seconds: float
    busy: bool = False


class LoginThrottle:
    def __init__(self, max_failures: int = 5, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self._now = clock
        self._counters: OrderedDict[_Key, _Counter] = OrderedDict()
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._pending_by_address: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Told of this node's own outcomes (user, address, ok): the other nodes' share.
        self.on_outcome: Callable[[str, str, bool], None] | None = None

    # -- keys --------------------------------------------------------------------------
    def _keys(self, user: str, addr: str) -> _Keys:
        name = user.lower()
        return [
            (("p", name, addr), self.max_failures, "user and address"),
            (("a", addr), self.max_failures * ADDRESS_FACTOR, "address"),
            (("u", name), self.max_failures * USER_FACTOR, "user"),
        ]

    def _get(self, key: _Key, limit: int) -> _Counter:
        rec = self._counters.get(key)
        if rec is None:
            while len(self._counters) >= MAX_TRACKED:
                self._counters.popitem(last=False)
            rec = self._counters[key] = _Counter(deque(maxlen=limit + _EXTRA_FAILURE_TIMES))
        else:
            self._counters.move_to_end(key)
        return rec

    def _failures(self, rec: _Counter, now: float) -> int:
        while rec.failures and now - rec.failures[0] >= WINDOW:
            rec.failures.popleft()
        return len(rec.failures)

    def _is_trusted(self, user: str, addr: str, now: float) -> bool:
        since = self._trusted.get((user.lower(), addr))
        return since is not None and now - since < TRUST_WINDOW

    def _wait(self, user: str, addr: str, now: float, *, with_pending: bool) -> float:
        """Seconds the attempt must wait (0: go ahead)."""
        trusted = self._is_trusted(user, addr, now)
        wait = 0.0
        for i, (key, limit, _kind) in enumerate(self._keys(user, addr)):
            if i > 0 and trusted:
                break  # a trusted pair answers only to its own counter
            rec = self._counters.get(key)
            if rec is None:
                continue
            if rec.locked_until > now:
                wait = max(wait, rec.locked_until - now)
            elif with_pending and i != 1 and rec.pending >= max(1, limit - self._failures(rec, now)):
                # The checks in flight may use up what is left of the limit
                # (after a lock-out ended: one at a time): refuse until they end.
                # Not for the address (i == 1): a whole office logs in at once
                # after a restart; MAX_PENDING_PER_ADDRESS bounds it instead.
                wait = max(wait, 1.0)
        return wait

    # -- public API --------------------------------------------------------------------
    def retry_after(self, user: str, address: str) -> float:
        """Seconds until ``user`` from ``address`` may try again (0: now); a
        cheap pre-check that ignores checks in flight."""
        addr = address_key(address)
        with self._lock:
            return self._wait(user, addr, self._now(), with_pending=False)

    def is_trusted(self, user: str, address: str) -> bool:
        """Did ``user`` log in successfully from ``address`` recently?"""
        with self._lock:
            return self._is_trusted(user, address_key(address), self._now())

    def reserve(self, user: str, address: str) -> Reservation | Refused:
        """Check and count in one step: a slot for one password check, or why not."""
        addr = address_key(address)
        with self._lock:
            now = self._now()
            wait = self._wait(user, addr, now, with_pending=True)
            if wait > 0:
                return Refused(wait)
            if self._pending_by_address.get(addr, 0) >= MAX_PENDING_PER_ADDRESS and not self._is_trusted(
                user, addr, now
            ):
                return Refused(1.0, busy=True)
            keys = self._keys(user, addr)
            for key, limit, _kind in keys:
                self._get(key, limit).pending += 1
            self._pending_by_address[addr] = self._pending_by_address.get(addr, 0) + 1
        return Reservation(self, keys, addr, user, address)

    def succeeded(self, user: str, address: str) -> None:
        """A successful login (checked now or answered from the cache): clear
        the pair's failures and trust the pair."""
        news = self._succeeded(user, address)
        if news and self.on_outcome is not None:
            self.on_outcome(user, address, True)

    def _succeeded(self, user: str, address: str) -> bool:
        """The success applied; whether it changed anything (failures cleared, a pair newly
        trusted or trusted again after a day) -- what the other nodes need to hear."""
        addr = address_key(address)
        name = user.lower()
        with self._lock:
            now = self._now()
            pair = (name, addr)
            since = self._trusted.get(pair)
            news = since is None or now - since > TRUST_REFRESH
            rec = self._counters.get(("p", name, addr))
            if rec is not None:
                news = news or bool(rec.failures) or rec.locked_until > 0
                rec.failures.clear()
                rec.locked_until = 0.0
                if rec.pending == 0:
                    del self._counters[("p", name, addr)]
            self._trusted[pair] = now
            self._trusted.move_to_end(pair)
            while len(self._trusted) > MAX_TRUSTED:
                self._trusted.popitem(last=False)
        return news

    def apply_remote(self, user: str, address: str, ok: bool) -> list[Lock]:
        """An outcome another node saw: counted here as if seen here (not told on)."""
        if ok:
            self._succeeded(user, address)
            return []
        return self._remote_failure(self._keys(user, address_key(address)))

    def pending(self, user: str, address: str) -> int:
        """Checks in flight for the pair (tests, diagnostics)."""
        with self._lock:
            rec = self._counters.get(("p", user.lower(), address_key(address)))
            return 0 if rec is None else rec.pending

    # -- reservations ------------------------------------------------------------------
    def _unpend(self, keys: _Keys, addr: str) -> None:
        for key, _limit, _kind in keys:
            rec = self._counters.get(key)
            if rec is not None and rec.pending > 0:
                rec.pending -= 1
        left = self._pending_by_address.get(addr, 0) - 1
        if left > 0:
            self._pending_by_address[addr] = left
        else:
            self._pending_by_address.pop(addr, None)

    def _release(self, keys: _Keys, addr: str) -> None:
        with self._lock:
            self._unpend(keys, addr)

    def _fail(self, keys: _Keys, addr: str) -> list[Lock]:
        with self._lock:  # one step: no reservation sees the slot freed but the failure not counted
            self._unpend(keys, addr)
            return self._count_failure(keys)

    def _remote_failure(self, keys: _Keys) -> list[Lock]:
        with self._lock:
            return self._count_failure(keys)

    def _count_failure(self, keys: _Keys) -> list[Lock]:
        """Count one failure on ``keys`` (the caller holds the lock); the locks it started."""
        locks: list[Lock] = []
        now = self._now()
        for key, limit, kind in keys:
            rec = self._get(key, limit)
            self._failures(rec, now)
            rec.failures.append(now)  # bounded deque: the oldest beyond the cap drop out
            excess = len(rec.failures) - limit
            if excess >= 0:
                seconds = min(MAX_LOCKOUT, BASE_LOCKOUT * (2**excess))
                if now + seconds > rec.locked_until:
                    rec.locked_until = now + seconds
                    locks.append(Lock(kind, seconds))
        return locks
