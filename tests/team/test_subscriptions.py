"""Per-user subscriptions: the team default (every existing folder counts as subscribed)
plus each user's own decisions, kept in the store and beyond the folder's life."""

from __future__ import annotations

from imapgate.store.engine import open_engine
from imapgate.team.subscriptions import Subscriptions
from imapgate.team.users import UserDirectory


def test_default_decisions_create_and_persistence(store_url: str) -> None:
    engine = open_engine(store_url)
    users = UserDirectory(engine)
    ann, ben = users.add("ann", "pw-123456").id, users.add("ben", "pw-123456").id
    subs = Subscriptions(engine)
    folders = ["INBOX", "Sent", "Team"]
    # Nobody decided anything: every existing folder is subscribed, nothing else.
    assert subs.subscribed_names(ann, folders) == set(folders)
    assert subs.is_subscribed(ann, "Team") and not subs.is_subscribed(ann, "Gone", exists=False)
    # ann created "New": not subscribed for her (RFC 3501), for ben by the team default.
    subs.created(ann, "New")
    assert subs.subscribed_names(ann, [*folders, "New"]) == set(folders)
    assert "New" in subs.subscribed_names(ben, [*folders, "New"])
    # A later SUBSCRIBE wins, and outlives the folder; CREATE again does not undo it.
    subs.subscribe(ann, "New")
    subs.created(ann, "New")
    assert "New" in subs.subscribed_names(ann, folders)  # deleted meanwhile: still subscribed
    subs.unsubscribe(ann, "Sent")
    assert subs.subscribed_names(ann, folders) == {"INBOX", "Team", "New"}
    # Kept in the store, per user.
    again = Subscriptions(engine)
    assert again.subscribed_names(ann, folders) == {"INBOX", "Team", "New"}
    assert again.subscribed_names(ben, folders) == set(folders)
    assert again.decisions(ann) == {"New": True, "Sent": False}
