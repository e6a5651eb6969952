"""The dashboard's Admin area (pages and ``/api/admin/``) against a real gateway in front of
Dovecot, with the gateway's own folder permissions (``AclPolicy``): carol is the admin, alice and
bob are not.  Every action goes through ``AdminService`` (the CLI's code), so each test checks
the effect where the CLI and IMAP clients see it: an IMAP login or SELECT, the journal, the real
``imapgate`` command reading the same store."""

from __future__ import annotations

import contextlib
import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from imapgate.demo import DovecotServer
from imapgate.web.server import WebServer
from tests.support.browser import page_errors
from tests.support.cli import run, write_config
from tests.support.gateway import GatewayHarness
from tests.support.web import browser_login, csrf_token, login, shot, web_client

from .conftest import USERS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(web_dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    """Overrides the conftest's gateway: the gateway's own AclPolicy, carol an admin."""
    data_dir: Path = tmp_path_factory.mktemp("web-admin-gw")
    with GatewayHarness(upstream_port=web_dovecot.port, data_dir=data_dir, users=USERS) as h:
        source = h.gw.service.acl
        assert source is not None
        source.store.set_admin("carol", True)
        h.call_soon(source.reload)
        yield h


@pytest.fixture(scope="module")
def cli_config(
    gateway: GatewayHarness, web_dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A config file for the real ``imapgate`` command on the gateway's store."""
    folder = tmp_path_factory.mktemp("web-admin-cli")
    data_dir = gateway.config.store.data_dir
    return write_config(folder, upstream_port=web_dovecot.port, extra=f'\n[store]\ndata_dir = "{data_dir}"\n')


def _client(web: WebServer, user: str) -> httpx.Client:
    client = web_client(web)
    assert login(client, user, USERS.get(user, f"{user}-pw")).status_code == 303
    return client


@pytest.fixture
def carol(web: WebServer) -> Iterator[httpx.Client]:
    client = _client(web, "carol")
    yield client
    client.close()


@pytest.fixture
def bob(web: WebServer) -> Iterator[httpx.Client]:
    client = _client(web, "bob")
    yield client
    client.close()


def _post(client: httpx.Client, path: str, **fields: str) -> httpx.Response:
    return client.post(path, data={"csrf_token": csrf_token(client), **fields})


def _api(client: httpx.Client, method: str, path: str, body: object = None) -> httpx.Response:
    headers = {"X-CSRF-Token": csrf_token(client)}
    return client.request(method, path, json=body, headers=headers)


def _journal(h: GatewayHarness, command: str) -> list[tuple[str | None, str | None, str | None, str | None]]:
    entries = h.call_soon(lambda: h.gw.journal.recent(200))
    return [(e.user, e.client, e.mailbox, e.detail) for e in entries if e.command == command]


def _imap_login_ok(h: GatewayHarness, user: str, password: str) -> bool:
    client = h.imaplib()
    try:
        client.login(user, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return True


# --- who may ---------------------------------------------------------------------------------


def test_without_login_401_and_a_redirect(web: WebServer) -> None:
    with web_client(web) as anon:
        for path in ("/api/admin/users", "/api/admin/groups", "/api/admin/acl/INBOX", "/api/admin/sessions",
                     "/api/admin/folders/INBOX/read-mode", "/api/admin/folders"):  # fmt: skip
            assert anon.get(path).status_code == 401, path
        assert anon.post("/api/admin/users", json={"name": "x", "password": "y"}).status_code == 401
        page = anon.get("/admin")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")


def test_non_admins_get_403_and_no_admin_link(
    bob: httpx.Client, carol: httpx.Client, gateway: GatewayHarness
) -> None:
    for path in ("/admin", "/admin/folders", "/admin/folders/INBOX", "/admin/sessions"):
        page = bob.get(path)
        assert page.status_code == 403 and "only admins" in page.text, path
    for path in ("/api/admin/users", "/api/admin/groups", "/api/admin/acl/INBOX", "/api/admin/sessions"):
        assert bob.get(path).status_code == 403, path
    refused = _api(bob, "POST", "/api/admin/users", {"name": "mallory", "password": "pw"})
    assert refused.status_code == 403
    assert _post(bob, "/admin", action="add", name="mallory", password="pw").status_code == 403
    assert gateway.call_soon(lambda: gateway.gw.users.get("mallory")) is None
    assert 'href="/admin"' not in bob.get("/inbox").text
    assert 'href="/admin"' in carol.get("/inbox").text


def test_csrf_is_required(carol: httpx.Client, gateway: GatewayHarness) -> None:
    page = carol.post("/admin", data={"action": "add", "name": "eve", "password": "eve-pw"})
    assert page.status_code == 403 and "CSRF" in page.text
    wrong = carol.post(
        "/admin", data={"action": "add", "name": "eve", "password": "eve-pw", "csrf_token": "x"}
    )
    assert wrong.status_code == 403
    api = carol.post("/api/admin/users", json={"name": "eve", "password": "eve-pw"})
    assert api.status_code == 403 and "CSRF" in api.json()["error"]
    cross = carol.post(
        "/admin",
        data={"action": "add", "name": "eve", "password": "eve-pw", "csrf_token": csrf_token(carol)},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert gateway.call_soon(lambda: gateway.gw.users.get("eve")) is None


# --- users -----------------------------------------------------------------------------------


def test_add_user_in_the_page_logs_in_over_imap(carol: httpx.Client, gateway: GatewayHarness) -> None:
    page = _post(carol, "/admin", action="add", name="dave", password="dave-pw")
    assert page.status_code == 200 and "User dave added." in page.text
    assert re.search(r"<td>dave", page.text)
    assert _imap_login_ok(gateway, "dave", "dave-pw")
    assert ("carol", "web dashboard", None, "dave") in _journal(gateway, "USER ADD")
    again = _post(carol, "/admin", action="add", name="dave", password="other")
    assert again.status_code == 400 and "Refused: user &#39;dave&#39; already exists" in again.text
    empty = _api(carol, "POST", "/api/admin/users", {"name": "nopw", "password": ""})
    assert empty.status_code == 400
    users = {u["name"]: u for u in carol.get("/api/admin/users").json()["users"]}
    assert users["dave"]["disabled"] is False and users["carol"]["admin"] is True and "nopw" not in users


def test_disable_ends_imap_and_refuses_login_enable_allows_it(
    carol: httpx.Client, web: WebServer, gateway: GatewayHarness
) -> None:
    assert (
        _api(carol, "POST", "/api/admin/users", {"name": "frank", "password": "frank-pw"}).status_code == 201
    )
    session = gateway.imaplib_login("frank", "frank-pw")
    dashboard = _client(web, "frank")
    assert dashboard.get("/api/folders").status_code == 200
    answer = _api(carol, "PATCH", "/api/admin/users/frank", {"disabled": True})
    assert answer.status_code == 200, answer.text
    assert (
        "disabled" in answer.json()["text"] and "2 session(s) ended" in answer.json()["text"]
    )  # IMAP + dashboard
    with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
        session.noop()
        session.noop()
    assert not _imap_login_ok(gateway, "frank", "frank-pw")
    assert dashboard.get("/api/folders").status_code == 401  # the dashboard login ended too
    dashboard.close()
    assert ("carol", "web dashboard", None, "frank") in _journal(gateway, "USER DISABLE")
    page = _post(carol, "/admin", action="enable", name="frank")
    assert page.status_code == 200 and "User frank enabled." in page.text
    assert _imap_login_ok(gateway, "frank", "frank-pw")


def test_reset_password(carol: httpx.Client, gateway: GatewayHarness) -> None:
    _api(carol, "POST", "/api/admin/users", {"name": "gina", "password": "old-pw"})
    page = _post(carol, "/admin", action="password", name="gina", password="new-pw")
    assert page.status_code == 200 and "Password of gina changed." in page.text
    assert _imap_login_ok(gateway, "gina", "new-pw") and not _imap_login_ok(gateway, "gina", "old-pw")
    assert ("carol", "web dashboard", None, "gina") in _journal(gateway, "USER PASSWD")
    missing = _post(carol, "/admin", action="password", name="nobody", password="x")
    assert missing.status_code == 400 and "nobody" in missing.text


def test_remove_user_and_the_last_admin_is_refused(carol: httpx.Client, gateway: GatewayHarness) -> None:
    _api(carol, "POST", "/api/admin/users", {"name": "hank", "password": "hank-pw"})
    page = _post(carol, "/admin", action="remove", name="hank")
    assert page.status_code == 200 and "User hank removed." in page.text
    assert gateway.call_soon(lambda: gateway.gw.users.get("hank")) is None
    assert not _imap_login_ok(gateway, "hank", "hank-pw")
    # carol is the only admin: neither removing nor disabling her is done.
    for action in ("remove", "disable", "drop-admin"):
        refused = _post(carol, "/admin", action=action, name="carol")
        assert refused.status_code == 400 and "last admin" in refused.text, action
    assert [u for u, c, m, d in _journal(gateway, "USER REMOVE") if d == "carol"] == []
    assert _api(carol, "DELETE", "/api/admin/users/carol").status_code == 400
    assert gateway.call_soon(lambda: gateway.gw.users.get("carol")) is not None
    assert carol.get("/api/admin/users").status_code == 200


def test_make_admin_gives_the_admin_pages(
    carol: httpx.Client, web: WebServer, gateway: GatewayHarness
) -> None:
    _api(carol, "POST", "/api/admin/users", {"name": "ivy", "password": "ivy-pw"})
    with contextlib.closing(_client(web, "ivy")) as ivy:
        assert ivy.get("/api/admin/users").status_code == 403
        assert _api(carol, "PATCH", "/api/admin/users/ivy", {"admin": True}).status_code == 200
        assert ivy.get("/api/admin/users").status_code == 200
        assert _post(carol, "/admin", action="drop-admin", name="ivy").status_code == 200
        assert ivy.get("/api/admin/users").status_code == 403
        # An admin who is not the last may remove themselves: their login ends with the account.
        assert _post(carol, "/admin", action="make-admin", name="ivy").status_code == 200
        gone = _post(ivy, "/admin", action="remove", name="ivy")
        assert gone.status_code == 303 and gone.headers["location"] == "/login"
        assert gateway.call_soon(lambda: gateway.gw.users.get("ivy")) is None
        assert ivy.get("/api/folders").status_code == 401


# --- groups ----------------------------------------------------------------------------------


def test_groups_in_the_page_show_in_the_cli(
    carol: httpx.Client, gateway: GatewayHarness, cli_config: Path
) -> None:
    assert "Group $support created." in _post(carol, "/admin", action="add-group", name="support").text
    page = _post(carol, "/admin", action="add-members", name="support", users="alice, bob")
    assert page.status_code == 200 and "Added to $support: alice, bob." in page.text
    listed = run("group", "list", cfg=cli_config)
    assert listed.returncode == 0, listed.stderr
    assert "support" in listed.stdout and "alice" in listed.stdout and "bob" in listed.stdout
    gone = _post(carol, "/admin", action="remove-member", name="support", user="bob")
    assert "Removed from $support: bob." in gone.text
    groups = {g["name"]: g["members"] for g in carol.get("/api/admin/groups").json()["groups"]}
    assert groups["$support"] == ["alice"]
    unknown = _api(carol, "POST", "/api/admin/groups/support/members", {"users": ["nobody"]})
    assert unknown.status_code == 400 and "nobody" in unknown.json()["error"]
    assert _api(carol, "DELETE", "/api/admin/groups/support").status_code == 200
    assert "$support" not in {g["name"] for g in carol.get("/api/admin/groups").json()["groups"]}
    assert ("carol", "web dashboard", None, "$support") in _journal(gateway, "GROUP REMOVE")


# --- ACL and read mode -----------------------------------------------------------------------


def test_acl_set_in_the_page_refuses_an_imap_select(
    carol: httpx.Client, gateway: GatewayHarness, cli_config: Path
) -> None:
    alice = gateway.imaplib_login("alice", "alice-pw")
    try:
        assert alice.select("Secret")[0] == "OK"
        page = _post(carol, "/admin/folders/Secret", action="set-entry", identifier="-alice", rights="r")
        assert page.status_code == 200 and "-alice on Secret: r." in page.text
        typ, data = alice.select("Secret")
        assert typ == "NO" and b"NOPERM" in data[0], data
        view = carol.get("/api/admin/acl/Secret").json()
        assert {"identifier": "-alice", "rights": "r"} in view["entries"] and view["own"] is True
        effective = {e["user"]: e["rights"] for e in view["effective"]}
        assert "r" not in effective["alice"] and "l" in effective["alice"]
        assert effective["carol"] == "lrswipkxtea"
        shown = run("acl", "get", "Secret", cfg=cli_config)
        assert shown.returncode == 0 and "-alice" in shown.stdout, shown.stderr
        assert ("carol", "web dashboard", "Secret", "-alice 'r'") in _journal(gateway, "ACL SET")
        bad = _post(carol, "/admin/folders/Secret", action="set-entry", identifier="bob", rights="lrz")
        assert bad.status_code == 400 and "Refused:" in bad.text and "z" in bad.text
        assert (
            _api(carol, "POST", "/api/admin/acl/Nowhere", {"identifier": "bob", "rights": "l"}).status_code
            == 404
        )
        gone = _api(carol, "DELETE", "/api/admin/acl/Secret?identifier=-alice")
        assert gone.status_code == 200 and gone.json()["changed"] is True
        assert alice.select("Secret")[0] == "OK"
    finally:
        alice.logout()


def test_read_mode_per_folder(carol: httpx.Client, gateway: GatewayHarness, cli_config: Path) -> None:
    before = carol.get("/api/admin/folders/INBOX/read-mode").json()
    assert before["seen"] == "private" and before["seen_from_setting"] is False
    page = _post(carol, "/admin/folders/INBOX", action="read-mode", seen="shared")
    assert page.status_code == 200 and "Read state of INBOX: shared (was private)." in page.text
    mb = gateway.call_soon(lambda: gateway.gw.replica.get("INBOX"))
    assert gateway.call_soon(lambda: gateway.gw.replica.seen_mode(mb)) == "shared"
    listed = run("folder", "list", cfg=cli_config)
    assert listed.returncode == 0 and re.search(r"INBOX.*shared", listed.stdout), listed.stdout
    assert [d for u, c, m, d in _journal(gateway, "FOLDER SET") if m == "INBOX" and u == "carol"]
    back = _api(carol, "PUT", "/api/admin/folders/INBOX/read-mode", {"seen": "default"})
    assert back.status_code == 200 and "private" in back.json()["text"]
    assert _api(carol, "PUT", "/api/admin/folders/INBOX/read-mode", {"seen": "loud"}).status_code == 400
    folders = {f["name"]: f for f in carol.get("/api/admin/folders").json()["folders"]}
    assert folders["INBOX"]["seen"] == "private"


# --- sessions --------------------------------------------------------------------------------


def test_end_an_imap_and_a_dashboard_session(
    carol: httpx.Client, web: WebServer, gateway: GatewayHarness
) -> None:
    alice = gateway.imaplib_login("alice", "alice-pw")
    with contextlib.closing(_client(web, "bob")) as bob:
        listed = carol.get("/api/admin/sessions").json()
        mine = [s for s in listed["imap"] if s["user"] == "alice"]
        bobs = [s for s in listed["web"] if s["user"] == "bob"]
        assert mine and bobs
        page = carol.get("/admin/sessions")
        assert "End session" in page.text and "bob" in page.text
        ended = _post(carol, "/admin/sessions", action="end", kind="imap", id=str(mine[-1]["id"]))
        assert ended.status_code == 200 and "ended" in ended.text
        with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
            alice.noop()
            alice.noop()
        assert bob.get("/api/folders").status_code == 200
        answer = _api(carol, "DELETE", f"/api/admin/sessions/web/{bobs[-1]['id']}")
        assert answer.status_code == 200, answer.text
        assert bob.get("/api/folders").status_code == 401
        assert _api(carol, "DELETE", f"/api/admin/sessions/web/{bobs[-1]['id']}").status_code == 404
    kicks = [d for u, c, m, d in _journal(gateway, "KICK") if u == "carol"]
    assert any(d and d.startswith("alice:") for d in kicks) and any(
        d and "dashboard session" in d for d in kicks
    )


def test_admin_pages_have_no_inline_script_or_style(carol: httpx.Client) -> None:
    for path in ("/admin", "/admin/folders", "/admin/folders/INBOX", "/admin/sessions"):
        page = carol.get(path)
        assert page.status_code == 200, path
        assert "default-src 'none'" in page.headers["content-security-policy"], path
        assert "'unsafe-inline'" not in page.headers["content-security-policy"], path
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page.text), path
        # Every form that changes something carries the session's token.
        assert page.text.count('method="post"') == page.text.count('name="csrf_token"'), path


def test_names_are_escaped(carol: httpx.Client) -> None:
    page = _post(carol, "/admin", action="add-group", name="<b>x</b>")
    assert "<b>x</b>" not in page.text and "&lt;b&gt;" in page.text


# --- in the browser --------------------------------------------------------------------------


@pytest.mark.slow
def test_in_the_browser_add_a_user_and_set_an_acl_entry(
    page: Page, web: WebServer, gateway: GatewayHarness
) -> None:
    browser_login(page, web, "carol", "carol-pw")
    page.click("header nav a >> text=Admin")
    page.wait_for_url("**/admin")
    page.fill("form.add input[name=name] >> nth=0", "kim")
    page.fill("form.add input[name=password]", "kim-pw")
    page.click("form.add button >> text=Add user")
    assert "User kim added." in page.inner_text("main")
    assert _imap_login_ok(gateway, "kim", "kim-pw")
    page.click("nav.subnav a >> text=Folders and permissions")
    page.click("table.folders a >> text=Secret")
    page.wait_for_url("**/admin/folders/Secret")
    page.fill("form.add input[name=identifier]", "-kim")
    page.fill("form.add input[name=rights]", "r")
    page.click("button >> text=Set entry")
    assert "-kim on Secret: r." in page.inner_text("main")
    kims = page.locator("table.effective tr", has_text="kim").inner_text().split()[-1]
    assert "l" in kims and "r" not in kims
    shot(page, "admin-folder")
    kim = gateway.imaplib_login("kim", "kim-pw")
    try:
        typ, data = kim.select("Secret")
        assert typ == "NO" and b"NOPERM" in data[0]
    finally:
        kim.logout()
    page.click("nav.subnav a >> text=Users and groups")
    shot(page, "admin")
    assert page_errors(page) == []


def test_nested_and_non_ascii_folder_names(carol: httpx.Client) -> None:
    listing = carol.get("/admin/folders")
    assert 'href="/admin/folders/Projekte%2FWebsite-Relaunch"' in listing.text
    assert 'href="/admin/folders/B%C3%BCro"' in listing.text
    page = carol.get("/admin/folders/Projekte%2FWebsite-Relaunch")
    assert page.status_code == 200 and "Admin: Projekte/Website-Relaunch" in page.text
    mode = carol.get("/api/admin/folders/Projekte%2FWebsite-Relaunch/read-mode").json()
    assert mode["folder"] == "Projekte/Website-Relaunch"
    done = _api(carol, "POST", "/api/admin/acl/B%C3%BCro", {"identifier": "bob", "rights": "lr"})
    assert done.status_code == 200, done.text
    entries = carol.get("/api/admin/acl/B%C3%BCro").json()["entries"]
    assert {"identifier": "bob", "rights": "lr"} in entries
    assert _api(carol, "DELETE", "/api/admin/acl/B%C3%BCro", {"identifier": "bob"}).json()["changed"] is True
