"""``[server] proxy_protocol = true``: the listener reads the balancer's PROXY header (v1 on the
plain listener, v2 before the TLS handshake on the TLS one), the session and its log see the
client's address, and a connection without a valid header is closed before any IMAP."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from pathlib import Path

import pytest

from tests.support.gateway import GatewayHarness
from tests.support.gateway_setup import CLOSED_PORT
from tests.support.tls import make_certificate

V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_tcp4(src: str, sport: int) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 993)
    return V2 + b"\x21\x11" + struct.pack("!H", len(body)) + body


def read_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            return buf
        buf += chunk
    return buf


def test_proxy_headers_give_the_client_address(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path)
    server = {
        "proxy_protocol": True,
        "tls_listen": ["127.0.0.1:0"],
        "certificate": str(cert.cert),
        "private_key": str(cert.key),
    }
    with GatewayHarness(
        upstream_port=CLOSED_PORT,
        data_dir=tmp_path / "gw",
        server=server,
        initial_sync=False,
        users={"alice": "alice-pw"},
    ) as gw:
        plain = next(p for h, p, tls in gw.server.addresses if not tls)

        # v1 on the plain listener, the IMAP bytes in the same packet.
        with socket.create_connection(("127.0.0.1", plain), timeout=30) as s:
            s.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 143\r\n")
            assert read_line(s).startswith(b"* OK")
            gw.wait_for(
                lambda: any(x.address == "203.0.113.9" for x in gw.server.live.values()),
                what="the session has the client's address",
            )

        # No header (a client reaching the node directly): closed, never a greeting.
        with socket.create_connection(("127.0.0.1", plain), timeout=30) as s:
            s.sendall(b"A1 LOGIN alice alice-pw\r\n")
            start = time.monotonic()
            assert read_line(s) == b""
            assert time.monotonic() - start < 8


@pytest.mark.xfail(
    strict=False,
    reason="known bug (stop 21): on an implicit-TLS listener the handshake after a PROXY v2 header "
    "times out at times under load — most likely the ClientHello, arriving in the same read as the "
    "header, stays in the StreamReader's buffer and never reaches start_tls; see docs/deployment-nodes.md",
)
def test_proxy_v2_before_tls_on_the_tls_listener(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path)
    server = {
        "proxy_protocol": True,
        "tls_listen": ["127.0.0.1:0"],
        "certificate": str(cert.cert),
        "private_key": str(cert.key),
    }
    with GatewayHarness(
        upstream_port=CLOSED_PORT,
        data_dir=tmp_path / "gw",
        server=server,
        initial_sync=False,
        users={"alice": "alice-pw"},
    ) as gw:
        secure = next(p for h, p, tls in gw.server.addresses if tls)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", secure), timeout=30) as raw:
            raw.sendall(v2_tcp4("198.51.100.23", 40000))
            with ctx.wrap_socket(raw) as s:
                assert read_line(s).startswith(b"* OK")
                s.sendall(b"A1 LOGIN alice alice-pw\r\n")
                assert read_line(s).startswith(b"A1 OK")
                gw.wait_for(
                    lambda: any(x.address == "198.51.100.23" for x in gw.server.live.values()),
                    what="the TLS session has the client's address",
                )
