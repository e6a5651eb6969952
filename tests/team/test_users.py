"""User accounts: argon2id hashes, CLI round trip with $IMAPGATE_CONFIG."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from imapgate.cli import main
from imapgate.store.engine import open_engine
from imapgate.store.schema import users
from imapgate.team.users import UserDirectory, UserError


@pytest.fixture
def directory(tmp_path: Path) -> UserDirectory:
    return UserDirectory(open_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}"))


def test_add_verify_passwd_remove(directory: UserDirectory) -> None:
    directory.add("alice", "correct horse")
    assert directory.verify("alice", "correct horse") is not None
    assert directory.verify("alice", "wrong") is None
    assert directory.verify("nobody", "correct horse") is None
    directory.set_password("alice", "battery staple")
    assert directory.verify("alice", "correct horse") is None
    assert directory.verify("alice", "battery staple") is not None
    directory.remove("alice")
    assert directory.get("alice") is None
    with pytest.raises(UserError, match="no user"):
        directory.remove("alice")


def test_hash_is_argon2id_and_not_the_password(directory: UserDirectory) -> None:
    directory.add("bob", "hunter22")
    with directory.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and "hunter22" not in stored


@pytest.mark.parametrize("name", ["", "a b", "x" * 80, "-dash", "ümlaut"])
def test_bad_names(directory: UserDirectory, name: str) -> None:
    with pytest.raises(UserError, match="invalid user name"):
        directory.add(name, "pw")


def test_duplicate(directory: UserDirectory) -> None:
    directory.add("carol", "pw1")
    with pytest.raises(UserError, match="already exists"):
        directory.add("carol", "pw2")


def test_cli_with_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        '[upstream]\nhost = "localhost"\nuser = "shared"\npassword = "x"\n[server]\nallow_plaintext = true\n'
    )
    monkeypatch.setenv("IMAPGATE_CONFIG", str(cfg))
    runner = CliRunner()
    r = runner.invoke(main, ["user", "add", "alice", "--password-stdin"], input="pw-alice\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["user", "add", "alice", "--password-stdin"], input="pw\n")
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(main, ["user", "list"])
    assert "alice" in r.output and "pw-alice" not in r.output
    monkeypatch.delenv("IMAPGATE_CONFIG")
    r = runner.invoke(main, ["--config", str(cfg), "user", "remove", "alice"])
    assert r.exit_code == 1 and "add --yes to confirm" in r.output  # no terminal to ask
    r = runner.invoke(main, ["--config", str(cfg), "user", "remove", "alice", "--yes"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["user", "list", "--config", str(cfg)])
    assert "alice" not in r.output
