"""``imapgate recovery list | restore | purge`` in front of a real Dovecot: offline
(no gateway running: done in the CLI's process under the store lock) and through a
running gateway's control socket; checked at Dovecot directly and in the journal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from imapgate.cli import main
from imapgate.config import load
from imapgate.demo.dovecot import DovecotServer
from imapgate.store.schema import journal
from tests.gateway.test_recovery import HIDDEN, actor, at_dovecot, expunge
from tests.support.cli import write_config
from tests.support.gateway_setup import imap_listener, running_gateway

pytestmark = pytest.mark.integration


def cli(cfg: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--config", str(cfg), "recovery", *args])


async def removed(dc: DovecotServer, cfg: Path, uids: list[int]) -> None:
    async with running_gateway(load(cfg), users={"alice": "pw"}, start="full") as gw:
        await expunge(gw, actor(gw, "alice"), "INBOX", uids)


async def test_list_and_restore_without_a_running_gateway(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:4]})
    cfg = write_config(tmp_path, upstream_port=dc.port, extra="\n[recovery]\nenabled = true\n")
    await removed(dc, cfg, [2, 3])
    listed = cli(cfg, "list", "--json")
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.output)
    assert [(i["mailbox"], i["uid"], i["removed_by"]) for i in items] == [
        ("INBOX", 2, "alice"),
        ("INBOX", 3, "alice"),
    ]
    word = items[1]["subject"].split()[0]
    found = json.loads(cli(cfg, "list", "--json", "--search", word).output)
    assert items[1]["id"] in [i["id"] for i in found]
    assert "nothing to restore" in cli(cfg, "list", "--user", "bob").output
    assert str(items[0]["id"]) in cli(cfg, "list", "--folder", "INBOX", "--since", "1h").output
    result = await asyncio.to_thread(cli, cfg, "restore", str(items[0]["id"]))
    assert result.exit_code == 0, result.output
    assert (
        f"restored item {items[0]['id']} into INBOX" in result.output
        and "no gateway running" in result.output
    )
    assert items[0]["message_id"] in at_dovecot(dc, "INBOX")
    assert set(at_dovecot(dc, HIDDEN)) == {items[1]["message_id"]}
    assert [i["id"] for i in json.loads(cli(cfg, "list", "--json").output)] == [items[1]["id"]]
    engine = load(cfg).store.url
    from imapgate.store.engine import open_engine

    with open_engine(engine).connect() as db:
        rows = db.execute(
            select(journal.c.user_name, journal.c.command).where(journal.c.command == "RESTORE")
        ).all()
    assert [tuple(r) for r in rows] == [("cli", "RESTORE")]
    again = cli(cfg, "restore", str(items[0]["id"]))
    assert again.exit_code == 1 and "no recoverable item" in again.output


async def test_restore_and_purge_through_the_running_gateway(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:4]})
    cfg = write_config(tmp_path, upstream_port=dc.port, extra="\n[recovery]\nenabled = true\n")
    async with running_gateway(load(cfg), users={"alice": "pw"}, start="full") as gw, imap_listener(gw):
        await expunge(gw, actor(gw, "alice"), "INBOX", [1, 2, 3])
        result = await asyncio.to_thread(cli, cfg, "restore", "--user", "alice", "--since", "1h")
        assert result.exit_code == 0, result.output
        assert result.output.count("restored item") == 3 and "no gateway running" not in result.output
        inbox = gw.replica.get("INBOX")
        assert inbox is not None and inbox.exists == 4  # the running gateway's replica has them
        await expunge(gw, actor(gw, "alice"), "INBOX", [inbox.uids[0]])
        kept = await asyncio.to_thread(cli, cfg, "purge")
        assert kept.exit_code == 0 and "purged 0 item(s)" in kept.output, kept.output
        purged = await asyncio.to_thread(cli, cfg, "purge", "--older-than", "0s")
        assert purged.exit_code == 0 and "purged 1 item(s)" in purged.output, purged.output
        assert at_dovecot(dc, HIDDEN) == {}
    bad = cli(cfg, "purge", "--older-than", "soon")
    assert bad.exit_code == 1 and "not a duration" in bad.output


async def test_a_restore_is_in_the_message_history(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, sample_mailbox: Any
) -> None:
    """`imapgate audit --message-id M` names the removal and the restore (and a purge)."""
    dc = fresh_dovecot(folders={"INBOX": sample_mailbox["INBOX"][:3]})
    cfg = write_config(tmp_path, upstream_port=dc.port, extra="\n[recovery]\nenabled = true\n")
    await removed(dc, cfg, [1, 2])
    await asyncio.sleep(1.1)  # older than the purge's --older-than 1s
    items = json.loads(cli(cfg, "list", "--json").output)
    restored, purged = items[0], items[1]
    assert (await asyncio.to_thread(cli, cfg, "restore", str(restored["id"]))).exit_code == 0
    purge = await asyncio.to_thread(cli, cfg, "purge", "--older-than", "1s")
    assert purge.exit_code == 0, purge.output

    def history(mid: str) -> list[tuple[str, str]]:
        out = CliRunner().invoke(main, ["--config", str(cfg), "audit", "--message-id", mid, "--json"])
        assert out.exit_code == 0, out.output
        return [(e["action"], e["user"] or "") for e in json.loads(out.output)]

    # Newest first: the restore (and its APPEND back into INBOX), then alice's removal.
    assert history(restored["message_id"]) == [
        ("restored", "cli"),
        ("appended", "cli"),
        ("expunged", "alice"),
        ("deleted", "alice"),
    ]
    assert history(purged["message_id"]) == [("purged", "cli"), ("expunged", "alice"), ("deleted", "alice")]
