"""The store verbs of ``imapgate``: ``store copy --to URL`` (SQLite to PostgreSQL).

They parse, call ``AdminService.store_copy`` (``gateway/admin_store.py``) and
print progress per table; docs/deployment-nodes.md is the guide.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import admin_service, config_option, verbose_option

#: What ``store copy`` leaves behind, and why (store/copy.py ``SKIPPED``).
NOT_COPIED = (
    "the content cache and the search index (node-local: each node keeps its own in its "
    "[store] data_dir and fills it again from the hoster), the change log between nodes"
)


@click.group()
def store() -> None:
    """The gateway's own database."""


@store.command("copy")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="the empty target database, e.g. postgresql://imapgate@db.example.net/imapgate "
    "(password: $IMAPGATE_STORE_PASSWORD or in the URL)",
)
@config_option
@verbose_option
@click.pass_context
def store_copy(ctx: click.Context, target: str, config_file: Path | None) -> None:
    """Copy the whole store (users, groups, ACLs, read state, journal, replica ...) into an
    empty database; stop the gateway first.  Refused if the target holds anything."""
    import os

    from .gateway.admin_store import with_password

    target = with_password(target, os.environ.get("IMAPGATE_STORE_PASSWORD", ""))
    shown: dict[str, int] = {}

    def progress(table: str, done: int, total: int) -> None:
        # A line when a table is done, and one per 50,000 rows of the big ones (messages, journal).
        if done == total or done // 50_000 > shown.get(table, 0) // 50_000:
            click.echo(f"  {table}: {done} of {total} rows")
        shown[table] = done

    summary = admin_service(ctx, config_file).store_copy(target, progress)
    click.echo(f"  not copied: {NOT_COPIED}")
    click.echo(
        f"copied {summary.rows} rows of {summary.tables} tables; point [store] url at the new database"
    )
