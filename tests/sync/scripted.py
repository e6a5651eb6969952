"""A scripted upstream for sync-engine unit tests: answers come from a test's
function as wire lines, parsed by the real response parser, so the engine sees
exactly what a server's bytes would give it (unsolicited FETCHes in the middle
of an answer included)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from imapgate.protocol import commands as cmd
from imapgate.protocol import responses as rsp
from imapgate.protocol.response_parser import parse_response
from imapgate.upstream.connection import CommandResult, UpstreamError

#: command -> (untagged wire lines, tagged text after the tag, e.g. b"OK done")
Script = Callable[[cmd.Command], tuple[list[bytes], bytes]]


class ScriptedConnection:
    def __init__(
        self, script: Script, *, enabled: frozenset[str] = frozenset({"QRESYNC", "CONDSTORE"})
    ) -> None:
        self.script = script
        self.enabled = enabled
        self.capabilities = frozenset({"IMAP4REV1", "UIDPLUS", "IDLE", *enabled})
        self.selected: str | None = None
        self.selected_uidvalidity = 0
        self.known_uid = 0
        self.exists = 0
        self.alive = True
        self.sent: list[cmd.Command] = []

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    async def run(self, build: Callable[[str], cmd.Command], **_: Any) -> CommandResult:
        command = build("T1")
        self.sent.append(command)
        lines, tagged = self.script(command)
        untagged = [parse_response(line + b"\r\n") for line in lines]
        done = parse_response(b"T1 " + tagged + b"\r\n")
        assert isinstance(done, rsp.TaggedResponse)
        for r in untagged:  # as UpstreamConnection counts them
            if isinstance(r, rsp.Exists):
                self.exists = r.count
            elif isinstance(r, rsp.Vanished) and not r.earlier:
                self.exists -= len(list(r.uids.iter(0)))
        return CommandResult(done, untagged)

    async def check(self, build: Callable[[str], cmd.Command], **kw: Any) -> CommandResult:
        res = await self.run(build, **kw)
        if not res.ok:
            raise UpstreamError(res)
        return res

    async def select(self, mailbox: str, *, qresync: cmd.QresyncParameters | None = None) -> CommandResult:
        res = await self.run(lambda tag: cmd.Select(tag, mailbox, qresync=qresync))
        if res.ok:
            self.selected = mailbox
            code = res.code_of_type(rsp.UidValidityCode)
            self.selected_uidvalidity = code.value if code else 0
        return res


class ScriptedPool:
    """Lends one scripted connection (no SELECT done for the caller: the sync
    engine selects itself)."""

    def __init__(self, conn: ScriptedConnection) -> None:
        self.conn = conn
        self.listeners: list[Any] = []
        self.capabilities = conn.capabilities

    def has(self, capability: str) -> bool:
        return self.conn.has(capability)

    def add_unsolicited_listener(self, fn: Any) -> None:
        self.listeners.append(fn)

    def unsolicited(self, resp: Any) -> None:
        """``resp`` arrives unsolicited on the scripted connection."""
        for fn in self.listeners:
            fn(self.conn, resp)

    @contextlib.asynccontextmanager
    async def connection(self, mailbox: str | None = None, **_: Any) -> AsyncIterator[ScriptedConnection]:
        yield self.conn
