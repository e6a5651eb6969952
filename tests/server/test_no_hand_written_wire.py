"""Every byte the IMAP server sends is written by the codec
(``protocol/response_writer.py``), never by hand in ``server/``.

Why it matters: the writer is where quoting, literal framing, modified UTF-7
and the CR/LF scrubbing of status text live (a CRLF in relayed hoster text
would let it inject a response line).  A response assembled in a handler skips
all of that, and it is not covered by the codec's round-trip tests.

How it is checked: the AST of every module under ``server/`` is scanned.
Response syntax can only be made from bytes literals, encoded text or
``bytes()``/``bytearray()`` of text, so

* a bytes literal is allowed only where listed below, each with its reason
  (input handling, buffering, internal placeholders — none is response syntax);
* ``.encode(...)`` is not called at all, and neither ``bytes(...)`` nor a
  ``bytearray(...)`` of text;
* an allowance no longer used fails too, so the list cannot rot into a
  blanket exemption.

The scanner is tested on sources with each kind of hand-built response.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import imapgate.server

SERVER = Path(imapgate.server.__file__).parent

#: (module path relative to server/, literal) -> why it is no response syntax.
ALLOWED_BYTES: dict[tuple[str, bytes], str] = {
    ("session.py", b""): "joins responses the writer made into one socket write",
    ("session.py", b"DONE"): "matches the client's IDLE terminator (input, RFC 2177)",
    ("commands_session.py", b"\x00"): "splits the client's SASL PLAIN message (input, RFC 4616)",
    ("commands_message.py", b""): "no cache key / response name for a non-content FETCH item (internal)",
    ("view.py", b"\x01"): "marks a UID membership mask (internal, never sent)",
    ("listener.py", b""): "collects the PROXY header read off the socket (input, before any IMAP)",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"server/{self.path}:{self.line}: {self.what}"


def scan_source(source: str, path: str) -> tuple[list[Finding], set[tuple[str, bytes]]]:
    """Hand-built wire bytes in one module, and the allowances it used."""
    findings: list[Finding] = []
    used: set[tuple[str, bytes]] = set()
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            key = (path, node.value)
            if key in ALLOWED_BYTES:
                used.add(key)
            else:
                findings.append(Finding(path, node.lineno, f"bytes literal {node.value!r}"))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "encode":
                findings.append(Finding(path, node.lineno, "text encoded to bytes (.encode)"))
            elif isinstance(func, ast.Name) and func.id == "bytes":
                findings.append(Finding(path, node.lineno, "bytes(...) built in the server"))
            elif (
                isinstance(func, ast.Name)
                and func.id == "bytearray"
                and (
                    len(node.args) > 1
                    or any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
                    or any(isinstance(a, ast.JoinedStr) for a in node.args)
                )
            ):
                findings.append(Finding(path, node.lineno, "bytearray(...) of text"))
    return findings, used


def server_modules() -> list[Path]:
    return sorted(SERVER.rglob("*.py"))


def test_server_builds_no_wire_bytes_by_hand() -> None:
    findings: list[Finding] = []
    used: set[tuple[str, bytes]] = set()
    for module in server_modules():
        rel = module.relative_to(SERVER).as_posix()
        found, allowed = scan_source(module.read_text(encoding="utf-8"), rel)
        findings += found
        used |= allowed
    assert not findings, "write these through protocol/response_writer.py:\n" + "\n".join(map(str, findings))
    stale = set(ALLOWED_BYTES) - used
    assert not stale, f"allowances no longer needed (remove them): {sorted(stale)}"


def test_the_scan_covers_the_server_package() -> None:
    names = {m.relative_to(SERVER).as_posix() for m in server_modules()}
    assert {"session.py", "commands_message.py", "commands_mailbox.py", "view.py", "listener.py"} <= names


HAND_BUILT = {
    "untagged": 'def f(s, n):\n    s.send(b"* %d EXISTS\\r\\n" % n)\n',
    "tagged f-string": 'def f(s, tag):\n    s.send(f"{tag} OK done\\r\\n".encode())\n',
    "joined pieces": 'def f(s, parts):\n    s.send(b" ".join(parts))\n',
    "literal framing": 'def f(v):\n    return b"{%d}" % len(v)\n',
    "continuation": 'def f(w):\n    w.write(b"+ go ahead")\n',
    "bytes of text": 'def f(w, t):\n    w.write(bytes(t, "ascii"))\n',
    "bytearray of text": 'def f(w):\n    w.write(bytearray("* OK", "ascii"))\n',
    "codecs": 'import codecs\ndef f(w, t):\n    w.write(codecs.encode(t, "utf-8"))\n',
    "allowed literal elsewhere": 'X = b"DONE"\n',
}


def test_the_scanner_finds_hand_built_responses() -> None:
    for label, source in HAND_BUILT.items():
        found, _ = scan_source(source, "handlers.py")
        assert found, f"not caught: {label}"


def test_the_scanner_passes_writer_calls_and_allowed_literals() -> None:
    clean = (
        "from ..protocol import response_writer as rw\n"
        "def f(s, view, n, data):\n"
        "    s.send(rw.exists_line(n))\n"
        "    s.send_response(rsp.UntaggedStatus('BYE', None, 'bye'))\n"
        "    return data.strip() == b'DONE', b''.join(s.out)\n"
    )
    found, used = scan_source(clean, "session.py")
    assert not found
    assert used == {("session.py", b"DONE"), ("session.py", b"")}
