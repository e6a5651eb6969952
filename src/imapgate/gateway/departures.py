"""Conflicts without claims: what the loser of a race is told.

Two members act on the same message at the same moment; the store and the
folder lock decide who wins (nothing is lost or duplicated).  The loser's
command names a message that is gone; instead of ``OK`` with nothing done it
gets ``NO [EXPUNGEISSUED]`` (RFC 9051 §7.1) with the reason read from the
departures record (``replica/departures.py``)::

    alice moved this message to A at 10:42
    this message is gone: alice deleted it at 10:42
    this message is gone: it was removed at the hoster at 10:42

When only some of the messages named are gone, what could be done is done
and the answer is ``OK`` with an untagged ``NO [EXPUNGEISSUED]`` warning
naming the others (``Gone.partial``): a client is never told NO for
something that happened.  See docs/conflicts.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from ..replica.departures import Departure, DepartureLog
from ..replica.mailbox import MailboxIndex
from .errors import OperationError

Hook = Callable[[Connection], None]

#: The response code of every answer about a message that is gone (RFC 9051 §7.1).
EXPUNGEISSUED = "EXPUNGEISSUED"
#: Groups (who, how, where) named in one text; the rest is counted ("and 3 more"),
#: so a bulk command's answer stays one readable line.
MAX_GROUPS = 3


@dataclass(frozen=True)
class Gone:
    """The messages of one command that were gone, and the text saying why."""

    uids: tuple[int, ...]
    text: str

    def refusal(self) -> OperationError:
        """``NO [EXPUNGEISSUED] text``: nothing of the command was done."""
        return OperationError(self.text, EXPUNGEISSUED)


def _clock(at: float, now: float) -> str:
    """``10:42`` today, ``2026-12-02 10:42`` on another day (the gateway's local time)."""
    when = datetime.fromtimestamp(at).astimezone()
    if when.date() == datetime.fromtimestamp(now).astimezone().date():
        return f"{when:%H:%M}"
    return f"{when:%Y-%m-%d %H:%M}"


def _says(d: Departure | None, n: int | None, now: float) -> str:
    """What happened to the one message named (``n`` None), or to ``n`` of them."""
    head = "this message is gone: " if n is None else ""
    if d is None:
        return f"{head}it was expunged meanwhile" if n is None else f"{n} expunged meanwhile"
    at = _clock(d.at, now)
    if d.kind == "moved" and d.user:
        return f"{d.user} moved {'this message' if n is None else n} to {d.dest} at {at}"
    if d.kind == "deleted" and d.user:
        return f"{head}{d.user} deleted {'it' if n is None else n} at {at}"
    return f"{head}{'it was' if n is None else n} removed at the hoster at {at}"


def describe(uids: Sequence[int], found: dict[int, Departure], total: int, now: float) -> str:
    """The text for ``uids`` gone out of ``total`` messages named."""
    if len(uids) == 1 and total == 1:
        return _says(found.get(uids[0]), None, now)
    groups: dict[tuple[str, str | None, str | None], list[Departure]] = {}
    unknown = 0
    for u in uids:
        dep = found.get(u)
        if dep is None:
            unknown += 1
            continue
        key = (dep.kind if dep.user else "hoster", dep.user, dep.dest if dep.kind == "moved" else None)
        groups.setdefault(key, []).append(dep)
    # The latest departure of a group names its time.
    parts = [_says(max(g, key=lambda d: d.at), len(g), now) for g in groups.values()]
    parts.sort()
    if len(parts) > MAX_GROUPS:
        rest = len(parts) - MAX_GROUPS
        parts = [*parts[:MAX_GROUPS], f"and {rest} more"]
    if unknown:
        parts.append(_says(None, unknown, now))
    if len(uids) < total:
        head = f"{len(uids)} of {total} messages {'is' if len(uids) == 1 else 'are'} gone"
    else:
        head = f"these {total} messages are gone"
    return f"{head}: {', '.join(parts)}"


class Departures:
    """Reads the departures record for the write path and the FETCH handler."""

    def __init__(
        self,
        log: DepartureLog,
        *,
        remover_of: Callable[[MailboxIndex, int], str | None] = lambda mb, uid: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log = log
        #: Who has a removal of a message on its way upstream (gateway/inflight.py):
        #: found gone at the hoster meanwhile, it was them, not someone past the gateway.
        self.remover_of = remover_of
        self.clock = clock

    def at_hoster(self, mb: MailboxIndex, uids: Sequence[int]) -> Hook:
        """A hook recording ``uids`` as found gone at the hoster (by the sync, or by a
        MOVE's COPYUID): deleted by whoever has a removal of them in flight, else
        removed at the hoster."""
        by_user: dict[str | None, list[int]] = {}
        for u in uids:
            by_user.setdefault(self.remover_of(mb, u), []).append(u)
        writers = [
            self.log.writer(mb.id, mb.uidvalidity, us, "deleted" if user else "hoster", user)
            for user, us in by_user.items()
        ]

        def write(db: Connection) -> None:
            for w in writers:
                w(db)

        return write

    def gone(self, mb: MailboxIndex, uids: Sequence[int], total: int) -> Gone | None:
        """``Gone`` for ``uids`` (None when empty) out of ``total`` messages named."""
        if not uids:
            return None
        ordered = tuple(sorted(set(uids)))
        found = self.log.lookup(mb.id, mb.uidvalidity, ordered)
        now = self.clock()
        for u in ordered:
            if u not in found and u in mb.records:
                # The hoster said it is gone and the sync has not removed it yet.
                found[u] = Departure(u, "hoster", None, None, now)
        return Gone(ordered, describe(ordered, found, max(total, len(ordered)), now))
