"""The dashboard never shows the hidden recovery folder (gateway/virtual.py: hidden),
in its folder list nor by name.  No upstream: the replica is filled directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapgate.gateway.policy import Actor
from imapgate.web.data import Dashboard, NotFound
from tests.server.harness import make_gateway


def test_hidden_folder_is_not_on_the_dashboard(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path)
    gw.replica.upsert_mailbox("imapgate-recovery", "/", ())
    user = gw.users.get("alice")
    assert user is not None
    alice = Actor(user.id, "alice", "web")
    data = Dashboard(gw)
    assert "imapgate-recovery" not in [f.name for f in data.list_folders(alice)]
    assert "INBOX" in [f.name for f in data.list_folders(alice)]
    with pytest.raises(NotFound):
        data.folder(alice, "imapgate-recovery")
