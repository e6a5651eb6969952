"""Per-user folder subscriptions.

A team shares one mailbox, so by default every folder counts as subscribed
for every member while it exists: a folder a colleague creates, or one that
appears at the hoster, shows up in everybody's client, also in clients that
list subscribed folders only (LSUB).  On top of that each user has explicit
decisions (table ``subscriptions``), as RFC 3501 §6.3.6 keeps them:

* SUBSCRIBE stores "subscribed": the name stays subscribed even after the
  folder is deleted (listed as ``\\NonExistent`` under ``LIST (SUBSCRIBED)``)
  and when a folder of that name comes back;
* UNSUBSCRIBE stores "unsubscribed": the folder stays hidden in that user's
  subscribed-only client;
* CREATE through the gateway stores "unsubscribed" for its creator unless they
  decided about the name before (RFC 3501: CREATE does not subscribe; clients
  that want the folder subscribed send SUBSCRIBE next, as Thunderbird does),
  while the rest of the team gets the default.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, delete, insert, select

from ..store.schema import subscriptions


class Subscriptions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[int, dict[str, bool]] = {}

    def decisions(self, user_id: int) -> dict[str, bool]:
        """The user's explicit decisions: name -> subscribed."""
        got = self._cache.get(user_id)
        if got is None:
            with self.engine.connect() as conn:
                got = {
                    r.mailbox: bool(r.subscribed)
                    for r in conn.execute(
                        select(subscriptions.c.mailbox, subscriptions.c.subscribed).where(
                            subscriptions.c.user_id == user_id
                        )
                    )
                }
            self._cache[user_id] = got
        return got

    def is_subscribed(self, user_id: int, mailbox: str, *, exists: bool = True) -> bool:
        """Subscribed by decision, or by default while the folder ``exists``."""
        return self.decisions(user_id).get(mailbox, exists)

    def subscribed_names(self, user_id: int, existing: Iterable[str]) -> set[str]:
        """Every name the user counts as subscribed: existing folders without a
        "no", and every "yes", whether or not its folder exists."""
        decided = self.decisions(user_id)
        out = {n for n in existing if decided.get(n, True)}
        out.update(n for n, yes in decided.items() if yes)
        return out

    def subscribe(self, user_id: int, mailbox: str) -> None:
        self._decide(user_id, mailbox, True)

    def unsubscribe(self, user_id: int, mailbox: str) -> None:
        self._decide(user_id, mailbox, False)

    def created(self, user_id: int, mailbox: str) -> None:
        """``user_id`` created ``mailbox``: not subscribed for them unless they
        decided about that name before."""
        if mailbox not in self.decisions(user_id):
            self._decide(user_id, mailbox, False)

    def _decide(self, user_id: int, mailbox: str, subscribed: bool) -> None:
        decided = self.decisions(user_id)
        if decided.get(mailbox) is subscribed:
            return
        with self.engine.begin() as conn:
            conn.execute(
                delete(subscriptions).where(
                    subscriptions.c.user_id == user_id, subscriptions.c.mailbox == mailbox
                )
            )
            conn.execute(
                insert(subscriptions).values(user_id=user_id, mailbox=mailbox, subscribed=subscribed)
            )
        decided[mailbox] = subscribed
