"""``effective_rights`` against a real peer: the same ACL entries set up in a Dovecot
with its ACL plugin (team logins on the shared mailbox, tests/support/peers.py) and in
the model; MYRIGHTS and LISTRIGHTS compared for several users.

Where imapgate differs on purpose (docs/permissions.md), the test says so rather than
comparing:

* a folder without an ACL of its own: Dovecot gives these logins nothing, imapgate the
  configured default (lrswipkxte) -- nothing changes for teams that set no ACL;
* admins: Dovecot has no such notion for these logins; imapgate gives them every right;
* no ``l``: Dovecot still answers MYRIGHTS with the other rights; for imapgate the folder
  does not exist (NO as for a missing folder), so only the rights are compared here;
* a user's own entry: Dovecot lets a ``user=`` entry *replace* what ``anyone`` and
  ``authenticated`` give (its identifiers have a precedence); imapgate adds them up (the
  union of every matching entry minus every matching negative one), so an entry for one
  member never takes away what the whole team has -- ``Mixed`` shows it for carol;
* groups: the test Dovecot has no group source (userdb ``acl_groups``), so ``$group``
  entries are compared through the model's own tests only.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator, Mapping

import pytest

from imapgate.team.acl import AclEntry, effective_rights, list_rights, parse_identifier, rights

pytestmark = pytest.mark.integration

imaplib.Commands.setdefault("LISTRIGHTS", ("AUTH", "SELECTED"))

ACLS: dict[str, dict[str, str]] = {
    "INBOX": {"alice": "lrs", "bob": "lrswipkxte", "anyone": "lr"},
    "Finance": {"bob": "lrswipkxte", "-bob": "x"},                  # negative beats positive
    "Archive": {"authenticated": "lrs", "carol": "lrswi", "-carol": "wi"},
    "Leads": {"anyone": "lrswi", "-anyone": "te", "alice": "lrswipkxte"},  # -anyone hits alice too
    "Hidden": {"alice": "rs"},                                        # no l
    "Mixed": {"authenticated": "lr", "-alice": "r", "carol": "kx"},
}
USERS = ("alice", "bob", "carol")
DEFAULT = rights("lrswipkxte")


@pytest.fixture(scope="module")
def logins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, imaplib.IMAP4]]:
    from imapgate.demo import DovecotServer
    from tests.conftest import require_dovecot
    from tests.support.peers import DOVECOT_USERS, TEAM_MAIL_OF

    require_dovecot()
    server = DovecotServer(tmp_path_factory.mktemp("acl-model-dovecot"), users=DOVECOT_USERS,
                           mail_of=TEAM_MAIL_OF, enable_acl=True)
    clients: dict[str, imaplib.IMAP4] = {}
    try:
        server.populate("shared", {name: [] for name in ACLS})
        for folder, entries in ACLS.items():
            server.set_acl("shared", folder, entries)
        server.start()
        for user in USERS:
            clients[user] = imaplib.IMAP4(server.host, server.port, timeout=30)
            clients[user].login(user, server.users[user])
        yield clients
    finally:
        for client in clients.values():
            client.logout()
        server.close()


def _entries(acl: Mapping[str, str]) -> tuple[AclEntry, ...]:
    return tuple(AclEntry.parse(ident, text) for ident, text in acl.items())


def _untagged(client: imaplib.IMAP4, command: str, *args: str) -> tuple[str, list[bytes]]:
    client.untagged_responses.pop(command, None)
    typ, data = client._simple_command(command, *args)
    answer = client.untagged_responses.pop(command, [])
    return typ, [item for item in answer if isinstance(item, bytes)] or [
        item for item in data if isinstance(item, bytes)
    ]


def _dovecot_myrights(client: imaplib.IMAP4, folder: str) -> set[str] | None:
    typ, data = _untagged(client, "MYRIGHTS", folder)
    if typ != "OK":
        return None  # "Mailbox doesn't exist": no rights at all
    return set(data[0].split(b" ", 1)[1].decode().strip('"'))


#: (user, folder) -> Dovecot's answer, where imapgate differs on purpose (see above).
DIFFERENT = {("carol", "Mixed"): set("kxc")}  # imapgate: lr (authenticated) + kx


@pytest.mark.parametrize("folder", sorted(ACLS))
@pytest.mark.parametrize("user", USERS)
def test_myrights_agree_with_dovecot(logins: dict[str, imaplib.IMAP4], user: str, folder: str) -> None:
    ours = effective_rights(user, (), False, _entries(ACLS[folder]), DEFAULT).rights
    theirs = _dovecot_myrights(logins[user], folder)
    if (user, folder) in DIFFERENT:
        assert theirs == DIFFERENT[user, folder]
        assert set(ours.wire()) > theirs
        return
    if not ours:
        assert theirs is None  # no right at all: both say the folder is not there
        return
    assert theirs == set(ours.wire()), (str(ours), theirs)


def test_where_imapgate_differs_on_purpose(logins: dict[str, imaplib.IMAP4]) -> None:
    # A folder without an ACL file: nothing at Dovecot (test_dovecot_plugins.py), the
    # default at the gateway.
    assert str(effective_rights("alice", (), False, None, DEFAULT).rights) == "lrswipkxte"
    # r without l: Dovecot answers MYRIGHTS; for imapgate the folder behaves as missing.
    assert _dovecot_myrights(logins["alice"], "Hidden") == set("rs")
    assert not effective_rights("alice", (), False, _entries(ACLS["Hidden"]), DEFAULT).visible
    # Admins have everything at the gateway, whatever the entries say.
    assert str(effective_rights("bob", (), True, _entries(ACLS["Finance"]), DEFAULT).rights) == "lrswipkxtea"


def test_listrights_agrees_with_dovecot(logins: dict[str, imaplib.IMAP4]) -> None:
    """Every right can be granted to carol on its own; none is always hers."""
    client = logins["bob"]
    typ, _ = client._simple_command("LISTRIGHTS", "INBOX", "carol")
    assert typ == "OK"
    line = client.untagged_responses.pop("LISTRIGHTS")[0]
    required, *optional = line.split(b" ")[2:]
    ours_required, ours_optional = list_rights(parse_identifier("carol"), names_admin=False)
    assert required.strip(b'"').decode() == ours_required
    assert {o.decode() for o in optional} == set(ours_optional)
