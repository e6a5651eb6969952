"""Dovecot's ACL and quota plugins as the reference for the gateway: the team's logins on the
shared mailbox with RFC 4314 rights (LIST, MYRIGHTS, LISTRIGHTS, GETACL, refusals), and a quota
that makes the hoster refuse APPEND and COPY with [OVERQUOTA]."""

from __future__ import annotations

import contextlib
import imaplib
import time
from collections.abc import Iterator

import pytest

from imapgate.demo import DovecotServer, SampleMessage
from tests.conftest import require_dovecot
from tests.support.peers import DOVECOT_USERS, TEAM_MAIL_OF

pytestmark = pytest.mark.integration

# imaplib knows GETACL/SETACL/MYRIGHTS, not LISTRIGHTS (RFC 4314 §3.7).
imaplib.Commands.setdefault("LISTRIGHTS", ("AUTH", "SELECTED"))

ACLS = {
    "INBOX": {"alice": "lrs", "bob": "lrswipkxte", "anyone": "lr"},
    "Secret": {"bob": "lr"},            # alice: no rights at all
    "Hidden": {"alice": "r"},           # alice: read, but not "l": not listed
    "Team": {"authenticated": "lrs", "-carol": "s"},
    "Later": {"bob": "lr"},
}
MESSAGE = b"From: a@example.test\r\nSubject: hello\r\nMessage-ID: <m1@example.test>\r\n\r\nhi\r\n"


@pytest.fixture(scope="module")
def acl_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """What the ``team_dovecot`` factory makes, once for this module (a Dovecot takes ~1 s to
    stop); the tests change no ACL but that of "Later" and add mail only to INBOX."""
    require_dovecot()
    server = DovecotServer(tmp_path_factory.mktemp("acl-dovecot"), users=DOVECOT_USERS,
                           mail_of=TEAM_MAIL_OF, enable_acl=True)
    try:
        server.populate("shared", {name: [] for name in ("INBOX", "Secret", "Hidden", "Team", "Later")})
        for folder, entries in ACLS.items():
            server.set_acl("shared", folder, entries)
        server.start()
        yield server
    finally:
        server.close()


def _login(server: DovecotServer, user: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(server.host, server.port, timeout=30)
    client.login(user, server.users[user])
    return client


def _listed(client: imaplib.IMAP4) -> set[str]:
    typ, data = client.list()
    assert typ == "OK"
    return {line.rsplit(b' "/" ', 1)[1].decode().strip('"') for line in data if isinstance(line, bytes)}


def _untagged(client: imaplib.IMAP4, name: str, *args: str,
              response: str | None = None) -> tuple[str, list[bytes]]:
    """Run ``name args``; its tagged status and the untagged ``response`` (default: ``name``)."""
    key = response or name
    client.untagged_responses.pop(key, None)
    typ, data = client._simple_command(name, *args)
    answer = client.untagged_responses.pop(key, [])
    untagged = [item for item in answer if isinstance(item, bytes)]
    return typ, untagged or [item for item in data if isinstance(item, bytes)]


@pytest.fixture
def logins(acl_dovecot: DovecotServer) -> Iterator[dict[str, imaplib.IMAP4]]:
    clients = {user: _login(acl_dovecot, user) for user in ("shared", "alice", "bob", "carol")}
    try:
        yield clients
    finally:
        for client in clients.values():
            # imaplib refuses even LOGOUT after a SELECT that came back READ-ONLY.
            with contextlib.suppress(imaplib.IMAP4.error):
                client.logout()


def test_list_shows_only_folders_with_lookup_right(logins: dict[str, imaplib.IMAP4]) -> None:
    assert {"INBOX", "Secret", "Hidden", "Team", "Later"} <= _listed(logins["shared"])  # the owner: all
    assert _listed(logins["alice"]) == {"INBOX", "Team"}
    assert _listed(logins["bob"]) == {"INBOX", "Secret", "Team", "Later"}
    assert _listed(logins["carol"]) == {"INBOX", "Team"}
    # The team logins see the shared mailbox under the same names, in one namespace.
    assert logins["alice"].namespace()[1] == [b'NIL NIL (("" "/"))']


def test_myrights(logins: dict[str, imaplib.IMAP4]) -> None:
    expected = {
        ("alice", "INBOX"): b"INBOX lrs",
        ("bob", "INBOX"): b"INBOX lrwstipekxcd",  # Dovecot adds RFC 2086's c and d
        ("carol", "INBOX"): b"INBOX lr",          # anyone
        ("bob", "Secret"): b"Secret lr",
        ("alice", "Hidden"): b"Hidden r",         # no "l", still its own rights
        ("alice", "Team"): b"Team lrs",
        ("carol", "Team"): b"Team lr",            # authenticated lrs minus -carol s
        ("shared", "Secret"): b"Secret lrwstipekxacd",
    }
    got = {key: _untagged(logins[key[0]], "MYRIGHTS", key[1])[1][0] for key in expected}
    assert got == expected
    # No right at all: the folder does not exist for alice.
    typ, data = logins["alice"]._simple_command("MYRIGHTS", "Secret")
    assert typ == "NO" and data[0].startswith(b"[NONEXISTENT] Mailbox doesn't exist: Secret")


def test_getacl_and_listrights(logins: dict[str, imaplib.IMAP4]) -> None:
    typ, acl = _untagged(logins["shared"], "GETACL", "INBOX", response="ACL")
    assert typ == "OK"
    assert acl == [b"INBOX anyone lr alice lrs bob kxeilprwtscd shared lrwstipekxacd"]
    typ, rights = _untagged(logins["shared"], "LISTRIGHTS", "INBOX", "carol")
    assert typ == "OK" and rights == [b'INBOX carol "" l r w s t p i e k x a c d']
    # Without "a", GETACL and SETACL are refused.
    for command, args in (("GETACL", ("INBOX",)), ("SETACL", ("INBOX", "carol", "lrs"))):
        typ, data = logins["bob"]._simple_command(command, *args)
        assert typ == "NO" and data[0].startswith(b"[NOPERM] You lack administrator privileges")


def test_refusals(acl_dovecot: DovecotServer, logins: dict[str, imaplib.IMAP4]) -> None:
    alice, bob, carol = logins["alice"], logins["bob"], logins["carol"]
    # alice: lrs on INBOX -- no insert, no create.
    typ, data = alice.append("INBOX", None, None, MESSAGE)
    assert typ == "NO" and data[0].startswith(b"[NOPERM] Permission denied")
    typ, data = alice.create("New")
    assert typ == "NO" and data[0].startswith(b"[NOPERM] Permission denied")
    # "r" without "l": EXAMINE works, read-only.
    assert alice.select("Hidden", readonly=True)[0] == "OK"
    # No right: SELECT says it does not exist (Dovecot never tells what is hidden).
    typ, data = alice._simple_command("SELECT", "Secret")
    assert typ == "NO" and data[0].startswith(b"Mailbox doesn't exist: Secret")
    # bob: insert into INBOX works; copy to Secret (lr only) is refused; no delete right there.
    typ, data = bob.append("INBOX", None, None, MESSAGE)
    assert typ == "OK" and data[0].startswith(b"[APPENDUID ")
    assert bob.select("INBOX")[0] == "OK"
    typ, data = bob.copy("1", "Secret")
    assert typ == "NO" and data[0].startswith(b"[NOPERM] Permission denied")
    typ, data = bob.delete("Secret")
    assert typ == "NO" and data[0].startswith(b"[NOPERM] Permission denied")
    # carol: lr on INBOX -- SELECT is read-only.
    with pytest.raises(imaplib.IMAP4.readonly):
        carol.select("INBOX")


def test_set_acl_while_running_reaches_new_sessions(acl_dovecot: DovecotServer) -> None:
    client = _login(acl_dovecot, "carol")
    try:
        assert "Later" not in _listed(client)
    finally:
        client.logout()
    acl_dovecot.set_acl("shared", "Later", {"bob": "lr", "carol": "lr"})
    time.sleep(acl_dovecot.acl_cache_secs or 0)  # the ACL cache of a running Dovecot (1 s)
    client = _login(acl_dovecot, "carol")
    try:
        assert "Later" in _listed(client)
    finally:
        client.logout()


def test_set_acl_refuses_rights_dovecot_would_not_understand(acl_dovecot: DovecotServer) -> None:
    with pytest.raises(ValueError, match="rights: lrwstipekxa"):
        acl_dovecot.set_acl("shared", "Team", {"alice": "lrc"})


def _message(size: int, n: int) -> SampleMessage:
    from datetime import UTC, datetime

    raw = (f"From: a@example.test\r\nSubject: {n}\r\nMessage-ID: <q{n}@example.test>\r\n\r\n".encode()
           + b"x" * size + b"\r\n")
    return SampleMessage(raw=raw, flags=(), internal_date=datetime(2024, 5, 1, tzinfo=UTC))


def test_quota_refuses_append_and_copy_over_quota(fresh_dovecot: object) -> None:
    assert callable(fresh_dovecot)
    server = fresh_dovecot(users=DOVECOT_USERS, quota_rules={"shared": "*:storage=64K"},
                           folders={"INBOX": [_message(30_000, 1)], "Archive": []})
    assert isinstance(server, DovecotServer)
    client = _login(server, "shared")
    try:
        typ, data = client.getquotaroot("INBOX")
        assert typ == "OK"
        assert data[0] == [b'INBOX "User quota"']
        used, limit = data[1][0].split(b"(STORAGE ")[1].rstrip(b")").split()
        assert 29 <= int(used) <= 30 and int(limit) == 64  # KiB, rounded up per message
        assert client.append("INBOX", None, None, _message(20_000, 2).raw)[0] == "OK"
        typ, data = client.append("INBOX", None, None, _message(20_000, 3).raw)
        assert typ == "NO" and data[0].startswith(b"[OVERQUOTA] Quota exceeded (mailbox for user is full)")
        assert client.select("INBOX")[0] == "OK"
        typ, data = client.copy("1", "Archive")
        assert typ == "NO" and data[0].startswith(b"[OVERQUOTA] Quota exceeded (mailbox for user is full)")
        # Users without a rule have no limit.
        other = _login(server, "customer")
        try:
            assert other.append("INBOX", None, None, _message(100_000, 4).raw)[0] == "OK"
        finally:
            other.logout()
    finally:
        client.logout()


def test_team_dovecot_factory(team_dovecot: object) -> None:
    """The fixture for feature tests: team logins on the shared mailbox with the given ACLs."""
    assert callable(team_dovecot)
    server = team_dovecot(acls={"INBOX": {"bob": "lri"}}, folders={"INBOX": []})
    assert isinstance(server, DovecotServer)
    bob, shared, alice = (_login(server, user) for user in ("bob", "shared", "alice"))
    try:
        assert bob.append("INBOX", None, None, MESSAGE)[0] == "OK"
        # The same mailbox: what bob added is in shared's INBOX.
        assert shared.select("INBOX", readonly=True) == ("OK", [b"1"])
        # No entry for alice: no rights.  Dovecot still lists INBOX (the namespace's inbox is
        # always listed), but it "doesn't exist" for everything else.
        assert _listed(alice) == {"INBOX"}
        typ, data = alice._simple_command("SELECT", "INBOX")
        assert typ == "NO" and data[0].startswith(b"Mailbox doesn't exist: INBOX")
    finally:
        for client in (bob, shared, alice):
            client.logout()
