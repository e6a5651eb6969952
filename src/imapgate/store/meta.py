"""Values made once per store and kept in the ``meta`` table."""

from __future__ import annotations

import time

from sqlalchemy import Engine, insert, select

from .schema import meta


def lasting_uidvalidity(engine: Engine, key: str) -> int:
    """A UIDVALIDITY made at first use and kept under ``key`` (the virtual folders':
    their UIDs are row ids that are never reused, so one value serves for good)."""
    with engine.begin() as db:
        row = db.execute(select(meta.c.value).where(meta.c.key == key)).first()
        if row is not None:
            return int(row[0])
        value = int(time.time()) & 0x7FFFFFFF
        db.execute(insert(meta).values(key=key, value=str(value)))
        return value
