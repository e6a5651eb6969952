"""The dashboard through the gateway's real folder permissions (issue 11): the same
``AclPolicy`` the IMAP server asks, with ACLs set in the web gateway's store (AclStore,
as ``imapgate acl set`` writes them), not a stand-in policy.

For bob: ``Private`` has no ``l`` (``-bob`` takes every right: it does not exist for him,
404, absent from the folder list and the live feed), ``Secret`` has ``l`` but not ``r``
(403, search refused).  alice keeps every right there (``authenticated lrswipkxte``)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imapgate.demo import DovecotServer
from imapgate.gateway.policy import Actor
from imapgate.web.data import Change
from imapgate.web.server import WebServer
from tests.support.gateway import GatewayHarness
from tests.support.web import login, web_client

from .conftest import USERS

pytestmark = pytest.mark.integration


def _set(h: GatewayHarness, folder: str, identifier: str, rights: str) -> None:
    source = h.gw.service.acl
    assert source is not None
    source.store.set_entry(folder, identifier, rights, default=source.default)
    h.call_soon(source.reload)  # at once, as the CLI's notice does


@pytest.fixture(scope="module")
def gateway(web_dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    """Overrides the conftest's gateway: no stand-in policy, the gateway's own AclPolicy."""
    data_dir: Path = tmp_path_factory.mktemp("web-acl-gw")
    with GatewayHarness(upstream_port=web_dovecot.port, data_dir=data_dir, users=USERS) as h:
        _set(h, "Private", "-bob", "lrswipkxtea")
        _set(h, "Secret", "-bob", "rswipkxtea")
        yield h


@pytest.fixture
def alice(web: WebServer) -> httpx.Client:
    client = web_client(web)
    assert login(client, "alice", "alice-pw").status_code == 303
    return client


@pytest.fixture
def bob(web: WebServer) -> httpx.Client:
    client = web_client(web)
    assert login(client, "bob", "bob-pw").status_code == 303
    return client


def test_the_policy_is_the_gateways_acl(gateway: GatewayHarness) -> None:
    table = gateway.call_soon(lambda: gateway.gw.acl)
    assert str(table.rights("bob", "Private")) == ""
    assert str(table.rights("bob", "Secret")) == "l"
    assert str(table.rights("alice", "Secret")) == "lrswipkxte"


def test_folder_list(alice: httpx.Client, bob: httpx.Client) -> None:
    bobs = {f["name"] for f in bob.get("/api/folders").json()["folders"]}
    assert "Secret" in bobs and "Private" not in bobs and "INBOX" in bobs
    alices = {f["name"] for f in alice.get("/api/folders").json()["folders"]}
    assert {"Secret", "Private", "INBOX"} <= alices
    # The HTML page leaks nothing either.
    page = bob.get("/inbox")
    assert page.status_code == 200 and "Private" not in page.text


def test_without_l_404_with_l_without_r_403(alice: httpx.Client, bob: httpx.Client) -> None:
    for url in (
        "/api/folders/Private/messages",
        "/api/messages/Private/1",
        "/messages/Private/1/raw",
        "/messages/Private/1/html",
        "/messages/Private/1/parts/0",
        "/folders/Private",
        "/api/folders/Private/messages?q=secret",
    ):
        assert bob.get(url).status_code == 404, url
    for url in (
        "/api/folders/Secret/messages",
        "/api/messages/Secret/1",
        "/messages/Secret/1/raw",
        "/messages/Secret/1/parts/0",
        "/messages/Secret/1/html",
        "/folders/Secret",
    ):
        assert bob.get(url).status_code == 403, url
    # A 404 for a hidden folder is the one a missing folder gets: nothing tells them apart.
    hidden = bob.get("/api/folders/Private/messages")
    missing = bob.get("/api/folders/NoSuchFolder/messages")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text.replace("Private", "X") == missing.text.replace("NoSuchFolder", "X")
    for url in ("/api/folders/Private/messages", "/api/folders/Secret/messages", "/folders/Secret"):
        assert alice.get(url).status_code == 200, url


def test_search_refused_without_r(alice: httpx.Client, bob: httpx.Client) -> None:
    assert bob.get("/api/folders/Secret/messages?q=salaries").status_code == 403
    assert bob.get("/folders/Secret?q=salaries").status_code == 403
    assert alice.get("/api/folders/Secret/messages?q=salaries").json()["matching"] == 1


def test_live_feed_follows_the_acl(web: WebServer, gateway: GatewayHarness) -> None:
    """Real changes over IMAP (alice flags a message in each folder): bob's stream gets the
    INBOX change and nothing about Private or Secret; alice's gets all three."""
    feed = web.dashboard.live
    ids = {name: gateway.gw.users.get(name) for name in ("alice", "bob")}
    seen: dict[str, list[Change]] = {"alice": [], "bob": []}
    streams = [
        gateway.call_soon(lambda n=name, u=user: feed.open(Actor(u.id, n), seen[n].append, 0, None))
        for name, user in ids.items() if user is not None
    ]
    imap = gateway.imaplib_login("alice", "alice-pw")
    try:
        for folder in ("Private", "Secret", "INBOX"):
            typ, _ = imap.select(folder)
            assert typ == "OK", folder
            typ, _ = imap.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
            assert typ == "OK", folder
            typ, _ = imap.uid("STORE", "1", "-FLAGS", "(\\Flagged)")
            assert typ == "OK", folder
        # A folder created under Private inherits its entries: bob must not read its name.
        assert imap.create("Private/Payroll")[0] == "OK"
        assert imap.delete("Private/Payroll")[0] == "OK"
        deadline = time.monotonic() + 5
        while not any(c.folder == "INBOX" for c in gateway.call_soon(lambda: list(seen["bob"]))):
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
    finally:
        imap.logout()
        for stream in streams:
            gateway.call_soon(lambda s=stream: feed.close(s))
    bob_folders = {c.folder for c in seen["bob"] if c.kind == "flags"}
    assert bob_folders == {"INBOX"}, seen["bob"]
    assert {"Private", "Secret", "INBOX"} <= {c.folder for c in seen["alice"] if c.kind == "flags"}
    text = json.dumps([c.text for c in seen["bob"]] + [str(c.summaries) for c in seen["bob"]])
    assert "Private" not in text and "Secret" not in text


def test_event_stream_over_http_leaks_no_hidden_folder(web: WebServer, gateway: GatewayHarness) -> None:
    """The SSE endpoint itself (not only the feed object): bob's first event after a change in
    Private is the following INBOX change."""
    client = web_client(web, timeout=httpx.Timeout(10, read=10))
    login(client, "bob", "bob-pw")
    got: list[dict[str, object]] = []
    connected = threading.Event()

    def read() -> None:
        with client.stream("GET", "/api/events") as r:
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert connected.wait(10)
    imap = gateway.imaplib_login("alice", "alice-pw")
    try:
        for folder in ("Private", "INBOX"):
            assert imap.select(folder)[0] == "OK"
            assert imap.uid("STORE", "1", "+FLAGS", "($Label1)")[0] == "OK"
        reader.join(5)
    finally:
        imap.logout()
        client.close()
    assert got and got[0]["folder"] == "INBOX", got
