"""Hostile mail rendered harmless (web/render.py), checked on the corpus by parsing the output
with an HTML parser: no element or attribute that runs code or loads anything survives."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import pytest

from imapgate.web import render
from imapgate.web.render import ALLOWED_TAGS, render_message, safe_filename, sanitize_html

from .corpus import corpus, huge_message, nested_message

#: Attributes that may hold a URL the browser would load or navigate to.
URL_ATTRIBUTES = {
    "href",
    "src",
    "srcset",
    "action",
    "formaction",
    "background",
    "poster",
    "data",
    "cite",
    "xlink:href",
    "longdesc",
    "lowsrc",
    "dynsrc",
    "manifest",
    "codebase",
    "ping",
}


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))


def parse(html: str) -> list[tuple[str, dict[str, str]]]:
    p = Elements()
    p.feed(html)
    p.close()
    return p.elements


def assert_harmless(html: str) -> None:
    for tag, attrs in parse(html):
        assert tag in ALLOWED_TAGS, f"<{tag}> survived"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"event handler {name} on <{tag}>"
            assert name in {
                "style",
                "align",
                "dir",
                "lang",
                "title",
                "href",
                "src",
                "alt",
                "width",
                "height",
                "color",
                "size",
                "face",
                "border",
                "cellpadding",
                "cellspacing",
                "bgcolor",
                "valign",
                "colspan",
                "rowspan",
                "nowrap",
                "span",
                "start",
                "type",
                "value",
                "target",
                "rel",
            }, f"attribute {name} on <{tag}>"
            if name in URL_ATTRIBUTES:
                v = value.strip().lower()
                if name == "href":
                    assert v.startswith(("https://", "http://", "mailto:")), value
                    assert attrs.get("rel") == "noopener noreferrer" and attrs.get("target") == "_blank"
                else:
                    assert tag == "img" and name == "src" and v.startswith("data:image/"), value
                    assert not v.startswith("data:image/svg"), value
            if name == "style":
                css = value.lower()
                for bad in (
                    "url(",
                    "position",
                    "@import",
                    "expression",
                    "behavior",
                    "-moz-binding",
                    "z-index",
                ):
                    assert bad not in css, f"{bad} in style of <{tag}>: {value}"


@pytest.mark.parametrize("name", sorted(corpus()))
def test_corpus_renders_harmless(name: str) -> None:
    raw = corpus()[name]
    start = time.perf_counter()
    r = render_message(raw)
    assert time.perf_counter() - start < 15  # bounded work, even for the 20 MB one (loaded machine)
    if r.html is not None:
        assert_harmless(r.html)
        assert "<script" not in r.html.lower() and "javascript:" not in r.html.lower()
    # Headers and text are plain strings: the templates escape them (tested in test_app).
    for a in r.attachments:
        assert "/" not in a.filename and "\\" not in a.filename and not a.filename.startswith(".")
        assert "\u202e" not in a.filename
    assert len(r.headers.subject) <= render.MAX_HEADER_CHARS
    assert r.text is None or len(r.text) <= render.MAX_TEXT_CHARS


def test_what_survives_is_the_harmless_part() -> None:
    html, blocked = sanitize_html(
        '<p style="color:red;position:fixed">x</p><a href="https://ok.test/">ok</a>'
        '<img src="http://evil.test/p.gif"><img src="data:image/png;base64,AAAA" alt="i">'
    )
    els = parse(html)
    assert ("p", {"style": "color:red"}) in els
    assert ("a", {"href": "https://ok.test/", "target": "_blank", "rel": "noopener noreferrer"}) in els
    assert ("img", {"src": "data:image/png;base64,AAAA", "alt": "i"}) in els
    assert blocked == 1


def test_remote_images_counted_and_noted() -> None:
    r = render_message(corpus()["remote-images.eml"])
    assert r.remote_content_blocked == 4
    assert any("Remote content blocked" in n for n in r.notes)


def test_plain_text_preferred_html_offered() -> None:
    r = render_message(corpus()["multipart-alternative.eml"])
    assert r.text is not None and r.text.strip() == "Plain version."
    assert r.html is not None and "<b>version</b>" in r.html and "canary" not in r.html


def test_headers_decoded_as_text() -> None:
    r = render_message(corpus()["header-xss.eml"])
    # The encoded-word decodes to the characters "<script>": text, which the page escapes.
    assert r.headers.subject.startswith("<script>window.canary=1</script>")
    assert r.headers.from_[0].name == "<script>window.canary=1</script>"
    assert r.text is not None and "<script>" in r.text


def test_attachment_names_and_content() -> None:
    raw = corpus()["bidi-filename.eml"]
    r = render_message(raw)
    assert [a.filename for a in r.attachments] == ["invoice___lmth.exe", "pic.svg"]
    assert [a.content_type for a in r.attachments] == ["text/html", "image/svg+xml"]
    got = render.attachment(raw, r.attachments[0].index)
    assert got is not None and got[1].startswith(b"<script>")
    assert render.attachment(raw, 99) is None


@pytest.mark.parametrize(
    ("name", "index", "expected"),
    [
        ("../../etc/passwd", 1, "passwd"),
        ("..\\..\\boot.ini", 1, "boot.ini"),
        (".htaccess", 1, "htaccess"),
        ("a\u202egpj.exe", 1, "agpj.exe"),
        ("=?utf-8?q?R=C3=A9sum=C3=A9.pdf?=", 1, "Résumé.pdf"),
        ("", 3, "part-3"),
        (None, 2, "part-2.eml"),
        ("x" * 500 + ".pdf", 1, "x" * 116 + ".pdf"),
        ('a"b;c<d>.txt', 1, "a_b_c_d_.txt"),
    ],
)
def test_safe_filename(name: str | None, index: int, expected: str) -> None:
    ctype = "message/rfc822" if name is None else ""
    assert safe_filename(name, index, ctype) == expected


def test_huge_message_capped_and_said() -> None:
    raw = huge_message()
    assert len(raw) >= 20_000_000
    r = render_message(raw)
    assert r.text is not None and len(r.text) == render.MAX_TEXT_CHARS
    assert any("Only the first" in n for n in r.notes)
    assert [a.filename for a in r.attachments] == ["big.bin"]


def test_deep_nesting_bounded() -> None:
    r = render_message(nested_message(200))
    assert any("nested deeper" in n for n in r.notes) and r.html is None
    r = render_message(nested_message(3000))
    assert any("Not shown" in n for n in r.notes)


def test_too_large_to_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "MAX_PARSE_BYTES", 1000)
    r = render_message(corpus()["huge-header.eml"])
    assert r.text is None and r.headers.from_ and any("larger than" in n for n in r.notes)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe",
        b"Subject: x",
        b"Content-Type: multipart/mixed\r\n\r\n--\r\n--",
        b"From: <>\r\n\r\n" * 1000,
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    r = render_message(raw)
    assert isinstance(r, render.RenderedMessage)
