"""Extraction details, without a server: the decoders, the header and MIME parsers, the
address writer and the normalizer behave as Dovecot's (whose answers the comparison test
in test_dovecot_semantics.py checks on whole messages)."""

from __future__ import annotations

import base64
import codecs

import pytest

from imapgate.index import casemap, charsets, mime
from imapgate.index.extract import compress_lwsp, extract, extract_headers
from imapgate.index.query import charset_supported, key_text, needle_for
from imapgate.index.rfc822 import parse_addresses, write_addresses
from imapgate.protocol import search as s


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Grüße", "GRU\u0308ßE"),  # titlecase, then one level of decomposition; ß stays
        ("ﬀ", "ff"),  # compatibility decomposition, not titlecased again
        ("Å", "A\u030a"),
        ("\u212b", "\u00c5"),  # ANGSTROM SIGN -> Å, one level only
        ("ǆ", "ǅ"),  # to titlecase, whose own decomposition Dovecot does not record
        ("한", "\u1112\u1161\u11ab"),
        ("ı", "I"),
        ("e\u0301", "E\u0301"),
    ],
)
def test_normalize_as_dovecot(text: str, expected: str) -> None:
    assert casemap.normalize(text) == expected


def test_unstable_characters() -> None:
    assert casemap.is_stable("Grüße, Привет, 日本語 😀")
    assert not casemap.is_stable("\u0282")  # got a titlecase mapping after Dovecot 2.3's tables
    assert not casemap.is_stable("\U0001fae8")  # unassigned in Unicode 14
    assert casemap.decode_utf8(b"a\xe4\xf6\xfcb") == "a\ufffdb"  # one replacement per run


def test_base64_as_dovecot() -> None:
    assert mime.base64_decode(b"SGVs\r\nbG8=") == b"Hello"
    assert mime.base64_decode(b"SGVsbG8") == b"Hello"  # a partial quantum gives what it holds
    assert mime.base64_decode(b"SGVs*bG8=") == b"Hel"  # stops at an invalid character
    assert mime.base64_decode(b"SGVsbA==SGVsbA==") == b"Hell"  # nothing after the padding
    assert mime.base64_decode(b"S") == b""


@pytest.mark.parametrize(
    ("qp", "decoded"),
    [
        (b"Stra=DFe", b"Stra\xdfe"),
        (b"soft=\r\nbreak", b"softbreak"),
        (b"trailing   \r\nnext", b"trailing\r\nnext"),
        (b"=ZZ bad", b"=ZZ bad"),
        (b"=4", b""),  # pending at the end of the part: never searched
        (b"end=", b"end"),
        (b"lf\nonly", b"lf\r\nonly"),
        (b"a" + b" " * 90 + b"b", b"a" + b" " * 77 + b"b"),  # Dovecot keeps 77 of a run
        (b"lone\rcr", b"lone\rcr"),
        (b"ws at end  ", b"ws at end"),
    ],
)
def test_quoted_printable_as_dovecot(qp: bytes, decoded: bytes) -> None:
    assert mime.qp_decode(qp) == decoded


def test_header_lines_fold_and_split() -> None:
    hdrs = mime.top_headers(b"Subject:  two spaces\r\n\tfolded\r\nX-Y : v\r\nno colon line\r\n\r\nbody")
    assert [(h.name, h.middle, h.full_value) for h in hdrs] == [
        (b"Subject", b": ", b" two spaces folded"),
        (b"X-Y", b" : ", b"v"),
        (b"", b"", b"no colon line"),
    ]
    assert compress_lwsp(b"  a \t b  ") == b"a b "


def test_rfc2047_pieces() -> None:
    pieces, certain = mime.decode_header_value(b"=?utf-8?q?J=C3=BCrgen?= =?utf-8?b?TcO8bGxlcg==?= x")
    assert certain and "".join(p.text for p in pieces) == "JürgenMüller x"
    pieces, _ = mime.decode_header_value(b"=?x-unknown?q?Hi?=")
    assert [(p.text, p.normalize) for p in pieces] == [("Hi", False)]  # appended as it stands


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (b'"Doe, John" (c) <john@doe.com>', b'"Doe, John" <john@doe.com>'),
        (b"team: a@b.c, d@e.f;", b"team: <a@b.c>, <d@e.f>;"),
        (b"undisclosed-recipients:;", b"undisclosed-recipients:;"),
        (b"john@doe.com (John Doe)", b'"John Doe" <john@doe.com>'),
        (b"bare", b"<bare@MISSING_DOMAIN>"),
        (b"<@route:a@b>", b"<@route:a@b>"),
        (b"a@b, , c@d", b"<a@b>, <MISSING_MAILBOX@MISSING_DOMAIN>, <c@d>"),
    ],
)
def test_address_writer(value: bytes, written: bytes) -> None:
    """As Dovecot writes them (each checked with FROM searches against Dovecot 2.3.19)."""
    assert write_addresses(parse_addresses(value)) == written


def test_boundary_prefix_longest_wins() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=ab\r\nMIME-Version: 1.0\r\n\r\n"
           b"--ab\r\nContent-Type: multipart/alternative; boundary=abc\r\n\r\n"
           b"--abc\r\n\r\none\r\n--abc--\r\n--ab\r\n\r\ntwo\r\n--ab--\r\n")
    assert extract(raw).bodies == ["ONE", "TWO"]


def test_attachment_names_only_in_text() -> None:
    raw = (b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\n\r\nhello\r\n--B\r\nContent-Type: application/pdf; name=\"Plan.pdf\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"secret") + b"\r\n--B--\r\n")
    ex = extract(raw)
    assert ex.bodies == ["HELLO"]
    assert any("PLAN.PDF" in line for line in ex.header_lines)


def test_deep_nesting_does_not_recurse() -> None:
    raw = b"MIME-Version: 1.0\r\n"
    for i in range(300):
        raw += b"Content-Type: message/rfc822\r\n\r\n" if i % 2 else b"Subject: level\r\n"
    raw += b"\r\nbottom\r\n"
    extract(raw)  # Dovecot's part limits, and no RecursionError


def test_header_fields_only() -> None:
    ex = extract_headers(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: A <a@b>\r\n\r\n")
    assert ex.subject == ["GRU\u0308ßE"] and ex.addresses["from"] == ["A <A@B>"]


def test_needles() -> None:
    assert needle_for(s.SearchText("BODY", "Grüße".encode()), None) is not None
    assert needle_for(s.SearchText("BODY", b"ab"), None) is None  # too short for trigrams
    assert needle_for(s.SearchText("BODY", b""), None) is None
    assert needle_for(s.SearchText("BODY", b"a\r\nb c"), None) is None
    assert needle_for(s.SearchText("BODY", b"\xff\xfe bad"), "UTF-8") is None  # Dovecot: BAD
    assert needle_for(s.SearchHeader("X-\u00e4", b"abc"), None) is None
    latin = needle_for(s.SearchText("BODY", "Müller".encode("latin-1")), "ISO-8859-1")
    assert latin is not None and latin.text == casemap.normalize("Müller")
    assert key_text("Müller".encode(), "us-ascii") == "Müller"  # Dovecot reads US-ASCII as UTF-8
    assert charset_supported("utf-8") and charset_supported("ISO-8859-15")
    assert not charset_supported("X-NO-SUCH-CHARSET")


@pytest.mark.skipif(not charsets.have_iconv(), reason="Python's codecs are checked against glibc's iconv")
@pytest.mark.parametrize("name", ["iso-8859-1", "iso-8859-2", "iso-8859-15", "windows-1250", "windows-1251",
                                  "windows-1252", "koi8-r", "koi8-u"])
def test_python_fallback_agrees_with_iconv(name: str) -> None:
    """Without glibc, these charsets are converted with Python's codecs: byte for byte as
    glibc's iconv (bytes a charset does not define become U+FFFD in both)."""
    for byte in range(256):
        data = bytes([byte])
        via_iconv = charsets.convert(name, data).decode()
        via_python = codecs.decode(data, name, "replace")
        assert via_iconv == via_python, (name, byte, via_iconv, via_python)
