"""What ``AdminService`` gained for the dashboard's Admin pages (the web calls the CLI's verbs):
an engine handed in and kept, ``kick_other`` (ending another front end's login, asked and
journaled as ``kick``), ``AclAdmin.effective`` (every user's rights on a folder) and a missing
folder as ``NoSuchFolder``.  Offline: a store with two users and a folder, no gateway running."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from imapgate.config import Config
from imapgate.gateway.admin import AdminRefused, AdminService, NoSuchFolder
from imapgate.gateway.errors import OperationError
from imapgate.gateway.policy import Actor, Policy
from imapgate.store.engine import open_engine
from imapgate.store.schema import mailboxes
from imapgate.team.acl import rights
from imapgate.team.acl_store import AclStore
from imapgate.team.journal import Journal
from imapgate.team.users import UserDirectory
from tests.support.gateway_setup import gateway_config

ADMIN = Actor(7, "carol", "web dashboard")


class Deny(Policy):
    def authorize(self, actor: Actor, mailbox: str, right: str) -> None:
        raise OperationError(f"{actor.user} may not", "NOPERM")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return gateway_config(data_dir=tmp_path / "gw")


@pytest.fixture
def engine(config: Config) -> Engine:
    engine = open_engine(config.store.url)
    UserDirectory(engine).add("alice", "alice-pw")
    UserDirectory(engine).add("bob", "bob-pw")
    with engine.begin() as conn:
        conn.execute(
            insert(mailboxes).values(
                name="INBOX", delimiter="/", attributes="", uidvalidity=1, uidnext=1,
                upstream_modseq=0, modseq=1, synced=True,
            )
        )  # fmt: skip
    AclStore(engine).set_entry("INBOX", "-bob", "r", default=rights("lrswipkxte"))
    return engine


def test_a_given_engine_is_used_and_left_open(config: Config, engine: Engine) -> None:
    service = AdminService(config, actor=ADMIN, engine=engine)
    assert service.engine is engine
    service.close()
    with engine.connect() as conn:  # still usable: the caller closes it
        assert conn.execute(select(mailboxes.c.name)).scalars().all() == ["INBOX"]


def test_kick_other_asks_the_policy_then_journals(config: Config, engine: Engine) -> None:
    ended: list[int] = []
    refused = AdminService(config, actor=ADMIN, policy=Deny(), engine=engine)
    with pytest.raises(AdminRefused, match="kick refused"):
        refused.kick_other("alice", "dashboard session w3", lambda: ended.append(1) or 1)
    assert ended == [] and not [e for e in Journal(engine).recent(10) if e.command == "KICK"]
    allowed = AdminService(config, actor=ADMIN, engine=engine)
    assert allowed.kick_other("alice", "dashboard session w3", lambda: 1) == 1
    kicks = [e for e in Journal(engine).recent(10) if e.command == "KICK"]
    assert [(e.user, e.client, e.detail) for e in kicks] == [
        ("carol", "web dashboard", "alice: dashboard session w3, 1 ended")
    ]
    assert allowed.kick_other("alice", "dashboard session w9", lambda: 0) == 0  # nothing ended: no entry
    assert len([e for e in Journal(engine).recent(10) if e.command == "KICK"]) == 1


def test_effective_rights_of_every_user(config: Config, engine: Engine) -> None:
    acl = AdminService(config, actor=ADMIN, engine=engine).acl
    effective = dict(acl.effective("INBOX"))
    assert set(effective) == {"alice", "bob"}
    assert "r" in effective["alice"] and "r" not in effective["bob"] and "l" in effective["bob"]
    with pytest.raises(NoSuchFolder, match="no folder 'Nowhere'"):
        acl.effective("Nowhere")
    with pytest.raises(NoSuchFolder):
        acl.set_entry("Nowhere", "bob", "l")
