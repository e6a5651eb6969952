"""``imapgate store copy --to URL``: the admin side of ``store/copy.py``.

Opens (and migrates) the target, refuses the store itself and a target that
holds anything, copies, and journals the copy in the target, where the team's
history goes on.  Errors are one line naming the target without its password.
"""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import Engine

from ..errors import OperatorError
from ..store.copy import CopySummary, Progress, TargetNotEmpty, copy_store
from ..store.engine import open_engine, safe_url
from ..team.journal import Journal, JournalEntry

__all__ = ["CopyProgress", "CopySummary", "copy_to"]

CopyProgress = Progress


def copy_to(
    source: Engine,
    target_url: str,
    progress: CopyProgress | None = None,
    *,
    entry: JournalEntry | None = None,
) -> CopySummary:
    if _same(source, target_url):
        raise OperatorError(f"store copy: {safe_url(target_url)} is this store itself")
    target = open_engine(target_url)
    try:
        try:
            summary = copy_store(source, target, progress)
        except TargetNotEmpty as exc:
            raise OperatorError(
                f"store copy to {safe_url(target_url)} refused: {exc}; copy only into an empty "
                "database (drop and create it again to start over)"
            ) from None
        if entry is not None:
            Journal(target).record(entry)
        return summary
    finally:
        target.dispose()


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` put in (percent-encoded) when it names a user but no password."""
    if not password or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    user, at, host = rest.partition("@")
    if not at or ":" in user:
        return url
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}"


def _same(source: Engine, target_url: str) -> bool:
    mine = source.url.render_as_string(hide_password=True).split("://", 1)[-1]
    theirs = safe_url(target_url).split("://", 1)[-1]
    return mine.replace(":***@", "@") == theirs.replace(":***@", "@")
