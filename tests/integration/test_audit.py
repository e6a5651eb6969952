"""The audit journal with real clients in front of a real Dovecot (issue 13).

A session's flag, move, delete and expunge appear with the client's ID and
address; logins and failed logins (an unknown name only as its keyed
reference); a refusal by the folder's ACL; ``--message-id`` follows a message
across a move; changes made directly at Dovecot are journaled "at the hoster".
The journal is read the way ``imapgate audit`` reads it: ``AdminService.audit``.
"""

from __future__ import annotations

import imaplib
import json
from typing import Any

import pytest

from imapgate.demo import DovecotServer
from imapgate.gateway.admin import AdminService, AuditQuery, AuditRecord
from tests.support.gateway import GatewayHarness
from tests.support.imap import ok, search_ids, session, upstream_login

pytestmark = pytest.mark.integration

Mailbox = dict[str, list[Any]]


def _audit(gw: GatewayHarness, **filters: Any) -> list[AuditRecord]:
    admin = AdminService(gw.config)
    try:
        return admin.audit(AuditQuery(**filters))
    finally:
        admin.close()


def _client(gw: GatewayHarness, name: str, user: str, password: str) -> imaplib.IMAP4:
    c = gw.imaplib()
    ok(c.xatom("ID", f'("name" "{name}" "version" "1.0")'))
    ok(c.login(user, password))
    return c


def _mid(sample_mailbox: Mailbox, folder: str, index: int) -> tuple[str, str]:
    msg = sample_mailbox[folder][index].parse()
    return str(msg["Message-ID"]), str(msg["Subject"])


def test_session_changes_carry_client_id_and_address(
    gateway: GatewayHarness, sample_mailbox: Mailbox
) -> None:
    mid, subject = _mid(sample_mailbox, "Rechnungen", 0)
    with session(_client(gateway, "audit-test", "alice", "alice-pw")) as c:
        ok(c.select("Rechnungen"))
        ok(c.uid("FETCH", "1:2", "(ENVELOPE)"))  # what clients show first (and its subject)
        ok(c.uid("FETCH", "1", "(BODY[])"))  # opening it: "read by alice" (private read state)
        ok(c.uid("STORE", "1", "+FLAGS", "(\\Flagged)"))
        ok(c.uid("MOVE", "1", "Archive"))
        ok(c.uid("STORE", "2", "+FLAGS", "(\\Deleted)"))
        ok(c.uid("EXPUNGE", "2"))
        # Across the move: the copy in Archive is deleted too.
        ok(c.select("Archive"))
        (moved_uid,) = search_ids(ok(c.uid("SEARCH", None, "HEADER", "Message-ID", mid)))
        ok(c.uid("STORE", str(moved_uid), "+FLAGS", "(\\Deleted)"))
        ok(c.uid("EXPUNGE", str(moved_uid)))

    mine = _audit(gateway, user="alice")
    actions = [r.entry.action_word for r in mine]
    expected = ["expunged", "deleted", "expunged", "deleted", "moved", "flagged", "read", "login"]
    assert actions == expected, actions
    for r in mine:
        assert (r.entry.client_id, r.entry.address) == ("audit-test 1.0", "127.0.0.1"), r
        assert r.entry.client == "audit-test 1.0 from 127.0.0.1"
    move = mine[4].entry
    assert (move.mailbox, move.detail) == ("Rechnungen", "to Archive")
    assert {(m.mailbox, m.uid) for m in move.messages} == {("Rechnungen", 1), ("Archive", moved_uid)}
    assert all(m.message_id == mid and m.subject == subject for m in move.messages), move.messages

    history = _audit(gateway, message_id=mid)
    assert [(r.entry.action_word, r.entry.mailbox) for r in history] == [
        ("expunged", "Archive"),
        ("deleted", "Archive"),
        ("moved", "Rechnungen"),
        ("flagged", "Rechnungen"),
        ("read", "Rechnungen"),
    ]
    # "Who deleted the invoice?": the subject finds it too.
    found = _audit(gateway, search=subject[:12], action="expunged", folder="Archive")
    assert [r.entry.user for r in found] == ["alice"]


def test_logins_and_failed_logins(gateway: GatewayHarness) -> None:
    typed = "Sommer2026!geheim"  # a password typed into the name field
    for user, password in ((typed, "x"), ("bob", "wrong")):
        c = gateway.imaplib()
        with pytest.raises(imaplib.IMAP4.error):
            c.login(user, password)
        c.shutdown()
    with session(_client(gateway, "k9-like", "bob", "bob-pw")):
        pass
    failed = _audit(gateway, action="login_failed")
    assert failed[0].entry.user == "bob"
    assert failed[1].entry.user is not None and failed[1].entry.user.startswith("unknown user [ref ")
    assert all(r.entry.address == "127.0.0.1" and r.entry.result == "NO" for r in failed)
    everything = json.dumps([r.to_json() for r in _audit(gateway, limit=1000)])
    assert typed not in everything and "wrong" not in everything.replace("wrong name or password", "")
    (login,) = _audit(gateway, user="bob", action="login")
    assert login.entry.client_id == "k9-like 1.0" and login.entry.detail == "via imap"


def test_refusal_by_acl_is_journaled(gateway: GatewayHarness) -> None:
    admin = AdminService(gateway.config)
    try:
        admin.acl.set_entry("Rechnungen", "-bob", "t")  # bob may not delete there
    finally:
        admin.close()
    with session(_client(gateway, "bob-client", "bob", "bob-pw")) as c:
        gateway.wait_for(lambda: "t" not in gateway.gw.service.policy.rights(_bob(gateway), "Rechnungen"))
        ok(c.select("Rechnungen"))
        typ, data = c.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
        assert typ == "NO" and b"NOPERM" in data[0], (typ, data)
    (refusal,) = _audit(gateway, user="bob", action="refused")
    e = refusal.entry
    assert (e.command, e.mailbox, e.uids, e.result) == ("STORE", "Rechnungen", "3", "NO")
    assert e.client_id == "bob-client 1.0" and e.detail
    (acl,) = _audit(gateway, action="acl_changed")
    assert acl.entry.user == "cli" and acl.entry.mailbox == "Rechnungen"


def _bob(gateway: GatewayHarness) -> Any:
    from imapgate.gateway.policy import Actor

    user = gateway.gw.users.get("bob")
    assert user is not None
    return Actor(user.id, "bob")


def test_changes_at_the_hoster(gateway: GatewayHarness, upstream: DovecotServer) -> None:
    new = (
        b"From: lieferant@example.org\r\nSubject: Mahnung\r\n"
        b"Message-ID: <mahnung-1@example.org>\r\n\r\nbitte\r\n"
    )
    with session(upstream_login(upstream.host, upstream.port)) as d:
        ok(d.select("Support"))
        ok(d.uid("STORE", "3", "+FLAGS", "(\\Flagged)"))
        ok(d.append("Support", "", None, new))
        ok(d.uid("STORE", "4", "+FLAGS", "(\\Deleted)"))
        ok(d.uid("EXPUNGE", "4"))

    def journaled() -> bool:
        found = {r.entry.action_word for r in _audit(gateway, folder="Support")}
        return found >= {"arrived", "flagged", "expunged"}

    gateway.wait_for(journaled, timeout=30, what="the hoster's changes in the journal")
    for r in _audit(gateway, folder="Support"):
        assert r.entry.origin == "hoster" and r.entry.user is None and r.entry.client == "at the hoster"
    (arrived,) = _audit(gateway, message_id="<mahnung-1@example.org>")
    assert arrived.entry.action_word == "arrived"
    (gone,) = _audit(gateway, folder="Support", action="expunged")
    assert gone.entry.uids == "4" and [m.uid for m in gone.entry.messages] == [4]


def test_a_folder_deleted_at_the_hoster(
    gateway: GatewayHarness, upstream: DovecotServer, sample_mailbox: Mailbox
) -> None:
    """The sync journals a folder gone at the hoster, with the messages it held; a DELETE
    through the gateway is journaled once, by its member (not again "at the hoster")."""
    mid, _subject = _mid(sample_mailbox, "Rechnungen", 0)
    with session(_client(gateway, "audit-test", "alice", "alice-pw")) as c:
        ok(c.create("Scratch"))
        ok(c.delete("Scratch"))
    with session(upstream_login(upstream.host, upstream.port)) as d:
        ok(d.delete("Rechnungen"))

    def journaled() -> bool:
        return any(r.entry.mailbox == "Rechnungen" for r in _audit(gateway, action="folder_deleted"))

    gateway.wait_for(journaled, timeout=30, what="the hoster's folder deletion in the journal")
    deleted = _audit(gateway, action="folder_deleted")
    assert [(r.entry.mailbox, r.entry.user, r.entry.origin) for r in deleted] == [
        ("Rechnungen", None, "hoster"),
        ("Scratch", "alice", "gateway"),
    ], deleted
    assert mid in {m.message_id for m in deleted[0].entry.messages}
    assert _audit(gateway, message_id=mid)[0].entry.action_word == "folder_deleted"
