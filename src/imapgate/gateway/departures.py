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

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
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


def _one(dep: Departure | None, now: float) -> str:
    if dep is None:
        return "this message is gone: it was expunged meanwhile"
    at = _clock(dep.at, now)
    if dep.kind == "moved" and dep.user:
        return f"{dep.user} moved this message to {dep.dest} at {at}"
    if dep.kind == "deleted" and dep.user:
        return f"this message is gone: {dep.user} deleted it at {at}"
    return f"this message is gone: it was removed at the hoster at {at}"


def _group(deps: list[Departure], now: float) -> str:
    d = deps[-1]  # the latest of the group names the time
    n = len(deps)
    at = _clock(d.at, now)
    if d.kind == "moved" and d.user:
        return f"{d.user} moved {n} to {d.dest} at {at}"
    if d.kind == "deleted" and d.user:
        return f"{d.user} deleted {n} at {at}"
    return f"{n} removed at the hoster at {at}"


def describe(uids: Sequence[int], found: dict[int, Departure], total: int, now: float) -> str:
    """The text for ``uids`` gone out of ``total`` messages named."""
    if len(uids) == 1 and total == 1:
        return _one(found.get(uids[0]), now)
    groups: dict[tuple[str, str | None, str | None], list[Departure]] = {}
    unknown = 0
    for u in uids:
        dep = found.get(u)
        if dep is None:
            unknown += 1
            continue
        key = (dep.kind if dep.user else "hoster", dep.user, dep.dest if dep.kind == "moved" else None)
        groups.setdefault(key, []).append(dep)
    parts = [_group(sorted(g, key=lambda d: d.at), now) for g in groups.values()]
    parts.sort()
    if len(parts) > MAX_GROUPS:
        rest = len(parts) - MAX_GROUPS
        parts = [*parts[:MAX_GROUPS], f"and {rest} more"]
    if unknown:
        parts.append(f"{unknown} expunged meanwhile")
    if len(uids) < total:
        head = f"{len(uids)} of {total} messages {'is' if len(uids) == 1 else 'are'} gone"
    else:
        head = f"these {total} messages are gone"
    return f"{head}: {', '.join(parts)}"


class Departures:
    """Reads the departures record for the write path and the FETCH handler, and
    knows the lock-free removals in flight on this node (``removing``)."""

    def __init__(self, log: DepartureLog, *, clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.clock = clock
        #: (mailbox id, UID) -> user, for UID EXPUNGEs sent upstream and not yet
        #: committed.  UID EXPUNGE runs without the folder lock (QRESYNC tells what
        #: it removed), so a colleague's MOVE holding the lock can find the message
        #: gone at the hoster before that expunge commits: this says who it was.
        #: In memory: with several nodes, the other node's text says "at the hoster".
        self._in_flight: dict[tuple[int, int], str] = {}

    @contextlib.contextmanager
    def removing(self, mb: MailboxIndex, uids: Sequence[int], user: str) -> Iterator[None]:
        """``uids`` are being expunged upstream by ``user`` for the block's duration."""
        keys = [(mb.id, u) for u in uids]
        self._in_flight.update(dict.fromkeys(keys, user))
        try:
            yield
        finally:
            for k in keys:
                self._in_flight.pop(k, None)

    def at_hoster(self, mb: MailboxIndex, uids: Sequence[int]) -> Hook:
        """A hook recording ``uids`` as found gone at the hoster by a command of the
        write path: deleted by whoever has an expunge of them in flight, else
        removed at the hoster."""
        by_user: dict[str | None, list[int]] = {}
        for u in uids:
            by_user.setdefault(self._in_flight.get((mb.id, u)), []).append(u)
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
