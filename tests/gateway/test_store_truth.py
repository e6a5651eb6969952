"""Store truth, the service's half: a write is refused before upstream while the
store is known unwritable, and once upstream carried a change out, a failing
commit is answered OK (upstream did it) and healed by a sync, never NO [SERVERBUG].

The failing commit is simulated at the replica (the transaction raises what
SQLite raises on a full disk); the filesystem test of a really full store is
the crash suite's."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from imapgate.gateway import operations as ops
from imapgate.gateway.policy import Actor, Policy
from imapgate.gateway.storehealth import STORE_UNWRITABLE
from tests.server.harness import connect, make_gateway, running


class Health:
    def __init__(self, writable: bool) -> None:
        self.writable = writable


def _disk_full(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError("UPDATE messages", {}, Exception("database or disk is full"))


async def test_refused_before_upstream_while_the_store_is_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = make_gateway(tmp_path)
    gw.service.health = Health(writable=False)
    asked: list[Any] = []
    monkeypatch.setattr(gw.pool, "connection", lambda *a, **k: asked.append(a))
    inbox = gw.replica.get("INBOX")
    assert inbox is not None
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        await c.exchange(b"s SELECT INBOX", *[_any()] * 8, _any())
        for line in (
            b"a STORE 2 +FLAGS (\\Seen)",
            b"a STORE 2 +FLAGS (\\Flagged)",
            b"a COPY 1 Archive",
            b"a MOVE 1 Archive",
            b"a EXPUNGE",
            b"a CREATE Fresh",
            b"a DELETE Archive",
            b"a RENAME Archive Old",
            b"a SUBSCRIBE Archive",
        ):
            await c.exchange(line, b"a NO [UNAVAILABLE] " + STORE_UNWRITABLE.encode())
        # A read goes on; its implicit \Seen is what cannot be recorded, so it is left out.
        seen_before = gw.replica.private_state(inbox, 1).flags.get("\\Seen")
        await c.exchange(b"b FETCH 2 (FLAGS)", b"* 2 FETCH (FLAGS ())", b"b OK FETCH completed")
        assert gw.replica.private_state(inbox, 1).flags.get("\\Seen") == seen_before
    assert asked == []


async def test_a_failing_commit_after_upstream_is_answered_ok_and_healed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gw = make_gateway(tmp_path)
    inbox = gw.replica.get("INBOX")
    assert inbox is not None

    async def upstream_did_it(mb: Any, plan: dict[int, tuple[str, ...]]) -> dict[int, Any]:
        return {uid: (flags, None) for uid, flags in plan.items()}

    healed: list[str] = []
    monkeypatch.setattr(gw.service, "_store_upstream", upstream_did_it)
    monkeypatch.setattr(gw.sync, "apply_flags", _disk_full)
    monkeypatch.setattr(gw.sync, "request", lambda name, **kw: healed.append(name))
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        await c.exchange(b"s SELECT INBOX", *[_any()] * 8, _any())
        with caplog.at_level(logging.ERROR, logger="imapgate.service"):
            await c.exchange(b"a STORE 2 +FLAGS (\\Flagged)", b"a OK STORE completed")
    assert healed == ["INBOX"]
    assert "carried out at the mail server" in caplog.text
    assert "database or disk is full" in caplog.text


async def test_a_refused_upstream_answer_survives_an_unwritable_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal line of a refusal cannot be written: the client still gets the
    hoster's refusal, not an internal error."""
    gw = make_gateway(tmp_path)
    monkeypatch.setattr(gw.journal, "record", _disk_full)
    async with running(gw) as server, connect(server) as c:
        await c.login("alice")
        await c.send(b"a CREATE Fresh")
        got = await c.until_tagged(b"a")
    assert got[-1].startswith(b"a NO [UNAVAILABLE] cannot create Fresh: the mail server is unreachable"), got


async def test_the_implicit_seen_is_skipped_without_the_s_right(tmp_path: Path) -> None:
    class NoSeen(Policy):
        def authorize(self, actor: Actor, mailbox: str, right: str) -> None:
            if right == "s":
                from imapgate.gateway.errors import OperationError

                raise OperationError(f"no {right}", "NOPERM")

    gw = make_gateway(tmp_path)
    gw.service.policy = NoSeen()
    inbox = gw.replica.get("INBOX")
    assert inbox is not None
    alice = Actor(1, "alice")
    assert gw.service.execute_now(alice, ops.MarkSeen(inbox, [2])) == []
    seen = gw.replica.private_state(inbox, 1).flags.get("\\Seen")
    assert seen is None or 2 not in seen
    gw.service.policy = Policy()
    assert gw.service.execute_now(alice, ops.MarkSeen(inbox, [2])) == [2]
    await gw.pool.close()


def _any() -> Any:
    import re

    return re.compile(rb".*")
