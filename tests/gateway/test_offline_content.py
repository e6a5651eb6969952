"""Content while the hoster is down (issue 9): header fields, ENVELOPE,
BODYSTRUCTURE and MIME parts of a message whose whole body is cached are
derived from that body and answered exactly as the hoster answered them; a
message that is not cached still gets NO [UNAVAILABLE]."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imapgate.demo.dovecot import DovecotServer
from tests.support.gateway import GatewayHarness
from tests.support.imap import dovecot_login, flatten, session

pytestmark = pytest.mark.integration

ITEMS = [
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]",
    "BODY.PEEK[HEADER]",
    "RFC822.HEADER",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2]",
    "BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED)]<0.100>",
]


@pytest.fixture
def upstream(fresh_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    return fresh_dovecot()


@pytest.fixture
def gw(upstream: DovecotServer, tmp_path: Path) -> Iterator[GatewayHarness]:
    with GatewayHarness(
        upstream_port=upstream.port, data_dir=tmp_path / "gw", users={"alice": "alice-pw"}
    ) as harness:
        yield harness


def answer(data: list[object], item: str) -> bytes:
    """The answer without UID items and with the item name as the client asked it
    (the gateway and Dovecot may place UID differently)."""
    raw = flatten(data)  # type: ignore[arg-type]
    return re.sub(rb"UID \d+ ?|\(\s*| ?\)$", b"", raw).strip()


def test_cached_bodies_serve_headers_and_structure_while_hoster_is_down(
    gw: GatewayHarness, upstream: DovecotServer
) -> None:
    with session(dovecot_login(upstream)) as direct:
        direct.select("Rechnungen", readonly=True)
        expected = {item: answer(direct.uid("FETCH", "1:3", f"({item})")[1], item) for item in ITEMS}
    alice = gw.imaplib_login("alice", "alice-pw")
    alice.select("Rechnungen")
    typ, _ = alice.uid("FETCH", "1:3", "(BODY.PEEK[])")  # the client downloads the mails
    assert typ == "OK"

    upstream.stop()
    for item in ITEMS:
        typ, data = alice.uid("FETCH", "1:3", f"({item})")
        assert typ == "OK", (item, data)
        assert answer(data, item) == expected[item], item
    # not cached: the truth, quickly
    typ, data = alice.uid("FETCH", "4", "(ENVELOPE)")
    assert typ == "NO" and b"[UNAVAILABLE]" in data[0], data
    # a cached message with an item that cannot be derived (BINARY) is not half answered
    typ, data = alice.uid("FETCH", "1", "(BINARY.PEEK[1])")
    assert typ == "NO" and b"[UNAVAILABLE]" in data[0], data
    alice.logout()
