"""User accounts: argon2id hashes, CLI round trip with $IMAPGATE_CONFIG."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from imapgate.cli import main
from imapgate.store.engine import open_engine
from imapgate.store.schema import users
from imapgate.team.users import UserDirectory, UserError, check_password


@pytest.fixture
def directory(store_url: str) -> UserDirectory:
    return UserDirectory(open_engine(store_url))


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


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("anyone", "in folder permissions it means every team member"),
        ("Authenticated", "in folder permissions it means every team member"),
        ("$team", "$ in front marks a group in folder permissions"),
        ("-bob", "- in front marks a negative entry in folder permissions"),
    ],
)
def test_names_an_acl_identifier_means_otherwise(directory: UserDirectory, name: str, why: str) -> None:
    with pytest.raises(UserError) as caught:
        directory.add(name, "pw")
    assert str(caught.value) == f"invalid user name {name!r}: {why}"


def test_admin_flag(directory: UserDirectory) -> None:
    assert directory.add("alice", "pw", admin=True).admin
    assert not directory.add("bob", "pw").admin
    assert [(u.name, u.admin) for u in directory.list()] == [("alice", True), ("bob", False)]
    alice = directory.get("alice")
    assert alice is not None and alice.admin
    cred = directory.credentials("alice")
    assert cred is not None and cred.user.admin


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


def test_set_disabled_and_credentials(directory: UserDirectory) -> None:
    directory.add("dave", "dave-pw")
    cred = directory.credentials("dave")
    assert cred is not None and cred.password_hash.startswith("$argon2id$") and not cred.user.disabled
    directory.set_disabled("dave", True)
    assert directory.verify("dave", "dave-pw") is None
    assert directory.get("dave") is not None and directory.get("dave").disabled  # type: ignore[union-attr]
    directory.set_disabled("dave", False)
    assert directory.verify("dave", "dave-pw") is not None
    with pytest.raises(UserError, match="no user"):
        directory.set_disabled("nobody", True)
    assert directory.credentials("nobody") is None


def test_rehash_cannot_undo_a_password_change(directory: UserDirectory) -> None:
    """The upgrade of an outdated hash after a login is a compare-and-set: a
    `user passwd` that landed meanwhile is never overwritten (which would bring
    the old password back)."""
    directory.add("erin", "old-pw")
    before = directory.credentials("erin")
    assert before is not None
    directory.set_password("erin", "new-pw")
    assert not directory.replace_hash(before.user.id, before.password_hash, "$argon2id$stale")
    assert directory.verify("erin", "new-pw") is not None
    assert directory.verify("erin", "old-pw") is None
    now = directory.credentials("erin")
    assert now is not None and directory.replace_hash(now.user.id, now.password_hash, now.password_hash)


def test_overlong_password_is_wrong_without_argon2(directory: UserDirectory) -> None:
    directory.add("frank", "x" * 1024)
    assert check_password(directory.credentials("frank").password_hash, "x" * 1024)  # type: ignore[union-attr]
    assert not check_password(directory.credentials("frank").password_hash, "x" * 1025)  # type: ignore[union-attr]


_OUT_OF_MEMORY = r"""
import resource, sys
from imapgate.team.users import PasswordCheckError, _hasher, check_password
stored = _hasher.hash("right")
def vmsize():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmSize")
# Room for Python, not for argon2's 64 MiB working memory.
limit = vmsize() + 32 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    print("wrong" if not check_password(stored, "right") else "right")
except PasswordCheckError as exc:
    print("check-error:", exc)
"""


def test_argon2_out_of_memory_is_not_a_wrong_password() -> None:
    """What made a correct LOGIN answer AUTHENTICATIONFAILED under heavy load:
    argon2 reports a failed allocation of its working memory as
    ``VerificationError``, which the old check took for a mismatch.  Reproduced
    for real under an address-space limit in a child process."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _OUT_OF_MEMORY], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()
    assert out.startswith("check-error:") and "Memory allocation" in out, out


def test_also_is_written_with_the_change_or_not_at_all(directory: UserDirectory) -> None:
    """``also=`` (an admin verb's journal entry) commits with the change itself; a
    change that does not happen (no such user) writes nothing."""
    from imapgate.team.journal import Journal, JournalEntry

    journal = Journal(directory.engine)

    def entry(command: str) -> JournalEntry:
        return JournalEntry(user="cli", client="test", command=command, detail="alice")

    directory.add("alice", "pw-1", also=entry("USER ADD").writer())
    directory.set_password("alice", "pw-2", also=entry("USER PASSWD").writer())
    directory.set_disabled("alice", True, also=entry("USER DISABLE").writer())
    directory.remove("alice", also=entry("USER REMOVE").writer())
    for refused in (
        lambda: directory.set_password("alice", "pw-3", also=entry("X1").writer()),
        lambda: directory.set_disabled("alice", False, also=entry("X2").writer()),
        lambda: directory.remove("alice", also=entry("X3").writer()),
        lambda: directory.add("bad name", "pw", also=entry("X4").writer()),
    ):
        with pytest.raises(UserError):
            refused()
    commands = [e.command for e in reversed(journal.recent())]
    assert commands == ["USER ADD", "USER PASSWD", "USER DISABLE", "USER REMOVE"]
