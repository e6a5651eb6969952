"""One upstream connection budget for all nodes, and HAProxy in front of two nodes (issue 16).

* Two ``imapgate serve`` processes on one PostgreSQL with ``[upstream] max_connections = 2``
  under load from six clients: the connections Dovecot has from them (counted in the kernel's
  TCP table, every 10 ms) are never more than 2, and every command is answered.
* The same with ``max_connections = 4``: each node keeps its fair share of 2 open (the
  leader's watcher counts in its share), so Dovecot sees a handful of logins while the
  clients run hundreds of commands that reach it -- no reconnect per operation.
* A real HAProxy with ``send-proxy-v2`` in front of two nodes with ``[server] proxy_protocol``:
  imapclient and mbsync work through it, and the journal has the client's own address
  (127.0.0.7), not HAProxy's (127.0.0.1)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from imapclient import IMAPClient

from imapgate.demo import DovecotServer
from tests.support.cli import node_configs, run, serving
from tests.support.gateway import GatewayHarness
from tests.support.haproxy import HAProxyServer
from tests.support.imap import RawClient
from tests.support.mbsync import mbsync_config, require_mbsync
from tests.support.postgres import PostgresDatabase
from tests.support.tcp import established_at

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "deployment-nodes.md"
BUDGET = 2
CLIENTS_PER_NODE = 3
LOAD_SECONDS = 8.0


def dovecot_logins(dc: DovecotServer) -> int:
    """Logins of the shared account in Dovecot's log so far (one per connection opened)."""
    try:
        return dc.log_path.read_text(encoding="utf-8", errors="replace").count("Login: user=<shared>")
    except FileNotFoundError:
        return 0


@dataclass
class Loaded:
    """What a load run on two nodes saw."""

    peak: int  # most connections at Dovecot at once
    answered: list[int]  # commands per client
    failures: list[str]
    #: Commands sent and logins at Dovecot in the second half of the run (settled).
    late_commands: int
    late_logins: int


def load_two_nodes(dc: DovecotServer, postgres_db: PostgresDatabase, tmp_path: Path, budget: int) -> Loaded:
    """Two ``serve`` nodes with ``budget`` upstream connections, three clients on each
    looping SELECT, UID FETCH and UID STORE for LOAD_SECONDS."""
    ports, cfgs = node_configs(
        tmp_path, upstream_port=dc.port, store_url=postgres_db.url, upstream={"max_connections": budget}
    )
    assert run("user", "add", "bob", "--password-stdin", cfg=cfgs[0], input="bob-pw\n").returncode == 0
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, established_at(dc.port))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    answered: list[int] = []
    failures: list[str] = []
    late: list[int] = []  # one entry per command in the second half
    half = threading.Event()

    def load(port: int, n: int) -> None:
        try:
            c = RawClient("127.0.0.1", port, timeout=60)
            c.login("bob", "bob-pw")
            folder = (b"INBOX", b"Archive", b"INBOX")[n % 3]
            done = 0
            end = time.monotonic() + LOAD_SECONDS
            while time.monotonic() < end:
                for cmd in (b"SELECT " + folder, b"UID FETCH 1:* (FLAGS)", b"UID STORE 1 FLAGS (\\Flagged)"):
                    tag = b"L%d" % done
                    lines = c.command(tag, cmd)
                    if not lines[-1].startswith(tag + b" OK"):
                        failures.append(lines[-1].decode(errors="replace"))
                    done += 1
                    if half.is_set():
                        late.append(1)
            answered.append(done)
            c.close()
        except Exception as exc:
            failures.append(repr(exc))

    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with serving(cfgs[0], logs[0], port=ports[0]), serving(cfgs[1], logs[1], port=ports[1]):
        sampler.start()
        # bob's private \Seen of each folder is initialised once per node, one node after the
        # other: two nodes initialising it at the same moment collide on the primary key of
        # private_flags (a known race of the store's delete + insert, reported, not this test's).
        for port in ports:
            warm = RawClient("127.0.0.1", port, timeout=60)
            warm.login("bob", "bob-pw")
            for folder in (b"INBOX", b"Archive"):
                assert warm.command(b"W", b"SELECT " + folder)[-1].startswith(b"W OK")
            warm.close()
        threads = [
            threading.Thread(target=load, args=(port, i)) for port in ports for i in range(CLIENTS_PER_NODE)
        ]
        for t in threads:
            t.start()
        time.sleep(LOAD_SECONDS / 2)
        logins = dovecot_logins(dc)
        half.set()
        for t in threads:
            t.join(LOAD_SECONDS + 90)
        late_logins = dovecot_logins(dc) - logins
        stop.set()
        sampler.join(5)
    return Loaded(peak, answered, failures, len(late), late_logins)


def test_two_nodes_never_exceed_the_upstream_budget(
    fresh_dovecot: Callable[..., DovecotServer], postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    dc = fresh_dovecot()
    seen = load_two_nodes(dc, postgres_db, tmp_path, BUDGET)
    print(f"upstream budget {BUDGET}: peak {seen.peak} at Dovecot, commands per client {seen.answered}")
    assert seen.peak <= BUDGET, f"{seen.peak} connections at Dovecot, budget {BUDGET}"
    assert seen.peak >= 1, "the sampler saw no connection at all: it would not see too many either"
    assert len(seen.answered) == 2 * CLIENTS_PER_NODE and not seen.failures, seen.failures[:5]
    assert min(seen.answered) > 3, seen.answered  # every client got work done on both nodes


def test_two_busy_nodes_keep_their_share_open(
    fresh_dovecot: Callable[..., DovecotServer], postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    dc = fresh_dovecot()
    seen = load_two_nodes(dc, postgres_db, tmp_path, 4)
    print(
        f"upstream budget 4: peak {seen.peak} at Dovecot, commands per client {seen.answered}; "
        f"second half: {seen.late_commands} commands, {seen.late_logins} logins at Dovecot"
    )
    assert 2 <= seen.peak <= 4, seen.peak
    assert len(seen.answered) == 2 * CLIENTS_PER_NODE and not seen.failures, seen.failures[:5]
    # A third of the commands (the STOREs) go to Dovecot; a reconnect per operation would
    # be a login for each of them.
    assert seen.late_commands >= 150, seen.late_commands
    assert seen.late_logins * 20 <= seen.late_commands, (seen.late_logins, seen.late_commands)


class DocumentedHAProxy(HAProxyServer):
    """The HAProxy config of docs/deployment-nodes.md, with the test's addresses (and the
    admin socket the helper polls for readiness)."""

    def render_config(self) -> str:
        text = DOCS.read_text(encoding="utf-8")
        block = re.search(r"```haproxy\n(.*?)```", text, re.S)
        assert block is not None, "no haproxy block in docs/deployment-nodes.md"
        config = block.group(1).replace("bind :993", f"bind {self.host}:{self.port}")
        for (host, port), documented in zip(self.backends, ("10.0.0.11:993", "10.0.0.12:993"), strict=True):
            assert documented in config
            config = config.replace(documented, f"{host}:{port}")
        return f"global\n    stats socket {self.admin_socket} mode 600 level admin\n" + config


def test_haproxy_in_front_of_two_nodes(
    fresh_dovecot: Callable[..., DovecotServer], postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    dc = fresh_dovecot()
    proxied = {"proxy_protocol": True}
    store = {"url": postgres_db.url}
    with (
        GatewayHarness(
            upstream_port=dc.port,
            data_dir=tmp_path / "a",
            store=store,
            server=proxied,
            users={"alice": "a-pw"},
        ) as a,
        GatewayHarness(upstream_port=dc.port, data_dir=tmp_path / "b", store=store, server=proxied) as b,
        contextlib.ExitStack() as stack,
    ):
        lb = DocumentedHAProxy([(a.host, a.port), (b.host, b.port)])
        stack.enter_context(lb)
        # imapclient through the balancer, two sessions at once: leastconn puts one on each node.
        sessions = [
            stack.enter_context(IMAPClient(lb.host, port=lb.port, ssl=False, timeout=30)) for _ in "ab"
        ]
        for c in sessions:
            c.login("alice", "a-pw")
            assert c.select_folder("INBOX")[b"EXISTS"] > 0
            assert c.search(["ALL"])
        stats = lb.server_stats()
        assert all(int(row["scur"]) >= 1 for row in stats.values()), stats
        for c in sessions:
            c.logout()

        # The journal has the client's address (a loopback alias), not HAProxy's 127.0.0.1.
        for tag in (b"1", b"2"):
            raw = RawClient(lb.host, lb.port, source="127.0.0.7")
            raw.login("alice", "a-pw")
            assert raw.command(b"X" + tag, b"NOOP")[-1].startswith(b"X" + tag + b" OK")
            raw.close()
        logins = [e for e in a.gw.journal.recent(200) if e.action == "login" and e.user == "alice"]
        addresses = {e.address for e in logins}
        assert "127.0.0.7" in addresses, addresses
        assert addresses <= {"127.0.0.1", "127.0.0.7"}, addresses

        # mbsync (a strict full-sync client) mirrors the INBOX through the balancer.
        mbsync = require_mbsync()
        conf = mbsync_config(tmp_path, lb.port, "alice", "a-pw", channel="inbox", patterns="INBOX")
        proc = subprocess.run([mbsync, "-c", str(conf), "inbox"], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        mirrored = list((tmp_path / "mail" / "INBOX" / "cur").iterdir()) + list(
            (tmp_path / "mail" / "INBOX" / "new").iterdir()
        )
        assert len(mirrored) == len(a.gw.replica.get("INBOX").records)  # type: ignore[union-attr]
