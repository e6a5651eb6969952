"""The claim verbs of ``imapgate``: ``claim list``, ``claim release`` and
``clients thunderbird``.

They parse, call ``AdminService.claims`` (``gateway/admin_claims.py``) and
print; docs/claims.md is the guide for them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from .cli_common import admin_service, config_option, verbose_option


@click.group()
def claim() -> None:
    """Claims: which team member handles which message ($Claimed)."""


@claim.command("list")
@click.option("--user", "user_name", metavar="USER", help="only USER's claims")
@click.option("--folder", metavar="FOLDER", help="only claims in FOLDER")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per claim, for scripts")
@config_option
@verbose_option
@click.pass_context
def claim_list(
    ctx: click.Context, user_name: str | None, folder: str | None, as_json: bool, config_file: Path | None
) -> None:
    """List the open claims."""
    found = admin_service(ctx, config_file).claims.list(user=user_name, folder=folder)
    if as_json:
        for c in found:
            click.echo(json.dumps(c.to_json()))
        return
    if not found:
        click.echo("no open claims")
    for c in found:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.claimed_at))
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.expires_at)) if c.expires_at else "never"
        click.echo(f"{c.folder:<24} {c.uid:>8}  {c.user:<16} since {since}  expires {until}")


@claim.command("release")
@click.argument("folder", required=False)
@click.argument("uids", nargs=-1, type=int)
@click.option("--user", "user_name", metavar="USER", help="release every claim of USER")
@config_option
@verbose_option
@click.pass_context
def claim_release(
    ctx: click.Context, folder: str | None, uids: tuple[int, ...], user_name: str | None,
    config_file: Path | None,
) -> None:  # fmt: skip
    """Release the claims on FOLDER's UIDs, or every claim of --user USER."""
    if user_name is None and (folder is None or not uids):
        raise click.UsageError("name a FOLDER and its UIDs, or --user USER")
    if user_name is not None and folder is not None:
        raise click.UsageError("either FOLDER UID... or --user USER, not both")
    done = admin_service(ctx, config_file).claims.release(folder, uids, user=user_name)
    told = ""
    if done.notice.error is not None:
        told = f" (the running gateway was not told: {done.notice.error})"
    elif not done.notice.reached:
        told = " (no gateway running: it removes the keywords at its next start)"
    click.echo(f"released {done.count} claim(s){told}")


@click.group()
def clients() -> None:
    """Settings for mail clients."""


@clients.command("thunderbird")
@config_option
@verbose_option
@click.pass_context
def clients_thunderbird(ctx: click.Context, config_file: Path | None) -> None:
    """Print user.js lines that show $Claimed and each member's claim as Thunderbird tags."""
    click.echo(admin_service(ctx, config_file).claims.thunderbird_user_js(), nl=False)
