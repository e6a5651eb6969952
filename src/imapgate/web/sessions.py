"""Dashboard logins: server-side sessions behind an opaque cookie.

The browser holds only a random id (``secrets.token_urlsafe(32)``: 256 bits);
everything else — who is logged in, the CSRF token, when the login expires —
stays in the gateway.  The store is keyed by a SHA-256 of the id, so not even
a memory dump or a debug listing of the store holds a usable cookie.

A session ends at the first of: logout; ``session_idle_timeout`` without a
request; ``session_lifetime`` after login; the account removed or disabled
(``end_user`` / ``end_accounts``, called from the control channel's
``user-changed`` and its periodic account check, the same places that end the
user's IMAP sessions).

``SessionStore`` is the interface; ``MemorySessionStore`` keeps sessions in
this process, which is right for one gateway node (a restart logs everyone
out of the dashboard, as it disconnects every IMAP client).  Several nodes
behind one name (issue 16) put a store on the shared database behind the same
interface, or pin browsers to a node.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

#: Open dashboard sessions at most (a team of 50, several browsers each, is far
#: below); beyond it the oldest idle session is dropped, so a login flood
#: cannot grow memory without bound.
MAX_SESSIONS = 10_000
#: Seconds between two refreshes of a session's idle clock (a page view and
#: its assets within one second touch it once).
TOUCH_GRANULARITY = 1.0

_ids = itertools.count(1)


def csrf_ok(session: WebSession, token: str | None) -> bool:
    """Does ``token`` (form field or ``X-CSRF-Token``) belong to ``session``?"""
    if not token:
        return False
    return hmac.compare_digest(session.csrf_token.encode(), token.encode("utf-8", "surrogatepass"))


@dataclass
class WebSession:
    """One dashboard login."""

    #: A small number for lists and logs (``w3``); never the cookie.
    number: int
    user: str
    user_id: int
    csrf_token: str
    address: str
    tls: bool
    created: float
    last_seen: float
    #: Wall-clock time of the login, for the admin's session list.
    since: float = field(default_factory=time.time)


class SessionStore(Protocol):
    def create(self, user: str, user_id: int, *, address: str, tls: bool) -> tuple[str, WebSession]:
        """A new session; returns (cookie value, session)."""
        ...

    def get(self, cookie: str) -> WebSession | None:
        """The live session for a cookie value (its idle clock refreshed), or None."""
        ...

    def delete(self, cookie: str) -> None: ...

    def sessions(self) -> list[WebSession]: ...

    def end_number(self, number: int) -> WebSession | None:
        """End the session numbered ``number``; which it was (None: none)."""
        ...

    def end_user(self, name: str, keep_user_id: int | None) -> int:
        """End every session of ``name`` except those of account ``keep_user_id``
        (None: all).  How many ended."""
        ...

    def end_accounts(self, active: Iterable[int]) -> int:
        """End every session whose account id is not in ``active``."""
        ...


class MemorySessionStore:
    """Sessions in this process (see the module docstring)."""

    def __init__(
        self,
        *,
        idle_timeout: float,
        lifetime: float,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self.clock = clock
        self._by_key: dict[bytes, WebSession] = {}
        #: Called with each session that ends other than by expiry (live event
        #: streams close at once).
        self.on_end: list[Callable[[WebSession], None]] = []

    @staticmethod
    def _key(cookie: str) -> bytes:
        return hashlib.sha256(cookie.encode("utf-8", "surrogatepass")).digest()

    def create(self, user: str, user_id: int, *, address: str, tls: bool) -> tuple[str, WebSession]:
        self._expire()
        while len(self._by_key) >= self.max_sessions:
            oldest = min(self._by_key, key=lambda k: self._by_key[k].last_seen)
            self._end(oldest)
        cookie = secrets.token_urlsafe(32)
        now = self.clock()
        session = WebSession(next(_ids), user, user_id, secrets.token_urlsafe(32), address, tls, now, now)
        self._by_key[self._key(cookie)] = session
        return cookie, session

    def get(self, cookie: str) -> WebSession | None:
        if not cookie or len(cookie) > 200:
            return None
        key = self._key(cookie)
        session = self._by_key.get(key)
        if session is None:
            return None
        now = self.clock()
        if self._expired(session, now):
            self._end(key)
            return None
        if now - session.last_seen >= TOUCH_GRANULARITY:
            session.last_seen = now
        return session

    def alive(self, session: WebSession) -> bool:
        """Is ``session`` still in the store and unexpired (event streams ask)."""
        now = self.clock()
        return any(s is session for s in self._by_key.values()) and not self._expired(session, now)

    def touch(self, session: WebSession) -> None:
        session.last_seen = self.clock()

    def delete(self, cookie: str) -> None:
        self._end(self._key(cookie))

    def end_number(self, number: int) -> WebSession | None:
        """End the session shown as ``w<number>`` (the admin's "end session");
        the session it was, or None when there is none (any more)."""
        for key, session in list(self._by_key.items()):
            if session.number == number:
                self._end(key)
                return session
        return None

    def sessions(self) -> list[WebSession]:
        self._expire()
        return sorted(self._by_key.values(), key=lambda s: s.number)

    def end_user(self, name: str, keep_user_id: int | None) -> int:
        gone = [k for k, s in self._by_key.items() if s.user == name and s.user_id != keep_user_id]
        for k in gone:
            self._end(k)
        return len(gone)

    def end_accounts(self, active: Iterable[int]) -> int:
        ids = set(active)
        gone = [k for k, s in self._by_key.items() if s.user_id not in ids]
        for k in gone:
            self._end(k)
        return len(gone)

    def __len__(self) -> int:
        return len(self._by_key)

    # -- internals --------------------------------------------------------------------
    def _expired(self, session: WebSession, now: float) -> bool:
        return now - session.last_seen >= self.idle_timeout or now - session.created >= self.lifetime

    def _expire(self) -> None:
        now = self.clock()
        for k in [k for k, s in self._by_key.items() if self._expired(s, now)]:
            self._end(k, notify=False)

    def _end(self, key: bytes, *, notify: bool = True) -> None:
        session = self._by_key.pop(key, None)
        if session is not None and notify:
            for fn in self.on_end:
                fn(session)
