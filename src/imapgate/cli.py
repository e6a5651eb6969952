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
def demo() -> None:
    """Run a demo: a sample mailbox, the gateway in front of it, logins to try."""
    click.echo(f"imapgate {__version__}")
    click.echo("The IMAP codec is in place; the gateway (serve, demo) is being built.")


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
