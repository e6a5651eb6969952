"""Shared counters in the store: what several nodes hand out without handing out twice.

``advance(conn, name, by=n, floor=f)`` raises the counter ``name`` to at least ``f`` and
then by ``n`` in one ``UPDATE ... RETURNING`` and returns the new value, so the caller
owns the ``n`` values just below it.  The row lock the UPDATE takes serialises two nodes
advancing the same counter; neither sees the other's values.  The first use of a name
inserts its row (``ON CONFLICT DO NOTHING``: two nodes may try at once).  Portable: the
upsert is spelled by each dialect, the rest is Core.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .schema import counters


def advance(conn: Connection, name: str, *, by: int, floor: int = 0) -> int:
    """The counter ``name`` at ``max(value, floor) + by`` (the new value)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(counters).values(name=name, value=floor).on_conflict_do_nothing())
    greatest = func.greatest if conn.dialect.name == "postgresql" else func.max
    value = conn.execute(
        update(counters)
        .where(counters.c.name == name)
        .values(value=greatest(counters.c.value, floor) + by)
        .returning(counters.c.value)
    ).scalar_one()
    return int(value)


def value(conn: Connection, name: str) -> int | None:
    """The counter's value (None: never advanced)."""
    got = conn.execute(select(counters.c.value).where(counters.c.name == name)).scalar()
    return None if got is None else int(got)
