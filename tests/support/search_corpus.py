"""Messages and search strings for comparing search answers with Dovecot's.

``crafted()``: hand-written messages for every corner the index must read as
Dovecot does (umlauts in ISO-8859-1/UTF-8/QP/base64, RFC 2047 words, HTML-only,
attachments with names, multipart/alternative, message/rfc822, folded and
repeated headers, address groups and comments, broken encodings, unknown
charsets, prefix boundaries, huge bodies).  ``generated(n, seed)``: random
combinations of the same building blocks.  ``search_strings()``: strings taken
from the messages as the stdlib ``email`` package decodes them (an independent
reading), in varied case, plus near misses.

``RawSearch``: a minimal client sending ``UID SEARCH CHARSET UTF-8 <key>
<literal>``, for Dovecot and the gateway alike.
"""

from __future__ import annotations

import base64
import contextlib
import quopri
import random
import socket
import urllib.parse
from email import message_from_bytes, policy
from email.header import Header

# --- crafted -----------------------------------------------------------------------------------
_CRLF = b"\r\n"


def _msg(headers: list[str | bytes], body: bytes) -> bytes:
    hs = [h.encode("utf-8") if isinstance(h, str) else h for h in headers]
    return _CRLF.join(hs) + _CRLF + _CRLF + body


def crafted() -> list[bytes]:
    pdf = base64.encodebytes(b"%PDF-1.4 Rechnung Nummer 4711 Inhalt").replace(b"\n", b"\r\n")
    out = [
        _msg(["From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>", "To: info@kuehne-brandt.de",
              "Subject: Gr=?iso-8859-1?q?=FC=DF?=e   aus\r\n  Berlin"],
             "Hallo Welt, schöne Grüße aus München\r\n".encode()),
        _msg(["From: shop@example.com", "Subject: HTML only",
              "Content-Type: text/html; charset=utf-8"],
             b"<html><body><div class=\"offer\">Caf&eacute; &amp; Kuchen <b>heute</b></div>"
             b"</body></html>\r\n"),
        _msg(["From: buchhaltung@example.com", "Subject: Rechnung 4711", "MIME-Version: 1.0",
              "Content-Type: multipart/mixed; boundary=\"BB\""],
             b"preamble text\r\n--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
             b"Anbei die Rechnung.\r\n"
             b"--BB\r\nContent-Type: application/pdf; name=\"Rechnung_4711.pdf\"\r\n"
             b"Content-Disposition: attachment; filename=\"Rechnung_4711.pdf\"\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\n" + pdf + b"--BB--\r\nepilogue text\r\n"),
        _msg(["From: x@y.z", "Subject: qp latin1",
              "Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: quoted-printable"],
             b"Stra=DFe und M=FCnchen soft=\r\nbreak, trailing spaces   \r\n=ZZ invalid =4 end=\r\n"
             b"lange Leerzeichen" + b" " * 90 + b"danach\r\n"),
        _msg(["From: \"Doe, John\" (comment here) <john@doe.com>, team: a@b.c, d@e.f;",
              "To: undisclosed-recipients:;", "Cc: bare-local-part, <route@x.y> (Route Person)",
              "Bcc: \"Esc\\\"aped\" <esc@x.y>, odd@[10.0.0.1]", "Subject: addresses"], b"x\r\n"),
        _msg(["From: x@y.z", "Subject: caf\u00e9 \ufb00 combining",
              "Content-Type: text/plain; charset=utf-8"],
             "e\u0301 combining and \u00df and \u212b and \uac00\ud55c\r\n".encode()),
        _msg(["From: x@y.z", "Subject: =?x-unknown?q?Hello_World?= =?utf-8?b?w7xiZXI=?="],
             b"\xe4\xf6\xfc raw latin1 in a utf-8 part\r\n"),
        _msg(["From: x@y.z", "Subject: base64 body", "Content-Type: text/plain; charset=utf-8",
              "Content-Transfer-Encoding: base64"],
             base64.encodebytes("Grüße, das ist base64 codiert. Überweisung erhalten.\r\n".encode())
             .replace(b"\n", b"\r\n")),
        _msg(["From: x@y.z", "Subject: alternative", "MIME-Version: 1.0",
              "Content-Type: multipart/alternative; boundary=alt"],
             b"--alt\r\nContent-Type: text/plain; charset=iso-8859-15\r\n"
             b"Content-Transfer-Encoding: 8bit\r\n\r\n"
             + "Preis: 20 € für Käse\r\n".encode("iso-8859-15")
             + b"--alt\r\nContent-Type: text/html; charset=windows-1252\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"<p>Preis: 20 =80 f=FCr K=E4se</p>\r\n--alt--\r\n"),
        _msg(["From: fwd@example.com", "Subject: Fwd: Angebot", "MIME-Version: 1.0",
              "Content-Type: multipart/mixed; boundary=outer"],
             b"--outer\r\nContent-Type: text/plain\r\n\r\nSiehe unten.\r\n--outer\r\n"
             b"Content-Type: message/rfc822\r\n\r\n"
             b"From: Original Sender <orig@example.org>\r\nSubject: =?utf-8?q?Das_Angebot_f=C3=BCr_Sie?=\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"Inneres Angebot: Stra=C3=9Fenbahn\r\n--outer--\r\n"),
        _msg(["From: x@y.z", "Subject: first subject", "Subject: second  subject",
              "X-Custom: Wert mit =?utf-8?q?Umlaut_=C3=A4?=", "Message-ID: <abc.123@example.com>",
              "Reply-To: reply@example.com",
              "X-Folded: part one\r\n\tpart two\r\n   part three"], b"body\r\n"),
        _msg(["From: x@y.z", "Subject: unknown cte", "Content-Transfer-Encoding: x-uuencode"],
             b"begin 644 file\r\nsecret uuencoded words\r\n"),
        _msg(["From: x@y.z", "Subject: text without subtype", "Content-Type: text"],
             b"is this body searched\r\n"),
        _msg(["From: x@y.z", "Subject: no mime version but content type",
              "Content-Type: application/octet-stream"], b"binary looking body words\r\n"),
        _msg(["From: x@y.z", "Subject: prefix boundaries", "MIME-Version: 1.0",
              "Content-Type: multipart/mixed; boundary=\"ab\""],
             b"--ab\r\nContent-Type: multipart/alternative; boundary=\"abc\"\r\n\r\n"
             b"--abc\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n--abc\r\n"
             b"Content-Type: text/plain\r\n\r\nsecond inner\r\n--abc--\r\n--ab\r\n"
             b"Content-Type: text/plain\r\n\r\nouter second\r\n--ab--\r\n"),
        _msg(["From: x@y.z", "Subject: missing closing boundary", "MIME-Version: 1.0",
              "Content-Type: multipart/mixed; boundary=zz"],
             b"--zz\r\nContent-Type: text/plain\r\n\r\nunterminated part text\r\n"),
        _msg(["From: x@y.z", "Subject: broken base64", "Content-Type: text/plain",
              "Content-Transfer-Encoding: base64"],
             base64.b64encode(b"good part of the text ") + b"*garbage*" + base64.b64encode(b"never seen")),
        _msg(["From: x@y.z", "Subject: digest", "MIME-Version: 1.0",
              "Content-Type: multipart/digest; boundary=dg"],
             b"--dg\r\n\r\nFrom: digested@example.com\r\nSubject: digested one\r\n\r\ndigest body one\r\n"
             b"--dg--\r\n"),
        _msg(["From: x@y.z", "Subject: rfc2231 name", "MIME-Version: 1.0",
              "Content-Type: multipart/mixed; boundary=r"],
             b"--r\r\nContent-Type: text/plain; charset*=utf-8''%C3%BC\r\n\r\nplain with odd charset\r\n"
             b"--r\r\nContent-Type: text/csv; name*=utf-8''B%C3%BCro.csv\r\n"
             b"Content-Disposition: attachment; filename*0=\"Teil\"; filename*1=\"zwei.csv\"\r\n\r\n"
             b"spalte;wert\r\n--r--\r\n"),
        _msg(["From: x@y.z", "Subject: koi8", "Content-Type: text/plain; charset=koi8-r"],
             "Привет мир, это тест\r\n".encode("koi8-r")),
        _msg(["From: =?shift_jis?b?" + base64.b64encode("山田太郎".encode("shift_jis")).decode()
              + "?= <yamada@example.jp>", "Subject: =?iso-2022-jp?b?"
              + base64.b64encode("日本語の件名".encode("iso-2022-jp")).decode() + "?=",
              "Content-Type: text/plain; charset=shift_jis"],
             "本文のテキストです\r\n".encode("shift_jis")),
        _msg(["From: x@y.z", "Subject: huge body", "Content-Type: text/plain"],
             b"".join(b"line %06d filler text for a big message\r\n" % i for i in range(20000))
             + b"needle at the very end\r\n"),
        _msg(["From: x@y.z", "Subject: lone cr and nul", "Content-Type: text/plain"],
             b"before\rafter cr\r\nnul\x00inside\r\n"),
        _msg(["From: x@y.z", "Subject: multiple content-type",
              "Content-Type: text/plain; charset=iso-8859-1", "Content-Type: image/png"],
             "gr\u00fcn ist der text\r\n".encode("latin-1")),
        _msg(["From: Grüße <utf8raw@example.com>", "Subject: raw 8bit header Grüße",
              "Content-Type: text/plain; charset=us-ascii"],
             "8bit in us-ascii: Grüße\r\n".encode()),
        _msg(["From: =?utf-8?q?broken?= <a@b>", "Subject: =?utf-8?q?unterminated word",
              "X-Enc: =?utf-8?x?unknown_encoding?= and =?iso-8859-1?q?=E4?="], b"e\r\n"),
        _msg(["From: x@y.z", "Subject: headerless part", "MIME-Version: 1.0",
              "Content-Type: multipart/mixed; boundary=h"],
             b"--h\r\n\r\nheaderless part body\r\n--h\r\nContent-Type: text/plain\r\n"
             b"--h--\r\n"),
    ]
    return out


# --- generated ---------------------------------------------------------------------------------
_WORDS = ("Rechnung", "Angebot", "Grüße", "Müller", "Straße", "Lieferung", "Käse", "Österreich",
          "naïve", "façade", "Zürich", "übermorgen", "Ärger", "ÉCOLE", "smörgåsbord", "Привет",
          "invoice", "meeting", "Kühne", "Brandt", "€100", "50%", "a.b@c", "x_y", "Tel:", "RE:")
_CHARSETS = ("utf-8", "iso-8859-1", "iso-8859-15", "windows-1252", "koi8-r", "utf-8", "utf-8")
_NAMES = ("Jürgen Müller", "Anna Schmidt", "O'Brien, Pat", "José García", "Zoë Ärmel", "Иван")


def _words(rng: random.Random, n: int, charset: str) -> str:
    out = []
    for _ in range(n):
        w = rng.choice(_WORDS)
        try:
            w.encode(charset)
        except UnicodeEncodeError:
            w = "plain"
        out.append(rng.choice((w, w.lower(), w.upper())))
    return " ".join(out)


def _encoded_word(rng: random.Random, text: str) -> str:
    charset = rng.choice(_CHARSETS)
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    return Header(text, charset).encode(maxlinelen=10_000) if rng.random() < 0.8 else (
        "=?" + charset + "?b?" + base64.b64encode(text.encode(charset)).decode() + "?=")


def _address(rng: random.Random) -> str:
    name = rng.choice(_NAMES)
    local = rng.choice(("info", "a.b", "x_y", "sales"))
    mailbox = f"{local}@{rng.choice(('example.com', 'kuehne-brandt.de'))}"
    kind = rng.randrange(7)
    if kind == 0:
        return mailbox
    if kind == 1:
        return f"<{mailbox}>"
    if kind == 2:
        return f'"{name}" <{mailbox}>'
    if kind == 3:
        return f"{_encoded_word(rng, name)} <{mailbox}>"
    if kind == 4:
        return f"{mailbox} ({name})"
    if kind == 5:
        return f"Gruppe: {mailbox}, <other@example.org>;"
    return f"{name.split(',')[0]} <{mailbox}>"


def _header_value(rng: random.Random) -> str:
    text = _words(rng, rng.randint(1, 6), "utf-8")
    kind = rng.randrange(4)
    if kind == 0:
        return text
    if kind == 1:
        return _encoded_word(rng, text)
    if kind == 2:
        a, b = text[: len(text) // 2], text[len(text) // 2 :]
        return f"{a}\r\n\t{_encoded_word(rng, b) if b.strip() else 'x'}"
    return f"{_encoded_word(rng, text)}  {_encoded_word(rng, 'zwei')}"


def _text_part(rng: random.Random, subtype: str = "plain") -> bytes:
    charset = rng.choice(_CHARSETS)
    text = _words(rng, rng.randint(5, 60), charset)
    if subtype == "html":
        text = f"<html><body><p class=\"x\">{text}</p></body></html>"
    text += "\r\n"
    raw = text.encode(charset)
    cte = rng.choice(("8bit", "quoted-printable", "base64", "7bit"))
    if cte == "quoted-printable":
        body = quopri.encodestring(raw).replace(b"\n", b"\r\n")
    elif cte == "base64":
        body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    else:
        body = raw
    return (f"Content-Type: text/{subtype}; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + body


def _attachment(rng: random.Random) -> bytes:
    name = rng.choice(("Rechnung_4711.pdf", "Büro-Plan.png", "angebot final.docx"))
    data = base64.encodebytes(bytes(rng.randrange(256) for _ in range(200))).replace(b"\n", b"\r\n")
    disp = (f'attachment; filename="{name}"' if rng.random() < 0.5
            else f"attachment; filename*=utf-8''{urllib.parse.quote(name)}")
    return (f"Content-Type: application/octet-stream; name=\"{name}\"\r\n"
            f"Content-Disposition: {disp}\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() + data


def _body(rng: random.Random, depth: int = 0) -> tuple[list[str], bytes]:
    """(headers, body) of a random MIME structure."""
    kind = rng.randrange(6) if depth < 2 else 0
    if kind in (0, 1):
        part = _text_part(rng, "plain" if kind == 0 else "html")
        head, _, body = part.partition(b"\r\n\r\n")
        return head.decode().split("\r\n"), body
    boundary = f"b{depth}{rng.randrange(10**6)}"
    subtype = {2: "alternative", 3: "mixed", 4: "mixed", 5: "related"}[kind]
    chunks = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.5:
            chunks.append(_text_part(rng, rng.choice(("plain", "html"))))
        elif r < 0.75:
            chunks.append(_attachment(rng))
        elif r < 0.9:
            inner_h, inner_b = _body(rng, depth + 1)
            chunks.append(("\r\n".join(inner_h) + "\r\n\r\n").encode() + inner_b)
        else:
            inner = generated_one(rng, depth + 1)
            chunks.append(b"Content-Type: message/rfc822\r\n\r\n" + inner)
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + c + b"\r\n" for c in chunks)
    body += b"--" + boundary.encode() + b"--\r\n"
    return ["MIME-Version: 1.0", f'Content-Type: multipart/{subtype}; boundary="{boundary}"'], body


def generated_one(rng: random.Random, depth: int = 0) -> bytes:
    headers = [
        f"From: {_address(rng)}",
        f"To: {', '.join(_address(rng) for _ in range(rng.randint(1, 3)))}",
        f"Subject: {_header_value(rng)}",
        f"Message-ID: <gen.{rng.randrange(10**9)}@example.com>",
    ]
    if rng.random() < 0.3:
        headers.append(f"Cc: {_address(rng)}")
    if rng.random() < 0.2:
        headers.append(f"Bcc: {_address(rng)}")
    if rng.random() < 0.3:
        headers.append(f"X-Note: {_header_value(rng)}")
    hs, body = _body(rng, depth)
    return _msg([*headers, *hs], body)


def generated(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [generated_one(rng) for _ in range(n)]


# --- search strings ------------------------------------------------------------------------------
#: Strings aimed at the corners of ``crafted()`` (and near misses: diacritics dropped,
#: case changed, white space that Dovecot compresses or keeps).
_FIXED_STRINGS = (
    "Grüße", "grusse", "MUNCHEN", "münchen", "Straße", "strasse", "ß", "€", "é", "e\u0301",
    "Müller", "muller", "Mu", "ff", "\ufb00", "Å", "\u212b", "Привет", "ПРИВЕТ", "山田", "日本語",
    "本文", "Hello World", "WorldÜBER", "über", "doe, john", "comment here", "\"Doe",
    "team: <a@b.c>", "<a@b.c>, <d@e.f>;", "MISSING_DOMAIN", "SYNTAX_ERROR", "Rechnung_4711.pdf",
    "rechnung_4711", "application/pdf", "preamble", "epilogue", "4711 Inhalt", "softbreak",
    "trailing spaces", "=ZZ", "=4 end", "Leerzeichen" + " " * 77 + "danach",
    "Leerzeichen" + " " * 78, "uuencoded", "this body", "looking body", "inner plain",
    "outer second", "unterminated part", "good part", "never seen", "digest body",
    "digested one", "odd charset", "Büro", "Teilzwei", "zwei.csv", "мир", "needle at the very",
    "after cr", "nulinside", "grün", "Grüße\r\n", "unknown_encoding", "=?utf-8?q?", "part one part",
    "part two  ", "Umlaut ä", "abc.123@example", "reply@", "Caf&eacute;", "Café", "class=\"offer",
    "<b>heute", "20 € für", "Käse", "heute</b>", "headerless part", "Angebot für", "Straßenbahn",
    "Original Sender", "orig@example.org", "Subject: Das", "SUBJECT: DAS ANGEBOT", "e aus",
    "e   aus", "aus  berlin", "aus berlin", "first subject", "second subject", "second  subject",
)

def _decoded_texts(raw: bytes) -> list[str]:
    """Headers and text parts as the stdlib reads them."""
    msg = message_from_bytes(raw, policy=policy.default)
    out: list[str] = []
    for part in msg.walk():
        for name, value in part.items():
            out.append(f"{name}: {value}")
        if part.get_content_maintype() == "text":
            with contextlib.suppress(LookupError, ValueError, AssertionError):
                out.append(part.get_content())
    return out


def search_strings(messages: list[bytes], per_message: int = 6, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    keys: set[str] = set()
    for raw in messages:
        texts = [t for t in _decoded_texts(raw) if len(t.strip()) >= 4]
        for _ in range(per_message):
            if not texts:
                break
            t = rng.choice(texts)
            n = rng.randint(3, 14)
            start = rng.randrange(max(1, len(t) - n))
            k = t[start : start + n]
            if "\n" in k or "\r" in k or len(k.strip()) < 3:
                continue
            keys.add(rng.choice((k, k.lower(), k.upper(), k.swapcase())))
    keys.update(_FIXED_STRINGS)
    return sorted(keys)


# --- a raw search client -------------------------------------------------------------------------
class RawSearch:
    """``UID SEARCH CHARSET UTF-8 <key> {n+}<literal>`` over a plain socket."""

    def __init__(self, host: str, port: int, user: str, password: str, mailbox: str = "INBOX") -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.file = self.sock.makefile("rb")
        self.file.readline()
        self.n = 0
        self._check(self.command(b"LOGIN " + _literal(user.encode()) + b" " + _literal(password.encode())))
        self._check(self.command(b"SELECT " + _literal(mailbox.encode())))

    def command(self, line: bytes) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = b"s%d" % self.n
        self.sock.sendall(tag + b" " + line + b"\r\n")
        lines = []
        while True:
            got = self.file.readline()
            if not got:
                raise ConnectionError("server closed the connection")
            if got.startswith(tag + b" "):
                return lines, got.rstrip()
            lines.append(got.rstrip())

    @staticmethod
    def _check(result: tuple[list[bytes], bytes]) -> None:
        if result[1].split(b" ", 2)[1] != b"OK":
            raise AssertionError(result[1])

    def search(self, criteria: bytes, charset: bytes | None = b"UTF-8") -> set[int] | bytes:
        """The UIDs found, or the tagged answer when not OK."""
        line = b"UID SEARCH " + (b"CHARSET " + charset + b" " if charset else b"") + criteria
        lines, tagged = self.command(line)
        if tagged.split(b" ", 2)[1] != b"OK":
            return tagged.split(b" ", 1)[1]
        return {int(x) for ln in lines if ln.startswith(b"* SEARCH") for x in ln.split()[2:]}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.command(b"LOGOUT")
        self.sock.close()


def _literal(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def key_criteria(field: str, value: str, header: str = "") -> bytes:
    """``FIELD {n+}value`` (``HEADER name {n+}value`` for a header)."""
    head = b"HEADER " + _literal(header.encode()) + b" " if field == "HEADER" else field.encode() + b" "
    return head + _literal(value.encode("utf-8"))
