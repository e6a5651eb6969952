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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .cli_acl import acl, group
from .cli_audit import audit
from .cli_claims import claim, clients
from .cli_common import (
    CliError,
    admin_service,
    cli_error,
    config_option,
    confirm,
    is_verbose,
    load_config,
    told_acl,
    verbose_option,
    yes_option,
)
from .cli_recovery import recovery
from .cli_store import store
from .config import effective_toml
from .errors import OperatorError

if TYPE_CHECKING:
    from .gateway.admin import GatewayNotice, SeenSetting


class _Main(click.Group):
    """The root group: turns every error into one line (``-v``: with traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OperatorError as exc:
            if is_verbose(ctx):
                traceback.print_exc()
            raise cli_error(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if is_verbose(ctx):
                traceback.print_exc()
                raise CliError(f"internal error: {type(exc).__name__}: {exc}") from None
            raise CliError(
                f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)"
            ) from None


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
@click.option(
    "--store-url",
    metavar="URL",
    default=None,
    help="keep the gateway's state in this empty PostgreSQL database (postgresql://USER:PW@HOST/DB; "
    "start a second `imapgate serve` on the same URL for two nodes)",
)
@verbose_option
@click.pass_context
def demo(ctx: click.Context, data_dir: Path | None, port: int, keep: bool, store_url: str | None) -> None:
    """Run a demo: a sample mailbox, the gateway in front of it, logins to try."""
    from .logs import setup_logging
    from .runner import run_demo

    setup_logging(is_verbose(ctx))
    run_demo(data_dir, port, keep=keep, store_url=store_url)


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

    cfg = load_config(ctx, config_file, show_warnings=False)  # before the gateway's imports
    from .runner import serve as run_serve

    setup_logging(is_verbose(ctx), "json" if log_format == "json" else "text")
    asyncio.run(run_serve(cfg))


@main.command()
@config_option
@verbose_option
@click.pass_context
def sync(ctx: click.Context, config_file: Path | None) -> None:
    """Run (or re-run) the sync with upstream in the foreground, with progress."""
    from .logs import setup_logging

    admin = admin_service(ctx, config_file)
    if TYPE_CHECKING:
        from .gateway.admin_sync import SyncProgress
    setup_logging(is_verbose(ctx))
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

    done = admin.sync(progress)
    click.echo(f"synchronised {done.folders} folders, {done.messages} messages")


@main.command()
@config_option
@verbose_option
@click.pass_context
def check(ctx: click.Context, config_file: Path | None) -> None:
    """Check the installation: config, TLS, listeners, upstream login and limits, store."""
    from .config import ConfigError

    try:
        cfg = load_config(ctx, config_file, show_warnings=False)
    except ConfigError as exc:
        click.echo(f"FAIL config     {exc}")
        ctx.exit(1)
    from .checks import run_checks

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


# --- admin verbs: parse, call the AdminService, print ------------------------------


# --- users --------------------------------------------------------------------


@main.group()
def user() -> None:
    """Manage team members' gateway logins."""


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


def _told(notice: GatewayNotice) -> str:
    """What to add to a user change's message about the running gateway.  No
    gateway running is fine (the change is in the store; a gateway started
    later, or its periodic account check, applies it)."""
    if notice.error is not None:
        return f" (the running gateway was not told: {notice.error}; it ends the sessions within a minute)"
    return f"; ended {notice.ended} open session(s)" if notice.ended else ""


@user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option("--admin", "make_admin", is_flag=True, help="an admin: every right on every folder")
@config_option
@verbose_option
@click.pass_context
def user_add(
    ctx: click.Context, name: str, password_stdin: bool, make_admin: bool, config_file: Path | None
) -> None:
    """Add a team member."""
    admin = admin_service(ctx, config_file)
    admin.authorize("user add")
    notice = admin.add_user(name, _read_password(password_stdin), admin=make_admin)
    click.echo(f"added user {name}{' (admin)' if make_admin else ''}{told_acl(notice)}")


@user.command("set")
@click.argument("name")
@click.option(
    "--admin/--no-admin",
    "make_admin",
    required=True,
    default=None,
    help="make an admin (every right on every folder), or take that away",
)
@config_option
@verbose_option
@click.pass_context
def user_set(ctx: click.Context, name: str, make_admin: bool | None, config_file: Path | None) -> None:
    """Change a team member's admin flag (the last enabled admin keeps it)."""
    if make_admin is None:
        raise CliError("give --admin or --no-admin")
    changed, notice = admin_service(ctx, config_file).set_admin(name, make_admin)
    if make_admin:
        said = f"{name} is {'now' if changed else 'already'} an admin"
    else:
        said = f"{name} is no longer an admin" if changed else f"{name} is not an admin"
    click.echo(f"{said}{told_acl(notice)}")


@user.command("list")
@config_option
@verbose_option
@click.pass_context
def user_list(ctx: click.Context, config_file: Path | None) -> None:
    """List team members."""
    import datetime

    found = admin_service(ctx, config_file).users()
    if not found:
        click.echo("no users yet: add one with `imapgate user add NAME`")
    for u in found:
        created = datetime.datetime.fromtimestamp(u.created_at).strftime("%Y-%m-%d %H:%M")
        marks = ("  admin" if u.admin else "") + ("  (disabled)" if u.disabled else "")
        click.echo(f"{u.name:<24} created {created}{marks}")
    if found and not any(u.admin and not u.disabled for u in found):
        click.echo("no admin yet: every verb still works; make one with `imapgate user set NAME --admin`")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@config_option
@verbose_option
@click.pass_context
def user_passwd(ctx: click.Context, name: str, password_stdin: bool, config_file: Path | None) -> None:
    """Set a team member's password."""
    admin = admin_service(ctx, config_file)
    admin.authorize("user passwd")
    admin.require_user(name)
    admin.set_password(name, _read_password(password_stdin))
    click.echo(f"password of {name} changed")


@user.command("remove")
@click.argument("name")
@yes_option
@config_option
@verbose_option
@click.pass_context
def user_remove(ctx: click.Context, name: str, yes: bool, config_file: Path | None) -> None:
    """Remove a team member (with their personal read state and subscriptions)."""
    admin = admin_service(ctx, config_file)
    admin.authorize("user remove")
    admin.require_user(name)
    confirm(f"This removes {name}'s login, personal read marks and subscriptions.", yes)
    notice = admin.remove_user(name)
    click.echo(f"removed user {name}{_told(notice)}")


@user.command("disable")
@click.argument("name")
@config_option
@verbose_option
@click.pass_context
def user_disable(ctx: click.Context, name: str, config_file: Path | None) -> None:
    """Disable a team member's login (their data stays; open sessions end)."""
    notice = admin_service(ctx, config_file).set_disabled(name, True)
    click.echo(f"disabled user {name}{_told(notice)}")


@user.command("enable")
@click.argument("name")
@config_option
@verbose_option
@click.pass_context
def user_enable(ctx: click.Context, name: str, config_file: Path | None) -> None:
    """Enable a disabled team member's login again."""
    admin_service(ctx, config_file).set_disabled(name, False)
    click.echo(f"enabled user {name}")


# --- folders ------------------------------------------------------------------


@main.group()
def folder() -> None:
    """Folder settings (read state: private per user, or shared)."""


@folder.command("list")
@config_option
@verbose_option
@click.pass_context
def folder_list(ctx: click.Context, config_file: Path | None) -> None:
    """List the folders known to the gateway with their read-state mode."""
    found = admin_service(ctx, config_file).folders()
    if not found:
        click.echo("no folders yet: run `imapgate sync` (or `serve`) first")
    for f in found:
        origin = "folder setting" if f.from_setting else "config"
        click.echo(f"{f.name:<40} {f.messages:>7} messages  read state: {f.seen} ({origin})")


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
    """Set a folder's read-state mode (a running gateway applies it at once)."""
    setting: SeenSetting = "private" if seen == "private" else "shared" if seen == "shared" else "default"
    admin = admin_service(ctx, config_file)
    plan = admin.plan_read_mode(name, setting)
    if plan.drops_users:
        whose = "1 user's" if plan.drops_users == 1 else f"{plan.drops_users} users'"
        confirm(f"This drops {whose} read marks in {name} (everybody then sees the mail server's).", yes)
    change = admin.set_read_mode(name, setting)
    after = change.after
    if change.before == after:
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
    if change.notice.error is not None:
        click.echo(
            f"(the running gateway was not told: {change.notice.error}; "
            "it applies the change within its check interval)"
        )


# --- sessions -----------------------------------------------------------------


@main.command("sessions")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per session, for scripts")
@config_option
@verbose_option
@click.pass_context
def sessions(ctx: click.Context, as_json: bool, config_file: Path | None) -> None:
    """Who is connected to the running gateway: user, client, address, folder, since."""
    import json

    from .gateway.control import ControlError, NoGateway, describe_age

    try:
        found = admin_service(ctx, config_file).sessions()
    except NoGateway as exc:
        if as_json:
            raise CliError(str(exc)) from None
        click.echo(str(exc))
        return
    except ControlError as exc:
        raise CliError(str(exc)) from None
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

    try:
        ended = admin_service(ctx, config_file).kick(user_name, session_id)
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


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class _IndexErrors:
    """The index verbs report their failures as click's ``Error: ...`` (as they
    always have), not as ``imapgate: error: ...``."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        from .gateway.admin import AdminError

        if isinstance(exc, AdminError):
            raise click.ClickException(str(exc)) from None


@index.command("status")
@config_option
@click.pass_context
def index_status(ctx: click.Context, config_file: Path | None) -> None:
    """Per folder: messages indexed / total, bytes fetched, time left."""
    with _IndexErrors():
        status = admin_service(ctx, config_file).index_status()
    reports = status.folders
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
    sizes = status.sizes
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
    with _IndexErrors():
        n = admin_service(ctx, config_file).rebuild_index(folder)
    what = folder or f"{n} folders"
    click.echo(
        f"{what}: the search index will be rebuilt by the running gateway within 30 s (or when it "
        "next starts); until then searches there go to the mail server"
    )


main.add_command(group)
main.add_command(acl)
main.add_command(audit)
main.add_command(store)
main.add_command(claim)
main.add_command(clients)
main.add_command(recovery)


if __name__ == "__main__":
    main(prog_name="imapgate")
