"""Every endpoint of the dashboard in-process (httpx against the WebServer on the gateway's loop,
in front of a real Dovecot): logins and cookies, 401/403/404, CSRF refusals, security headers,
the JSON twins, hostile mail pages, operations endpoints, live events."""

from __future__ import annotations

import json
import threading
import time
from html.parser import HTMLParser
from urllib.parse import quote

import httpx
import pytest

from imapgate.team.journal import JournalEntry
from imapgate.web.server import WebServer
from tests.support.gateway import GatewayHarness
from tests.support.web import base_url, csrf_token, login, start_web, stop_web, web_client

from .corpus import small_corpus

pytestmark = pytest.mark.integration


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


def uid_of(client: httpx.Client, folder: str, subject: str | None = None) -> int:
    msgs = client.get(f"/api/folders/{quote(folder, safe='')}/messages?per_page=200").json()["messages"]
    return next(m["uid"] for m in msgs if subject is None or m["subject"] == subject)


# --- logins, cookies, headers ---------------------------------------------------------------


PAGES = ["/inbox", "/folders/INBOX", "/messages/INBOX/1", "/live", "/audit", "/recovery", "/admin"]
APIS = [
    "/api/folders",
    "/api/folders/INBOX/messages",
    "/api/messages/INBOX/1",
    "/api/events",
    "/api/audit",
    "/messages/INBOX/1/raw",
    "/messages/INBOX/1/html",
    "/messages/INBOX/1/parts/0",
]


def test_without_a_session(web: WebServer) -> None:
    with web_client(web) as c:
        for url in APIS:
            r = c.get(url)
            assert r.status_code == 401, url
        for url in PAGES:
            r = c.get(url)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), url
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/inbox"


def test_security_headers_on_every_response(web: WebServer, alice: httpx.Client) -> None:
    anonymous = web_client(web)
    responses = [
        anonymous.get(u)
        for u in [
            "/login",
            "/nope",
            "/static/app.css",
            "/healthz",
            "/metrics",
            "/api/folders",
            "/mail/config-v1.1.xml",
        ]
    ]
    responses += [alice.get(u) for u in [*PAGES, *APIS[:3], "/api/nope", "/folders/NoSuchFolder"]]
    for r in responses:
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp, r.url
        assert "'unsafe-inline'" not in csp or "sandbox" in csp, r.url
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["referrer-policy"] == "no-referrer", r.url
        if "/static/" not in str(r.url):
            assert r.headers["cache-control"] == "no-store", r.url
    page = alice.get("/inbox").headers["content-security-policy"]
    for directive in (
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ):
        assert directive in page


def test_login_cookie_flags_and_failures(web: WebServer) -> None:
    with web_client(web) as c:
        r = login(c, "alice", "wrong")
        assert r.status_code == 401 and "Wrong user name or password" in r.text
        assert "imapgate_session" not in r.headers.get("set-cookie", "")
        r = login(c, "alice", "alice-pw")
        assert r.status_code == 303 and r.headers["location"] == "/inbox"
        cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("imapgate_session="))
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back
        assert len(cookie.split(";")[0].split("=", 1)[1]) >= 40  # opaque, 256 bits
        assert c.get("/api/folders").status_code == 200
    with web_client(web) as c:  # the form's token is required (login CSRF)
        r = c.post("/login", data={"username": "alice", "password": "alice-pw", "csrf_token": "x"})
        assert r.status_code == 403 and "imapgate_session" not in r.headers.get("set-cookie", "")


def test_open_redirect_refused(web: WebServer) -> None:
    with web_client(web) as c:
        form = c.get("/login?next=//evil.test/")
        assert 'value="/inbox"' in form.text
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = c.post(
            "/login",
            data={
                "username": "alice",
                "password": "alice-pw",
                "csrf_token": token,
                "next": "https://evil.test/",
            },
        )
        assert r.headers["location"] == "/inbox"


def _proxied_login(web: WebServer) -> tuple[httpx.Response, str]:
    """Log in through a "proxy" that says https (the test client itself speaks plain HTTP, so it
    would never send a Secure cookie back: the login cookie is passed by hand)."""
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    with web_client(web, headers=headers) as c:
        form = c.get("/login")
        set_cookie = form.headers["set-cookie"]
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        name, value = set_cookie.split(";")[0].split("=", 1)
        c.cookies.clear()
        r = c.post(
            "/login",
            data={"username": "alice", "password": "alice-pw", "csrf_token": token},
            headers={"Cookie": f"{name}={value}"},
        )
        cookie = next((v for v in r.headers.get_list("set-cookie") if "imapgate_session=" in v), "")
        return r, set_cookie + "|" + cookie


def test_secure_cookie_only_behind_a_trusted_proxy(gateway: GatewayHarness) -> None:
    proxied = start_web(gateway, trusted_proxies=("127.0.0.1",))
    try:
        r, cookies = _proxied_login(proxied)
        login_cookie, session_cookie = cookies.split("|")
        assert login_cookie.startswith("__Host-imapgate_login=") and "secure" in login_cookie.lower()
        assert r.status_code == 303, r.text
        assert session_cookie.startswith("__Host-imapgate_session=") and "secure" in session_cookie.lower()
        sessions = proxied.web.sessions.sessions()
        assert sessions[-1].address == "203.0.113.9" and sessions[-1].tls
    finally:
        stop_web(gateway, proxied)
    untrusted = start_web(gateway, trusted_proxies=("10.0.0.0/8",))
    try:
        r, cookies = _proxied_login(untrusted)
        login_cookie, session_cookie = cookies.split("|")
        assert session_cookie.startswith("imapgate_session=") and "secure" not in session_cookie.lower()
        assert untrusted.web.sessions.sessions()[-1].address == "127.0.0.1"
    finally:
        stop_web(gateway, untrusted)


def test_csrf_refusals_and_logout(alice: httpx.Client) -> None:
    assert alice.post("/logout").status_code == 403  # no token
    assert alice.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    token = csrf_token(alice)
    assert (
        alice.post("/logout", headers={"X-CSRF-Token": token, "Origin": "https://evil.test"}).status_code
        == 403
    )
    assert alice.get("/api/folders").status_code == 200  # still logged in
    r = alice.post("/logout", headers={"X-CSRF-Token": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert alice.get("/api/folders").status_code == 401


def test_removed_or_disabled_user_loses_web_sessions(web: WebServer, gateway: GatewayHarness) -> None:
    gateway.add_user("dave", "dave-pw")
    with web_client(web) as c:
        login(c, "dave", "dave-pw")
        assert c.get("/api/folders").status_code == 200
        gateway.gw.users.set_disabled("dave", True)
        control = gateway.gw.control
        assert control is not None
        assert gateway.call_soon(lambda: control.user_changed("dave")) == 1
        assert c.get("/api/folders").status_code == 401
        gateway.gw.users.set_disabled("dave", False)
        login(c, "dave", "dave-pw")
        assert c.get("/api/folders").status_code == 200
        gateway.gw.users.remove("dave")
        assert gateway.call_soon(control.check_accounts) >= 1  # the periodic check
        assert c.get("/api/folders").status_code == 401


# --- data pages and their JSON twins ----------------------------------------------------------


def test_folders(alice: httpx.Client, gateway: GatewayHarness) -> None:
    folders = {f["name"]: f for f in alice.get("/api/folders").json()["folders"]}
    inbox = gateway.gw.replica.get("INBOX")
    assert inbox is not None and folders["INBOX"]["messages"] == inbox.exists
    assert {"INBOX", "Hostile", "Secret", "Private"} <= set(folders)
    page = alice.get("/inbox")
    assert page.status_code == 200 and 'href="/folders/Hostile"' in page.text


def test_message_list_paging_and_filters(alice: httpx.Client, gateway: GatewayHarness) -> None:
    inbox = gateway.gw.replica.get("INBOX")
    assert inbox is not None
    first = alice.get("/api/folders/INBOX/messages?per_page=10").json()
    second = alice.get("/api/folders/INBOX/messages?per_page=10&page=2").json()
    assert [m["uid"] for m in first["messages"]] == inbox.uids[::-1][:10]
    assert [m["uid"] for m in second["messages"]] == inbox.uids[::-1][10:20]
    assert first["pages"] == -(-inbox.exists // 10)
    assert all(m["subject"] and m["from"]["address"] for m in first["messages"])
    unread = alice.get("/api/folders/INBOX/messages?filter=unread&per_page=200").json()
    assert unread["matching"] == first["unread"] and all(not m["seen"] for m in unread["messages"])
    assert alice.get("/api/folders/INBOX/messages?filter=bogus").status_code == 400
    assert alice.get("/api/folders/INBOX/messages?page=x").status_code == 400
    html = alice.get("/folders/INBOX?page=2")
    assert html.status_code == 200 and "page 2 of" in html.text


def test_message_page_marks_read_for_this_user_only(alice: httpx.Client, bob: httpx.Client) -> None:
    unread = alice.get("/api/folders/INBOX/messages?filter=unread").json()["messages"]
    uid = unread[0]["uid"]
    before_bob = {
        m["uid"] for m in bob.get("/api/folders/INBOX/messages?filter=unread&per_page=200").json()["messages"]
    }
    msg = alice.get(f"/api/messages/INBOX/{uid}").json()
    assert msg["uid"] == uid and msg["seen"] and msg["headers"]["from"]
    after_alice = {
        m["uid"]
        for m in alice.get("/api/folders/INBOX/messages?filter=unread&per_page=200").json()["messages"]
    }
    after_bob = {
        m["uid"] for m in bob.get("/api/folders/INBOX/messages?filter=unread&per_page=200").json()["messages"]
    }
    assert uid not in after_alice and uid in before_bob and after_bob == before_bob
    page = alice.get(f"/messages/INBOX/{uid}")
    assert page.status_code == 200 and "<pre" in page.text
    assert alice.get("/api/messages/INBOX/999999").status_code == 404


def test_permissions_403_and_404(bob: httpx.Client, alice: httpx.Client) -> None:
    names = {f["name"] for f in bob.get("/api/folders").json()["folders"]}
    assert "Secret" in names and "Private" not in names
    for url in [
        "/api/folders/Private/messages",
        "/api/messages/Private/1",
        "/messages/Private/1/raw",
        "/messages/Private/1/html",
        "/api/folders/NoSuch/messages",
    ]:
        assert bob.get(url).status_code == 404, url
    for url in [
        "/api/folders/Secret/messages",
        "/api/messages/Secret/1",
        "/messages/Secret/1/raw",
        "/messages/Secret/1/parts/0",
        "/messages/Secret/1/html",
    ]:
        assert bob.get(url).status_code == 403, url
    assert bob.get("/folders/Secret").status_code == 403
    assert bob.get("/folders/Private").status_code == 404
    assert alice.get("/api/folders/Secret/messages").status_code == 200


def test_audit_pages_are_full_pages_of_what_the_member_may_see(
    gateway: GatewayHarness, alice: httpx.Client, bob: httpx.Client
) -> None:
    """bob may not read Secret: its entries never reach him, and his pages are still full
    (the folder filter is in the query: filtered after it, the newest 120 entries -- all
    Secret -- left his first page empty)."""
    base = time.time() - 3600
    entries = [JournalEntry("zed", "web", "STORE", "INBOX", str(i), ts=base + i) for i in range(45)]
    entries += [JournalEntry("zed", "web", "STORE", "Secret", "1", ts=base + 100 + i) for i in range(120)]
    entries += [JournalEntry("zed", "web", "LOGIN", None, ts=base + 300 + i) for i in range(5)]
    entries += [JournalEntry("bob", "web", "LOGIN", None, ts=base + 400 + i) for i in range(3)]
    with gateway.gw.journal.engine.begin() as conn:
        for e in entries:
            e.writer()(conn)

    def pages(client: httpx.Client, user: str) -> list[tuple[int, bool, set[object]]]:
        out = []
        for page in (1, 2, 3):
            got = client.get("/api/audit", params={"user": user, "per_page": 20, "page": page}).json()
            out.append((len(got["entries"]), got["more"], {e["folder"] for e in got["entries"]}))
        return out

    assert pages(bob, "zed") == [(20, True, {"INBOX"}), (20, True, {"INBOX"}), (5, False, {"INBOX"})]
    own, _, folders = pages(bob, "bob")[0]
    assert own >= 3 and folders == {None}  # his own entries without a folder (his logins too)
    everything = bob.get("/api/audit", params={"per_page": 500}).json()["entries"]
    assert everything and not any(e["folder"] in ("Secret", "Private") for e in everything)
    assert not any(e["user"] == "zed" and e["folder"] is None for e in everything)  # not his
    seen = alice.get("/api/audit", params={"user": "zed", "per_page": 500}).json()["entries"]
    assert sum(e["folder"] == "Secret" for e in seen) == 120  # alice may read Secret


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_hostile_message_pages(alice: httpx.Client) -> None:
    msgs = alice.get("/api/folders/Hostile/messages?per_page=200").json()["messages"]
    assert len(msgs) == len(small_corpus())
    for m in msgs:
        page = alice.get(f"/messages/Hostile/{m['uid']}?view=html")
        assert page.status_code == 200
        p = _Tags()
        p.feed(page.text)
        for tag, attrs in p.tags:
            assert not any(k.startswith("on") for k in attrs), (m["subject"], tag, attrs)
            if tag == "script":
                assert attrs.get("src", "").startswith("/static/"), (m["subject"], attrs)
            assert tag not in {"object", "embed", "base", "meta"} or (
                tag == "meta" and "http-equiv" not in attrs
            )
            if tag == "iframe":
                assert attrs.get("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
                assert attrs["src"].endswith("/html")
        frame = alice.get(f"/messages/Hostile/{m['uid']}/html")
        assert frame.status_code == 200
        csp = frame.headers["content-security-policy"]
        assert "sandbox" in csp and "script-src" not in csp and "default-src 'none'" in csp
        assert "<script" not in frame.text.lower()
    xss = next(m for m in msgs if m["subject"].startswith("<script>"))
    page = alice.get(f"/messages/Hostile/{xss['uid']}").text
    assert "&lt;script&gt;window.canary=1&lt;/script&gt;" in page and "<script>window" not in page
    listing = alice.get("/folders/Hostile?per_page=200").text
    assert "<script>window" not in listing


def test_downloads_are_never_rendered(alice: httpx.Client) -> None:
    uid = uid_of(alice, "Hostile", "invoice")
    msg = alice.get(f"/api/messages/Hostile/{uid}").json()
    part = msg["attachments"][0]
    r = alice.get(f"/messages/Hostile/{uid}/parts/{part['part']}")
    assert r.status_code == 200 and r.content.startswith(b"<script>")
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith('attachment; filename="invoice___lmth.exe"')
    assert "sandbox" in r.headers["content-security-policy"]
    raw = alice.get(f"/messages/Hostile/{uid}/raw")
    assert raw.headers["content-disposition"].startswith('attachment; filename="message-')
    assert b"Subject: invoice" in raw.content
    assert alice.get(f"/messages/Hostile/{uid}/parts/77").status_code == 404


# --- operations ---------------------------------------------------------------------------------


def test_healthz_and_metrics(web: WebServer, alice: httpx.Client) -> None:
    with web_client(web) as c:
        h = c.get("/healthz")
        assert h.status_code == 200
        body = h.json()
        assert body["ready"] and body["upstream"] == "up" and body["folders"] >= 10
        assert body["sync_lag_seconds"] is not None and body["upstream_connections"]["max"] == 4
        m = c.get("/metrics")
        assert m.headers["content-type"].startswith("text/plain")
        text = m.text
        for name in (
            "imapgate_web_sessions",
            "imapgate_imap_sessions",
            "imapgate_upstream_up 1.0",
            'imapgate_upstream_connections{state="open"}',
            "imapgate_sync_lag_seconds",
            'imapgate_logins_total{outcome="succeeded"}',
            "imapgate_command_seconds",
        ):
            assert name in text, name
    web.web.metrics.observe_command("FETCH", 0.003)
    web.web.metrics.observe_command("XYZZY", 0.003)
    text = web_client(web).get("/metrics").text
    assert 'imapgate_command_seconds_count{command="FETCH"} 1.0' in text
    assert 'command="OTHER"' in text and "XYZZY" not in text


def test_autoconfig(web: WebServer, gateway: GatewayHarness) -> None:
    port = gateway.port
    with web_client(web, headers={"Host": "autoconfig.example.com"}) as c:
        for url in [
            "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40example.com",
            "/mail/config-v1.1.xml?emailaddress=alice%40example.com",
        ]:
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
            assert "<hostname>example.com</hostname>" in r.text and f"<port>{port}</port>" in r.text
            assert "<socketType>plain</socketType>" in r.text and "%EMAILLOCALPART%" in r.text
            assert '<emailProvider id="example.com">' in r.text
    body = (
        b'<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/'
        b'outlook/requestschema/2006"><Request><EMailAddress>bob@example.com</EMailAddress>'
        b"<AcceptableResponseSchema>x</AcceptableResponseSchema></Request></Autodiscover>"
    )
    with web_client(web, headers={"Host": "autodiscover.example.com"}) as c:
        r = c.post("/autodiscover/autodiscover.xml", content=body)
        assert r.status_code == 200 and "<LoginName>bob</LoginName>" in r.text
        assert "<Server>example.com</Server>" in r.text and f"<Port>{port}</Port>" in r.text
        assert "<Type>IMAP</Type>" in r.text


# --- live events --------------------------------------------------------------------------------


def test_event_stream_shows_an_imap_change_within_a_second(web: WebServer, gateway: GatewayHarness) -> None:
    client = web_client(web, timeout=httpx.Timeout(10, read=10))
    login(client, "alice", "alice-pw")
    got: list[dict[str, object]] = []
    connected = threading.Event()

    def read() -> None:
        with client.stream("GET", "/api/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert connected.wait(10)
    imap = gateway.imaplib_login("bob", "bob-pw")
    try:
        imap.select("Archive")
        start = time.monotonic()
        typ, _ = imap.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
        assert typ == "OK"
        reader.join(5)
        elapsed = time.monotonic() - start
    finally:
        imap.logout()
    assert got and got[0]["kind"] == "flags" and got[0]["folder"] == "Archive" and got[0]["uids"] == [1]
    assert elapsed < 1.0, elapsed
    client.close()


def test_a_page_stream_starts_where_the_page_was_read(web: WebServer, gateway: GatewayHarness) -> None:
    """A change made after the page was read but before its event stream connected (a slow
    browser, a loaded machine) still reaches the page: the page names where its data was
    read (``data-events="/api/events?after=N"``) and the stream replays from there."""
    import re

    client = web_client(web, timeout=httpx.Timeout(10, read=10))
    login(client, "alice", "alice-pw")
    page = client.get("/folders/Archive").text
    m = re.search(r'data-events="(/api/events\?after=(\d+))"', page)
    assert m is not None, "the page does not say where its stream starts"
    url, after = m.group(1), int(m.group(2))
    imap = gateway.imaplib_login("bob", "bob-pw")
    try:
        imap.select("Archive")
        assert imap.uid("STORE", "2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    finally:
        imap.logout()
    deadline = time.monotonic() + 5
    while web.dashboard.live.last_id <= after:  # the feed has it; no stream was open
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with client.stream("GET", url) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                change = json.loads(line[6:])
                break
    assert change["kind"] == "flags" and change["folder"] == "Archive" and change["uids"] == [2]
    client.close()


def test_event_stream_filtered_by_read_right(web: WebServer, gateway: GatewayHarness) -> None:
    from imapgate.web.data import Change

    feed = web.dashboard.live
    seen: dict[str, list[Change]] = {"alice": [], "bob": []}
    from imapgate.gateway.policy import Actor

    a = feed.open(Actor(1, "alice"), seen["alice"].append, 0, None)
    b = feed.open(Actor(2, "bob"), seen["bob"].append, 0, None)
    try:
        gateway.call_soon(lambda: feed._publish(Change(0, time.time(), "flags", "Secret", (1,))))
        gateway.call_soon(lambda: feed._publish(Change(0, time.time(), "flags", "INBOX", (1,), user_id=2)))
    finally:
        feed.close(a)
        feed.close(b)
    assert [c.folder for c in seen["alice"]] == ["Secret"]
    assert [c.folder for c in seen["bob"]] == ["INBOX"]


def test_base_url_helper(web: WebServer) -> None:
    assert base_url(web).startswith("http://127.0.0.1:")


def test_search_in_a_folder_matches_imap_and_respects_rights(
    alice: httpx.Client, bob: httpx.Client, gateway: GatewayHarness
) -> None:
    """The folder page's search is IMAP's TEXT search through the same service (index
    where it covers the folder, else the hoster): the same UIDs as an IMAP client gets."""
    imap = gateway.imaplib_login("alice", "alice-pw")
    counts = []
    try:
        imap.select("INBOX", readonly=True)
        for word in ("Rechnung", "Grüße", "zzz-no-such-text"):
            imap.literal = word.encode("utf-8")  # type: ignore[attr-defined]
            typ, data = imap.uid("SEARCH", "CHARSET", "UTF-8", "TEXT")
            assert typ == "OK"
            expected = sorted((int(x) for x in data[0].split()), reverse=True)
            got = alice.get("/api/folders/INBOX/messages", params={"q": word, "per_page": "200"}).json()
            assert got["query"] == word and got["matching"] == len(expected)
            assert [m["uid"] for m in got["messages"]] == expected[:200]
            counts.append(len(expected))
    finally:
        imap.logout()
    assert counts[0] > 0 and counts[1] > 0 and counts[2] == 0, counts
    secret = alice.get("/api/folders/Secret/messages?q=salaries").json()
    assert secret["matching"] == 1
    assert bob.get("/api/folders/Secret/messages?q=salaries").status_code == 403
    assert alice.get("/api/folders/Secret/messages?q=" + "x" * 201).status_code == 400
    page = alice.get("/folders/Secret?q=salaries")
    assert page.status_code == 200 and 'value="salaries"' in page.text and "1 matching" in page.text
