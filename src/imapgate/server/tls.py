"""The gateway's own TLS: load certificate and key into a context, with errors
an operator can act on, and read what ``imapgate check`` reports about the
certificate (validity, host names).

The context is loaded before anything else starts (``serve``) and by
``imapgate check``; every failure is an :class:`OperatorError` naming the file:
missing, unreadable, not PEM, an encrypted key (the gateway starts unattended:
there is nobody to type a passphrase), certificate and key that do not belong
together.

The certificate is read with a small DER reader of the few X.509 fields
needed (validity, subject CN, subjectAltName DNS names and IP addresses):
the standard library parses certificates only of verified peers.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from ..config import ServerConfig
from ..errors import OperatorError

_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise OperatorError(f"[server] {what} {path}: no such file") from None
    except PermissionError:
        raise OperatorError(
            f"[server] {what} {path}: permission denied (it must be readable by the gateway's user)"
        ) from None
    except IsADirectoryError:
        raise OperatorError(f"[server] {what} {path}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise OperatorError(f"[server] {what} {path}: {exc.strerror}") from None


def _no_passphrase() -> str:
    raise OperatorError("encrypted")


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server-side TLS context, or None without a certificate configured."""
    if not (config.certificate and config.private_key):
        return None
    cert, key = config.certificate, config.private_key
    cert_text = _read(cert, "certificate")
    key_text = _read(key, "private_key")
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise OperatorError(f"[server] certificate {cert}: no PEM certificate in it (BEGIN CERTIFICATE)")
    if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", key_text):
        raise OperatorError(f"[server] private_key {key}: no PEM private key in it (BEGIN ... PRIVATE KEY)")
    if "ENCRYPTED" in key_text.split("-----END", 1)[0]:
        raise OperatorError(
            f"[server] private_key {key} is encrypted with a passphrase: the gateway starts unattended; "
            f"store it unencrypted with mode 0600 (openssl pkey -in {key} -out {key}.plain)"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key), password=_no_passphrase)
    except OperatorError:
        raise OperatorError(f"[server] private_key {key} is encrypted with a passphrase") from None
    except ssl.SSLError as exc:
        text = str(exc)
        # The same key type: KEY_VALUES_MISMATCH; another type (an EC key for
        # an RSA certificate): the key finds no certificate of its kind.
        if "KEY_VALUES_MISMATCH" in text or "NO_CERTIFICATE_ASSIGNED" in text:
            raise OperatorError(
                f"[server] certificate {cert} and private_key {key} do not belong together "
                "(the key is not the certificate's): check which files certbot or your CA wrote"
            ) from None
        raise OperatorError(
            f"[server] certificate {cert} / private_key {key}: cannot be loaded ({exc.reason or text})"
        ) from None
    return ctx


# --- reading the certificate ----------------------------------------------------------------


@dataclass(frozen=True)
class CertificateInfo:
    not_before: datetime.datetime
    not_after: datetime.datetime
    common_name: str
    #: subjectAltName DNS names and IP addresses (what clients check).
    names: tuple[str, ...]

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).total_seconds() / 86400


class _Der:
    """Just enough DER: tag, contents, position after."""

    @staticmethod
    def read(data: bytes, pos: int) -> tuple[int, bytes, int]:
        if pos + 2 > len(data):
            raise ValueError("truncated DER")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 4 or pos + n > len(data):
                raise ValueError("bad DER length")
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        if pos + length > len(data):
            raise ValueError("truncated DER")
        return tag, data[pos : pos + length], pos + length

    @classmethod
    def children(cls, data: bytes) -> list[tuple[int, bytes]]:
        out, pos = [], 0
        while pos < len(data):
            tag, value, pos = cls.read(data, pos)
            out.append((tag, value))
        return out


_OID_CN = bytes.fromhex("550403")
_OID_SAN = bytes.fromhex("551d11")


def _time(tag: int, value: bytes) -> datetime.datetime:
    text = value.decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.1: 50-99 are 19xx)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=datetime.UTC)


def certificate_info(path: Path) -> CertificateInfo:
    """The first certificate of a PEM file (the server's own, then the chain)."""
    m = _PEM_CERT.search(_read(path, "certificate"))
    if m is None:
        raise OperatorError(f"[server] certificate {path}: no PEM certificate in it")
    try:
        der = ssl.PEM_cert_to_DER_cert(m.group())
        _, cert, _ = _Der.read(der, 0)
        tbs = _Der.children(_Der.children(cert)[0][1])
        if tbs and tbs[0][0] == 0xA0:  # [0] version
            tbs = tbs[1:]
        validity, subject = _Der.children(tbs[3][1]), tbs[4][1]
        common_name = ""
        for _, rdn in _Der.children(subject):
            for _, atv in _Der.children(rdn):
                parts = _Der.children(atv)
                if parts[0][1] == _OID_CN:
                    common_name = parts[1][1].decode("utf-8", "replace")
        names: list[str] = []
        for tag, value in tbs[6:]:
            if tag != 0xA3:  # [3] extensions
                continue
            for _, ext in _Der.children(_Der.children(value)[0][1]):
                parts = _Der.children(ext)
                if parts[0][1] != _OID_SAN:
                    continue
                for gtag, gval in _Der.children(_Der.children(parts[-1][1])[0][1]):
                    if gtag == 0x82:  # dNSName
                        names.append(gval.decode("ascii", "replace"))
                    elif gtag == 0x87:  # iPAddress
                        names.append(str(ipaddress.ip_address(gval)))
        return CertificateInfo(_time(*validity[0]), _time(*validity[1]), common_name, tuple(names))
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise OperatorError(
            f"[server] certificate {path}: not a readable X.509 certificate ({exc})"
        ) from None
