"""Login throttling: failed logins per user name and per client address.

After ``max_failures`` failures within ``WINDOW`` seconds, further attempts for
that name or address are refused for a lock-out that doubles with each further
failure (up to ``MAX_LOCKOUT``); every failure also costs the client
``FAILURE_DELAY`` seconds before the answer, which slows guessing on one
connection without holding any lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: Seconds over which failures are counted.
WINDOW = 15 * 60.0
#: First lock-out after the limit; doubles with every further failure.
BASE_LOCKOUT = 30.0
#: Longest lock-out: an attacker cannot lock a real user out for longer.
MAX_LOCKOUT = 15 * 60.0
#: Delay before answering a failed attempt.
FAILURE_DELAY = 1.0
#: An address may fail this many times more than one user name before it is
#: locked: a whole office behind one NAT address must not be locked out by one
#: colleague's client retrying an old password.
ADDRESS_FACTOR = 5

#: Names and addresses tracked at most; oldest forgotten first (bounded memory
#: under a distributed guessing attack).
MAX_TRACKED = 100_000


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(self, max_failures: int = 5) -> None:
        self.max_failures = max_failures
        self._records: dict[str, _Record] = {}
        self._now = time.monotonic

    def _get(self, key: str) -> _Record:
        rec = self._records.get(key)
        if rec is None:
            if len(self._records) >= MAX_TRACKED:
                self._records.pop(next(iter(self._records)))
            rec = self._records[key] = _Record()
        return rec

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until ``user`` from ``address`` may try again (0: now)."""
        now = self._now()
        wait = 0.0
        for key in (f"u:{user.lower()}", f"a:{address}"):
            rec = self._records.get(key)
            if rec is not None and rec.locked_until > now:
                wait = max(wait, rec.locked_until - now)
        return wait

    def failed(self, user: str, address: str) -> None:
        now = self._now()
        for key, limit in (
            (f"u:{user.lower()}", self.max_failures),
            (f"a:{address}", self.max_failures * ADDRESS_FACTOR),
        ):
            rec = self._get(key)
            rec.failures = [t for t in rec.failures if now - t < WINDOW]
            rec.failures.append(now)
            excess = len(rec.failures) - limit
            if excess >= 0:
                rec.locked_until = now + min(MAX_LOCKOUT, BASE_LOCKOUT * (2**excess))

    def succeeded(self, user: str, address: str) -> None:
        self._records.pop(f"u:{user.lower()}", None)
