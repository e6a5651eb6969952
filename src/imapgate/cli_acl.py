"""The folder-permission verbs of ``imapgate``: ``group ...`` and ``acl ...``.

They parse, call ``AdminService.acl`` (``gateway/admin_acl.py``) and print;
every failure is the admin service's one line.  docs/permissions.md is the
guide for them.

Negative identifiers and rights start with ``-`` (``acl set INBOX -bob w``,
``acl set INBOX bob -w``): ``acl set`` and ``acl delete`` take such words as
arguments, not options (``--`` before them works too).
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import admin_service, config_option, told_acl, verbose_option

#: ``-bob`` and ``-w`` are arguments here, not unknown options.
_DASH_ARGUMENTS = {"ignore_unknown_options": True}


# --- groups --------------------------------------------------------------------


@click.group()
def group() -> None:
    """Groups of team members, named in folder permissions as $NAME."""


@group.command("add")
@click.argument("name")
@config_option
@verbose_option
@click.pass_context
def group_add(ctx: click.Context, name: str, config_file: Path | None) -> None:
    """Add a group (no members yet)."""
    change = admin_service(ctx, config_file).acl.add_group(name)
    click.echo(f"added group ${name.removeprefix('$')}{told_acl(change.notice)}")


@group.command("remove")
@click.argument("name")
@config_option
@verbose_option
@click.pass_context
def group_remove(ctx: click.Context, name: str, config_file: Path | None) -> None:
    """Remove a group with its memberships and every ACL entry naming it."""
    change = admin_service(ctx, config_file).acl.remove_group(name)
    click.echo(f"removed group ${name.removeprefix('$')} and its ACL entries{told_acl(change.notice)}")


@group.command("add-member")
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@config_option
@verbose_option
@click.pass_context
def group_add_member(ctx: click.Context, name: str, users: tuple[str, ...], config_file: Path | None) -> None:
    """Add team members to a group."""
    change = admin_service(ctx, config_file).acl.add_members(name, list(users))
    bare = name.removeprefix("$")
    if not change.changed:
        click.echo(f"already in ${bare}: {', '.join(users)}")
        return
    click.echo(f"added to ${bare}: {', '.join(change.names)}{told_acl(change.notice)}")


@group.command("remove-member")
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@config_option
@verbose_option
@click.pass_context
def group_remove_member(
    ctx: click.Context, name: str, users: tuple[str, ...], config_file: Path | None
) -> None:
    """Remove team members from a group."""
    change = admin_service(ctx, config_file).acl.remove_members(name, list(users))
    bare = name.removeprefix("$")
    if not change.changed:
        click.echo(f"not in ${bare}: {', '.join(users)}")
        return
    click.echo(f"removed from ${bare}: {', '.join(change.names)}{told_acl(change.notice)}")


@group.command("list")
@config_option
@verbose_option
@click.pass_context
def group_list(ctx: click.Context, config_file: Path | None) -> None:
    """List the groups with their members."""
    found = admin_service(ctx, config_file).acl.groups()
    if not found:
        click.echo("no groups yet: add one with `imapgate group add NAME`")
    for g in found:
        members = ", ".join(g.members) if g.members else "(no members)"
        click.echo(f"${g.name:<23} {members}")


# --- ACL entries ---------------------------------------------------------------


@click.group()
def acl() -> None:
    """Folder permissions (RFC 4314 rights per folder and user, $group or anyone)."""


@acl.command("set", context_settings=_DASH_ARGUMENTS)
@click.argument("folder")
@click.argument("identifier")
@click.argument("rights")
@config_option
@verbose_option
@click.pass_context
def acl_set(ctx: click.Context, folder: str, identifier: str, rights: str, config_file: Path | None) -> None:
    """Set IDENTIFIER's RIGHTS on FOLDER: lr (exactly these), +lr (add), -w (take), "" (none)."""
    change = admin_service(ctx, config_file).acl.set_entry(folder, identifier, rights)
    shown = change.rights or "no rights"
    if not change.changed:
        click.echo(f"{folder}: {identifier} keeps {shown}")
        return
    click.echo(f"{folder}: {identifier} now has {shown}{told_acl(change.notice)}")


@acl.command("delete", context_settings=_DASH_ARGUMENTS)
@click.argument("folder")
@click.argument("identifier")
@config_option
@verbose_option
@click.pass_context
def acl_delete(ctx: click.Context, folder: str, identifier: str, config_file: Path | None) -> None:
    """Delete IDENTIFIER's entry from FOLDER's ACL (the folder keeps its other entries)."""
    change = admin_service(ctx, config_file).acl.delete_entry(folder, identifier)
    if not change.changed:
        click.echo(f"{folder}: no entry for {identifier}; nothing changed")
        return
    click.echo(f"{folder}: deleted the entry for {identifier}{told_acl(change.notice)}")


@acl.command("reset")
@click.argument("folder")
@config_option
@verbose_option
@click.pass_context
def acl_reset(ctx: click.Context, folder: str, config_file: Path | None) -> None:
    """Drop FOLDER's own ACL: the default ([acl] default) applies again."""
    change = admin_service(ctx, config_file).acl.reset(folder)
    if not change.changed:
        click.echo(f"{folder}: already uses the default; nothing changed")
        return
    click.echo(f"{folder}: back to the default ([acl] default){told_acl(change.notice)}")


@acl.command("get")
@click.argument("folder")
@config_option
@verbose_option
@click.pass_context
def acl_get(ctx: click.Context, folder: str, config_file: Path | None) -> None:
    """Show FOLDER's ACL entries."""
    found = admin_service(ctx, config_file).acl.get(folder)
    if not found.own:
        click.echo(f"{folder} has no ACL of its own: the default ([acl] default) applies")
    elif not found.entries:
        click.echo(f"{folder} has an ACL with no entries: only admins have rights")
    for entry in found.entries:
        click.echo(f"{entry.identifier:<24} {entry.rights or '(no rights)'}")


@acl.command("rights")
@click.argument("user_name", metavar="USER")
@click.argument("folder")
@config_option
@verbose_option
@click.pass_context
def acl_rights(ctx: click.Context, user_name: str, folder: str, config_file: Path | None) -> None:
    """USER's effective rights on FOLDER, and which entries gave and took what."""
    for line in admin_service(ctx, config_file).acl.explain(user_name, folder):
        click.echo(line)
