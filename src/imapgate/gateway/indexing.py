"""The search index's access to the hoster: what the indexer fetches, and how.

``IndexFetcher`` gives the indexer its two fetch coroutines.  Each takes one
pooled connection only while no client waits for one (``background_connection``)
and holds it for one ``UID FETCH`` of a bounded batch, so a client command that
arrives meanwhile waits at most for that batch.  Always ``BODY.PEEK`` (indexing
never sets ``\\Seen`` at the hoster); nothing is put in the content cache (the
index keeps its own text, the cache's size bound stays the clients').

``IndexSwitch`` decides whether the index answers searches: its answers are
Dovecot's (``imapgate.index.extract``), so by default only in front of a
Dovecot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config import SearchConfig
from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute, Section
from ..protocol.sequence import SequenceSet
from ..replica.mailbox import MailboxIndex
from ..upstream.pool import UpstreamPool

log = logging.getLogger("imapgate.index")

#: The header fields SUBJECT, FROM, TO, CC and BCC search (the index's first pass).
HEADER_FIELDS = ("SUBJECT", "FROM", "TO", "CC", "BCC")
_HEADER_ITEM = FetchAttribute("BODY", Section((), "HEADER.FIELDS", HEADER_FIELDS), peek=True)
_WHOLE_ITEM = FetchAttribute("BODY", Section(), peek=True)


class IndexFetcher:
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    async def headers(self, mb: MailboxIndex, uids: list[int]) -> dict[int, bytes]:
        return await self._fetch(mb, uids, _HEADER_ITEM, b"BODY[HEADER.FIELDS")

    async def messages(self, mb: MailboxIndex, uids: list[int]) -> dict[int, bytes]:
        return await self._fetch(mb, uids, _WHOLE_ITEM, b"BODY[]")

    async def _fetch(
        self, mb: MailboxIndex, uids: list[int], item: FetchAttribute, prefix: bytes
    ) -> dict[int, bytes]:
        if not uids:
            return {}
        uidvalidity = mb.uidvalidity
        async with self.pool.background_connection(mb.name, need_uid=max(uids)) as conn:
            if conn.selected_uidvalidity and conn.selected_uidvalidity != uidvalidity:
                raise RuntimeError(f"{mb.name} was rebuilt at the server (UIDVALIDITY changed)")
            res = await conn.check(_builder(SequenceSet.from_ids(uids), item))
        got: dict[int, bytes] = {}
        wanted = set(uids)
        for f in res.of_type(rsp.FetchResponse):
            if f.uid is None or f.uid not in wanted:
                continue
            for name, value in f.items.items():
                if name.upper().startswith(prefix) and isinstance(value, bytes):
                    got[f.uid] = value
        return got


def _builder(uids: SequenceSet, item: FetchAttribute) -> Callable[[str], cmd.Command]:
    def build(tag: str) -> cmd.Command:
        return cmd.Fetch(tag, uids, (FetchAttribute("UID"), item), uid=True)

    return build


class IndexSwitch:
    """``[search] index``: "on", "off", or "auto": on when the hoster greets as Dovecot,
    whose search the index reproduces (decided once the first connection greeted)."""

    def __init__(self, config: SearchConfig, pool: UpstreamPool) -> None:
        self.mode = config.index
        self.pool = pool
        self._decided: bool | None = None if config.index == "auto" else config.index == "on"

    def __call__(self) -> bool:
        if self._decided is None and self.pool.greeting:
            self._decided = "dovecot" in self.pool.greeting.lower()
            if not self._decided:
                log.info(
                    "search index off: the mail server does not greet as Dovecot (%r), so searches "
                    'go to it; [search] index = "on" answers them locally the way Dovecot does',
                    self.pool.greeting[:80],
                )
        return bool(self._decided)
