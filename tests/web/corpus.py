"""The hostile-mail corpus: the ``corpus/*.eml`` files plus a few generated here because they
are big (a 20 MB message, 200 nested multiparts, a 200 KB Subject, 3,000 nested multiparts)."""

from __future__ import annotations

import base64
import random
from functools import cache
from pathlib import Path

CORPUS_DIR = Path(__file__).parent / "corpus"
HEAD = (
    b"From: Mallory <mallory@evil.test>\r\nTo: info@example.com\r\n"
    b"Date: Mon, 1 Jul 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
)


def huge_message(size: int = 20 * 1024 * 1024) -> bytes:
    """A 20 MB mail: a long text part (so the text cap shows) and a big attachment."""
    rng = random.Random(7)
    text = b"".join(
        b"line %d of a very long text <script>window.canary=1</script>\r\n" % i for i in range(40_000)
    )
    blob = base64.encodebytes(rng.randbytes(size * 3 // 4 - len(text))).replace(b"\n", b"\r\n")
    return (
        HEAD + b"Message-ID: <huge@evil.test>\r\nSubject: 20 MB\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"
        + text
        + b"\r\n--XX\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + blob
        + b"\r\n--XX--\r\n"
    )


def nested_message(depth: int) -> bytes:
    body = b"Content-Type: text/html\r\n\r\n<script>window.canary=1</script>deep\r\n"
    for i in range(depth):
        body = (
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
            + body
            + b"\r\n--b%d--\r\n" % i
        )
    return HEAD + b"Message-ID: <nested%d@evil.test>\r\nSubject: nested %d\r\n" % (depth, depth) + body


def huge_header_message() -> bytes:
    return (
        HEAD
        + b"Message-ID: <hugeheader@evil.test>\r\nSubject: "
        + b"A" * 200_000
        + b"\r\nX-Long: "
        + b"<script>" * 20_000
        + b"\r\nCc: "
        + b", ".join(b"u%d@example.com" % i for i in range(5000))
        + b"\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    )


@cache
def corpus() -> dict[str, bytes]:
    """name -> raw message, every hostile mail of the corpus."""
    out = {p.name: p.read_bytes() for p in sorted(CORPUS_DIR.glob("*.eml"))}
    out["huge-20mb.eml"] = huge_message()
    out["nested-200.eml"] = nested_message(200)
    out["nested-3000.eml"] = nested_message(3000)
    out["huge-header.eml"] = huge_header_message()
    return out


#: The small ones (the browser test loads each page; the huge ones are checked once).
def small_corpus() -> dict[str, bytes]:
    return {k: v for k, v in corpus().items() if len(v) < 1_000_000}
