"""gateway/audit_refs.py: subjects for the journal from whatever a message's header holds."""

from __future__ import annotations

import pytest

from imapgate.gateway.audit_refs import decoded


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
        ("plain subject", "plain subject"),
        # Broken encoded words (hostile mail): kept as sent, never an exception.
        ("=?utf-8?b?YWJjZGVmZ2hp?=x =?utf-8?b?A?=", "=?utf-8?b?YWJjZGVmZ2hp?=x =?utf-8?b?A?="),
        ("=?utf-8?b?QUJDREVGR?=", "=?utf-8?b?QUJDREVGR?="),  # 9 base64 characters: HeaderParseError
        ("=?x-unknown?q?abc?=", "=?x-unknown?q?abc?="),
    ],
)
def test_decoded(raw: str, text: str) -> None:
    assert decoded(raw) == text


def test_nothing_is_none() -> None:
    assert decoded(None) is None and decoded("") is None
