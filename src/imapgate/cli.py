"""The ``imapgate`` command line: server, demo and admin commands."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imapgate")
def main() -> None:
    """imapgate: an IMAP gateway that makes a shared mailbox safe for a team."""


@main.command()
def demo() -> None:
    """Run a demo: a sample mailbox, the gateway in front of it, logins to try."""
    click.echo(f"imapgate {__version__}")
    click.echo("The IMAP codec is in place; the gateway (serve, demo) is being built.")
