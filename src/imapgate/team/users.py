"""Team members' accounts: names and argon2id password hashes in the store.

Passwords are never stored or logged.  Checking one costs an argon2id hash
(tens of milliseconds and 64 MiB by design), so the gateway does not call
``verify`` on its event loop: ``gateway/auth.py`` reads the account with
``credentials`` (one indexed row) and runs ``check_password`` (pure CPU, no
store access) in its bounded verifier threads.

A check that could not be made (argon2 out of memory or threads, a corrupt
stored hash) raises ``PasswordCheckError``: it is never reported as a wrong
password.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine, delete, insert, select, update

from ..store.schema import users

#: Login names: what mail clients put in LOGIN without quoting trouble.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")
#: Names an ACL identifier gives another meaning (RFC 4314 §3.1: every team
#: member), so no account may carry them (matched in any case).
RESERVED_NAMES = frozenset({"anyone", "authenticated"})
#: Longer passwords are refused: argon2 cost grows with input, and nobody types 1 KiB.
MAX_PASSWORD = 1024

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password: verifying unknown users against it costs the
    same time as a real check, so timing does not reveal which names exist.  Made
    at the first check of an unknown name, not at import: one argon2id hash (about
    0.2 s) in every process, CLI commands included, was most of their start-up."""
    return _hasher.hash("imapgate-no-such-user")


def prepare_dummy_hash() -> None:
    """Make the dummy hash now (a serving gateway, at start, in a worker thread):
    so not even the first check of an unknown name takes longer than others."""
    _dummy_hash()


#: Written in the same transaction as a change (the journal entry of an admin
#: verb, ``JournalEntry.writer()``), so the journal never misses nor invents one.
AlsoWrite = Callable[[Connection], None]


class UserError(Exception):
    """A user command cannot be carried out (reason in the message)."""


class PasswordCheckError(Exception):
    """The password could not be checked (not: it was wrong).

    argon2 reports a failed memory allocation or thread start with the same
    exception class as other errors (``VerificationError``); treating those as
    a mismatch answered a correct login with "invalid password" on a loaded
    machine.  Callers answer a temporary failure instead."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    created_at: float
    disabled: bool
    #: Every right on every folder (team/acl.py); set by ``user add --admin``
    #: and ``user set --admin|--no-admin``.
    admin: bool = False


@dataclass(frozen=True)
class Credentials:
    """An account with its stored hash: what a login check needs (one row)."""

    user: User
    password_hash: str


def check_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (None: no such user; the
    check then runs against a dummy hash so it costs the same time).

    Raises ``PasswordCheckError`` when the check could not be made."""
    if len(password) > MAX_PASSWORD:
        return False  # no stored password is that long; do not pay argon2 for it
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except VerifyMismatchError:
        return False
    except InvalidHashError:
        raise PasswordCheckError("the stored password hash is not a valid argon2 hash") from None
    except VerificationError as exc:
        # Memory allocation error, thread creation failure, ...: not a mismatch.
        raise PasswordCheckError(f"argon2 could not run: {exc}") from None


def upgraded_hash(stored_hash: str, password: str) -> str | None:
    """A new hash of ``password`` when ``stored_hash`` uses outdated argon2
    parameters (call only after ``check_password`` said it matches)."""
    if _hasher.check_needs_rehash(stored_hash):
        return _hasher.hash(password)
    return None


class UserDirectory:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, name: str, password: str, *, admin: bool = False, also: AlsoWrite | None = None) -> User:
        _check_name(name)
        _check_password(password)
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first():
                raise UserError(f"user {name!r} already exists")
            uid = conn.execute(
                insert(users).values(
                    name=name,
                    password_hash=_hasher.hash(password),
                    created_at=now,
                    disabled=False,
                    admin=admin,
                )
            ).inserted_primary_key
            if also is not None:
                also(conn)
        assert uid is not None
        return User(int(uid[0]), name, now, False, admin)

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users).order_by(users.c.name)).all()
        return [_user(r) for r in rows]

    def get(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(users).where(users.c.name == name)).first()
        return None if r is None else _user(r)

    def set_password(self, name: str, password: str, *, also: AlsoWrite | None = None) -> None:
        _check_password(password)
        with self.engine.begin() as conn:
            n = conn.execute(
                update(users).where(users.c.name == name).values(password_hash=_hasher.hash(password))
            ).rowcount
            _also_if(conn, n, also, name)

    def set_disabled(self, name: str, disabled: bool, *, also: AlsoWrite | None = None) -> None:
        """Disable (or enable again) an account; logins are refused at once."""
        with self.engine.begin() as conn:
            n = conn.execute(update(users).where(users.c.name == name).values(disabled=disabled)).rowcount
            _also_if(conn, n, also, name)

    def credentials(self, name: str) -> Credentials | None:
        """The account named ``name`` with its stored hash (one indexed row read)."""
        with self.engine.connect() as conn:
            r = conn.execute(select(users).where(users.c.name == name)).first()
        if r is None:
            return None
        return Credentials(_user(r), r.password_hash)

    def replace_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """Store ``new_hash`` only if the account still has ``old_hash`` (compare and set).

        A rehash after a successful check must never overwrite a password that
        ``user passwd`` set meanwhile: that would bring the old password back."""
        with self.engine.begin() as conn:
            n = conn.execute(
                update(users)
                .where(users.c.id == user_id, users.c.password_hash == old_hash)
                .values(password_hash=new_hash)
            ).rowcount
        return bool(n)

    def remove(self, name: str, *, also: AlsoWrite | None = None) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(delete(users).where(users.c.name == name)).rowcount
            _also_if(conn, n, also, name)

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is right and the account enabled, else None.

        Blocking (one argon2 check); for scripts and tests.  The gateway uses
        ``gateway/auth.Authenticator``, which caches, throttles and bounds it.
        Raises ``PasswordCheckError`` when the check could not be made."""
        cred = self.credentials(name)
        stored = cred.password_hash if cred is not None else None
        if not check_password(stored, password) or cred is None or cred.user.disabled:
            return None
        new = upgraded_hash(cred.password_hash, password)
        if new is not None:
            self.replace_hash(cred.user.id, cred.password_hash, new)
        return cred.user


def _user(row: Any) -> User:
    return User(row.id, row.name, row.created_at, row.disabled, bool(row.admin))


def _also_if(conn: Connection, changed: int, also: AlsoWrite | None, name: str) -> None:
    """Write ``also`` with a change that happened; none happened: roll back and say so."""
    if not changed:
        raise UserError(f"no user {name!r}")
    if also is not None:
        also(conn)


def _check_name(name: str) -> None:
    if name.lower() in RESERVED_NAMES:
        raise UserError(f"invalid user name {name!r}: in folder permissions it means every team member")
    if name[:1] in ("$", "-"):
        meaning = "a group" if name[0] == "$" else "a negative entry"
        raise UserError(
            f"invalid user name {name!r}: {name[0]} in front marks {meaning} in folder permissions"
        )
    if not NAME_RE.match(name):
        raise UserError(
            f"invalid user name {name!r}: use 1-64 letters, digits and . _ @ + - "
            "(starting with a letter or digit)"
        )


def _check_password(password: str) -> None:
    if not password:
        raise UserError("empty password")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password longer than {MAX_PASSWORD} characters")
    if "\r" in password or "\n" in password or "\x00" in password:
        raise UserError("password contains CR, LF or NUL, which IMAP LOGIN cannot carry")
