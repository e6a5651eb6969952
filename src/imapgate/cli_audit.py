"""``imapgate audit``: search the audit journal (docs/audit.md).

It parses the filters, asks ``AdminService.audit`` and prints a table (or
JSON for scripts); every failure is one line.  ``--since``/``--until`` take a
duration back from now ("7d", "8h") or a local date/time ("2026-12-01",
"2026-12-01 14:30").
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .cli_common import admin_service, config_option, verbose_option
from .config import ConfigError, parse_duration
from .errors import OperatorError

if TYPE_CHECKING:
    from .gateway.admin import AuditRecord


class AuditUsageError(OperatorError):
    """A filter of ``imapgate audit`` that cannot be read."""


def parse_when(option: str, text: str, now: float) -> float:
    """``text`` as seconds since the epoch: a duration back from ``now``, or a date."""
    try:
        return now - parse_duration(text, option)
    except ConfigError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise AuditUsageError(
            f'{option}: {text!r} is neither a duration like "7d" or "8h" nor a date like 2026-12-01'
        ) from None


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _messages(record: AuditRecord) -> str:
    """The messages column: the first message (subject, else Message-ID, else UID), and how many more."""
    e = record.entry
    if not e.messages:
        return f"UID {e.uids}" if e.uids else ""
    first = e.messages[0]
    what = f'"{first.subject}"' if first.subject else (first.message_id or f"UID {first.uid}")
    more = len({(m.message_id or m.uid) for m in e.messages}) - 1
    return what + (f" (+{more} more)" if more > 0 else "")


@click.command("audit")
@click.option("--user", "user", metavar="U", help="entries of this team member (or cli)")
@click.option("--folder", metavar="F", help="entries in this folder (and moves/copies into it)")
@click.option(
    "--action", metavar="A", help="one action word (see docs/audit.md), e.g. deleted, moved, login_failed"
)
@click.option("--since", metavar="D", help='from then on: "7d", "8h" or a date like 2026-12-01')
@click.option("--until", metavar="D", help="before then (same forms as --since)")
@click.option("--message-id", "message_id", metavar="M", help="one message's whole history, across folders")
@click.option("--search", metavar="TEXT", help="text in the subject, detail, folder, user or client")
@click.option("--json", "as_json", is_flag=True, help="a JSON array of entries, for scripts")
@click.option("--limit", type=int, default=100, show_default=True, help="newest N entries at most")
@config_option
@verbose_option
@click.pass_context
def audit(
    ctx: click.Context,
    user: str | None,
    folder: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    message_id: str | None,
    search: str | None,
    as_json: bool,
    limit: int,
    config_file: Path | None,
) -> None:
    """Who did what, when, from which client: the audit journal, newest first."""
    from .gateway.admin import AuditQuery

    now = time.time()
    query = AuditQuery(
        user=user,
        folder=folder,
        action=action,
        since=parse_when("--since", since, now) if since else None,
        until=parse_when("--until", until, now) if until else None,
        message_id=message_id,
        search=search,
        limit=limit,
    )
    found = admin_service(ctx, config_file).audit(query)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("no journal entries match")
        return
    click.echo(
        f"{'TIME':<19}  {'USER':<16} {'ACTION':<14} {'FOLDER':<18} {'MESSAGES':<34} {'CLIENT':<36} DETAIL"
    )
    for r in reversed(found):  # oldest first on a terminal: read top to bottom
        e = r.entry
        who = e.user or ("(at the hoster)" if e.origin == "hoster" else "-")
        detail = e.detail or ""
        if e.result != "OK":
            detail = f"{e.result}: {detail}"
        click.echo(
            f"{_when(e.ts):<19}  {who[:16]:<16} {e.action_word:<14} {(e.mailbox or '-')[:18]:<18} "
            f"{_messages(r)[:34]:<34} {(e.client or '-')[:36]:<36} {detail}".rstrip()
        )
    shown = f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}"
    click.echo(shown + (f" (the newest {limit}; --limit N for more)" if len(found) >= limit else ""))
