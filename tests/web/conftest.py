"""A gateway with the dashboard in front of a Dovecot holding the sample mailbox plus the hostile
corpus (folder ``Hostile``), for the web tests of one module.

Users: ``alice``/``alice-pw``, ``bob``/``bob-pw``, ``carol``/``carol-pw`` (the admin-to-be: admin
roles arrive with issue 11; today every member has every right).  ``TeamPolicy`` stands in for
the coming permissions (issue 11) with the same interface the adapter asks: bob may look up
``Secret`` but not read it (403), and ``Private`` does not exist for him (404)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer, SampleMessage, generate_mailbox
from imapgate.gateway.policy import Actor, Policy
from imapgate.web.server import WebServer
from tests.conftest import require_dovecot
from tests.support.gateway import GatewayHarness
from tests.support.web import start_web, stop_web

from .corpus import small_corpus

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


class TeamPolicy(Policy):
    def rights(self, actor: Actor, mailbox: str) -> str:
        if actor.user == "bob" and mailbox == "Secret":
            return "l"
        if actor.user == "bob" and mailbox == "Private":
            return ""
        return super().rights(actor, mailbox)


def web_mailbox() -> dict[str, list[SampleMessage]]:
    folders = generate_mailbox(seed=1)
    when = datetime(2024, 7, 1, tzinfo=UTC)
    folders["Hostile"] = [SampleMessage(raw, internal_date=when) for raw in small_corpus().values()]
    note = b"From: Boss <boss@example.com>\r\nSubject: salaries\r\nMessage-ID: <s@x>\r\n\r\nsecret\r\n"
    folders["Secret"] = [SampleMessage(note, internal_date=when)]
    folders["Private"] = [SampleMessage(note.replace(b"<s@x>", b"<p@x>"), internal_date=when)]
    return folders


@pytest.fixture(scope="module")
def web_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    require_dovecot()
    server = DovecotServer(tmp_path_factory.mktemp("web-dovecot"), users={"shared": "shared-secret"})
    server.populate("shared", web_mailbox())
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def gateway(web_dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    data_dir: Path = tmp_path_factory.mktemp("web-gw")
    with GatewayHarness(upstream_port=web_dovecot.port, data_dir=data_dir, users=USERS) as h:
        h.gw.service.policy = TeamPolicy()
        yield h


@pytest.fixture(scope="module")
def web(gateway: GatewayHarness) -> Iterator[WebServer]:
    server = start_web(gateway)
    try:
        yield server
    finally:
        stop_web(gateway, server)
