"""A *target* is where an integration scenario runs: through the gateway (as a team member)
or directly against Dovecot (as the shared account) — the reference.  Scenarios written against
:class:`Target` make the same assertions on both."""

from __future__ import annotations

import imaplib
import socket
from dataclasses import dataclass

from tests.support.gateway import GatewayHarness
from tests.support.imap import UPSTREAM_PASSWORD, UPSTREAM_USER


@dataclass
class Target:
    name: str  # "gateway" or "dovecot"
    host: str
    port: int
    user: str
    password: str
    upstream_host: str
    upstream_port: int
    harness: GatewayHarness | None = None

    @property
    def via_gateway(self) -> bool:
        return self.harness is not None

    def client(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4(self.host, self.port, timeout=30)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def login(self) -> imaplib.IMAP4:
        c = self.client()
        typ, data = c.login(self.user, self.password)
        assert typ == "OK", data
        return c


def gateway_target(h: GatewayHarness, user: str = "alice", password: str = "alice-pw") -> Target:
    up = h.config.upstream
    return Target("gateway", h.host, h.port, user, password, up.host, up.port, h)


def dovecot_target(host: str, port: int) -> Target:
    return Target("dovecot", host, port, UPSTREAM_USER, UPSTREAM_PASSWORD, host, port)
