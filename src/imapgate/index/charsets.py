"""Charset conversion to UTF-8 as Dovecot does it for search (``charset-iconv.c``).

Dovecot converts every text part and encoded word with the system's iconv;
``us-ascii``/``ascii``/``utf-8``/``utf8`` are taken as UTF-8 (so 8-bit bytes in
a part labelled US-ASCII are read as UTF-8).  On an invalid byte it appends one
U+FFFD and skips that byte; an incomplete sequence at the end is dropped.

Here the same glibc iconv is called through ctypes when the gateway runs on
glibc (the hoster's Dovecot nearly always does), so charset names, aliases and
conversion tables are the hoster's.  Without glibc only the charsets in
``_PYTHON_FALLBACK`` are converted (with Python's codecs, which agree with
glibc on them); any other name is reported as unknown, and the caller treats
the message as one the index cannot answer for.
"""

from __future__ import annotations

import codecs
import ctypes
import ctypes.util
import errno
import threading
from typing import Final

_UTF8_NAMES: Final = frozenset({"us-ascii", "ascii", "utf-8", "utf8"})
#: Used only without glibc: single-byte charsets whose Python codec maps every byte as
#: glibc's iconv does (checked in tests/index/test_charsets.py against glibc).
_PYTHON_FALLBACK: Final = frozenset({
    "iso-8859-1", "latin1", "iso-8859-2", "iso-8859-15", "windows-1250", "windows-1251",
    "windows-1252", "koi8-r", "koi8-u",
})


class UnknownCharset(Exception):
    """The charset has no converter here (Dovecot: ``charset_to_utf8_begin`` fails)."""


def is_utf8(charset: str) -> bool:
    """Dovecot's ``charset_is_utf8``."""
    return charset.lower() in _UTF8_NAMES


class _Iconv:
    """glibc ``iconv`` through ctypes; one lock, since a descriptor is not shared."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name, use_errno=True)
        if not hasattr(libc, "gnu_get_libc_version"):
            raise OSError("not glibc")
        self._open = libc.iconv_open
        self._open.restype = ctypes.c_void_p
        self._open.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
        self._iconv = libc.iconv
        self._iconv.restype = ctypes.c_size_t
        self._iconv.argtypes = (
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_size_t),
        )
        self._close = libc.iconv_close
        self._close.argtypes = (ctypes.c_void_p,)
        self._lock = threading.Lock()

    def convert(self, charset: bytes, data: bytes, *, strict: bool = False) -> bytes:
        """UTF-8 bytes for ``data`` in ``charset``, with Dovecot's error handling
        (``strict``: ValueError on any invalid or incomplete input instead)."""
        with self._lock:
            cd = self._open(b"UTF-8", charset)
            if cd is None or cd == ctypes.c_void_p(-1).value:
                raise UnknownCharset(charset.decode("latin-1"))
            try:
                return self._run(cd, data, strict)
            finally:
                self._close(cd)

    def _run(self, cd: int, data: bytes, strict: bool) -> bytes:
        out = bytearray()
        src = ctypes.create_string_buffer(data, len(data))
        base = ctypes.addressof(src)
        pos = 0
        cap = max(64, len(data) * 4 + 16)
        dst = ctypes.create_string_buffer(cap)
        last_invalid = -1
        while pos < len(data):
            inp = ctypes.c_char_p(base + pos)
            inleft = ctypes.c_size_t(len(data) - pos)
            outp = ctypes.c_char_p(ctypes.addressof(dst))
            outleft = ctypes.c_size_t(cap)
            res = self._iconv(
                cd, ctypes.byref(inp), ctypes.byref(inleft), ctypes.byref(outp), ctypes.byref(outleft)
            )
            err = ctypes.get_errno() if res == ctypes.c_size_t(-1).value else 0
            out += dst.raw[: cap - outleft.value]
            pos = len(data) - inleft.value
            if res != ctypes.c_size_t(-1).value:
                break
            if err == errno.E2BIG:
                continue
            if strict:
                raise ValueError("invalid input for the charset")
            if err == errno.EINVAL:
                break  # incomplete sequence at the end: dropped
            # EILSEQ: one replacement character (not two in a row), skip one byte.
            if last_invalid != len(out):
                out += "\ufffd".encode()
                last_invalid = len(out)
            pos += 1
        return bytes(out)


def _load() -> _Iconv | None:
    try:
        return _Iconv()
    except (OSError, AttributeError):
        return None


_ICONV: Final = _load()


def have_iconv() -> bool:
    return _ICONV is not None


def convert(charset: str | bytes, data: bytes, *, strict: bool = False) -> bytes:
    """``data`` in ``charset`` as UTF-8 bytes (not yet validated: the caller reads them
    as Dovecot's UTF-8 path does).  Raises ``UnknownCharset``; with ``strict``,
    ValueError for input that does not convert cleanly (a search string)."""
    raw = charset if isinstance(charset, bytes) else charset.encode("latin-1", "replace")
    name = raw.decode("latin-1")
    if is_utf8(name):
        return data
    if b"\0" in raw:
        raw = raw.split(b"\0", 1)[0]  # a C string ends there
    if _ICONV is not None:
        return _ICONV.convert(raw, data, strict=strict)
    if name.lower() not in _PYTHON_FALLBACK:
        raise UnknownCharset(name)
    return codecs.decode(data, name.lower(), "strict" if strict else "replace").encode("utf-8")
