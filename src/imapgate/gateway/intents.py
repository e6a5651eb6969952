"""Intents: multi-step upstream operations written down before they start.

A move on a server without MOVE is three steps (COPY, flag \\Deleted, expunge).
If the gateway dies or the connection breaks between them, the mail would be in
both folders (or, with a careless retry, in neither).  So the move is recorded
as an intent first, and ``recover`` — at start-up, and right after a failure —
finds out how far it got (by Message-ID in the destination) and either
finishes it (the copies are there: expunge the originals) or rolls it back
(no copies: clear the \\Deleted it set).  Mail is never lost; a duplicate
remains only for messages without a Message-ID, which cannot be verified.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, update

from ..store.schema import intents

log = logging.getLogger("imapgate.intents")


@dataclass
class Intent:
    id: int
    kind: str
    payload: dict[str, Any]
    #: When it was begun (seconds since the epoch).
    created: float = 0.0


class IntentLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin(self, kind: str, payload: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            key = conn.execute(
                insert(intents).values(
                    created=time.time(), kind=kind, payload=json.dumps(payload), state="open"
                )
            ).inserted_primary_key
        assert key is not None
        return int(key[0])

    def finish(self, intent_id: int, state: str = "done") -> None:
        with self.engine.begin() as conn:
            conn.execute(update(intents).where(intents.c.id == intent_id).values(state=state))

    def pending(self) -> list[Intent]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(intents).where(intents.c.state == "open").order_by(intents.c.id)).all()
        return [Intent(r.id, r.kind, json.loads(r.payload), r.created) for r in rows]
