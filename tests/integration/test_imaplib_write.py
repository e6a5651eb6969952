"""imaplib changing mail through the gateway and, as reference, directly at Dovecot.

STORE (+FLAGS, -FLAGS, FLAGS, .SILENT), COPY (COPYUID), MOVE, EXPUNGE, UID EXPUNGE, APPEND
(APPENDUID; the message is then fetchable byte for byte), CREATE/RENAME/DELETE with non-ASCII
names, STATUS after changes, CLOSE/UNSELECT and LOGOUT.  After every write the upstream state is
read back over a separate, direct connection to Dovecot: the gateway must really have done it.
Every scenario runs twice (``rw_target``): through the gateway as alice, and against Dovecot as
the shared account — same assertions.
"""

from __future__ import annotations

import imaplib
import re
from datetime import datetime, timedelta, timezone

import pytest

from imapgate.demo import SampleMessage
from tests.integration.targets import Target
from tests.support.imap import (
    fetch_literals,
    mailbox_names,
    ok,
    quote,
    search_ids,
    session,
    tagged,
    uid_flags,
    upstream_flags,
    upstream_login,
    upstream_uids,
)

pytestmark = pytest.mark.integration

Mailbox = dict[str, list[SampleMessage]]


def _upstream_body(t: Target, folder: str, uid: int) -> bytes:
    with session(upstream_login(t.upstream_host, t.upstream_port)) as c:
        ok(c.select(quote(folder), readonly=True))
        return fetch_literals(ok(c.uid("FETCH", str(uid), "(BODY.PEEK[])")))[uid]


def test_store_add_remove_replace(rw_target: Target, sample_mailbox: Mailbox) -> None:
    t = rw_target
    with session(t.login()) as c:
        ok(c.select("Support"))
        assert sample_mailbox["Support"][1].flags == ()  # UID 2 starts without flags
        data = ok(c.uid("STORE", "2", "+FLAGS", "(\\Flagged)"))
        assert b"\\Flagged" in b" ".join(d for d in data if isinstance(d, bytes))
        assert upstream_flags(t.upstream_host, t.upstream_port, "Support", "2")[2] >= {"\\Flagged"}

        ok(c.uid("STORE", "2", "-FLAGS", "(\\Flagged)"))
        assert "\\Flagged" not in upstream_flags(t.upstream_host, t.upstream_port, "Support", "2")[2]

        ok(c.uid("STORE", "2", "FLAGS", "(\\Answered $Label2)"))
        assert uid_flags(c, "2")[2] - {"\\Recent"} == {"\\Answered", "$Label2"}
        assert upstream_flags(t.upstream_host, t.upstream_port, "Support", "2")[2] - {"\\Recent"} == {
            "\\Answered",
            "$Label2",
        }

        # .SILENT: no FETCH answer, the change still happens upstream.
        c.untagged_responses.pop("FETCH", None)
        ok(c.store("1:5", "+FLAGS.SILENT", "(\\Flagged)"))
        assert "FETCH" not in c.untagged_responses
        up = upstream_flags(t.upstream_host, t.upstream_port, "Support", "1:5")
        assert len(up) == 5 and all("\\Flagged" in f for f in up.values())
        # Another session of the same target sees it too.
        with session(t.login()) as other:
            ok(other.select("Support", readonly=True))
            assert search_ids(ok(other.uid("SEARCH", None, "FLAGGED UID 1:5"))) == [1, 2, 3, 4, 5]


def test_copy_returns_copyuid_and_copies_upstream(rw_target: Target) -> None:
    t = rw_target
    archive_before = upstream_uids(t.upstream_host, t.upstream_port, "Archive")
    with session(t.login()) as c:
        ok(c.select("INBOX"))
        bodies = fetch_literals(ok(c.uid("FETCH", "1:3", "(BODY.PEEK[])")))
        typ, data = tagged(c, "UID", "COPY", "1:3", "Archive")
        assert typ == "OK", data
        m = re.search(rb"\[COPYUID (\d+) (\S+) (\S+)\]", data[-1])
        assert m, data
        assert m.group(2) == b"1:3"
        first = max(archive_before) + 1
        assert m.group(3) == f"{first}:{first + 2}".encode()
        status = ok(c.status("Archive", "(MESSAGES UIDVALIDITY)"))[0]
        assert isinstance(status, bytes)
        assert f"MESSAGES {len(archive_before) + 3}".encode() in status
        assert f"UIDVALIDITY {int(m.group(1))}".encode() in status
        # Source untouched.
        assert int(ok(c.select("INBOX"))[0]) == 73  # type: ignore[arg-type]
    archive_after = upstream_uids(t.upstream_host, t.upstream_port, "Archive")
    assert archive_after == [*archive_before, first, first + 1, first + 2]
    for i, uid in enumerate((1, 2, 3)):
        assert _upstream_body(t, "Archive", first + i) == bodies[uid]


def test_copy_to_missing_folder_says_trycreate(rw_target: Target) -> None:
    with session(rw_target.login()) as c:
        ok(c.select("INBOX"))
        typ, data = tagged(c, "COPY", "1", "NoSuchFolder")
        assert typ == "NO" and b"[TRYCREATE]" in data[-1], data


def test_move_removes_from_source_and_lands_in_target(rw_target: Target) -> None:
    t = rw_target
    trash_before = upstream_uids(t.upstream_host, t.upstream_port, "Trash")
    with session(t.login()) as c:
        ok(c.select("INBOX"))
        body = fetch_literals(ok(c.uid("FETCH", "4", "(BODY.PEEK[])")))[4]
        c.untagged_responses.pop("EXPUNGE", None)
        typ, data = tagged(c, "UID", "MOVE", "4", "Trash")
        assert typ == "OK", data
        assert c.untagged_responses.pop("EXPUNGE", None) == [b"4"]  # UID 4 was message 4
        copyuid = c.untagged_responses.get("COPYUID", [b""])[-1]
        assert isinstance(copyuid, bytes) and re.match(rb"\d+ 4 \d+$", copyuid), copyuid
        assert search_ids(ok(c.uid("SEARCH", None, "UID 4"))) == []
        typ, data = c.select("INBOX")
        assert int(data[0]) == 72  # type: ignore[arg-type]
    assert 4 not in upstream_uids(t.upstream_host, t.upstream_port, "INBOX")
    trash_after = upstream_uids(t.upstream_host, t.upstream_port, "Trash")
    assert len(trash_after) == len(trash_before) + 1
    assert _upstream_body(t, "Trash", trash_after[-1]) == body


def test_expunge_and_uid_expunge(rw_target: Target) -> None:
    t = rw_target
    with session(t.login()) as c:
        ok(c.select("Support"))
        ok(c.uid("STORE", "1:3", "+FLAGS.SILENT", "(\\Deleted)"))
        deleted = upstream_flags(t.upstream_host, t.upstream_port, "Support", "1:3")
        assert all("\\Deleted" in f for f in deleted.values())
        # UID EXPUNGE only removes the named message, even though 1 and 3 are \Deleted too.
        c.untagged_responses.pop("EXPUNGE", None)
        typ, data = tagged(c, "UID", "EXPUNGE", "2")
        assert typ == "OK", data
        assert c.untagged_responses.pop("EXPUNGE", None) == [b"2"]
        assert upstream_uids(t.upstream_host, t.upstream_port, "Support")[:3] == [1, 3, 4]
        # EXPUNGE removes every \Deleted one: UID 3 (now message 2), then UID 1.
        typ, data = c.expunge()
        assert typ == "OK" and data == [b"2", b"1"], data
        assert upstream_uids(t.upstream_host, t.upstream_port, "Support")[:2] == [4, 5]
        status = ok(c.status("Support", "(MESSAGES)"))[0]
        assert isinstance(status, bytes) and b"MESSAGES 49" in status


APPENDED = (
    "From: =?utf-8?q?J=C3=BCrgen_Wei=C3=9F?= <juergen@kuehne-brandt.de>\r\n"
    "To: info@kuehne-brandt.de\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_dem_B=C3=BCro?=\r\n"
    "Message-ID: <append-test@kuehne-brandt.de>\r\n"
    "Date: Mon, 04 Mar 2024 09:30:00 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Hallo zusammen,\r\n\r\nder Kühlschrank im Büro wird am Freitag abgetaut.\r\n\r\nGrüße\r\nJürgen\r\n"
).encode()


def test_append_then_fetch_byte_identical(rw_target: Target) -> None:
    t = rw_target
    when = datetime(2024, 3, 4, 9, 31, 7, tzinfo=timezone(timedelta(hours=1)))
    with session(t.login()) as c:
        before = ok(c.status("B&APw-ro", "(MESSAGES UIDNEXT)"))[0]
        assert isinstance(before, bytes)
        uidnext = int(re.search(rb"UIDNEXT (\d+)", before).group(1))  # type: ignore[union-attr]
        typ, data = c.append("B&APw-ro", "(\\Flagged $Label1)", imaplib.Time2Internaldate(when), APPENDED)
        assert typ == "OK", data
        m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])  # type: ignore[arg-type]
        assert m and int(m.group(2)) == uidnext, data
        uid = uidnext
        ok(c.select("B&APw-ro"))
        got = ok(c.uid("FETCH", str(uid), "(BODY.PEEK[])"))
        assert fetch_literals(got)[uid] == APPENDED
        head = ok(c.uid("FETCH", str(uid), "(INTERNALDATE RFC822.SIZE)"))[0]
        assert isinstance(head, bytes)
        assert imaplib.Internaldate2tuple(head) == imaplib.Internaldate2tuple(
            b'INTERNALDATE "' + imaplib.Time2Internaldate(when)[1:-1].encode() + b'"'
        )
        assert f"RFC822.SIZE {len(APPENDED)}".encode() in head
        assert {"\\Flagged", "$Label1"} <= uid_flags(c, str(uid))[uid]
        assert search_ids(ok(c.uid("SEARCH", None, "HEADER Message-ID append-test"))) == [uid]
        status = ok(c.status("B&APw-ro", "(MESSAGES UIDNEXT)"))[0]
        assert isinstance(status, bytes) and f"UIDNEXT {uid + 1}".encode() in status
    assert _upstream_body(t, "B&APw-ro", uid) == APPENDED
    assert {"\\Flagged", "$Label1"} <= upstream_flags(t.upstream_host, t.upstream_port, "B&APw-ro")[uid]


def test_append_to_missing_folder_says_trycreate(rw_target: Target) -> None:
    with session(rw_target.login()) as c:
        typ, data = c.append("NoSuchFolder", None, None, APPENDED)
        assert typ == "NO" and b"[TRYCREATE]" in data[0], data  # type: ignore[operator]


def test_create_rename_delete_folders(rw_target: Target) -> None:
    t = rw_target
    with session(t.login()) as c:
        ok(c.create("Kunden"))
        ok(c.create(quote("Kunden/&AMQ-rger")))  # "Kunden/Ärger"
        names = mailbox_names(c)
        assert {"Kunden", "Kunden/&AMQ-rger"} <= set(names)
        assert "\\haschildren" in names["Kunden"]
        typ, data = c.create("Kunden")
        assert typ == "NO" and b"[ALREADYEXISTS]" in data[0], data  # type: ignore[operator]
        ok(c.append(quote("Kunden/&AMQ-rger"), None, None, APPENDED))
        with session(upstream_login(t.upstream_host, t.upstream_port)) as up:
            assert {"Kunden", "Kunden/&AMQ-rger"} <= set(mailbox_names(up))

        ok(c.rename(quote("Kunden/&AMQ-rger"), quote("Kunden/Erledigt")))
        names = mailbox_names(c)
        assert "Kunden/Erledigt" in names and "Kunden/&AMQ-rger" not in names
        status = ok(c.status("Kunden/Erledigt", "(MESSAGES)"))[0]
        assert isinstance(status, bytes) and b"MESSAGES 1" in status
        ok(c.select("Kunden/Erledigt"))
        assert fetch_literals(ok(c.uid("FETCH", "1:*", "(BODY.PEEK[])"))) == {1: APPENDED}
        ok(c.unselect())
        with session(upstream_login(t.upstream_host, t.upstream_port)) as up:
            up_names = set(mailbox_names(up))
            assert "Kunden/Erledigt" in up_names and "Kunden/&AMQ-rger" not in up_names

        ok(c.delete("Kunden/Erledigt"))
        ok(c.delete("Kunden"))
        names = mailbox_names(c)
        assert not {"Kunden", "Kunden/Erledigt"} & set(names)
        typ, _ = c.select("Kunden/Erledigt")
        assert typ == "NO"
        typ, _ = c.delete("INBOX")
        assert typ == "NO"
    with session(upstream_login(t.upstream_host, t.upstream_port)) as up:
        assert not {"Kunden", "Kunden/Erledigt"} & set(mailbox_names(up))


def test_unselect_keeps_and_close_expunges(rw_target: Target) -> None:
    t = rw_target
    with session(t.login()) as c:
        ok(c.select("Support"))
        ok(c.uid("STORE", "7", "+FLAGS.SILENT", "(\\Deleted)"))
        typ, data = tagged(c, "UNSELECT")
        assert typ == "OK", data
        assert 7 in upstream_uids(t.upstream_host, t.upstream_port, "Support")
        ok(c.select("Support"))
        c.untagged_responses.pop("EXPUNGE", None)
        typ, data = c.close()
        assert typ == "OK", data
        assert "EXPUNGE" not in c.untagged_responses  # CLOSE expunges silently
        assert 7 not in upstream_uids(t.upstream_host, t.upstream_port, "Support")
        # No mailbox selected any more: FETCH is a BAD in the authenticated state.
        with pytest.raises(imaplib.IMAP4.error):
            c.fetch("1", "(FLAGS)")
        typ, data = c.logout()
        assert typ == "BYE", data


def test_expunged_message_no_longer_searchable_or_fetchable(rw_target: Target) -> None:
    t = rw_target
    with session(t.login()) as c:
        ok(c.select("INBOX"))
        ok(c.uid("STORE", "10", "+FLAGS.SILENT", "(\\Deleted)"))
        ok(c.expunge())
        assert search_ids(ok(c.uid("SEARCH", None, "UID 9:11"))) == [9, 11]
        assert fetch_literals(ok(c.uid("FETCH", "10", "(BODY.PEEK[])"))) == {}
        # Sequence numbers closed the gap.
        data = ok(c.fetch("10", "(UID)"))
        assert b"UID 11" in data[0]  # type: ignore[operator]
