"""The PROXY protocol header (HAProxy's spec, versions 1 and 2), sans-IO.

A load balancer in front of several gateway nodes sends one header before the
client's first byte, naming the client's address; with ``[server]
proxy_protocol = true`` the listener reads it so throttling and the journal
see the client, not the balancer.  ``parse(data)`` looks at the bytes received
so far: ``None`` means "not complete yet, read more", a ``(ProxyHeader,
consumed)`` pair is the header and its length (the rest belongs to the IMAP
stream, or the TLS handshake), ``ProxyError`` means the bytes are no valid
header -- the connection must be closed, never treated as IMAP (a client that
reaches the node directly could otherwise claim any address).

Version 1 is one text line, ``PROXY TCP4|TCP6|UNKNOWN src dst sport dport\\r\\n``,
at most ``MAX_V1`` bytes.  Version 2 is binary: the 12-byte signature, a
version/command byte (LOCAL: health checks of the balancer itself, no
address), the address family, a 16-bit length, the addresses, then TLVs
(ignored).  No I/O, no asyncio here.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_END = b"\r\n"
#: Bytes every header has at least (v1 "PROXY UNKNOWN\r\n" is 15, v2's fixed part 16): what
#: a reader takes first to tell the versions apart.
MIN_HEADER = 8
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The spec's longest v1 line (TCP6 with the longest addresses), CRLF included.
MAX_V1 = 107
#: A v2 header's address block and TLVs together; the spec allows 65,535 but balancers send
#: well under 1 KiB (addresses plus a few TLVs): a longer one is refused, not buffered.
MAX_V2_PAYLOAD = 2048
_V2_FIXED = 16


class ProxyError(ValueError):
    """Not a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int
    #: The client's (address, port), None for LOCAL/UNKNOWN/unix (use the socket's peer).
    source: tuple[str, int] | None
    destination: tuple[str, int] | None


def parse(data: bytes) -> tuple[ProxyHeader, int] | None:
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)]:
        return _parse_v2(data) if len(data) >= len(V2_SIGNATURE) else None
    if data[: len(V1_PREFIX)] == V1_PREFIX[: len(data)]:
        return _parse_v1(data) if len(data) >= len(V1_PREFIX) else None
    raise ProxyError("the connection did not start with a PROXY protocol header")


def v2_remaining(fixed: bytes) -> int:
    """Bytes of a v2 header after its 16-byte fixed part (from the length field)."""
    return int.from_bytes(fixed[14:16], "big")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, MAX_V1)
    if end < 0:
        if len(data) >= MAX_V1:
            raise ProxyError(f"PROXY v1 line longer than {MAX_V1} bytes")
        return None
    try:
        words = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyError("PROXY v1 line is not ASCII") from None
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return ProxyHeader(1, None, None), end + 2
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyError(f"malformed PROXY v1 line {data[:end]!r}")
    version = 4 if words[1] == "TCP4" else 6
    src, dst = _ip(words[2], version), _ip(words[3], version)
    return ProxyHeader(1, (src, _port(words[4])), (dst, _port(words[5]))), end + 2


def _ip(text: str, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyError(f"PROXY header: {text!r} is no IP address") from None
    if addr.version != version:
        raise ProxyError(f"PROXY header: {text!r} is no IPv{version} address")
    return str(addr)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535 or (len(text) > 1 and text[0] == "0"):
        raise ProxyError(f"PROXY header: bad port {text!r}")
    return int(text)


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    if len(data) < _V2_FIXED:
        return None
    ver_cmd, family, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"PROXY v2: unknown version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command not in (0, 1):
        raise ProxyError(f"PROXY v2: unknown command {command}")
    if length > MAX_V2_PAYLOAD:
        raise ProxyError(f"PROXY v2: {length} bytes of addresses and TLVs (at most {MAX_V2_PAYLOAD})")
    total = _V2_FIXED + length
    if len(data) < total:
        return None
    body = data[_V2_FIXED:total]
    if command == 0:  # LOCAL: the balancer's own connection (health check)
        return ProxyHeader(2, None, None), total
    transport, proto = family >> 4, family & 0x0F
    if proto not in (1, 2) or transport not in (0, 1, 2, 3):
        raise ProxyError(f"PROXY v2: unknown address family {family:#04x}")
    if transport == 1:
        return _v2_addresses(body, 4, 4), total
    if transport == 2:
        return _v2_addresses(body, 16, 6), total
    return ProxyHeader(2, None, None), total  # AF_UNSPEC or unix: no IP address to use


def _v2_addresses(body: bytes, size: int, version: int) -> ProxyHeader:
    if len(body) < 2 * size + 4:
        raise ProxyError(f"PROXY v2: address block too short for IPv{version}")
    src = ipaddress.ip_address(body[:size])
    dst = ipaddress.ip_address(body[size : 2 * size])
    sport, dport = struct.unpack("!HH", body[2 * size : 2 * size + 4])
    return ProxyHeader(2, (str(src), sport), (str(dst), dport))
