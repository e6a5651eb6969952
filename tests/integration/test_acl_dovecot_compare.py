"""The gateway's folder permissions against Dovecot's ACL plugin, over IMAP (issue 11).

The same ACL -- several users, a group, ``anyone``, a negative entry, a read-only folder,
a hidden folder -- is set up twice: in a Dovecot with its ACL plugin where alice, bob and
carol log in to the shared mailbox (the reference, ``team_dovecot``), and in a gateway in
front of a plain Dovecot (entries in its store, as ``imapgate acl set`` writes them).  For
each user both sides get the same command sequence; what is compared is LIST, MYRIGHTS,
LISTRIGHTS and, for SELECT/STATUS/FETCH/STORE \\Seen, \\Deleted and a keyword/COPY/MOVE/
APPEND/CREATE/DELETE/RENAME/EXPUNGE, whether the command was refused.

Where imapgate differs on purpose the expected answers are written down per case in
``DIFFERENT`` with the row of docs/permissions.md ("Where imapgate differs from Dovecot's
ACL plugin") they come from; everything else must be equal.

The group: the reference Dovecot learns bob's membership of ``accounting`` from its userdb
(``acl_groups``), the gateway from its group table.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer, SampleMessage
from tests.support.gateway import GatewayHarness

pytestmark = pytest.mark.integration

imaplib.Commands.setdefault("LISTRIGHTS", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("MOVE", ("SELECTED",))

TEAM = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
GROUPS = {"accounting": ("bob",)}

#: The one ACL both sides get (identifiers as IMAP spells them).
ACLS: dict[str, dict[str, str]] = {
    "INBOX": {"anyone": "lrswipkxte"},
    "Team": {"anyone": "lrswipkxte"},
    "Finance": {"$accounting": "lrswipkxte", "alice": "lr"},   # group; alice read-only; carol hidden
    "Archive": {"anyone": "lrs"},                              # read-only for everybody
    "Leads": {"anyone": "lrswipkxte", "alice": "lrswipkxtea", "-carol": "te"},  # negative entry
    "Hidden": {"bob": "lrswipkxte"},                           # hidden for alice and carol
}
#: Folders probed (Team is the source and target of COPY/MOVE, so it comes last).
PROBED = ("Finance", "Archive", "Leads", "Hidden", "Team")


def _message(folder: str, n: int) -> SampleMessage:
    raw = (
        f"From: a@example.org\r\nTo: info@example.org\r\nSubject: {folder} {n}\r\n"
        f"Message-ID: <{folder}.{n}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()
    return SampleMessage(raw)


MAILBOX = {name: [_message(name, n) for n in range(1, 5)] for name in ACLS}
APPENDED = b"From: b@example.org\r\nSubject: appended\r\n\r\nnew\r\n"


# ------------------------------------------------------------------ the two sides


def _reference(team_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    server = team_dovecot(acls=ACLS, folders=MAILBOX, start=False)
    # The group: Dovecot's acl_groups userdb field (docs: "ACL groups support").
    members: dict[str, list[str]] = {}
    for group, users in GROUPS.items():
        for user in users:
            members.setdefault(user, []).append(group)
    lines = []
    for line in server.passwd_path.read_text().splitlines():
        user = line.split(":", 1)[0]
        if user in members:
            line += " userdb_acl_groups=" + ",".join(members[user])
        lines.append(line + "\n")
    server.passwd_path.write_text("".join(lines))
    server.start()
    return server


def _gateway(upstream: DovecotServer, data_dir: Path) -> GatewayHarness:
    harness = GatewayHarness(upstream_port=upstream.port, data_dir=data_dir, users=TEAM).start()
    source = harness.gw.service.acl
    assert source is not None
    for group, users in GROUPS.items():
        source.store.add_group(group)
        source.store.add_members(group, users)
    for folder, entries in ACLS.items():
        # A folder's first entry starts from "authenticated <default>" (docs/permissions.md,
        # "An ACL of its own"); drop it so the table is exactly ACLS, as at Dovecot.
        for identifier, rights in entries.items():
            source.store.set_entry(folder, identifier, rights, default=source.default)
        if "authenticated" not in entries:
            source.store.delete_entry(folder, "authenticated")
    harness.call_soon(source.reload)
    return harness


# ------------------------------------------------------------------ probing


def _outcome(typ: str, data: list[object]) -> str:
    """ok / nonexistent (as for a missing folder) / refused (any other NO)."""
    if typ == "OK":
        return "ok"
    text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
    if re.search(r"NONEXISTENT|TRYCREATE|doesn't exist|does not exist", text):
        return "nonexistent"
    return "refused"


def _untagged(client: imaplib.IMAP4, command: str, *args: str) -> tuple[str, list[bytes]]:
    client.untagged_responses.pop(command, None)
    typ, data = client._simple_command(command, *args)
    answer = client.untagged_responses.pop(command, [])
    got = [a for a in answer if isinstance(a, bytes)]
    return typ, got or [d for d in data if isinstance(d, bytes)]


def _listed(client: imaplib.IMAP4) -> set[str]:
    typ, data = client.list('""', "*")
    assert typ == "OK", data
    names = set()
    for line in data:
        assert isinstance(line, bytes)
        names.add(line.rsplit(b" ", 1)[1].strip(b'"').decode())
    return names


def _flags_of_first(client: imaplib.IMAP4) -> str:
    typ, data = client.fetch("1", "(FLAGS)")
    return repr(data) if typ == "OK" else ""


def _store(client: imaplib.IMAP4, flag: str) -> str:
    """Refused, or ok only when the flag really is set afterwards (RFC 4314 §4 lets a
    server leave a flag it may not change out and still answer OK)."""
    typ, data = client.store("1", "+FLAGS", f"({flag})")
    outcome = _outcome(typ, data)
    if outcome == "ok" and flag not in _flags_of_first(client):
        return "ignored"
    return outcome


def probe(client: imaplib.IMAP4, folder: str) -> dict[str, str]:
    """Every command of the comparison on ``folder``, in an order that leaves the
    destructive ones for last; the outcome of each."""
    out: dict[str, str] = {}
    typ, data = _untagged(client, "MYRIGHTS", folder)
    out["MYRIGHTS"] = "".join(sorted(data[0].split(b" ", 1)[1].decode().strip('"'))) if typ == "OK" else (
        _outcome(typ, data)
    )
    out["STATUS"] = _outcome(*client.status(folder, "(MESSAGES)"))
    read_only = False
    try:
        typ, data = client.select(folder)
    except imaplib.IMAP4.readonly:  # imaplib's way of saying OK [READ-ONLY] to a SELECT
        typ, data, read_only = "OK", [], True
    out["SELECT"] = _outcome(typ, data)
    if typ == "OK":
        out["READ-ONLY"] = str(read_only)
        # imaplib raises on any later command of a READ-ONLY mailbox unless told it
        # wanted one: let the server answer each command instead.
        client.is_readonly = True
        fetched = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out["FETCH"] = _outcome(*fetched)
        out["STORE \\Seen"] = _store(client, "\\Seen")
        out["STORE $Kw"] = _store(client, "$Kw")
        out["STORE \\Deleted"] = _store(client, "\\Deleted")
        out["EXPUNGE"] = _outcome(*client.expunge())
        if folder != "Team":
            out["COPY from"] = _outcome(*client.copy("1", "Team"))
            out["MOVE from"] = _outcome(*client._simple_command("MOVE", "1", "Team"))
        client.close()
    out["APPEND"] = _outcome(*client.append(folder, "", None, APPENDED))
    if folder != "Team":
        assert client.select("Team")[0] == "OK"
        out["COPY to"] = _outcome(*client.copy("1", folder))
        out["MOVE to"] = _outcome(*client._simple_command("MOVE", "1", folder))
        client.close()
    out["CREATE child"] = _outcome(*client.create(f"{folder}/New"))
    out["RENAME child"] = _outcome(*client.rename(f"{folder}/New", f"{folder}/Newer"))
    child = f"{folder}/Newer" if out["RENAME child"] == "ok" else f"{folder}/New"
    out["DELETE child"] = _outcome(*client.delete(child)) if out["CREATE child"] == "ok" else "-"
    out["RENAME"] = _outcome(*client.rename(folder, f"{folder}-Old"))
    out["DELETE"] = _outcome(*client.delete(f"{folder}-Old" if out["RENAME"] == "ok" else folder))
    return out


def everything(client: imaplib.IMAP4, user: str) -> dict[str, str]:
    result = {"LIST": " ".join(sorted(_listed(client) & set(ACLS)))}
    typ, data = _untagged(client, "LISTRIGHTS", "Leads", "carol")  # alice has a there
    if typ == "OK":
        required, *optional = data[0].decode().split(" ")[2:]
        result["LISTRIGHTS Leads carol"] = " ".join([required, *sorted(optional)])
    else:
        result["LISTRIGHTS Leads carol"] = _outcome(typ, data)
    for folder in PROBED:
        for command, outcome in probe(client, folder).items():
            result[f"{folder} {command}"] = outcome
    return result


#: (user, key) -> (Dovecot's answer, the gateway's answer): the deliberate differences,
#: each a row of docs/permissions.md, "Where imapgate differs from Dovecot's ACL plugin".
DIFFERENT: dict[tuple[str, str], tuple[str, str]] = {}


def _differs(users: str, keys: str, dovecot: str, gateway: str) -> None:
    for user in users.split():
        for key in keys.split(","):
            DIFFERENT[user, key.strip()] = (dovecot, gateway)


# "STORE of a flag the member may not change": Dovecot answers OK and leaves the flag,
# the gateway says NO [NOPERM] (none of the asked flags may be changed).
_differs("alice bob carol", "Archive STORE $Kw, Archive STORE \\Deleted", "ignored", "refused")
_differs("alice", "Finance STORE $Kw, Finance STORE \\Deleted, Finance STORE \\Seen", "ignored", "refused")
_differs("carol", "Leads STORE \\Deleted", "ignored", "refused")
# "EXPUNGE (or CLOSE) without e": Dovecot OK (nothing expunged), the gateway NO [NOPERM].
_differs("alice bob carol", "Archive EXPUNGE", "ok", "refused")
_differs("alice", "Finance EXPUNGE", "ok", "refused")
_differs("carol", "Leads EXPUNGE", "ok", "refused")
# "RENAME of a folder that does not exist, under a parent without k": the CREATE of the
# child was refused on both sides, so the RENAME names a missing folder.
_differs("alice bob carol", "Archive RENAME child", "nonexistent", "refused")
_differs("alice", "Finance RENAME child", "nonexistent", "refused")
# "RENAME to a top-level name": refused in Dovecot's public namespace; the gateway asks
# x on the folder and k on INBOX (anyone has k there).
_differs("alice bob carol", "Leads RENAME, Team RENAME", "refused", "ok")
_differs("bob", "Finance RENAME, Hidden RENAME", "refused", "ok")
# "DELETE of a folder holding messages": Dovecot wants the rights to expunge them (carol
# has no t e on Leads); the gateway x only.  (The gateway's RENAME to Leads-Old succeeded
# first, see above, and Leads-Old is what it deletes.)
_differs("carol", "Leads DELETE", "refused", "ok")
# "CREATE under a folder without l": Dovecot NOPERM, the gateway as for a missing parent.
_differs("alice carol", "Hidden CREATE child", "refused", "nonexistent")
_differs("carol", "Finance CREATE child", "refused", "nonexistent")
# "LISTRIGHTS needs a": Dovecot answers bob and carol, who have no a on Leads.
_differs("bob carol", "LISTRIGHTS Leads carol", '"" a c d e i k l p r s t w x', "refused")


@pytest.mark.parametrize("user", sorted(TEAM))
def test_same_acl_same_answers(
    user: str, team_dovecot: Callable[..., DovecotServer],
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path,
) -> None:
    reference = _reference(team_dovecot)
    plain = fresh_dovecot(folders=MAILBOX)
    harness = _gateway(plain, tmp_path / "gw")
    try:
        theirs_client = imaplib.IMAP4(reference.host, reference.port, timeout=30)
        theirs_client.login(user, TEAM[user])
        ours_client = harness.imaplib_login(user, TEAM[user])
        theirs = everything(theirs_client, user)
        ours = everything(ours_client, user)
        theirs_client.logout()
        ours_client.logout()
    finally:
        harness.stop()
    report = []
    for key in sorted(set(theirs) | set(ours)):
        expected = DIFFERENT.get((user, key))
        got = (theirs.get(key, "-"), ours.get(key, "-"))
        if expected is not None:
            if got != expected:
                report.append(f"{key}: documented difference {expected}, got {got}")
        elif got[0] != got[1]:
            report.append(f"{key}: dovecot {got[0]!r}, gateway {got[1]!r}")
    assert not report, f"{user}:\n" + "\n".join(report)
