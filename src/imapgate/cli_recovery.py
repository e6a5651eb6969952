"""The recovery verbs of ``imapgate``: ``recovery list | restore | purge``.

They parse, call ``AdminService.recovery`` (``gateway/admin_recovery.py``) and
print; docs/recovery.md is the guide for them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from pathlib import Path

import click

from .cli_common import CliError, admin_service, config_option, verbose_option
from .config import ConfigError, parse_duration


@click.group()
def recovery() -> None:
    """Messages removed through the gateway: list, restore, purge (docs/recovery.md)."""


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    from .gateway.admin_recovery import since_time

    return since_time(text)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@recovery.command("list")
@click.option("--folder", help="only items removed from (or restored into) this folder")
@click.option("--user", "user_name", help="only items this team member removed")
@click.option("--since", help='removed since: a duration ("7d") or a date (2026-12-01)')
@click.option("--search", help="text in the subject, sender or Message-ID")
@click.option("--json", "as_json", is_flag=True, help="one JSON list, every field")
@config_option
@verbose_option
@click.pass_context
def recovery_list(
    ctx: click.Context,
    folder: str | None,
    user_name: str | None,
    since: str | None,
    search: str | None,
    as_json: bool,
    config_file: Path | None,
) -> None:
    """What can be restored, oldest first, each with its ID."""
    found = admin_service(ctx, config_file).recovery.items(
        folder=folder, user=user_name, since=_since(since), search=search
    )
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(i) for i in found], indent=2, default=str))
        return
    if not found:
        click.echo("nothing to restore")
        return
    click.echo(f"{'ID':>6}  {'REMOVED':<16} {'BY':<12} {'FOLDER':<20} {'FROM':<28} SUBJECT")
    for i in found:
        folder_text = i.mailbox if i.restore_to == i.mailbox else f"{i.mailbox} ({i.restore_to})"
        click.echo(
            f"{i.id:>6}  {_when(i.removed_at):<16} {(i.removed_by or '-'):<12.12} {folder_text:<20.20} "
            f"{i.sender:<28.28} {i.subject}"
        )


@recovery.command("restore")
@click.argument("ids", nargs=-1, type=int)
@click.option("--user", "user_name", help="every item this team member removed (with --since: since then)")
@click.option("--since", help='with --user: removed since a duration ("8h") or a date')
@config_option
@verbose_option
@click.pass_context
def recovery_restore(
    ctx: click.Context,
    ids: tuple[int, ...],
    user_name: str | None,
    since: str | None,
    config_file: Path | None,
) -> None:
    """Put items back into the folder they came from (created again if deleted)."""
    if ids and user_name:
        raise CliError("give IDs or --user, not both")
    report = admin_service(ctx, config_file).recovery.restore(list(ids), user=user_name, since=_since(since))
    for r in report.restored:
        click.echo(f"restored item {r.item} into {r.folder}" + (f" (UID {r.uid})" if r.uid else ""))
    if not report.via_gateway:
        click.echo("(no gateway running: done directly at the mail server)")


@recovery.command("purge")
@click.option("--older-than", help='purge items removed longer ago than this ("30d"; default: the retention)')
@config_option
@verbose_option
@click.pass_context
def recovery_purge(ctx: click.Context, older_than: str | None, config_file: Path | None) -> None:
    """Remove expired copies from the hoster now (the gateway also does it by itself)."""
    try:
        age = None if older_than is None else parse_duration(older_than, "--older-than")
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    started = time.time()
    purged = admin_service(ctx, config_file).recovery.purge(age)
    click.echo(f"purged {len(purged)} item(s) in {time.time() - started:.1f} s")
