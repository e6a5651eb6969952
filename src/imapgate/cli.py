"""The ``imapgate`` command line: server, demo and admin commands.

Every subcommand finds its configuration the same way: ``--config FILE``
(before or after the subcommand name) or ``$IMAPGATE_CONFIG``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .config import ENV_VAR, Config, ConfigError, config_path, load

F = TypeVar("F", bound=Callable[..., Any])


def config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"configuration file (default: ${ENV_VAR})",
        expose_value=True,
    )(f)


def load_config(ctx: click.Context, explicit: Path | None) -> Config:
    root = ctx.find_root()
    chosen = explicit or (root.obj or {}).get("config_file")
    try:
        return load(config_path(chosen))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imapgate")
@config_option
@click.pass_context
def main(ctx: click.Context, config_file: Path | None) -> None:
    """imapgate: an IMAP gateway that makes a shared mailbox safe for a team."""
    ctx.obj = {"config_file": config_file}


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where the demo keeps its mailbox and state (default: a new temporary folder)",
)
@click.option("--port", type=int, default=1143, show_default=True, help="IMAP port of the gateway")
def demo(data_dir: Path | None, port: int) -> None:
    """Run a demo: a sample mailbox, the gateway in front of it, logins to try."""
    from .runner import run_demo

    run_demo(data_dir, port)


@main.command()
@config_option
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.pass_context
def serve(ctx: click.Context, config_file: Path | None, verbose: bool) -> None:
    """Run the IMAP gateway."""
    import asyncio

    from .runner import serve as run_serve
    from .runner import setup_logging

    cfg = load_config(ctx, config_file)
    setup_logging(verbose)
    asyncio.run(run_serve(cfg))


@main.command()
@config_option
@click.pass_context
def sync(ctx: click.Context, config_file: Path | None) -> None:
    """Run (or re-run) the sync with upstream in the foreground, with progress."""
    import asyncio

    from .replica.sync import SyncProgress
    from .runner import sync_once

    cfg = load_config(ctx, config_file)
    bars: dict[str, Any] = {}

    def progress(p: SyncProgress) -> None:
        if p.phase == "done":
            bar = bars.pop(p.mailbox, None)
            if bar is not None:
                bar.update(max(0, p.total - bar.pos))
                bar.render_finish()
            click.echo(f"{p.mailbox}: {p.total} messages")
            return
        bar = bars.get(p.mailbox)
        if bar is None:
            bar = bars[p.mailbox] = click.progressbar(length=max(p.total, 1), label=p.mailbox)
            bar.pos = 0
        bar.length = max(bar.length or 0, p.total)
        bar.update(p.done - bar.pos)

    try:
        gw = asyncio.run(sync_once(cfg, progress))
    except Exception as exc:  # the upstream's own words
        raise click.ClickException(f"sync failed: {exc}") from None
    total = sum(mb.exists for mb in gw.replica.by_id.values())
    click.echo(f"synchronised {len(gw.replica.names())} folders, {total} messages")


# --- users --------------------------------------------------------------------


@main.group()
def user() -> None:
    """Manage team members' gateway logins."""


def _users(ctx: click.Context, config_file: Path | None) -> Any:
    from .store.engine import open_engine
    from .team.users import UserDirectory

    cfg = load_config(ctx, config_file)
    return UserDirectory(open_engine(cfg.store.url))


def _read_password(password_stdin: bool, confirm: bool = True) -> str:
    if password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise click.ClickException("no password on standard input")
        return value
    result: str = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return result


@user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@config_option
@click.pass_context
def user_add(ctx: click.Context, name: str, password_stdin: bool, config_file: Path | None) -> None:
    """Add a team member."""
    from .team.users import UserError

    directory = _users(ctx, config_file)
    try:
        directory.add(name, _read_password(password_stdin))
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added user {name}")


@user.command("list")
@config_option
@click.pass_context
def user_list(ctx: click.Context, config_file: Path | None) -> None:
    """List team members."""
    import datetime

    for u in _users(ctx, config_file).list():
        created = datetime.datetime.fromtimestamp(u.created_at).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{u.name:<24} created {created}{'  (disabled)' if u.disabled else ''}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@config_option
@click.pass_context
def user_passwd(ctx: click.Context, name: str, password_stdin: bool, config_file: Path | None) -> None:
    """Set a team member's password."""
    from .team.users import UserError

    try:
        _users(ctx, config_file).set_password(name, _read_password(password_stdin))
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password of {name} changed")


@user.command("remove")
@click.argument("name")
@config_option
@click.pass_context
def user_remove(ctx: click.Context, name: str, config_file: Path | None) -> None:
    """Remove a team member."""
    from .team.users import UserError

    try:
        _users(ctx, config_file).remove(name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed user {name}")


# --- folders ------------------------------------------------------------------


@main.group()
def folder() -> None:
    """Folder settings (read state: private per user, or shared)."""


def _replica(ctx: click.Context, config_file: Path | None) -> Any:
    from .replica.replica import Replica
    from .store.engine import open_engine

    cfg = load_config(ctx, config_file)
    replica = Replica(
        open_engine(cfg.store.url),
        private_flags=cfg.folders.private_flags,
        default_seen=cfg.folders.default_seen,
        seen_modes=cfg.folders.seen,
    )
    replica.load()
    return replica


@folder.command("list")
@config_option
@click.pass_context
def folder_list(ctx: click.Context, config_file: Path | None) -> None:
    """List the folders known to the gateway with their read-state mode."""
    replica = _replica(ctx, config_file)
    names = replica.names()
    if not names:
        click.echo("no folders yet: run `imapgate sync` (or `serve`) first")
    for name in names:
        mb = replica.get(name)
        origin = "folder setting" if mb.seen_mode else "config"
        click.echo(f"{name:<40} {mb.exists:>7} messages  read state: {replica.seen_mode(mb)} ({origin})")


@folder.command("set")
@click.argument("name")
@click.option(
    "--seen",
    type=click.Choice(["private", "shared", "default"]),
    required=True,
    help="private: each user has their own read state; shared: one for all; "
    "default: follow the configuration",
)
@config_option
@click.pass_context
def folder_set(ctx: click.Context, name: str, seen: str, config_file: Path | None) -> None:
    """Set a folder's read-state mode (takes effect in a running gateway within its check interval)."""
    replica = _replica(ctx, config_file)
    mb = replica.get(name)
    if mb is None:
        raise click.ClickException(f"no folder {name!r} (see `imapgate folder list`)")
    before = replica.seen_mode(mb)
    replica.set_seen_mode(mb, None if seen == "default" else seen)
    after = replica.seen_mode(mb)
    if before == after:
        click.echo(f"{name}: read state stays {after}")
    elif after == "shared":
        click.echo(
            f"{name}: read state is now shared: the folder's read marks at the mail server "
            "are what everybody sees; personal read marks were dropped"
        )
    else:
        click.echo(
            f"{name}: read state is now private: each user starts from the current shared "
            "read marks and keeps their own from now on"
        )


# --- search index --------------------------------------------------------------


@main.group()
def index() -> None:
    """The search index (SUBJECT, FROM, BODY, TEXT ... answered locally)."""


def _index_engine(ctx: click.Context, config_file: Path | None) -> Any:
    from .store.engine import open_engine

    cfg = load_config(ctx, config_file)
    engine = open_engine(cfg.store.url)
    if engine.dialect.name != "sqlite":
        raise click.ClickException("the search index needs the SQLite store for now")
    return engine


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@index.command("status")
@config_option
@click.pass_context
def index_status(ctx: click.Context, config_file: Path | None) -> None:
    """Per folder: messages indexed / total, bytes fetched, time left."""
    from .index.report import folder_reports, index_sizes

    engine = _index_engine(ctx, config_file)
    reports = folder_reports(engine)
    if not reports:
        click.echo("no folders yet: run `imapgate sync` (or `serve`) first")
        return
    click.echo(f"{'folder':<32} {'indexed':>17} {'header fields':>13} {'fetched':>10}  left")
    for r in reports:
        eta = r.eta_seconds
        left = "done" if r.indexed >= r.messages else ("-" if eta is None else f"{eta / 60:.0f} min")
        doubt = f"  ({r.uncertain} left to the server)" if r.uncertain else ""
        counts = f"{r.indexed:>8}/{r.messages:<8} {r.headers:>13}"
        click.echo(f"{r.name:<32} {counts} {_size(r.fetched_bytes):>10}  {left}{doubt}")
    sizes = index_sizes(engine)
    total = sum(r.messages for r in reports)
    done = sum(min(r.indexed, r.messages) for r in reports)
    click.echo(
        f"{done} of {total} messages indexed; index on disk {_size(sizes['fts_bytes'] + sizes['doc_bytes'])} "
        f"({_size(sizes['text_bytes'])} of text)"
    )


@index.command("rebuild")
@click.argument("folder", required=False)
@config_option
@click.pass_context
def index_rebuild(ctx: click.Context, folder: str | None, config_file: Path | None) -> None:
    """Index FOLDER (default: every folder) again from scratch."""
    from .index.report import rebuild

    engine = _index_engine(ctx, config_file)
    try:
        n = rebuild(engine, folder)
    except KeyError:
        raise click.ClickException(f"no folder {folder!r} (see `imapgate folder list`)") from None
    what = folder or f"{n} folders"
    click.echo(
        f"{what}: the search index will be rebuilt by the running gateway within 30 s (or when it "
        "next starts); until then searches there go to the mail server"
    )


if __name__ == "__main__":
    main()
