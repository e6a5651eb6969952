"""mbsync (isync) as a test client: finding it, and its configuration for one channel
between an IMAP server on 127.0.0.1 and a local Maildir (``tmp/mail``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def require_mbsync() -> str:
    path = shutil.which("mbsync")
    if path is None:
        pytest.fail("mbsync not found: apt-get install -y isync (scripts/setup-env.sh does this)")
    return path


def mbsync_config(
    tmp: Path,
    port: int,
    user: str,
    password: str,
    *,
    channel: str = "bulk",
    patterns: str = "Bulk",
    sync: str = "Pull",
    expunge: str = "Near",
) -> Path:
    """``tmp/mbsyncrc``: channel ``channel`` syncing ``patterns`` (``Sync sync``,
    ``Expunge expunge``) into the Maildir ``tmp/mail``."""
    local = tmp / "mail"
    local.mkdir()
    conf = tmp / "mbsyncrc"
    conf.write_text(
        f"""IMAPAccount remote
Host 127.0.0.1
Port {port}
User {user}
Pass {password}
SSLType None
AuthMechs LOGIN
Timeout 60

IMAPStore remote
Account remote

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel {channel}
Far :remote:
Near :local:
Patterns {patterns}
Create Near
Sync {sync}
Expunge {expunge}
SyncState *
"""
    )
    return conf
