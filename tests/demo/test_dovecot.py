"""The private Dovecot and pymap upstreams behave like real servers holding the sample mailbox."""

from __future__ import annotations

import imaplib
import os
import re
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from imapgate.demo import (
    DovecotServer,
    PymapServer,
    SampleMessage,
    generate_bulk,
    mutf7_encode,
)
from tests.conftest import require_dovecot

Mailbox = dict[str, list[SampleMessage]]
DovecotFactory = Callable[..., DovecotServer]

pytestmark = pytest.mark.integration

_LIST_LINE = re.compile(rb'^\((?P<attrs>[^)]*)\) "/" (?P<name>.+)$')


def _login(server: DovecotServer, user: str = "shared") -> imaplib.IMAP4:
    client = imaplib.IMAP4(server.host, server.port)
    client.login(user, server.users[user])
    return client


def _examine(client: imaplib.IMAP4, mailbox: str) -> int:
    """EXAMINE (read-only SELECT, so \\Recent and \\Seen stay as they are); the EXISTS count."""
    typ, data = client.select(mailbox, readonly=True)
    assert typ == "OK", (mailbox, data)
    assert isinstance(data[0], bytes)
    return int(data[0])


def _list(client: imaplib.IMAP4) -> dict[str, set[str]]:
    typ, data = client.list()
    assert typ == "OK"
    out = {}
    for line in data:
        assert isinstance(line, bytes)
        match = _LIST_LINE.match(line)
        assert match, line
        out[match["name"].strip(b'"').decode("ascii")] = set(match["attrs"].decode().split())
    return out


def _uid_flags(client: imaplib.IMAP4) -> list[tuple[int, set[str], str]]:
    typ, data = client.uid("FETCH", "1:*", "(FLAGS INTERNALDATE)")
    assert typ == "OK"
    out = []
    for item in data:
        assert isinstance(item, bytes)
        uid = re.search(rb"UID (\d+)", item)
        flags = re.search(rb"FLAGS \(([^)]*)\)", item)
        date = re.search(rb'INTERNALDATE "([^"]+)"', item)
        assert uid and flags and date, item
        names = set(flags[1].decode().split()) - {"\\Recent"}
        out.append((int(uid[1]), names, date[1].decode()))
    return out


@pytest.fixture(scope="module")
def pristine(
    tmp_path_factory: pytest.TempPathFactory, sample_mailbox: Mailbox
) -> Iterator[DovecotServer]:
    """A module-private populated instance: exact counts, whatever other tests do to ``dovecot``."""
    require_dovecot()
    server = DovecotServer(tmp_path_factory.mktemp("pristine"), users={"shared": "pw", "other": "pw2"})
    server.populate("shared", sample_mailbox)
    server.populate("shared", {"Bulk": generate_bulk(2000, seed=9)})
    server.start()
    yield server
    server.close()


def test_session_fixture_login_capability_list(dovecot: DovecotServer, sample_mailbox: Mailbox) -> None:
    client = _login(dovecot)
    try:
        _typ, data = client.capability()
        caps = set(data[0].decode().upper().split())
        for cap in ("CONDSTORE", "QRESYNC", "MOVE", "UIDPLUS", "NOTIFY", "ESEARCH", "SPECIAL-USE", "IDLE",
                    "ENABLE", "NAMESPACE", "LIST-STATUS"):
            assert cap in caps, cap
        folders = _list(client)
        assert {mutf7_encode(name) for name in sample_mailbox} <= set(folders)
        assert "B&APw-ro" in folders, "the non-ASCII folder Büro is listed in modified UTF-7"
        assert _examine(client, "INBOX") > 0
    finally:
        client.logout()


def test_special_use_and_subscriptions(pristine: DovecotServer, sample_mailbox: Mailbox) -> None:
    client = _login(pristine)
    try:
        folders = _list(client)
        for name, attr in {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
                           "Archive": "\\Archive", "Junk": "\\Junk"}.items():
            assert attr in folders[name], (name, folders[name])
        assert "\\HasChildren" in folders["Projekte"]
        _typ, data = client.lsub()
        subscribed = {_LIST_LINE.match(line)["name"].strip(b'"').decode()  # type: ignore[index]
                      for line in data if isinstance(line, bytes)}
        assert {mutf7_encode(n) for n in sample_mailbox if n != "INBOX"} <= subscribed
    finally:
        client.logout()


def test_counts_flags_dates_and_bytes(pristine: DovecotServer, sample_mailbox: Mailbox) -> None:
    client = _login(pristine)
    try:
        for folder, messages in sample_mailbox.items():
            assert _examine(client, f'"{mutf7_encode(folder)}"') == len(messages), folder
            fetched = _uid_flags(client)
            assert [uid for uid, _, _ in fetched] == list(range(1, len(messages) + 1)), "UIDs in given order"
            for (uid, flags, date), message in zip(fetched, messages, strict=True):
                assert flags == set(message.flags), (folder, uid)
                assert _same_instant(date, message), (folder, uid, date, message.internal_date)
            # Content is byte-exact (CRLF kept as written).
            for uid in (1, len(messages)):
                typ, body = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
                assert typ == "OK"
                first = body[0]
                assert isinstance(first, tuple)
                assert first[1] == messages[uid - 1].raw, (folder, uid)
    finally:
        client.logout()


def _same_instant(internaldate: str, message: SampleMessage) -> bool:
    # Dovecot reports Maildir INTERNALDATEs (file mtimes) in UTC; compare instants, not zones.
    parsed = datetime.strptime(internaldate, "%d-%b-%Y %H:%M:%S %z")
    return parsed == message.internal_date


def test_keywords_and_bulk_folder(pristine: DovecotServer) -> None:
    client = _login(pristine)
    try:
        _examine(client, "Junk")
        assert all(flags == {"$Junk"} for _, flags, _ in _uid_flags(client))
        assert _examine(client, "Bulk") == 2000
        typ, data = client.uid("SEARCH", "UNSEEN")
        bulk = generate_bulk(2000, seed=9)
        expected_unseen = [i + 1 for i, m in enumerate(bulk) if "\\Seen" not in m.flags]
        assert typ == "OK" and isinstance(data[0], bytes)
        assert [int(x) for x in data[0].split()] == expected_unseen
    finally:
        client.logout()


def test_populate_appends_after_existing(fresh_dovecot: DovecotFactory) -> None:
    server = fresh_dovecot(folders={"Stapel": generate_bulk(5, seed=1)}, start=False)
    server.populate("shared", {"Stapel": generate_bulk(3, seed=2), "Neu/Ünter": generate_bulk(2, seed=3)})
    server.start()
    client = _login(server)
    try:
        assert _examine(client, "Stapel") == 8
        _typ, data = client.uid("FETCH", "6", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        first = data[0]
        assert isinstance(first, tuple) and b"<bulk.2.0@" in first[1]
        assert _examine(client, '"Neu/&ANw-nter"') == 2
    finally:
        client.logout()
    # Populating a running instance works too (for folders no session has open).
    server.populate("shared", {"Later": generate_bulk(4, seed=4)})
    client = _login(server)
    try:
        assert _examine(client, "Later") == 4
    finally:
        client.logout()
    assert "Later" in server.doveadm("mailbox", "list", "-u", "shared")
    status = server.doveadm("mailbox", "status", "-u", "shared", "messages", "Stapel")
    assert "messages=8" in status


def test_two_instances_at_once_and_clean_stop(fresh_dovecot: DovecotFactory) -> None:
    first = fresh_dovecot(folders={"INBOX": generate_bulk(3, seed=1)})
    second = fresh_dovecot(folders={"INBOX": generate_bulk(7, seed=2)}, users={"shared": "other-secret"})
    assert first.port != second.port and first.base_dir != second.base_dir
    counts = {}
    for server in (first, second):
        client = _login(server)
        counts[server.port] = _examine(client, "INBOX")
        client.logout()
    assert counts == {first.port: 3, second.port: 7}

    pids = first.processes()
    assert len(pids) >= 3  # master, log, config, auth, ...
    first.stop()
    assert first.processes() == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _comm(pid) != "dovecot"
    with pytest.raises(OSError), socket.create_connection((first.host, first.port), timeout=1):
        pass
    # The other instance is untouched.
    client = _login(second)
    assert client.select("INBOX", readonly=True)[0] == "OK"
    client.logout()
    second.stop()
    assert second.processes() == []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_userip_connection_limit(fresh_dovecot: DovecotFactory) -> None:
    server = fresh_dovecot(folders={}, max_userip_connections=2)
    clients = [_login(server), _login(server)]
    try:
        # Dovecot answers the third LOGIN with a tagged NO [LIMIT], as hosters do.
        with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\].*mail_max_userip_connections=2"):
            _login(server)
    finally:
        for client in clients:
            client.logout()


def test_acl_plugin(fresh_dovecot: DovecotFactory) -> None:
    server = fresh_dovecot(folders={}, enable_acl=True)
    client = _login(server)
    try:
        typ, data = client.capability()
        assert "ACL" in data[0].decode().split()
        typ, data = client.myrights("INBOX")
        assert typ == "OK"
        # vfile ACLs without ACL files: the owner has every RFC 4314 right.
        assert data[0] == b"INBOX lrwstipekxacd"
        typ, data = client.getacl("INBOX")
        assert typ == "OK" and data[0] == b"INBOX shared lrwstipekxacd"
    finally:
        client.logout()


def test_start_failure_reports_log(tmp_path: Path, dovecot: DovecotServer) -> None:
    from imapgate.demo import DovecotError

    # The port is taken by the session instance: start must fail with Dovecot's own reason.
    clash = DovecotServer(tmp_path / "clash", port=dovecot.port)
    with pytest.raises(DovecotError) as info:
        clash.start(timeout=5)
    assert "dovecot" in str(info.value).lower()
    assert clash.processes() == []
    clash.close()


def test_pymap_upstream(pymap_upstream: PymapServer, sample_mailbox: Mailbox) -> None:
    client = imaplib.IMAP4(pymap_upstream.host, pymap_upstream.port)
    try:
        assert client.login(pymap_upstream.user, pymap_upstream.password)[0] == "OK"
        _typ, data = client.capability()
        caps = set(data[0].decode().upper().split())
        assert {"UIDPLUS", "MOVE", "IDLE"} <= caps
        assert not caps & {"CONDSTORE", "QRESYNC", "NOTIFY", "ESEARCH", "SPECIAL-USE"}
        assert _examine(client, "INBOX") == len(sample_mailbox["INBOX"])
        assert _examine(client, '"B&APw-ro"') == len(sample_mailbox["Büro"])
        fetched = _uid_flags(client)
        assert [flags for _, flags, _ in fetched] == [set(m.flags) for m in sample_mailbox["Büro"]]
    finally:
        client.logout()


def test_pymap_demo_data_default_login() -> None:
    with PymapServer() as server:
        assert (server.user, server.password) == ("demouser", "demopass")
        client = server.connect()
        assert _examine(client, "INBOX") == 4
        client.logout()
        pid = server.pid
    assert pid is not None and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

