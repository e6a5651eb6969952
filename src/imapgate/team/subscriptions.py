"""Per-user folder subscriptions.

Stored as exceptions (``unsubscriptions``): every shared folder counts as
subscribed for every team member until they unsubscribe it, so a folder
someone creates appears in everybody's client without further steps.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, select

from ..store.schema import unsubscriptions


class Subscriptions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[int, set[str]] = {}

    def unsubscribed(self, user_id: int) -> set[str]:
        got = self._cache.get(user_id)
        if got is None:
            with self.engine.connect() as conn:
                got = {
                    r[0]
                    for r in conn.execute(
                        select(unsubscriptions.c.mailbox).where(unsubscriptions.c.user_id == user_id)
                    )
                }
            self._cache[user_id] = got
        return got

    def is_subscribed(self, user_id: int, mailbox: str) -> bool:
        return mailbox not in self.unsubscribed(user_id)

    def subscribe(self, user_id: int, mailbox: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(unsubscriptions).where(
                    unsubscriptions.c.user_id == user_id, unsubscriptions.c.mailbox == mailbox
                )
            )
        self.unsubscribed(user_id).discard(mailbox)

    def unsubscribe(self, user_id: int, mailbox: str) -> None:
        if mailbox in self.unsubscribed(user_id):
            return
        with self.engine.begin() as conn:
            conn.execute(insert(unsubscriptions).values(user_id=user_id, mailbox=mailbox))
        self.unsubscribed(user_id).add(mailbox)
