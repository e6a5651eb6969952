"""Insert-or-update of rows by their key, in one statement on SQLite and PostgreSQL.

A delete-then-insert of a keyed row is not safe when two gateway nodes write the
same key at once (both delete nothing, the second insert fails on the primary
key); ``INSERT ... ON CONFLICT DO UPDATE`` is, on both backends the store runs on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

_INSERTS: dict[str, Any] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key: Sequence[str]) -> None:
    """Insert ``rows`` into ``table``; a row whose ``key`` columns exist already has
    its other columns replaced."""
    if not rows:
        return
    insert = _INSERTS.get(conn.dialect.name)
    if insert is None:
        raise NotImplementedError(f"upsert on {conn.dialect.name}: the store runs on SQLite or PostgreSQL")
    stmt = insert(table)
    others = [c for c in rows[0] if c not in key]
    conn.execute(
        stmt.on_conflict_do_update(index_elements=list(key), set_={c: stmt.excluded[c] for c in others}),
        list(rows),
    )
