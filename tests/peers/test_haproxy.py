"""The private HAProxy in front of several backends: the PROXY header (v2 and v1) arrives and
says who the client is; connections are spread; a backend can be taken out; stop is clean.

The backends here are tiny threads that parse the header with the ``proxy-protocol`` package
(a parser nobody on this team wrote) and then echo."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from proxyprotocol import ProxyProtocolIncompleteError
from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.result import ProxyResult

from tests.support.haproxy import HAProxyServer
from tests.support.peers import HAProxyFactory

pytestmark = pytest.mark.integration


@dataclass
class Seen:
    header: bytes
    result: ProxyResult | None
    payload: bytes


@dataclass
class Backend:
    name: str
    expect_proxy: bool = True
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: socketserver.ThreadingTCPServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return str(host), int(port)


def _read_header(sock: socket.socket) -> tuple[bytes, ProxyResult]:
    """Read exactly the PROXY header, as much as the parser asks for each time."""
    parser = ProxyProtocolDetect()
    data = b""
    while True:
        try:
            return data, parser.unpack(data)
        except ProxyProtocolIncompleteError as exc:
            want = exc.want_read
            if want.want_bytes is not None:
                chunk = b""
                while len(chunk) < want.want_bytes:
                    part = sock.recv(want.want_bytes - len(chunk))
                    if not part:
                        raise ConnectionError("closed inside the PROXY header") from exc
                    chunk += part
            else:  # v1: one line
                chunk = b""
                while not chunk.endswith(b"\n"):
                    part = sock.recv(1)
                    if not part:
                        raise ConnectionError("closed inside the PROXY header") from exc
                    chunk += part
            data += chunk


@contextlib.contextmanager
def backend(name: str, expect_proxy: bool = True) -> Iterator[Backend]:
    state = Backend(name, expect_proxy)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(10)
            header, result = _read_header(sock) if state.expect_proxy else (b"", None)
            sock.sendall(f"* OK {state.name}\r\n".encode())
            payload = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(4096):
                    payload += chunk
                    sock.sendall(chunk)
            with state.lock:
                state.seen.append(Seen(header, result, payload))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.server = server
    # A short poll interval: shutdown() waits for one.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _converse(lb: HAProxyServer, payload: bytes = b"a1 CAPABILITY\r\n") -> tuple[str, tuple[str, int]]:
    """One client connection through the balancer; the backend's greeting and our address."""
    with socket.create_connection((lb.host, lb.port), timeout=10) as sock:
        client_address = sock.getsockname()
        greeting = sock.makefile("rb").readline().decode().strip()
        sock.sendall(payload)
        echoed = b""
        while len(echoed) < len(payload):
            echoed += sock.recv(4096)
        assert echoed == payload
    return greeting, client_address


def _wait_seen(backends: list[Backend], count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(len(b.seen) for b in backends) < count:
        assert time.monotonic() < deadline, "backends did not record the connections"
        time.sleep(0.01)


def test_proxy_v2_header_tells_the_client_address(haproxy_factory: HAProxyFactory) -> None:
    with backend("node1") as node1, backend("node2") as node2:
        lb = haproxy_factory([node1.address, node2.address])
        greeting, client = _converse(lb)
        _wait_seen([node1, node2], 1)
        (seen,) = node1.seen + node2.seen
        assert greeting in ("* OK node1", "* OK node2")
        assert seen.header.startswith(b"\r\n\r\n\x00\r\nQUIT\n")  # the v2 signature
        assert seen.header[12] == 0x21  # version 2, command PROXY
        assert seen.result is not None and seen.result.proxied
        assert seen.result.source == (ipaddress.ip_address(client[0]), client[1])
        assert seen.result.peername == client
        assert seen.result.sockname == (lb.host, lb.port)
        # Nothing of the client's bytes was eaten or added.
        assert seen.payload == b"a1 CAPABILITY\r\n"


def test_proxy_v1_header(haproxy_factory: HAProxyFactory) -> None:
    with backend("node1") as node1:
        lb = haproxy_factory([node1.address], proxy="v1")
        _greeting, client = _converse(lb)
        _wait_seen([node1], 1)
        (seen,) = node1.seen
        assert seen.header == f"PROXY TCP4 {client[0]} {lb.host} {client[1]} {lb.port}\r\n".encode()
        assert seen.result is not None and seen.result.peername == client


def test_without_proxy_header(haproxy_factory: HAProxyFactory) -> None:
    with backend("plain", expect_proxy=False) as plain:
        lb = haproxy_factory([plain.address], proxy=None)
        _converse(lb, b"hello\r\n")
        _wait_seen([plain], 1)
        assert plain.seen[0].payload == b"hello\r\n"


def test_round_robin_and_taking_a_node_out(haproxy_factory: HAProxyFactory) -> None:
    with backend("node1") as node1, backend("node2") as node2:
        lb = haproxy_factory([node1.address, node2.address])
        greetings = [_converse(lb)[0] for _ in range(4)]
        assert sorted(greetings) == ["* OK node1"] * 2 + ["* OK node2"] * 2
        _wait_seen([node1, node2], 4)
        assert {name: int(row["stot"]) for name, row in lb.server_stats().items()} == {"s1": 2, "s2": 2}
        lb.set_server_state("s1", "maint")
        assert [_converse(lb)[0] for _ in range(3)] == ["* OK node2"] * 3
        lb.set_server_state("s1", "ready")
        assert {_converse(lb)[0] for _ in range(2)} == {"* OK node1", "* OK node2"}


def test_stop_closes_listener_and_open_connections(haproxy_factory: HAProxyFactory) -> None:
    with backend("node1") as node1:
        lb = haproxy_factory([node1.address])
        sock = socket.create_connection((lb.host, lb.port), timeout=10)
        try:
            assert sock.makefile("rb").readline() == b"* OK node1\r\n"
            lb.stop()
            assert sock.recv(100) == b""  # closed by the balancer going away
        finally:
            sock.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((lb.host, lb.port), timeout=5).close()
