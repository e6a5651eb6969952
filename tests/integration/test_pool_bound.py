"""The upstream connection pool stays within its bound under a team's load.

10 team members × 5 imaplib connections each (50 client sessions, at once) against a Dovecot that,
like a hoster, allows only 10 connections per user and address (``mail_max_userip_connections``
= 10).  Every session does SELECT + FETCH + STORE (a keyword of its own) and all succeed; the
flags are upstream; and the gateway never had more than ``max_connections`` upstream connections open.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from tests.support.gateway import GatewayHarness
from tests.support.imap import fetch_literals, ok, session, upstream_flags

pytestmark = pytest.mark.integration

DovecotFactory = Callable[..., DovecotServer]
USERS = 10
PER_USER = 5


def test_fifty_sessions_within_the_pool_bound(fresh_dovecot: DovecotFactory, tmp_path: Path) -> None:
    dc = fresh_dovecot(max_userip_connections=10)
    users = {f"member{i}": f"pw-{i}" for i in range(USERS)}
    with GatewayHarness(upstream_port=dc.port, data_dir=tmp_path / "gw", users=users) as gw:
        limit = gw.gw.pool.max_connections
        assert limit < 10  # the hoster's cap leaves room for nothing else otherwise
        barrier = threading.Barrier(USERS * PER_USER)
        slow: list[float] = []

        def member(n: int) -> int:
            user = f"member{n // PER_USER}"
            uid = 1 + n  # each session flags its own message: UIDs 1..50 of Support
            with session(gw.imaplib_login(user, users[user])) as c:
                barrier.wait(30)  # all 50 logged in at the same time
                start = time.monotonic()
                typ, data = c.select("Support")
                assert typ == "OK", data
                got = fetch_literals(ok(c.uid("FETCH", f"{uid}:{uid + 2}", "(FLAGS BODY.PEEK[HEADER])")))
                assert len(got) == 3 and all(b"Message-ID" in h or b"Message-Id" in h for h in got.values())
                # A keyword of this session's own: the STORE really changes something (some of
                # these messages are \Flagged already, and an unchanged flag gets no FETCH).
                data = ok(c.uid("STORE", str(uid), "+FLAGS", f"($Pool{n})"))
                mine = re.compile(rb"UID %d .*\$Pool%d\b" % (uid, n))
                assert any(isinstance(d, bytes) and mine.search(d) for d in data), data
                slow.append(time.monotonic() - start)
            return uid

        with concurrent.futures.ThreadPoolExecutor(USERS * PER_USER) as pool:
            done = sorted(pool.map(member, range(USERS * PER_USER)))
        assert done == list(range(1, USERS * PER_USER + 1))
        assert gw.gw.pool.peak_open <= limit, (gw.gw.pool.peak_open, limit)
        assert max(slow) < 30, max(slow)
    flags = upstream_flags(dc.host, dc.port, "Support", f"1:{USERS * PER_USER}")
    assert all(f"$Pool{u - 1}" in flags[u] for u in range(1, USERS * PER_USER + 1)), flags
