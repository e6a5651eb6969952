"""Errors of the gateway's operations, each with the IMAP response code that
fits it, so every front end (IMAP, dashboard) reports them the same way."""

from __future__ import annotations


class OperationError(Exception):
    """An operation was refused or failed; nothing was changed.

    ``code`` is an RFC 5530/9051 response code atom (``NONEXISTENT``,
    ``TRYCREATE``, ``UNAVAILABLE``, ``NOPERM``, ``CANNOT``, ``ALREADYEXISTS``,
    ``LIMIT``, ``SERVERBUG``...) or None; ``status`` is the tagged status the
    IMAP server answers with (``NO`` almost always).
    """

    def __init__(self, text: str, code: str | None = None, status: str = "NO") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status
