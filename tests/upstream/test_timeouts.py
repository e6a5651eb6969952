"""The upstream command timeout counts time without progress, not time: a
transfer that keeps moving is never cut off, a hoster that stops answering is
given up on after ``command_timeout`` (real Dovecot behind a relay that paces
or stalls the bytes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from imapgate.config import UpstreamConfig
from imapgate.demo.dovecot import DovecotServer
from imapgate.demo.sample_mail import SampleMessage
from imapgate.protocol import commands as cmd
from imapgate.protocol import responses as rsp
from imapgate.protocol.fetch_items import FetchAttribute, Section
from imapgate.protocol.sequence import SequenceSet
from imapgate.upstream.connection import UpstreamConnection, UpstreamTimeout, UpstreamUnavailable, reason
from tests.gateway.relay import FaultRelay

pytestmark = pytest.mark.integration

TIMEOUT = 1.5
BIG = b"Subject: big\r\n\r\n" + b"x" * 76 + b"\r\n" * 0 + (b"y" * 78 + b"\r\n") * 6000  # ~480 KB


def config(port: int, **kw: float) -> UpstreamConfig:
    return UpstreamConfig(
        host="127.0.0.1", port=port, tls="none", user="shared", password="shared-secret", **kw
    )


@pytest.fixture
def upstream(fresh_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    when = datetime(2025, 1, 6, tzinfo=UTC)
    return fresh_dovecot(folders={"INBOX": [SampleMessage(BIG, (), when)]})


def fetch_body(tag: str) -> cmd.Command:
    return cmd.Fetch(tag, SequenceSet(((1, 1),)), (FetchAttribute("BODY", Section(), peek=True),), uid=True)


async def test_a_slow_transfer_is_not_cut_off_a_stalled_one_is(upstream: DovecotServer) -> None:
    relay = FaultRelay(upstream.port)
    relay.small_buffers = True
    await relay.start()
    conn = UpstreamConnection(config(relay.port, command_timeout=TIMEOUT))
    try:
        await conn.connect()
        assert (await conn.select("INBOX")).ok
        relay.rate = 150_000  # bytes/s: the ~480 KB answer takes about 3 s, twice the timeout
        start = time.monotonic()
        res = await conn.check(fetch_body)
        took = time.monotonic() - start
        assert took > TIMEOUT * 1.5, took
        body = next(f for f in res.of_type(rsp.FetchResponse)).items[b"BODY[]"]
        assert isinstance(body, bytes) and len(body) == len(BIG)

        # a big APPEND towards a slow hoster: the bytes it takes count as progress too
        relay.rate = 300_000
        start = time.monotonic()
        message = b"Subject: up\r\n\r\n" + (b"z" * 78 + b"\r\n") * 12000  # ~960 KB
        res = await conn.check(lambda tag: cmd.Append(tag, "INBOX", (cmd.AppendMessage(message, (), None),)))
        assert time.monotonic() - start > TIMEOUT * 1.5

        relay.rate = None
        relay.stalled = True  # the hoster stops answering, the connection stays open
        start = time.monotonic()
        with pytest.raises(UpstreamTimeout) as info:
            await conn.check(lambda tag: cmd.Noop(tag))
        assert TIMEOUT - 0.2 <= time.monotonic() - start < TIMEOUT + 2
        assert str(info.value) == f"upstream did not answer NOOP within {TIMEOUT:.0f} s"
        assert not conn.alive
    finally:
        relay.stalled = False
        await conn.close()
        await relay.stop()


async def test_a_hoster_that_accepts_but_never_greets(upstream: DovecotServer) -> None:
    relay = FaultRelay(upstream.port)
    await relay.start()
    relay.stalled = True
    conn = UpstreamConnection(config(relay.port, connect_timeout=1.0))
    try:
        start = time.monotonic()
        with pytest.raises(UpstreamUnavailable) as info:
            await conn.connect()
        assert time.monotonic() - start < 3
        assert str(info.value) == f"cannot connect to 127.0.0.1:{relay.port}: no answer within 1 s"
    finally:
        relay.stalled = False
        await relay.stop()


def test_reasons_are_never_empty() -> None:
    assert reason(TimeoutError()) == "TimeoutError"
    assert (
        reason(ConnectionResetError(104, "Connection reset by peer"))
        == "[Errno 104] Connection reset by peer"
    )
    assert reason(OSError()) == "OSError"
