"""Items derived from a cached ``BODY[]`` (``replica/mime.py``) compared byte for
byte with what a real Dovecot answers for the same message: ENVELOPE,
BODYSTRUCTURE and every section kind, for the demo's sample mailbox and for a
set of odd and hostile messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from imapgate.config import UpstreamConfig
from imapgate.demo.dovecot import DovecotServer
from imapgate.demo.sample_mail import SampleMessage
from imapgate.gateway.mailservice import _as_bytes, cache_key
from imapgate.protocol import commands as cmd
from imapgate.protocol import responses as rsp
from imapgate.protocol.fetch_items import FetchAttribute, Section
from imapgate.protocol.sequence import STAR, SequenceSet
from imapgate.replica import mime
from imapgate.upstream.connection import UpstreamConnection

pytestmark = pytest.mark.integration

WHEN = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)

ODD: list[bytes] = [
    # no header/body separator at all
    b"From: a@example.org\r\nSubject: only headers\r\n",
    # empty body, empty values, duplicate and missing fields, groups, comments, quoted names
    b'Subject:\r\nFrom: "Doe, John" <john@example.org>, Plain <plain@x.test> (comment)\r\n'
    b'To: undisclosed-recipients:;\r\nCc: Team: a@x.test, "B b" <b@x.test>;, c@x.test\r\n'
    b"Subject: second subject\r\nBcc: <@route.test:bob@x.test>\r\nReply-To: nobody\r\n\r\n",
    # 8-bit header values, folded with tabs, trailing spaces, quotes and backslashes in values
    b'Subject: Gr\xc3\xbc\xc3\x9fe "quoted" back\\slash  \r\nFrom: J\xc3\xb6rg <j@x.test>\r\n'
    b"Message-ID:\r\n\t<folded@x.test>\r\nIn-Reply-To: <a@x.test> <b@x.test>\r\n"
    b"Date: not a date\r\n\r\nbody without final newline",
    # upper case types, parameters in odd case, RFC 2231 continuations, comments in Content-Type
    b'From: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: MULTIPART/Mixed; BOUNDARY="b1" (c)\r\n\r\n'
    b"preamble\r\n--b1\r\nContent-Type: TEXT/PLAIN; CHARSET=ISO-8859-1; format=flowed\r\n"
    b"Content-Transfer-Encoding: QUOTED-PRINTABLE\r\nContent-ID: <p1@x.test>\r\n"
    b"Content-Description: first part\r\nContent-Language: de, en\r\n"
    b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
    b"Content-Location: http://x.test/p1\r\n\r\nGr=FC=DFe\r\n--b1\r\n"
    b"Content-Type: application/octet-stream; name*0*=utf-8''%C3%BCber; name*1*=sicht.bin; x=y\r\n"
    b'Content-Disposition: ATTACHMENT; filename*0="long"; filename*1="name.bin"; size=3\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b1--\r\nepilogue\r\n",
    # nested multipart, message/rfc822 with its own multipart, empty parts, missing final boundary
    b"From: a@x.test\r\nSubject: nest\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
    b"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n\r\n"
    b"plain default part\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--inner--\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    b"From: inner@x.test\r\nSubject: inner message\r\nTo: t@x.test\r\n"
    b"Content-Type: multipart/mixed; boundary=deep\r\n\r\n--deep\r\nContent-Type: text/plain\r\n\r\n"
    b"deep text\r\n--deep\r\nContent-Type: image/png\r\n\r\nPNG\r\n--deep--\r\n"
    b"--outer\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\nno closing boundary\r\n",
    # multipart without boundary parameter, and a boundary that never appears
    b"From: a@x.test\r\nContent-Type: multipart/mixed\r\n\r\nno boundary here\r\n",
    b"From: a@x.test\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\nnothing matches\r\n",
    # broken Content-Type values
    b"From: a@x.test\r\nContent-Type: text\r\n\r\nno subtype\r\n",
    b"From: a@x.test\r\nContent-Type: /plain; charset=utf-8\r\n\r\nno type\r\n",
    b'From: a@x.test\r\nContent-Type: text/plain; charset==?utf-8?b?eA==?=; name="a\\"b"\r\n\r\nx\r\n',
    # message/rfc822 whose body is base64 (not parsed as a message), digest defaults
    b"From: a@x.test\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\nRnJvbTogeA==\r\n",
    b"From: a@x.test\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nFrom: x@y.test\r\n"
    b"Subject: digest item\r\n\r\nitem body\r\n--d--\r\n",
    # header lines without colon and with spaces before the colon
    b"From : spaced@x.test\r\nX-Garbage line without colon\r\nSubject: after garbage\r\n\r\nbody\r\n",
    # addresses: empty list, only a comment, two @, IP literal, missing domain
    b"From: (just a comment)\r\nTo: ,,\r\nCc: a@b@c.test, <x@[192.0.2.1]>, nodomain@\r\n"
    b"Sender: \r\n\r\nb\r\n",
]

SECTIONS = [
    "HEADER",
    "TEXT",
    "HEADER.FIELDS (FROM SUBJECT X-NONE)",
    "HEADER.FIELDS.NOT (SUBJECT FROM)",
    "1",
    "1.MIME",
    "2",
    "2.MIME",
    "2.HEADER",
    "2.TEXT",
    "2.HEADER.FIELDS (SUBJECT)",
    "1.1",
    "1.2",
    "2.1",
    "2.2",
    "3",
    "4",
]


def attributes() -> list[FetchAttribute]:
    out = [
        FetchAttribute("ENVELOPE"),
        FetchAttribute("BODYSTRUCTURE"),
        FetchAttribute("BODY", Section(), peek=True),
    ]
    for spec in SECTIONS:
        parts: list[int] = []
        rest = spec
        while rest and rest[0].isdigit():
            num, _, rest = rest.partition(".")
            parts.append(int(num))
        text = rest.split(" ", 1)[0]
        fields = tuple(rest.split("(", 1)[1].rstrip(")").split()) if "(" in rest else ()
        out.append(FetchAttribute("BODY", Section(tuple(parts), text, fields), peek=True))
    return out


async def fetch_all(port: int, folders: list[str]) -> list[tuple[str, int, dict[bytes, bytes | None]]]:
    conn = UpstreamConnection(
        UpstreamConfig(host="127.0.0.1", port=port, tls="none", user="shared", password="shared-secret")
    )
    await conn.connect()
    attrs = tuple(attributes())
    out = []
    try:
        for folder in folders:
            assert (await conn.select(folder)).ok
            res = await conn.check(lambda tag: cmd.Fetch(tag, SequenceSet(((1, STAR),)), attrs, uid=True))
            for f in res.of_type(rsp.FetchResponse):
                assert f.uid is not None
                items: dict[bytes, bytes | None] = {}
                for a in attrs:
                    key = cache_key(a)
                    value = f.items.get(a.response_name(), f.items.get(key))
                    items[key] = _as_bytes(value)
                out.append((folder, f.uid, items))
    finally:
        await conn.logout()
    return out


def compare(rows: list[tuple[str, int, dict[bytes, bytes | None]]]) -> list[str]:
    problems = []
    for folder, uid, items in rows:
        whole = items[b"BODY[]"]
        assert whole is not None
        for key, expected in items.items():
            got = mime.derive(whole, key)
            if got != expected:
                problems.append(
                    f"{folder} UID {uid} {key.decode()}:\n  dovecot {expected!r}\n  derived {got!r}"
                )
    return problems


def test_sample_mailbox_matches_dovecot(
    dovecot: DovecotServer, sample_mailbox: dict[str, list[SampleMessage]]
) -> None:
    rows = asyncio.run(fetch_all(dovecot.port, list(sample_mailbox)))
    assert len(rows) == sum(len(v) for v in sample_mailbox.values())
    problems = compare(rows)
    assert not problems, "\n".join(problems[:10]) + f"\n({len(problems)} differences)"


def test_odd_messages_match_dovecot(fresh_dovecot: Callable[..., DovecotServer]) -> None:
    dc = fresh_dovecot(folders={"INBOX": [SampleMessage(m, (), WHEN) for m in ODD]})
    rows = asyncio.run(fetch_all(dc.port, ["INBOX"]))
    assert len(rows) == len(ODD)
    problems = compare(rows)
    assert not problems, "\n".join(problems[:12]) + f"\n({len(problems)} differences)"
