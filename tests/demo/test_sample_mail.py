"""The sample mailbox parses back with the stdlib, is deterministic and has the promised variety."""

from __future__ import annotations

import re
import struct
import time
from collections import Counter
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from imapgate.demo import FOLDERS, SampleMessage, generate_bulk, generate_mailbox

Mailbox = dict[str, list[SampleMessage]]


def _all(mailbox: Mailbox) -> list[tuple[str, SampleMessage]]:
    return [(folder, msg) for folder, msgs in mailbox.items() for msg in msgs]


# Parsing a few hundred MIME messages costs ~0.5 s; parse each sample once per module.
_parsed: dict[int, EmailMessage] = {}


def _parse(msg: SampleMessage) -> EmailMessage:
    key = id(msg)
    if key not in _parsed:
        _parsed[key] = msg.parse()
    return _parsed[key]


def test_deterministic_per_seed(sample_mailbox: Mailbox) -> None:
    again = generate_mailbox(seed=1)
    assert again == sample_mailbox
    other = generate_mailbox(seed=2, scale=0.2)
    assert [m.raw for m in other["INBOX"]] != [m.raw for m in sample_mailbox["INBOX"]]


def test_folders_and_size(sample_mailbox: Mailbox) -> None:
    assert list(sample_mailbox) == list(FOLDERS)
    assert any(not name.isascii() for name in sample_mailbox)
    assert "Projekte/Website-Relaunch" in sample_mailbox
    total = sum(len(msgs) for msgs in sample_mailbox.values())
    assert 250 <= total <= 600
    small = generate_mailbox(seed=1, scale=0.2)
    assert sum(len(msgs) for msgs in small.values()) < total / 2
    assert all(small[name] for name in FOLDERS)
    with pytest.raises(ValueError):
        generate_mailbox(scale=0)


def test_wire_format(sample_mailbox: Mailbox) -> None:
    for folder, msg in _all(sample_mailbox):
        assert b"\r\n\r\n" in msg.raw, folder
        # CRLF only: no bare LF or CR anywhere.
        assert b"\n" not in msg.raw.replace(b"\r\n", b""), folder
        assert b"\r" not in msg.raw.replace(b"\r\n", b""), folder
        assert max(len(line) for line in msg.raw.split(b"\r\n")) <= 998
        header = msg.raw.split(b"\r\n\r\n", 1)[0]
        assert header.isascii(), "non-ASCII header text must be RFC 2047/2231 encoded"


def test_parses_back_without_defects(sample_mailbox: Mailbox) -> None:
    ids = []
    for folder, msg in _all(sample_mailbox):
        parsed = BytesParser(policy=policy.default).parsebytes(msg.raw)
        for part in parsed.walk():
            assert not part.defects, (folder, parsed["Subject"], part.defects)
        assert parsed["From"] and parsed["To"] and parsed["Date"] and parsed["Subject"]
        ids.append(str(parsed["Message-ID"]))
        body = parsed.get_body(preferencelist=("plain", "html"))
        assert body is not None
        assert isinstance(body.get_content(), str)
    assert len(ids) == len(set(ids)), "Message-IDs must be unique"


def test_threads(sample_mailbox: Mailbox) -> None:
    by_id = {str(_parse(m)["Message-ID"]): (f, _parse(m)) for f, m in _all(sample_mailbox)}
    replies = [(f, p) for f, p in by_id.values() if p["In-Reply-To"]]
    assert len(replies) >= 50
    cross_folder = 0
    for folder, reply in replies:
        parent_id = str(reply["In-Reply-To"])
        assert parent_id in by_id, "every reply's parent is in the mailbox"
        assert str(reply["References"]).split()[-1] == parent_id
        assert str(reply["Subject"]).startswith("Re: ")
        text = reply.get_body(preferencelist=("plain",))
        assert text is not None
        assert "\n> " in text.get_content()
        cross_folder += by_id[parent_id][0] != folder
    assert cross_folder >= 20, "replies go to Sent, questions stay in INBOX/Support"
    deep = [p for _, p in replies if len(str(p["References"]).split()) >= 2]
    assert deep, "some threads are at least three messages long"


def test_answered_messages_have_a_reply_in_sent(sample_mailbox: Mailbox) -> None:
    replied_to = {str(_parse(m)["In-Reply-To"]) for m in sample_mailbox["Sent"]}
    answered = [m for f, m in _all(sample_mailbox) if f != "Sent" and "\\Answered" in m.flags]
    assert len(answered) >= 30
    for msg in answered:
        assert str(_parse(msg)["Message-ID"]) in replied_to


def test_mime_variety(sample_mailbox: Mailbox) -> None:
    content_types: Counter[str] = Counter()
    encodings: Counter[str] = Counter()
    filenames: list[str] = []
    for _, msg in _all(sample_mailbox):
        parsed = _parse(msg)
        for part in parsed.walk():
            content_types[part.get_content_type()] += 1
            encodings[str(part.get("Content-Transfer-Encoding", "7bit")).lower()] += 1
            if part.get_filename():
                filenames.append(str(part.get_filename()))
    for ctype in ("text/plain", "text/html", "multipart/alternative", "multipart/mixed",
                  "application/pdf", "image/png", "text/csv", "message/rfc822", "text/calendar"):
        assert content_types[ctype] > 0, ctype
    for cte in ("7bit", "8bit", "quoted-printable", "base64"):
        assert encodings[cte] > 0, cte
    assert any(not name.isascii() for name in filenames), "an RFC 2231 non-ASCII attachment name"


def test_attachments_are_real_files(sample_mailbox: Mailbox) -> None:
    pdfs = pngs = csvs = 0
    for _, msg in _all(sample_mailbox):
        for part in _parse(msg).iter_attachments():
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes):
                continue
            ctype = part.get_content_type()
            if ctype == "application/pdf":
                pdfs += 1
                assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
                xref = int(data.rsplit(b"startxref", 1)[1].split()[0])
                assert data[xref:].startswith(b"xref")
            elif ctype == "image/png":
                pngs += 1
                assert data.startswith(b"\x89PNG\r\n\x1a\n")
                width, height = struct.unpack(">II", data[16:24])
                assert width > 0 and height > 0
            elif ctype == "text/csv":
                csvs += 1
                text = data.decode("utf-8-sig")
                assert ";" in text.splitlines()[0]
    assert pdfs >= 30 and pngs >= 5 and csvs >= 3


def test_non_ascii_everywhere(sample_mailbox: Mailbox) -> None:
    subjects = [str(_parse(m)["Subject"]) for _, m in _all(sample_mailbox)]
    senders = [str(_parse(m)["From"]) for _, m in _all(sample_mailbox)]
    assert sum(not s.isascii() for s in subjects) >= 30
    assert sum(not s.isascii() for s in senders) >= 30
    raw = b"".join(m.raw for _, m in _all(sample_mailbox))
    assert re.search(rb"=\?utf-8\?[qb]\?", raw, re.IGNORECASE), "RFC 2047 encoded words"
    assert any("Π" in s or "Ι" in s for s in senders), "non-Latin script (Greek) in a name"
    bodies = "".join(
        body.get_content()
        for _, m in _all(sample_mailbox)
        if (body := _parse(m).get_body(preferencelist=("plain",))) is not None
    )
    for text in ("ü", "ß", "é", "ł", "ñ"):
        assert text in bodies


def test_dates_and_flags(sample_mailbox: Mailbox) -> None:
    dates = []
    for _folder, msg in _all(sample_mailbox):
        assert msg.internal_date.tzinfo is not None
        assert msg.internal_date.microsecond == 0
        header_date = _parse(msg)["Date"].datetime
        assert timedelta(0) <= msg.internal_date - header_date.replace(microsecond=0) < timedelta(hours=1)
        dates.append(msg.internal_date)
    # UID order is arrival order.
    for msgs in sample_mailbox.values():
        assert [m.internal_date for m in msgs] == sorted(m.internal_date for m in msgs)
    assert max(dates) - min(dates) > timedelta(days=150)
    flags = Counter(flag for _, m in _all(sample_mailbox) for flag in m.flags)
    for flag in ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted", "$Label1"):
        assert flags[flag] > 0, flag
    assert any("\\Seen" not in m.flags for m in sample_mailbox["INBOX"]), "some unread mail"
    assert all("\\Draft" in m.flags for m in sample_mailbox["Drafts"])


def test_bulk_is_fast_valid_and_deterministic() -> None:
    started = time.perf_counter()
    bulk = generate_bulk(100_000, seed=3)
    elapsed = time.perf_counter() - started
    assert len(bulk) == 100_000
    assert elapsed < 15, f"100k bulk messages took {elapsed:.1f}s"
    assert generate_bulk(50, seed=3) == bulk[:50]
    assert generate_bulk(50, seed=4) != bulk[:50]
    ids = set()
    for msg in bulk[::997]:
        parsed = _parse(msg)
        assert not parsed.defects
        assert b"\n" not in msg.raw.replace(b"\r\n", b"")
        ids.add(str(parsed["Message-ID"]))
        assert str(parsed["Subject"])
    assert len(ids) == len(bulk[::997])
    assert any("\\Seen" in m.flags for m in bulk[:20]) and any(not m.flags for m in bulk[:20])
    assert bulk[0].internal_date < bulk[-1].internal_date
