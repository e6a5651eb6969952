"""What every ``imapgate`` subcommand shares: the one-line error, the
``--config`` and ``-v`` options, loading the configuration, asking before
dropping data, and the admin service the admin verbs call.

``cli.py`` holds the root group and most verbs; ``cli_acl.py`` the
folder-permission verbs (``group``, ``acl``); both build on this.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from .config import ENV_VAR, Config, config_path, load
from .errors import EXIT_CONFIG, OperatorError

if TYPE_CHECKING:
    from .gateway.admin import AdminService, GatewayNotice

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A one-line failure of a command (shown as ``imapgate: error: ...``)."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"imapgate: error: {self.format_message()}", err=True)


class CliConfigError(CliError):
    exit_code = EXIT_CONFIG


def cli_error(exc: OperatorError) -> CliError:
    return CliConfigError(str(exc)) if exc.exit_code == EXIT_CONFIG else CliError(str(exc))


def is_verbose(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("verbose"))


def config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"configuration file (default: ${ENV_VAR})",
        expose_value=True,
    )(f)


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        root = ctx.find_root()
        root.obj = {**(root.obj or {}), "verbose": True}
    return value


def verbose_option(f: F) -> F:
    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        callback=_set_verbose,
        expose_value=False,
        is_eager=True,
        help="debug logging (protocol exchange, credentials masked) and tracebacks on errors",
    )(f)


def load_config(ctx: click.Context, explicit: Path | None, *, show_warnings: bool = True) -> Config:
    """The configuration (``--config`` here, on the root, or ``$IMAPGATE_CONFIG``);
    its warnings go to standard error unless the caller logs them."""
    root = ctx.find_root()
    chosen = explicit or (root.obj or {}).get("config_file")
    cfg = load(config_path(chosen))
    if show_warnings:
        for w in cfg.warnings:
            click.echo(f"imapgate: warning: {w}", err=True)
    return cfg


def confirm(question: str, yes: bool) -> None:
    """Ask before dropping data; ``--yes`` answers; no terminal and no ``--yes``: refuse."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"{question} Refused: standard input is not a terminal; add --yes to confirm")
    if not click.confirm(f"{question} Continue?", default=False, err=True):
        raise CliError("nothing changed")


yes_option = click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation (scripts)")


def admin_service(ctx: click.Context, config_file: Path | None) -> AdminService:
    """The admin service for this installation.  Tests hand in the policy it asks
    (``CliRunner().invoke(main, args, obj={"policy": ...})``): the seam the CLI
    walker uses to prove every changing verb asks it."""
    cfg = load_config(ctx, config_file)  # first: a configuration error is told at once
    from .gateway.admin import AdminService

    policy = (ctx.find_root().obj or {}).get("policy")
    return AdminService(cfg, policy=policy)


def told_acl(notice: GatewayNotice) -> str:
    """What to add to an ACL change's message about the running gateway."""
    if notice.error is not None:
        return f" (the running gateway was not told: {notice.error}; it notices within 1 s)"
    return ""
