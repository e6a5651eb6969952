"""The ``imapgate`` command line: server, demo, checks and admin commands.

Every subcommand finds its configuration the same way: ``--config FILE``
(before or after the subcommand name) or ``$IMAPGATE_CONFIG``.

Every failure is one line on standard error, ``imapgate: error: <what to
fix>``, and a non-zero exit status (78 for a configuration error, 1 else):
an ``OperatorError`` carries its message; anything unexpected is reported as
an internal error.  ``-v`` (before or after the subcommand) adds the traceback.
Commands that drop data ask first; ``--yes`` answers for scripts, and without
a terminal and without ``--yes`` they refuse.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from . import __version__
from .config import ENV_VAR, Config, config_path, effective_toml, load
from .errors import EXIT_CONFIG, OperatorError

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A one-line failure of a command (shown as ``imapgate: error: ...``)."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"imapgate: error: {self.format_message()}", err=True)


class CliConfigError(CliError):
    exit_code = EXIT_CONFIG


def _cli_error(exc: OperatorError) -> CliError:
    return CliConfigError(str(exc)) if exc.exit_code == EXIT_CONFIG else CliError(str(exc))


def _verbose(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("verbose"))


class _Main(click.Group):
    """The root group: turns every error into one line (``-v``: with traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OperatorError as exc:
            if _verbose(ctx):
                traceback.print_exc()
            raise _cli_error(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if _verbose(ctx):
                traceback.print_exc()
                raise CliError(f"internal error: {type(exc).__name__}: {exc}") from None
            raise CliError(
                f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)"
            ) from None


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


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imapgate")
@config_option
@verbose_option
@click.pass_context
def main(ctx: click.Context, config_file: Path | None) -> None:
    """imapgate: an IMAP gateway that makes a shared mailbox safe for a team."""
    ctx.obj = {**(ctx.obj or {}), "config_file": config_file}


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where the demo keeps its mailbox, state and config (default: a new temporary folder)",
)
@click.option("--port", type=click.IntRange(1, 65535), default=1143, show_default=True, help="IMAP port")
@click.option("--keep", is_flag=True, help="keep the data folder at exit (default: remove what it made)")
@verbose_option
@click.pass_context
def demo(ctx: click.Context, data_dir: Path | None, port: int, keep: bool) -> None:
    """Run a demo: a sample mailbox, the gateway in front of it, logins to try."""
    from .logs import setup_logging
    from .runner import run_demo

    setup_logging(_verbose(ctx))
    run_demo(data_dir, port, keep=keep)


@main.command()
@config_option
@verbose_option
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="IMAPGATE_LOG_FORMAT",
    help="text lines, or one JSON object per line for log shippers (also $IMAPGATE_LOG_FORMAT)",
)
@click.pass_context
def serve(ctx: click.Context, config_file: Path | None, log_format: str) -> None:
    """Run the IMAP gateway."""
    import asyncio

    from .logs import setup_logging
    from .runner import serve as run_serve

    cfg = load_config(ctx, config_file, show_warnings=False)
    setup_logging(_verbose(ctx), "json" if log_format == "json" else "text")
    asyncio.run(run_serve(cfg))


@main.command()
@config_option
@verbose_option
@click.pass_context
def sync(ctx: click.Context, config_file: Path | None) -> None:
    """Run (or re-run) the sync with upstream in the foreground, with progress."""
    import asyncio

    from .logs import setup_logging
    from .runner import sync_once
    from .sync.algorithms import SyncProgress

    cfg = load_config(ctx, config_file)
    setup_logging(_verbose(ctx))
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

    gw = asyncio.run(sync_once(cfg, progress))
    total = sum(mb.exists for mb in gw.replica.by_id.values())
    click.echo(f"synchronised {len(gw.replica.names())} folders, {total} messages")


@main.command()
@config_option
@verbose_option
@click.pass_context
def check(ctx: click.Context, config_file: Path | None) -> None:
    """Check the installation: config, TLS, listeners, upstream login and limits, store."""
    from .checks import run_checks
    from .config import ConfigError

    try:
        cfg = load_config(ctx, config_file, show_warnings=False)
    except ConfigError as exc:
        click.echo(f"FAIL config     {exc}")
        ctx.exit(1)
    results = run_checks(cfg)
    for r in results:
        click.echo(r.line())
    failed = sum(r.status == "FAIL" for r in results)
    warned = sum(r.status == "WARN" for r in results)
    click.echo(f"{failed} problem{'s' * (failed != 1)}, {warned} warning{'s' * (warned != 1)}")
    ctx.exit(1 if failed else 0)


@main.command("config")
@config_option
@verbose_option
@click.pass_context
def config_cmd(ctx: click.Context, config_file: Path | None) -> None:
    """Print the effective configuration (defaults filled in, secrets hidden)."""
    click.echo(effective_toml(load_config(ctx, config_file)), nl=False)


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
            raise CliError("no password on standard input")
        return value
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password: use --password-stdin")
    result: str = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return result


@user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@config_option
@verbose_option
@click.pass_context
def user_add(ctx: click.Context, name: str, password_stdin: bool, config_file: Path | None) -> None:
    """Add a team member."""
    from .team.users import UserError

    directory = _users(ctx, config_file)
    try:
        directory.add(name, _read_password(password_stdin))
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"added user {name}")


@user.command("list")
@config_option
@verbose_option
@click.pass_context
def user_list(ctx: click.Context, config_file: Path | None) -> None:
    """List team members."""
    import datetime

    found = _users(ctx, config_file).list()
    if not found:
        click.echo("no users yet: add one with `imapgate user add NAME`")
    for u in found:
        created = datetime.datetime.fromtimestamp(u.created_at).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{u.name:<24} created {created}{'  (disabled)' if u.disabled else ''}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@config_option
@verbose_option
@click.pass_context
def user_passwd(ctx: click.Context, name: str, password_stdin: bool, config_file: Path | None) -> None:
    """Set a team member's password."""
    from .team.users import UserError

    directory = _users(ctx, config_file)
    if directory.get(name) is None:
        raise CliError(f"no user {name!r} (see `imapgate user list`)")
    try:
        directory.set_password(name, _read_password(password_stdin))
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"password of {name} changed")


@user.command("remove")
@click.argument("name")
@yes_option
@config_option
@verbose_option
@click.pass_context
def user_remove(ctx: click.Context, name: str, yes: bool, config_file: Path | None) -> None:
    """Remove a team member (with their personal read state and subscriptions)."""
    from .team.users import UserError

    directory = _users(ctx, config_file)
    if directory.get(name) is None:
        raise CliError(f"no user {name!r} (see `imapgate user list`)")
    confirm(f"This removes {name}'s login, personal read marks and subscriptions.", yes)
    try:
        directory.remove(name)
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"removed user {name}{_notify_gateway(ctx, config_file, name)}")


def _notify_gateway(ctx: click.Context, config_file: Path | None, name: str) -> str:
    """Tell a running gateway that ``name`` changed; what to add to the message.
    No gateway running is fine (the change is in the store; a gateway started
    later, or its periodic account check, applies it)."""
    from .gateway.control import ControlError, notify_user_changed

    try:
        ended = notify_user_changed(load_config(ctx, config_file).store.data_dir, name)
    except ControlError as exc:
        return f" (the running gateway was not told: {exc}; it ends the sessions within a minute)"
    return f"; ended {ended} open session(s)" if ended else ""


@user.command("disable")
@click.argument("name")
@config_option
@verbose_option
@click.pass_context
def user_disable(ctx: click.Context, name: str, config_file: Path | None) -> None:
    """Disable a team member's login (their data stays; open sessions end)."""
    from .team.users import UserError

    try:
        _users(ctx, config_file).set_disabled(name, True)
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"disabled user {name}{_notify_gateway(ctx, config_file, name)}")


@user.command("enable")
@click.argument("name")
@config_option
@verbose_option
@click.pass_context
def user_enable(ctx: click.Context, name: str, config_file: Path | None) -> None:
    """Enable a disabled team member's login again."""
    from .team.users import UserError

    try:
        _users(ctx, config_file).set_disabled(name, False)
    except UserError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"enabled user {name}")


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
@verbose_option
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
@yes_option
@config_option
@verbose_option
@click.pass_context
def folder_set(ctx: click.Context, name: str, seen: str, yes: bool, config_file: Path | None) -> None:
    """Set a folder's read-state mode (takes effect in a running gateway within its check interval)."""
    replica = _replica(ctx, config_file)
    mb = replica.get(name)
    if mb is None:
        raise CliError(f"no folder {name!r} (see `imapgate folder list`)")
    before = replica.seen_mode(mb)
    new_mode = None if seen == "default" else seen
    after = replica.seen_mode(mb, new_mode or "")
    if before == "private" and after == "shared":
        n = replica.users_with_private_seen(mb)
        if n:
            whose = "1 user's" if n == 1 else f"{n} users'"
            confirm(
                f"This drops {whose} read marks in {name} (everybody then sees the mail server's).",
                yes,
            )
    replica.set_seen_mode(mb, new_mode)
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


# --- sessions -----------------------------------------------------------------


def _control(ctx: click.Context, config_file: Path | None, payload: dict[str, Any]) -> dict[str, Any]:
    from .gateway.control import request

    return request(load_config(ctx, config_file).store.data_dir, payload)


@main.command("sessions")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per session, for scripts")
@config_option
@verbose_option
@click.pass_context
def sessions(ctx: click.Context, as_json: bool, config_file: Path | None) -> None:
    """Who is connected to the running gateway: user, client, address, folder, since."""
    import json

    from .gateway.control import ControlError, NoGateway, SessionInfo, describe_age

    try:
        answer = _control(ctx, config_file, {"request": "sessions"})
    except NoGateway as exc:
        if as_json:
            raise CliError(str(exc)) from None
        click.echo(str(exc))
        return
    except ControlError as exc:
        raise CliError(str(exc)) from None
    found = [SessionInfo.from_json(d) for d in answer.get("sessions", [])]
    found.sort(key=lambda x: (x.user or "", x.since))
    if as_json:
        click.echo(json.dumps([x.to_json() for x in found], indent=2))
        return
    if not found:
        click.echo("no sessions")
        return
    click.echo(f"{'ID':>5}  {'USER':<16} {'CLIENT':<28} {'ADDRESS':<24} {'FOLDER':<20} SINCE")
    for x in found:
        address = x.address + (" (TLS)" if x.tls else "")
        folder = (x.folder or "-") + (" IDLE" if x.idle else "")
        client = x.client_id or "-"
        click.echo(
            f"{x.id:>5}  {x.user or '(logging in)':<16} {client[:28]:<28} {address:<24} "
            f"{folder:<20} {describe_age(x.since)}"
        )
    click.echo(f"{len(found)} session(s), {len({x.user for x in found if x.user})} user(s)")


@main.command("kick")
@click.argument("user_name", metavar="USER")
@click.option("--session", "session_id", type=int, default=None, help="only this session (see `sessions`)")
@config_option
@verbose_option
@click.pass_context
def kick(ctx: click.Context, user_name: str, session_id: int | None, config_file: Path | None) -> None:
    """End a user's sessions (with * BYE): their clients reconnect and log in again."""
    from .gateway.control import ControlError

    payload: dict[str, Any] = {"request": "kick", "user": user_name}
    if session_id is not None:
        payload["session"] = session_id
    try:
        ended = int(_control(ctx, config_file, payload).get("ended", 0))
    except ControlError as exc:
        raise CliError(str(exc)) from None
    if not ended:
        which = f"session {session_id} of" if session_id is not None else "session of"
        raise CliError(f"no open {which} {user_name}")
    click.echo(f"ended {ended} session(s) of {user_name}")


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
    main(prog_name="imapgate")
