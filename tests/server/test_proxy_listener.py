"""``[server] proxy_protocol = true``: the listener reads the balancer's PROXY header (v1 on the
plain listener, v2 before the TLS handshake on the TLS one), the session and its log see the
client's address, and a connection without a valid header is closed before any IMAP.

One gateway (both listeners) serves the whole module."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Iterator

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


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


class MemoryTls:
    """A TLS client over a plain socket through ``ssl.MemoryBIO``: the test decides what goes
    into each ``send`` -- here the PROXY header and the ClientHello in one segment, what a
    balancer passing TLS through (or a loaded machine coalescing two writes) delivers."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=False)

    def handshake(self, prefix: bytes) -> None:
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self.sock.sendall(prefix + self.outgoing.read())  # header + ClientHello: one send
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out:
            self.sock.sendall(out)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection during the TLS handshake")
        self.incoming.write(data)

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def read_line(self) -> bytes:
        buf = b""
        while not buf.endswith(b"\r\n"):
            try:
                buf += self.tls.read(1)
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        return buf


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    tmp = tmp_path_factory.mktemp("proxy")
    cert = make_certificate(tmp)
    server = {
        "proxy_protocol": True,
        "tls_listen": ["127.0.0.1:0"],
        "certificate": str(cert.cert),
        "private_key": str(cert.key),
    }
    with GatewayHarness(
        upstream_port=CLOSED_PORT,
        data_dir=tmp / "gw",
        server=server,
        initial_sync=False,
        users={"alice": "alice-pw"},
    ) as harness:
        yield harness


def port(gw: GatewayHarness, tls: bool) -> int:
    return next(p for _, p, is_tls in gw.server.addresses if is_tls == tls)


def test_proxy_v1_gives_the_client_address(gw: GatewayHarness) -> None:
    # v1 on the plain listener, the IMAP bytes in the same packet.
    with socket.create_connection(("127.0.0.1", port(gw, False)), timeout=30) as s:
        s.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 143\r\nA1 CAPABILITY\r\n")
        assert read_line(s).startswith(b"* OK")
        assert read_line(s).startswith(b"* CAPABILITY")
        assert read_line(s).startswith(b"A1 OK")
        gw.wait_for(
            lambda: any(x.address == "203.0.113.9" for x in gw.server.live.values()),
            what="the session has the client's address",
        )


def test_proxy_v1_header_in_pieces(gw: GatewayHarness) -> None:
    """A header that arrives in several segments is put together (never read past its end)."""
    with socket.create_connection(("127.0.0.1", port(gw, False)), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (b"PRO", b"XY TCP4 203.0.113.", b"10 127.0.0.1 51000 143\r", b"\nA1 NOOP\r\n"):
            s.sendall(piece)
            time.sleep(0.02)
        assert read_line(s).startswith(b"* OK")
        assert read_line(s).startswith(b"A1 OK")
        gw.wait_for(
            lambda: any(x.address == "203.0.113.10" for x in gw.server.live.values()),
            what="the session has the client's address",
        )


def test_no_proxy_header_is_closed(gw: GatewayHarness) -> None:
    # No header (a client reaching the node directly): closed, never a greeting.
    with socket.create_connection(("127.0.0.1", port(gw, False)), timeout=30) as s:
        s.sendall(b"A1 LOGIN alice alice-pw\r\n")
        start = time.monotonic()
        assert read_line(s) == b""
        assert time.monotonic() - start < 8


def test_proxy_v2_then_tls_handshake(gw: GatewayHarness) -> None:
    """Header, then the handshake as its own segments (what ssl.wrap_socket does)."""
    with socket.create_connection(("127.0.0.1", port(gw, True)), timeout=30) as raw:
        raw.sendall(v2_tcp4("198.51.100.23", 40000))
        with client_context().wrap_socket(raw) as s:
            assert read_line(s).startswith(b"* OK")
            s.sendall(b"A1 LOGIN alice alice-pw\r\n")
            assert read_line(s).startswith(b"A1 OK")
            gw.wait_for(
                lambda: any(x.address == "198.51.100.23" for x in gw.server.live.values()),
                what="the TLS session has the client's address",
            )


def test_proxy_v2_and_client_hello_in_one_segment(gw: GatewayHarness) -> None:
    """The bug this guards against: the ClientHello read together with the header must still
    reach the TLS handshake (it used to stay in asyncio's StreamReader and the handshake hung)."""
    for n in range(3):
        with socket.create_connection(("127.0.0.1", port(gw, True)), timeout=10) as raw:
            tls = MemoryTls(raw, client_context())
            tls.handshake(v2_tcp4("198.51.100.24", 41000 + n))
            assert tls.read_line().startswith(b"* OK")
            tls.sendall(b"A1 LOGIN alice alice-pw\r\n")
            assert tls.read_line().startswith(b"A1 OK")
            gw.wait_for(
                lambda: any(x.address == "198.51.100.24" for x in gw.server.live.values()),
                what="the TLS session has the client's address",
            )


def test_tls_without_proxy_header_is_closed(gw: GatewayHarness) -> None:
    """A ClientHello straight away (a client reaching the TLS port directly) is no header."""
    with (
        socket.create_connection(("127.0.0.1", port(gw, True)), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
    ):
        client_context().wrap_socket(raw).close()


def test_proxy_v1_then_starttls(gw: GatewayHarness) -> None:
    """Behind the balancer on the plain port: STARTTLS still works (the session's stream is
    server-side, as with asyncio's own listener)."""
    with socket.create_connection(("127.0.0.1", port(gw, False)), timeout=30) as raw:
        raw.sendall(b"PROXY TCP4 203.0.113.11 127.0.0.1 51001 143\r\nA1 STARTTLS\r\n")
        assert read_line(raw).startswith(b"* OK")
        assert read_line(raw).startswith(b"A1 OK")
        with client_context().wrap_socket(raw) as s:
            s.sendall(b"A2 LOGIN alice alice-pw\r\n")
            assert read_line(s).startswith(b"A2 OK")
            gw.wait_for(
                lambda: any(x.address == "203.0.113.11" for x in gw.server.live.values()),
                what="the STARTTLS session has the client's address",
            )
