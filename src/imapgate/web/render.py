"""Hostile mail made harmless: a raw message (bytes) into what the message page
shows — decoded headers, the text, a sanitized HTML version, the attachments.

Anyone can send the team a mail, so every byte of it is hostile.  What this
module guarantees, and ``tests/web/test_render.py`` checks on the corpus in
``tests/web/corpus/`` by parsing the output:

- **Headers** are decoded (RFC 2047, RFC 2231) into plain text: control and
  bidirectional-override characters removed (no ``invoice\\u202efdp.exe``),
  each value capped at ``MAX_HEADER_CHARS``.  They are text: the templates
  autoescape them, nothing here produces markup from a header.
- **The text** is the first ``text/plain`` part that is no attachment, decoded
  from its transfer encoding and charset (an unknown or wrong charset falls
  back to UTF-8 with replacement characters, and says so), capped at
  ``MAX_TEXT_CHARS``.  It is shown as text (``<pre>``, autoescaped).
- **HTML** (the first ``text/html`` part) is sanitized with nh3 (the Rust
  crate ammonia): an allowlist of formatting tags and attributes; script,
  style, SVG, MathML, forms, frames, objects and their content are dropped;
  links only ``http``/``https``/``mailto`` and opened in a new tab with
  ``rel="noopener noreferrer"``; images only as ``data:`` PNG/GIF/JPEG/WebP —
  every remote image is removed and counted (no tracking pixels, no request
  leaves the browser); ``style`` attributes keep only the properties of
  ``STYLE_PROPERTIES`` (colours, fonts, alignment, spacing, borders: no
  ``position``, no ``url()``-taking property, no ``@import``, since ``<style>``
  never survives).  The page then shows it in a sandboxed ``<iframe>`` (no
  scripts, an opaque origin) under a CSP of its own (``views.py``): a
  sanitizer bug would still meet a frame where nothing runs and nothing loads.
- **Attachments** are listed with a safe file name, the declared type (shown,
  never used to serve) and their size; a download is always
  ``application/octet-stream`` + ``Content-Disposition: attachment`` +
  ``nosniff``.
- **Broken MIME** (missing or wrong boundaries, bad encodings) never fails the
  page: the stdlib parser (``compat32``: raw values, fast) recovers what it
  can; a message it cannot structure at all (deeper than
  ``MAX_PART_DEPTH``, more than ``MAX_MIME_BOUNDARIES`` boundaries, larger than
  ``MAX_PARSE_BYTES``) is shown with its headers only and offered as a raw
  download, with a note saying why.

Pure functions on bytes; no I/O.  A 20 MB message takes about 0.4 s, so
``data.py`` calls :func:`render_message` in a worker thread.
"""

from __future__ import annotations

import binascii
import codecs
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime

import nh3

#: Characters of one header value shown at most (a hostile mail carries 1 MB
#: Subjects; a page shows a line).
MAX_HEADER_CHARS = 2000
#: Addresses shown per header field (To/Cc of a mail to 5,000 recipients).
MAX_ADDRESSES = 200
#: Characters of the text shown (about 300 printed pages); the rest is cut and
#: the page says so (the whole message can be downloaded).
MAX_TEXT_CHARS = 1_000_000
#: Bytes of HTML given to the sanitizer; beyond it the HTML version is left out
#: (the text version and the download remain).
MAX_HTML_BYTES = 2_000_000
#: Messages larger than this are not parsed for the page (headers only; raw
#: download): parsing costs about 20 ms per MB and memory several times the size.
MAX_PARSE_BYTES = 32 * 1024 * 1024
#: MIME nesting followed at most (hostile mail nests thousands deep to exhaust
#: a parser's stack; Dovecot stops at 100).
MAX_PART_DEPTH = 100
#: ``boundary=`` parameters in one message at most before its structure is not
#: parsed (the parser's cost grows with boundaries x lines).
MAX_MIME_BOUNDARIES = 1000
#: Attachments listed at most.
MAX_ATTACHMENTS = 500
#: Length of a file name offered for download.
MAX_FILENAME_CHARS = 120

#: Tags kept in sanitized HTML: formatting and tables, nothing active.
ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "address", "b", "bdi", "big", "blockquote", "br", "caption", "center", "cite",
        "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font", "h1", "h2",
        "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q",
        "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var", "wbr",
    }
)  # fmt: skip
#: Elements removed together with their content (the rest of a disallowed tag's
#: content is kept as text).
DROPPED_WITH_CONTENT = frozenset(
    {
        "script", "style", "title", "noscript", "template", "svg", "math", "object", "embed",
        "iframe", "frame", "frameset", "applet", "noembed", "noframes", "head", "select", "textarea",
        "button", "audio", "video", "canvas",
    }
)  # fmt: skip
_CELL = frozenset({"align", "valign", "width", "height", "colspan", "rowspan", "bgcolor", "nowrap"})
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "align", "dir", "lang", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "font": {"color", "size", "face"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor"},
    "td": set(_CELL),
    "th": set(_CELL),
    "tr": {"valign", "bgcolor"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "li": {"value"},
}
#: CSS properties kept in ``style`` attributes.  None of them takes a URL
#: (no background/background-image, list-style-image, content, cursor,
#: border-image) or moves the element out of its place (no position, float
#: is harmless inside the frame but left out, no z-index, no transform).
STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font-weight", "font-style", "font-size", "font-family",
        "font-variant", "text-align", "text-decoration", "text-transform", "text-indent",
        "line-height", "letter-spacing", "word-spacing", "white-space", "vertical-align",
        "width", "max-width", "min-width", "height", "max-height", "min-height",
        "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
        "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
        "border", "border-top", "border-right", "border-bottom", "border-left", "border-color",
        "border-style", "border-width", "border-collapse", "border-spacing", "border-radius",
    }
)  # fmt: skip
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]*\Z", re.IGNORECASE)
#: Invisible characters that reorder or hide text (filename and sender
#: spoofing): bidi embeddings/overrides/isolates, zero-width characters.
_SPOOF = dict.fromkeys(
    [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0xFEFF]
)
_FILENAME_BAD = re.compile(r"[^\w .,()+\-\[\]@#&~=]", re.UNICODE)


@dataclass(frozen=True, slots=True)
class AddressView:
    name: str
    address: str

    def __str__(self) -> str:
        if self.name and self.address:
            return f"{self.name} <{self.address}>"
        return self.name or self.address


@dataclass(frozen=True, slots=True)
class Headers:
    subject: str = ""
    from_: tuple[AddressView, ...] = ()
    to: tuple[AddressView, ...] = ()
    cc: tuple[AddressView, ...] = ()
    reply_to: tuple[AddressView, ...] = ()
    date: str = ""
    #: The Date header as ISO 8601 (empty when unparsable).
    date_iso: str = ""
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    #: Position among the message's leaf parts (the download URL's part number).
    index: int
    filename: str
    #: As declared by the sender (shown only; downloads are octet-stream).
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    headers: Headers
    text: str | None = None
    #: Sanitized HTML for the sandboxed frame, or None.
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    #: What the reader should know: cut text, blocked images, broken MIME.
    notes: tuple[str, ...] = ()
    remote_content_blocked: int = 0
    size: int = 0


# --- text helpers ---------------------------------------------------------------------------


def clean_text(value: str, limit: int = MAX_HEADER_CHARS) -> str:
    """One line of display text: control, bidi and zero-width characters
    removed, whitespace runs folded, at most ``limit`` characters."""
    value = value[: limit * 2].translate(_SPOOF)
    out = "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in value)
    out = " ".join(out.split())
    return out if len(out) <= limit else out[: limit - 1] + "…"


def decode_words(value: str | bytes | None, limit: int = MAX_HEADER_CHARS) -> str:
    """A raw header value (RFC 2047 encoded-words allowed) as display text."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    value = value[: limit * 4]
    try:
        text = str(make_header(decode_header(value)))
    except Exception:  # HeaderParseError, binascii.Error, LookupError, ...: show it raw
        text = value
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return clean_text(text, limit)


def addresses(values: list[str]) -> tuple[AddressView, ...]:
    out: list[AddressView] = []
    joined = [v[: MAX_HEADER_CHARS * 4] for v in values]
    try:
        pairs = getaddresses(joined)
    except Exception:  # the stdlib's address parser has failed on odd input before
        pairs = [("", v) for v in joined]
    for name, addr in pairs[:MAX_ADDRESSES]:
        view = AddressView(decode_words(name, 200), clean_text(addr, 320))
        if view.name or view.address:
            out.append(view)
    return tuple(out)


def _headers(msg: Message) -> Headers:
    def raw(name: str) -> list[str]:
        values = msg.get_all(name) or []
        # compat32 gives a Header object for a value with 8-bit bytes: its
        # str() is the text as sent (undecodable bytes as U+FFFD).
        return [str(v) for v in values]

    date = " ".join(raw("Date")[:1])
    iso = ""
    if date:
        try:
            iso = parsedate_to_datetime(date[:200]).isoformat()
        except (TypeError, ValueError, IndexError, OverflowError):
            iso = ""
    return Headers(
        subject=decode_words(" ".join(raw("Subject")[:1])),
        from_=addresses(raw("From")),
        to=addresses(raw("To")),
        cc=addresses(raw("Cc")),
        reply_to=addresses(raw("Reply-To")),
        date=clean_text(date, 200),
        date_iso=iso,
        message_id=clean_text(" ".join(raw("Message-ID")[:1]), 400),
    )


def safe_filename(name: str | None, index: int, content_type: str = "") -> str:
    """A file name that is safe to offer: no path, no control or bidi
    characters, no leading dot, bounded; ``part-N`` (with an extension for a
    few types) when the sender gave none."""
    text = decode_words(name or "", 1000) if name else ""
    text = re.split(r"[/\\]", text)[-1]
    text = _FILENAME_BAD.sub("_", text).strip(" .")
    if len(text) > MAX_FILENAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        ext = ext[:10] if dot else ""
        text = (stem if dot else text)[: MAX_FILENAME_CHARS - len(ext) - 1] + (f".{ext}" if ext else "")
    if not text:
        ext = {"message/rfc822": ".eml", "text/plain": ".txt", "text/html": ".html"}.get(content_type, "")
        text = f"part-{index}{ext}"
    return text


def _decode_charset(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Text of a part; a note when the declared charset did not work."""
    name = (charset or "us-ascii").strip().strip('"').lower()
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return data.decode(
            "utf-8", "replace"
        ), f"unknown character set {clean_text(name, 40)!r}; shown as UTF-8"
    if codec == "ascii":
        codec = "utf-8"  # 8-bit text declared as ASCII is usually UTF-8
    try:
        return data.decode(codec), None
    except UnicodeDecodeError:
        try:
            return data.decode("utf-8"), None
        except UnicodeDecodeError:
            return data.decode(
                codec, "replace"
            ), "the text is not valid in its character set; unreadable characters replaced"
    except LookupError:
        return data.decode("utf-8", "replace"), None


def _clean_body_text(text: str) -> str:
    """Text as shown in ``<pre>``: line ends normalised; control characters but
    tab and newline removed (a terminal escape sequence is no markup, but it is
    no text either)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_SPOOF)
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


# --- HTML ---------------------------------------------------------------------------------


@dataclass
class _Blocked:
    count: int = 0


def sanitize_html(html: str) -> tuple[str, int]:
    """(sanitized HTML, number of remote resources removed)."""
    blocked = _Blocked()

    def keep(tag: str, attr: str, value: str) -> str | None:
        if attr == "href":
            v = value.strip()
            return v if v.lower().startswith(_LINK_SCHEMES) else None
        if attr == "src":
            if _DATA_IMAGE.match(value.strip()):
                return value.strip()
            blocked.count += 1
            return None
        if attr == "face":
            return value if re.fullmatch(r"[\w ,\-]{0,100}", value) else None
        return value

    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=keep,
        url_schemes={"http", "https", "mailto", "data"},
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=set(STYLE_PROPERTIES),
        strip_comments=True,
    )
    return cleaned, blocked.count


# --- MIME -----------------------------------------------------------------------------------


@dataclass
class _Walk:
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    leaves: int = 0
    too_deep: bool = False


def _leaves(msg: Message, depth: int = 0, state: _Walk | None = None) -> Iterator[tuple[int, Message]]:
    """Leaf parts in order with their index; message/rfc822 parts are leaves
    (offered as .eml), not opened."""
    if msg.is_multipart() and msg.get_content_maintype() == "multipart":
        if depth >= MAX_PART_DEPTH:
            if state is not None:
                state.too_deep = True
            return
        payload = msg.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    yield from _leaves(sub, depth + 1, state)
        return
    index = state.leaves if state is not None else 0
    if state is not None:
        state.leaves += 1
    yield index, msg


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition") or "").split(";", 1)[0].strip().lower()
    return disposition == "attachment" or (disposition != "inline" and _filename(part) is not None)


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # a malformed RFC 2231 parameter
        return None
    return str(name) if name is not None else None


def _payload(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822" or part.is_multipart():
        sub = part.get_payload()
        if isinstance(sub, list):
            return b"".join(m.as_bytes(policy=policy.compat32) for m in sub if isinstance(m, Message))
    try:
        data = part.get_payload(decode=True)
    except (ValueError, binascii.Error, AssertionError):
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _too_complex(raw: bytes) -> str | None:
    if len(raw) > MAX_PARSE_BYTES:
        return f"the message is larger than {MAX_PARSE_BYTES // (1024 * 1024)} MiB"
    if raw.lower().count(b"boundary") > MAX_MIME_BOUNDARIES:
        return f"the message has more than {MAX_MIME_BOUNDARIES} MIME parts"
    return None


def render_message(raw: bytes) -> RenderedMessage:
    """Everything the message page shows (see the module docstring).  Never
    raises for any input: what cannot be shown is said in a note."""
    try:
        return _render(raw)
    except Exception:
        try:
            headers = _headers(BytesHeaderParser(policy=policy.compat32).parsebytes(raw[: 1024 * 1024]))
        except Exception:
            headers = Headers()
        return RenderedMessage(
            headers,
            notes=("This message cannot be shown; download it to read it.",),
            size=len(raw),
        )


def _render(raw: bytes) -> RenderedMessage:
    reason = _too_complex(raw)
    if reason is not None:
        head = BytesHeaderParser(policy=policy.compat32).parsebytes(raw[: 1024 * 1024])
        return RenderedMessage(
            _headers(head),
            notes=(f"Not shown: {reason}. Download the whole message to read it.",),
            size=len(raw),
        )
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
    except RecursionError:
        head = BytesHeaderParser(policy=policy.compat32).parsebytes(raw[: 1024 * 1024])
        return RenderedMessage(
            _headers(head),
            notes=("Not shown: the MIME structure is nested too deeply. Download the whole message.",),
            size=len(raw),
        )
    w = _Walk()
    blocked = 0
    try:
        for index, part in _leaves(msg, 0, w):
            ctype = part.get_content_type()
            if ctype in ("text/plain", "text/html") and not _is_attachment(part):
                if ctype == "text/plain" and w.text is None:
                    text, note = _decode_charset(_payload(part), part.get_content_charset())
                    if note:
                        w.notes.append(f"Text: {note}.")
                    w.text = _clean_body_text(text)
                    continue
                if ctype == "text/html" and w.html is None:
                    data = _payload(part)
                    if len(data) > MAX_HTML_BYTES:
                        w.notes.append(
                            f"The HTML version is larger than {MAX_HTML_BYTES // 1_000_000} MB and is not "
                            "shown; download it below."
                        )
                    else:
                        html, note = _decode_charset(data, part.get_content_charset())
                        w.html, blocked = sanitize_html(html)
                        if note:
                            w.notes.append(f"HTML: {note}.")
                        continue
            if len(w.attachments) < MAX_ATTACHMENTS:
                w.attachments.append(
                    Attachment(
                        index,
                        safe_filename(_filename(part), index, ctype),
                        clean_text(ctype, 100),
                        len(_payload(part)),
                    )
                )
    except RecursionError:
        w.too_deep = True
    if w.too_deep:
        w.notes.append(f"Parts nested deeper than {MAX_PART_DEPTH} levels are not shown.")
    if len(w.attachments) >= MAX_ATTACHMENTS:
        w.notes.append(f"Only the first {MAX_ATTACHMENTS} attachments are listed.")
    if msg.defects:
        w.notes.append("The message's MIME structure is damaged; what could be read is shown.")
    shown: str | None = w.text
    if shown is not None and len(shown) > MAX_TEXT_CHARS:
        shown = shown[:MAX_TEXT_CHARS]
        w.notes.append(
            f"Only the first {MAX_TEXT_CHARS:,} characters of the text are shown; download the message "
            "for the rest."
        )
    if blocked:
        w.notes.append(f"Remote content blocked: {blocked} image(s) from other servers were removed.")
    if shown is None and w.html is None and not w.attachments and not msg.is_multipart():
        shown = ""
    return RenderedMessage(
        _headers(msg),
        text=shown,
        html=w.html,
        attachments=tuple(w.attachments),
        notes=tuple(w.notes),
        remote_content_blocked=blocked,
        size=len(raw),
    )


def attachment(raw: bytes, index: int) -> tuple[str, bytes] | None:
    """(safe file name, decoded content) of leaf part ``index``, or None."""
    if _too_complex(raw) is not None or index < 0:
        return None
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(raw)
        w = _Walk()
        for i, part in _leaves(msg, 0, w):
            if i == index:
                return safe_filename(_filename(part), i, part.get_content_type()), _payload(part)
    except RecursionError:
        return None
    return None
