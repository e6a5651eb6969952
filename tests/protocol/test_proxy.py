"""The PROXY protocol parser (protocol/proxy.py) on byte transcripts: HAProxy's v1 and v2
headers as the spec writes them, split anywhere, and what must be refused."""

from __future__ import annotations

import socket
import struct

import pytest

from imapgate.protocol.proxy import MAX_V1, V2_SIGNATURE, ProxyError, ProxyHeader, parse


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def test_v1_tcp4_and_the_rest_stays() -> None:
    data = b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 993\r\nA1 CAPABILITY\r\n"
    header, used = parse(data)  # type: ignore[misc]
    assert header == ProxyHeader(1, ("192.0.2.10", 56324), ("198.51.100.1", 993))
    assert data[used:] == b"A1 CAPABILITY\r\n"


def test_v1_tcp6_and_unknown() -> None:
    line = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 143\r\n"
    header, used = parse(line)  # type: ignore[misc]
    assert header.source == ("2001:db8::1", 4000) and used == len(line)
    header, _ = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n")  # type: ignore[misc]
    assert header.source is None


@pytest.mark.parametrize("cut", range(1, 44))
def test_v1_split_anywhere_needs_more(cut: int) -> None:
    data = b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 993\r\n"
    assert parse(data[:cut]) is None
    assert parse(data) is not None


def test_v2_tcp4_tcp6_local_with_tlvs() -> None:
    body = socket.inet_aton("203.0.113.7") + socket.inet_aton("10.0.0.11") + struct.pack("!HH", 40000, 993)
    tlv = b"\x03\x00\x04abcd"  # a CRC32c TLV: ignored
    data = v2(1, 0x11, body + tlv) + b"\x16\x03\x01"  # a TLS ClientHello follows
    header, used = parse(data)  # type: ignore[misc]
    assert header == ProxyHeader(2, ("203.0.113.7", 40000), ("10.0.0.11", 993))
    assert data[used:] == b"\x16\x03\x01"
    six = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + socket.inet_pton(socket.AF_INET6, "::1")
    header, _ = parse(v2(1, 0x21, six + struct.pack("!HH", 1, 2)))  # type: ignore[misc]
    assert header.source == ("2001:db8::7", 1)
    header, _ = parse(v2(0, 0x00, b""))  # type: ignore[misc]  # LOCAL: a health check
    assert header.source is None
    for cut in range(1, len(data) - 3):
        assert parse(data[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"A1 LOGIN alice secret\r\n",  # no header: a client reaching the node directly
        b"PROXY TCP4 not-an-ip 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",  # IPv6 in TCP4
        b"PROXY TCP4 192.0.2.1 198.51.100.1 99999 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 1\r\n",
        b"PROXY " + b"x" * MAX_V1,  # no CRLF within the limit
        V2_SIGNATURE + b"\x31\x11\x00\x00",  # version 3
        V2_SIGNATURE + b"\x2f\x11\x00\x00",  # command 15
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # 65,535 bytes announced
        v2(1, 0x11, b"\x01\x02"),  # address block too short
    ],
)
def test_refused(data: bytes) -> None:
    with pytest.raises(ProxyError):
        parse(data)
