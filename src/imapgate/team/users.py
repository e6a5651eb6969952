"""Team members' accounts: names and argon2id password hashes in the store.

Passwords are never stored or logged; ``verify`` costs one argon2id hash
(tens of milliseconds by design), so async callers run it in a worker thread.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, delete, insert, select, update

from ..store.schema import users

#: Login names: what mail clients put in LOGIN without quoting trouble.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")
#: Longer passwords are refused: argon2 cost grows with input, and nobody types 1 KiB.
MAX_PASSWORD = 1024

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults

# A hash of a random password: verifying unknown users against it costs the
# same time as a real check, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("imapgate-no-such-user")


class UserError(Exception):
    """A user command cannot be carried out (reason in the message)."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    created_at: float
    disabled: bool


class UserDirectory:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, name: str, password: str) -> User:
        _check_name(name)
        _check_password(password)
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first():
                raise UserError(f"user {name!r} already exists")
            uid = conn.execute(
                insert(users).values(
                    name=name, password_hash=_hasher.hash(password), created_at=now, disabled=False
                )
            ).inserted_primary_key
        assert uid is not None
        return User(int(uid[0]), name, now, False)

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(users).order_by(users.c.name)).all()
        return [User(r.id, r.name, r.created_at, r.disabled) for r in rows]

    def get(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(users).where(users.c.name == name)).first()
        return None if r is None else User(r.id, r.name, r.created_at, r.disabled)

    def set_password(self, name: str, password: str) -> None:
        _check_password(password)
        with self.engine.begin() as conn:
            n = conn.execute(
                update(users).where(users.c.name == name).values(password_hash=_hasher.hash(password))
            ).rowcount
        if not n:
            raise UserError(f"no user {name!r}")

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(delete(users).where(users.c.name == name)).rowcount
        if not n:
            raise UserError(f"no user {name!r}")

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is right and the account enabled, else None."""
        with self.engine.connect() as conn:
            r = conn.execute(select(users).where(users.c.name == name)).first()
        stored = r.password_hash if r is not None else _DUMMY_HASH
        ok: bool
        try:
            ok = _hasher.verify(stored, password[:MAX_PASSWORD])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or r is None or r.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            with self.engine.begin() as conn:
                conn.execute(
                    update(users).where(users.c.id == r.id).values(password_hash=_hasher.hash(password))
                )
        return User(r.id, r.name, r.created_at, r.disabled)

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (or enable again) a login without removing the user's state:
        a disabled account cannot log in, and a running gateway ends its sessions."""
        with self.engine.begin() as conn:
            n = conn.execute(update(users).where(users.c.name == name).values(disabled=disabled)).rowcount
        if not n:
            raise UserError(f"no user {name!r}")

def _check_name(name: str) -> None:
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
