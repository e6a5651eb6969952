"""What the pipeline needs to know about the store before and after upstream.

Before touching upstream, a write asks ``writable``: while the store is known
unwritable (disk full, I/O error) the operation is refused with
``STORE_UNWRITABLE`` and nothing changes anywhere, so a client's retry cannot
duplicate anything.  After upstream carried a change out, a failing commit is
no reason to tell the client otherwise: the service answers OK, logs it and
asks for a sync of the folder, which heals the replica from upstream once the
store takes writes again (``STORE_FAILURES`` are the errors meant).

The store package's own health tracker (set at start, updated by the
repository on every commit) satisfies ``StoreHealth``; ``AlwaysWritable`` is
the default until it is connected.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.exc import OperationalError

# For the front ends (server/ never imports store/): a database that cannot be reached
# (PostgreSQL restarting) is answered NO [UNAVAILABLE], not as an internal error.
from ..store.health import DATABASE_UNREACHABLE as DATABASE_UNREACHABLE
from ..store.health import is_database_unreachable as is_database_unreachable

# For the front ends (server/ never imports store/): a database that cannot be reached
# (PostgreSQL restarting) is answered NO [UNAVAILABLE], not as an internal error.

#: The answer while the store cannot be written.
STORE_UNWRITABLE = "the gateway's store cannot be written (disk full or I/O error); nothing was changed"

#: Errors of a commit that mean "the store could not be written" (SQLite: "database or
#: disk is full", "disk I/O error", a read-only file; PostgreSQL: the server gone).  Not
#: IntegrityError and the like: those are bugs and stay internal errors.
STORE_FAILURES: tuple[type[BaseException], ...] = (OperationalError,)


class StoreHealth(Protocol):
    """Whether the store takes writes now."""

    @property
    def writable(self) -> bool: ...


class AlwaysWritable:
    """The default: the store is assumed writable; a failing commit is still
    caught after upstream succeeded."""

    @property
    def writable(self) -> bool:
        return True
