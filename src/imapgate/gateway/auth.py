"""The one login check of every front end: IMAP today, SMTP submission and the
web dashboard later (they call ``Authenticator.authenticate`` and nothing else).

Theory of operation.  ``authenticate(name, password, address)``:

1. refuses at once (after ``failure_delay``) when the throttle says the pair
   is locked (``throttle.py``);
2. reads the account: one indexed row (id, stored hash, disabled), in a
   worker thread so a slow store never stalls the event loop;
3. looks the pair up in the **verified-credentials cache**: in memory, keyed by
   HMAC-SHA256 under a per-process random key over the name and password
   (never the password itself), bounded (``MAX_CACHED``, least recently used
   dropped) and with a TTL (``[server] login_cache_ttl``).  An entry holds the
   user id and the stored hash it was verified against, and is served only
   while the row read in step 2 still has that id and that hash and is not
   disabled: ``user passwd``, ``user remove`` and disabling take effect at the
   next login, also when another process (the CLI, another gateway node on
   the same database) made the change.  Only successful checks are cached, so
   a wrong password can never be answered from it;
4. on a miss, joins an identical check already running (a client opening five
   connections at once costs one argon2 check), or reserves a throttle slot
   (check-and-count in one step) and runs argon2 in the bounded verifier
   (``verifier.py``), logins from trusted pairs first;
5. counts the outcome, logs a failure (the name only if such a user exists,
   else a keyed-hash reference: people type passwords into the name field),
   and answers a failure only after ``failure_delay`` (which holds neither a
   throttle slot nor a verifier thread).

A check that could not be made (store error, argon2 out of memory or threads,
too many checks waiting) answers ``UNAVAILABLE``/``BUSY``, never ``FAILED``, and
is not counted as a failed login.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..team.journal import Journal, JournalEntry
from ..team.users import Credentials, PasswordCheckError, User, UserDirectory, check_password, upgraded_hash
from .throttle import LoginThrottle, Refused, Reservation
from .verifier import BoundedVerifier, VerifierBusy

log = logging.getLogger("imapgate.auth")

#: Seconds every failed or refused attempt waits before its answer: slows
#: guessing on one connection; it holds no throttle slot and no verifier thread.
FAILURE_DELAY = 1.0
#: Seconds between two warnings about logins refused for too many waiting checks.
BUSY_LOG_INTERVAL = 10.0
#: Verified logins remembered at most: a team of 50 with 5 devices each needs
#: 250; the rest is headroom (an entry is about 300 bytes).
MAX_CACHED = 10_000


class Outcome(enum.Enum):
    OK = "ok"
    #: Wrong name or password, or the account is disabled.
    FAILED = "failed"
    #: Refused by the throttle without a check (``retry_after`` seconds).
    LOCKED = "locked"
    #: Too many checks waiting or in flight from the address: not checked.
    BUSY = "busy"
    #: The check could not be made (store or argon2 error): not checked.
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class AuthResult:
    outcome: Outcome
    user: User | None = None
    retry_after: float = 0.0
    #: How a failed attempt's name is journaled and logged (the name only if such a
    #: user exists, else ``unknown_name_ref``), and why it failed.
    shown: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass
class AuthStats:
    """Counters since start (tests, and later the dashboard's metrics)."""

    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    #: argon2 checks run.
    verifications: int = 0
    cache_hits: int = 0
    #: Attempts answered by an identical check that was already running.
    joined: int = 0
    locked: int = 0
    busy: int = 0
    unavailable: int = 0


#: Per-process key for :func:`unknown_name_ref`: references correlate attempts
#: within one run and are useless for guessing what was typed.
_NAME_REF_KEY = secrets.token_bytes(16)


def unknown_name_ref(name: str) -> str:
    """How a failed login's user name is logged when no such user exists.

    People type their password into the user-name field; the log must not keep
    it.  A keyed hash still lets an admin see that attempts repeat."""
    digest = hmac.new(_NAME_REF_KEY, name.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return f"unknown user [ref {digest[:10]}]"


@dataclass(frozen=True)
class _Entry:
    user_id: int
    password_hash: str
    expires: float


@dataclass
class CredentialCache:
    """Verified (name, password) pairs, by keyed hash; see the module docstring."""

    ttl: float
    max_entries: int = MAX_CACHED
    clock: Callable[[], float] = time.monotonic
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _entries: OrderedDict[bytes, _Entry] = field(default_factory=OrderedDict)

    def key(self, name: str, password: str) -> bytes:
        n = name.encode("utf-8", "surrogatepass")
        p = password.encode("utf-8", "surrogatepass")
        # Length-prefixed, so no (name, password) split is ambiguous.
        return hmac.new(self._secret, len(n).to_bytes(4, "big") + n + p, hashlib.sha256).digest()

    def valid(self, key: bytes, cred: Credentials | None) -> bool:
        """Is ``key`` cached and still right for the account as stored now?"""
        entry = self._entries.get(key)
        if entry is None:
            return False
        if (
            cred is None
            or cred.user.disabled
            or cred.user.id != entry.user_id
            or not hmac.compare_digest(cred.password_hash, entry.password_hash)
            or self.clock() >= entry.expires
        ):
            del self._entries[key]
            return False
        self._entries.move_to_end(key)
        return True

    def put(self, key: bytes, cred: Credentials) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = _Entry(cred.user.id, cred.password_hash, self.clock() + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Authenticator:
    def __init__(
        self,
        users: UserDirectory,
        *,
        max_failed_logins: int = 5,
        cache_ttl: float = 3600.0,
        cache_size: int = MAX_CACHED,
        verifier: BoundedVerifier | None = None,
        throttle: LoginThrottle | None = None,
        failure_delay: float = FAILURE_DELAY,
        clock: Callable[[], float] = time.monotonic,
        journal: Journal | None = None,
    ) -> None:
        self.users = users
        #: Where logins and failed logins are journaled (None: nowhere, e.g. tests).
        self.journal = journal
        self.throttle = throttle or LoginThrottle(max_failed_logins, clock=clock)
        self.cache = CredentialCache(cache_ttl, cache_size, clock)
        self.verifier = verifier or BoundedVerifier()
        self.failure_delay = failure_delay
        self.stats = AuthStats()
        self._inflight: dict[bytes, asyncio.Future[AuthResult]] = {}
        self._busy_logged_at = -BUSY_LOG_INTERVAL
        self._busy_unlogged = 0

    def close(self) -> None:
        self.verifier.close()
        self.cache.clear()

    async def authenticate(
        self, name: str, password: str, address: str, *, client_id: str = "", via: str = "imap"
    ) -> AuthResult:
        """Check a login; see the module docstring for the steps.  Logins and failed
        logins are journaled (``client_id``: the IMAP ID, ``via``: the front end);
        checks that could not be made are not: they say nothing about the user."""
        result = await self._authenticate(name, password, address)
        if self.journal is not None and result.outcome in (Outcome.OK, Outcome.FAILED, Outcome.LOCKED):
            await self._journal_login(result, name, address, client_id, via)
        return result

    async def _journal_login(
        self, result: AuthResult, name: str, address: str, client_id: str, via: str
    ) -> None:
        journal = self.journal
        assert journal is not None
        shown: str | None = None
        if result.user is not None and result.ok:
            shown, action, detail = result.user.name, "login", f"via {via}"
        else:
            # Never the password, never an unknown name as typed (it may be a password).
            shown = result.shown or None  # a throttled attempt: looked up below
            reason = result.reason or ("too many failed logins" if result.outcome is Outcome.LOCKED else "")
            action, detail = "login_failed", f"via {via}: {reason or 'wrong name or password'}"
        entry = JournalEntry(
            user=shown,
            client=f"{client_id} from {address}" if client_id else address,
            command="LOGIN",
            result="OK" if result.ok else "NO",
            detail=detail,
            action=action,
            client_id=client_id,
            address=address,
        )

        def write() -> None:
            if entry.user is None:
                cred = self.users.credentials(name)
                entry.user = cred.user.name if cred is not None else unknown_name_ref(name)
            journal.record(entry)

        try:
            await asyncio.to_thread(write)
        except SQLAlchemyError as exc:
            log.warning("login from %s not journaled: %s", address, _db_reason(exc))

    async def _authenticate(self, name: str, password: str, address: str) -> AuthResult:
        self.stats.attempts += 1
        wait = self.throttle.retry_after(name, address)
        if wait > 0:
            return await self._refused(Refused(wait))
        try:
            cred = await asyncio.to_thread(self.users.credentials, name)
        except SQLAlchemyError as exc:
            log.warning("login check from %s failed: store error (%s)", address, _db_reason(exc))
            self.stats.unavailable += 1
            return AuthResult(Outcome.UNAVAILABLE)
        key = self.cache.key(name, password)
        # From here to the reservation nothing awaits: the throttle's check and
        # count and the cache lookup see one state.
        wait = self.throttle.retry_after(name, address)
        if wait > 0:
            return await self._refused(Refused(wait))
        if self.cache.valid(key, cred):
            assert cred is not None
            self.stats.cache_hits += 1
            self.stats.succeeded += 1
            self.throttle.succeeded(name, address)
            return AuthResult(Outcome.OK, cred.user)
        running = self._inflight.get(key)
        if running is not None:
            # The same name and password are being checked right now: that
            # answer is this attempt's answer, and it adds no guess.
            self.stats.joined += 1
            result = await asyncio.shield(running)
            if result.ok:
                self.throttle.succeeded(name, address)
            elif result.outcome is Outcome.FAILED:
                await asyncio.sleep(self.failure_delay)
            return result
        reservation = self.throttle.reserve(name, address)
        if isinstance(reservation, Refused):
            return await self._refused(reservation)
        fut: asyncio.Future[AuthResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        result = AuthResult(Outcome.UNAVAILABLE)
        try:
            result = await self._check(name, password, address, cred, key, reservation)
        finally:
            reservation.release()  # no-op when settled; frees the slot if cancelled
            del self._inflight[key]
            fut.set_result(result)
        if result.outcome is Outcome.FAILED:
            await asyncio.sleep(self.failure_delay)
        return result

    async def _check(
        self,
        name: str,
        password: str,
        address: str,
        cred: Credentials | None,
        key: bytes,
        reservation: Reservation,
    ) -> AuthResult:
        stored = cred.password_hash if cred is not None else None

        def work() -> tuple[bool, str | None]:
            ok = check_password(stored, password)
            return ok, (upgraded_hash(stored, password) if ok and stored is not None else None)

        shown = cred.user.name if cred is not None else unknown_name_ref(name)
        try:
            ok, new_hash = await self.verifier.run(work, priority=self.throttle.is_trusted(name, address))
            self.stats.verifications += 1
        except VerifierBusy:
            reservation.release()
            self.stats.busy += 1
            self._log_busy()
            return AuthResult(Outcome.BUSY, retry_after=1.0)
        except PasswordCheckError as exc:
            reservation.release()
            self.stats.verifications += 1
            self.stats.unavailable += 1
            log.error("could not check the password of %s from %s: %s", shown, address, exc)
            return AuthResult(Outcome.UNAVAILABLE)
        if not ok or cred is None or cred.user.disabled:
            self.stats.failed += 1
            locks = reservation.failed()
            if ok and cred is not None:
                reason = "account disabled"
                log.info("login refused for %s from %s: account disabled", shown, address)
            else:
                reason = "wrong name or password"
                log.info("failed login for %s from %s", shown, address)
            for lock in locks:
                log.warning(
                    "too many failed logins (%s: %s from %s): refused for %d s",
                    lock.kind,
                    shown,
                    address,
                    lock.seconds,
                )
            return AuthResult(Outcome.FAILED, shown=shown, reason=reason)
        if new_hash is not None:
            cred = await self._store_upgraded_hash(cred, new_hash)
        self.cache.put(key, cred)
        self.stats.succeeded += 1
        reservation.succeeded()
        return AuthResult(Outcome.OK, cred.user)

    def _log_busy(self) -> None:
        """One warning per ``BUSY_LOG_INTERVAL`` at most: refusals are answered
        at once, so a flood must not turn into a flood of log lines."""
        self._busy_unlogged += 1
        now = time.monotonic()
        if now - self._busy_logged_at >= BUSY_LOG_INTERVAL:
            log.warning(
                "%d login(s) refused since the last report: too many password checks waiting "
                "(%d running, %d waiting)",
                self._busy_unlogged,
                self.verifier.running,
                self.verifier.waiting,
            )
            self._busy_logged_at = now
            self._busy_unlogged = 0

    async def _store_upgraded_hash(self, cred: Credentials, new_hash: str) -> Credentials:
        """Rehash with current parameters; a failure here never fails the login
        (the password was right)."""
        try:
            replaced = await asyncio.to_thread(
                self.users.replace_hash, cred.user.id, cred.password_hash, new_hash
            )
        except SQLAlchemyError as exc:
            log.warning("could not store the upgraded hash of %s: %s", cred.user.name, _db_reason(exc))
            return cred
        return replace(cred, password_hash=new_hash) if replaced else cred

    async def _refused(self, refused: Refused) -> AuthResult:
        if refused.busy:
            self.stats.busy += 1
            return AuthResult(Outcome.BUSY, retry_after=refused.seconds)
        self.stats.locked += 1
        await asyncio.sleep(self.failure_delay)
        return AuthResult(Outcome.LOCKED, retry_after=refused.seconds)


def _db_reason(exc: SQLAlchemyError) -> str:
    """The driver's reason, without SQL or parameters (which hold the login name)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        with contextlib.suppress(Exception):
            return f"{type(exc.orig).__name__}: {exc.orig}"
    return type(exc).__name__
