"""``imapgate store copy --to URL``: the whole store into another, empty database.

Every table of the schema is copied in foreign-key order, in slices of
``SLICE`` rows, inside one transaction on the target: a copy that fails
(connection lost, disk full) leaves the target as empty as it was, so it can
simply be run again.  A target that holds anything (a user, a folder, a
journal entry...) is refused: merging two stores is not copying, and running
the copy twice must not duplicate a team.

Not copied, on purpose: the content cache and the search index (node-local:
beside a PostgreSQL store each node keeps them in its own SQLite file in its
``[store] data_dir``, ``store.engine.open_local_engine``, and fills them again
from the hoster), and the change log between nodes (its rows describe changes the copied
rows already contain).  On PostgreSQL the id sequences are moved past the
copied ids, or the next ``user add`` would collide with a copied user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table, create_engine, delete, func, insert, select, text

from .schema import change_log, content, metadata

#: Rows per INSERT: large enough that 100,000 messages are a few dozen round trips,
#: small enough to keep a slice's memory in the low megabytes.
SLICE = 5000
#: Tables that are caches or node-local, never copied (see the module text).
SKIPPED = frozenset({content.name, change_log.name}) | frozenset(
    t.name for t in metadata.sorted_tables if t.name.startswith("search_")
)

#: ``progress(table, rows copied so far, rows of the table)``.
Progress = Callable[[str, int, int], None]


class TargetNotEmpty(Exception):
    """The target database holds rows already; the message names the tables."""


@dataclass(frozen=True)
class CopySummary:
    tables: int
    rows: int
    counts: dict[str, int]


def copied_tables() -> list[Table]:
    return [t for t in metadata.sorted_tables if t.name not in SKIPPED]


def _counts(conn: Connection) -> dict[str, int]:
    return {
        t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in copied_tables()
    }


def seeded() -> dict[str, int]:
    """Rows a newly migrated database holds already (a migration may seed a table, like
    the ACL version's one row): an in-memory SQLite store, migrated and counted."""
    from .engine import upgrade

    engine = create_engine("sqlite://")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            return {name: n for name, n in _counts(conn).items() if n}
    finally:
        engine.dispose()


def occupied(conn: Connection, seeds: dict[str, int] | None = None) -> dict[str, int]:
    """Tables of ``conn``'s database holding rows beyond a new database's seed rows."""
    seeds = seeded() if seeds is None else seeds
    return {name: n for name, n in _counts(conn).items() if n and n != seeds.get(name)}


def copy_store(source: Engine, target: Engine, progress: Progress | None = None) -> CopySummary:
    """Copy every table of ``source`` into the empty ``target`` (both at the newest schema)."""
    counts: dict[str, int] = {}
    seeds = seeded()
    with source.connect() as src, target.begin() as dst:
        full = occupied(dst, seeds)
        if full:
            listed = ", ".join(f"{name} ({n})" for name, n in sorted(full.items()))
            raise TargetNotEmpty(f"the target already holds rows: {listed}")
        for table in reversed(copied_tables()):
            if table.name in seeds:  # the source's own rows replace the seed rows
                dst.execute(delete(table))
        for table in copied_tables():
            total = int(src.execute(select(func.count()).select_from(table)).scalar_one())
            done = 0
            if progress is not None:
                progress(table.name, 0, total)
            order = list(table.primary_key.columns) or list(table.columns)
            result = src.execution_options(yield_per=SLICE).execute(select(table).order_by(*order))
            for part in result.partitions(SLICE):
                dst.execute(insert(table), [dict(row._mapping) for row in part])
                done += len(part)
                if progress is not None:
                    progress(table.name, done, total)
            counts[table.name] = done
        if dst.dialect.name == "postgresql":
            _move_sequences(dst)
    return CopySummary(len(counts), sum(counts.values()), counts)


def _move_sequences(conn: Connection) -> None:
    """Each serial id's sequence past the highest copied id (rows were inserted with their ids)."""
    for table in copied_tables():
        for column in table.primary_key.columns:
            if column.autoincrement is not True and not (
                column.autoincrement == "auto" and len(table.primary_key.columns) == 1
            ):
                continue
            sequence = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
            ).scalar()
            if sequence is None:
                continue
            highest = conn.execute(select(func.max(column))).scalar()
            if highest is not None:
                conn.execute(text("SELECT setval(:s, :v)"), {"s": sequence, "v": int(highest)})
