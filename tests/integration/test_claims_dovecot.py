"""Claims end to end (issue 12): two team members, raw IMAP clients through a running
gateway in front of the real Dovecot.

* ``STORE +FLAGS ($Claimed)`` by alice: every session sees ``$Claimed`` and
  ``$claimed_alice`` (bob's IDLE at once), PERMANENTFLAGS lists both, upstream holds both;
* bob's MOVE, ``\\Deleted``, EXPUNGE, take-over and release are refused ``NO [INUSE]``
  with the text, after an untagged FETCH with the true flags; his ``\\Flagged`` is fine;
* alice moves it: the claim follows (bob is still refused in the new folder); moving it
  to a ``release_on_move_to`` folder ends it; ``-FLAGS $Claimed`` releases;
* expiry, ``claim_on_draft``, and claim vs claim / claim vs move races with threads.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from imapgate.demo import DovecotServer
from imapgate.demo.sample_mail import SampleMessage
from imapgate.store.schema import journal, journal_messages
from tests.support.cli import run, write_config
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient, upstream_flags, upstream_uids

pytestmark = pytest.mark.integration

TEAM = {"alice": "alice-pw", "bob": "bob-pw"}
TEXT = rb"alice is handling this message \(claimed \d\d:\d\d\)\. Ask alice, or an admin can release it\."


def _message(n: int, reply_to: str | None = None) -> SampleMessage:
    msg = EmailMessage()
    msg["From"] = "customer@example.com"
    msg["To"] = "team@example.com"
    msg["Subject"] = f"request {n}"
    msg["Message-ID"] = f"<req{n}@example.com>"
    if reply_to:
        msg["In-Reply-To"] = reply_to
    msg.set_content(f"body {n}\n")
    return SampleMessage(bytes(msg).replace(b"\n", b"\r\n"))


@pytest.fixture
def upstream(fresh_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    folders = {"INBOX": [_message(n) for n in range(1, 9)], "Archive": [], "Done": [], "Drafts": []}
    return fresh_dovecot(folders=folders)


@pytest.fixture
def gw(upstream: DovecotServer, tmp_path: Path) -> Iterator[GatewayHarness]:
    claims = {
        "release_on_move_to": ["Done"], "claim_on_draft": True, "expire_after": "8h",
        "folder_name": "Claimed by me",
    }  # fmt: skip
    with GatewayHarness(
        upstream_port=upstream.port, data_dir=tmp_path / "gw", users=TEAM, claims=claims
    ) as harness:
        yield harness


def _client(gw: GatewayHarness, user: str, folder: str = "INBOX") -> RawClient:
    c = RawClient(gw.host, gw.port)
    c.login(user, TEAM[user])
    lines = c.command(b"S1", f"SELECT {folder}".encode())
    assert lines[-1].startswith(b"S1 OK"), lines
    return c


def _ok(lines: list[bytes]) -> list[bytes]:
    assert b" OK " in lines[-1], lines
    return lines


def _refused(lines: list[bytes], uid: int) -> None:
    """NO [INUSE] with the text, after an untagged FETCH with the true flags."""
    assert re.match(rb"\S+ NO \[INUSE\] " + TEXT, lines[-1]), lines
    fetches = [ln for ln in lines[:-1] if b"FETCH" in ln and f"UID {uid}".encode() in ln]
    assert fetches and b"$Claimed" in fetches[-1] and b"$claimed_alice" in fetches[-1], lines


def _flags(upstream: DovecotServer, folder: str = "INBOX") -> dict[int, set[str]]:
    return upstream_flags("127.0.0.1", upstream.port, folder)


def test_claim_is_seen_everywhere_and_refuses_colleagues(gw: GatewayHarness, upstream: DovecotServer) -> None:
    alice, bob = _client(gw, "alice"), _client(gw, "bob")
    bob.idle()
    _ok(alice.command(b"A1", b"UID STORE 2 +FLAGS ($Claimed)"))
    pushed, seconds = bob.wait_for(rb"FETCH .*\$claimed_alice", timeout=5)
    assert b"$Claimed" in pushed[-1] and seconds < 2, pushed
    # Announced before the FETCH that carries them: FLAGS and PERMANENTFLAGS list both.
    perm = next(ln for ln in pushed if b"PERMANENTFLAGS" in ln)
    assert b"$Claimed" in perm and b"$claimed_alice" in perm, pushed
    bob.done()
    opened = bob.command(b"S2", b"SELECT INBOX")
    perm = next(ln for ln in opened if b"PERMANENTFLAGS" in ln)
    assert b"$Claimed" in perm and b"$claimed_alice" in perm and b"\\*" in perm, perm
    assert {"$Claimed", "$claimed_alice"} <= _flags(upstream)[2]

    _refused(bob.command(b"B1", b"UID MOVE 2 Archive"), 2)
    _refused(bob.command(b"B2", b"UID STORE 2 +FLAGS (\\Deleted)"), 2)
    _refused(bob.command(b"B3", b"UID STORE 2 -FLAGS ($Claimed)"), 2)
    _refused(bob.command(b"B4", b"UID STORE 2 +FLAGS ($Claimed)"), 2)
    _refused(bob.command(b"B5", b"UID STORE 2 FLAGS (\\Seen)"), 2)
    # A move of several messages is refused as a whole, naming how many by whom.
    many = bob.command(b"B6", b"UID MOVE 1:3 Archive")
    assert re.match(rb"B6 NO \[INUSE\] .*1 of these|B6 NO \[INUSE\] alice is handling", many[-1]), many
    assert upstream_uids("127.0.0.1", upstream.port, "INBOX") == list(range(1, 9))
    # Flagging and reading stay allowed.
    _ok(bob.command(b"B7", b"UID STORE 2 +FLAGS (\\Flagged)"))
    _ok(bob.command(b"B8", b"UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    # COPY + \Deleted + EXPUNGE: the copy is fine, the expunge half is not.
    _ok(bob.command(b"B9", b"UID COPY 2 Archive"))
    assert "$Claimed" not in next(iter(_flags(upstream, "Archive").values()))  # a copy is unclaimed
    assert "\\Deleted" not in _flags(upstream)[2]
    with gw.gw.journal.engine.connect() as conn:
        rows = conn.execute(select(journal.c.command, journal.c.user_name)).all()
    commands = [(r.command, r.user_name) for r in rows]
    assert ("CLAIM", "alice") in commands and ("CLAIM REFUSED", "bob") in commands
    # The message's history (`imapgate audit --message-id`) names the claim and the refusals.
    with gw.gw.journal.engine.connect() as conn:
        named = conn.execute(
            select(journal.c.action, journal.c.user_name)
            .join(journal_messages, journal_messages.c.entry_id == journal.c.id)
            .where(journal_messages.c.mailbox == "INBOX", journal_messages.c.uid == 2)
        ).all()
    assert ("claimed", "alice") in named and ("refused", "bob") in named, named
    alice.close()
    bob.close()


def test_claimant_moves_and_releases(gw: GatewayHarness, upstream: DovecotServer) -> None:
    alice, bob = _client(gw, "alice"), _client(gw, "bob")
    _ok(alice.command(b"A1", b"UID STORE 3,4 +FLAGS ($Claimed)"))
    _ok(alice.command(b"A2", b"UID MOVE 3 Archive"))
    registry = gw.gw.service.claims.registry  # type: ignore[union-attr]
    archive = gw.gw.replica.get("Archive")
    assert archive is not None
    (moved,) = registry.in_mailbox(archive.id).values()
    assert moved.user == "alice"
    bob_archive = _client(gw, "bob", "Archive")
    _refused(bob_archive.command(b"B1", f"UID MOVE {moved.uid} INBOX".encode()), moved.uid)
    # Done is a release_on_move_to folder: the claim ends and the keywords go.
    _ok(alice.command(b"A3", b"UID MOVE 4 Done"))
    done = gw.gw.replica.get("Done")
    assert done is not None and not registry.in_mailbox(done.id)
    assert all(not f & {"$Claimed", "$claimed_alice"} for f in _flags(upstream, "Done").values())
    # -FLAGS $Claimed by the claimant releases; then bob may claim it.
    _ok(alice.command(b"A4", b"UID STORE 5 +FLAGS ($Claimed)"))
    _ok(alice.command(b"A5", b"UID STORE 5 -FLAGS ($Claimed)"))
    assert not {"$Claimed", "$claimed_alice"} & _flags(upstream)[5]
    _ok(bob.command(b"B2", b"UID STORE 5 +FLAGS ($Claimed)"))
    assert {"$Claimed", "$claimed_bob"} <= _flags(upstream)[5]
    for c in (alice, bob, bob_archive):
        c.close()


def test_expiry_ends_the_claim(gw: GatewayHarness, upstream: DovecotServer) -> None:
    alice = _client(gw, "alice")
    _ok(alice.command(b"A1", b"UID STORE 6 +FLAGS ($Claimed)"))
    ops = gw.gw.service.claims
    assert ops is not None
    claim = ops.registry.all()[0]
    assert claim.expires_at == pytest.approx(claim.claimed_at + 8 * 3600)
    ended = gw.call(ops.sweep(gw.gw.service._handle, now=claim.claimed_at + 8 * 3600 + 1))
    assert ended == 1 and not ops.registry.all()
    assert not {"$Claimed", "$claimed_alice"} & _flags(upstream)[6]
    with gw.gw.journal.engine.connect() as conn:
        details = [r.detail for r in conn.execute(select(journal.c.detail, journal.c.command))]
    assert "claim expired" in details
    alice.close()


def test_draft_reply_claims_the_original(gw: GatewayHarness, upstream: DovecotServer) -> None:
    alice = _client(gw, "alice")
    draft = _message(100, reply_to="<req7@example.com>").raw
    alice.send(b"D1 APPEND Drafts (\\Draft) {" + str(len(draft)).encode() + b"}\r\n")
    assert alice.readline().startswith(b"+")
    alice.send(draft + b"\r\n")
    _ok(alice.read_until_tagged(b"D1"))
    inbox = gw.gw.replica.get("INBOX")
    assert inbox is not None
    claim = gw.gw.service.claims.registry.get(inbox.id, 7)  # type: ignore[union-attr]
    assert claim is not None and claim.user == "alice"
    assert {"$Claimed", "$claimed_alice"} <= _flags(upstream)[7]
    alice.close()


def test_races_claim_vs_claim_and_claim_vs_move(gw: GatewayHarness, upstream: DovecotServer) -> None:
    """Real threads, one connection per member: claim vs claim has exactly one winner each
    round, and the flags upstream name that winner; claim vs move never leaves a claim on
    a message that moved away, nor a move of a message someone else holds."""
    alice, bob = _client(gw, "alice"), _client(gw, "bob")
    clients = {"alice": alice, "bob": bob}
    ops = gw.gw.service.claims
    assert ops is not None
    inbox = gw.gw.replica.get("INBOX")
    assert inbox is not None
    for round_ in range(50):
        uid = 1 + round_ % 8
        answers: dict[str, bytes] = {}
        barrier = threading.Barrier(2)

        def claim(name: str, uid: int = uid, barrier: threading.Barrier = barrier,
                  answers: dict[str, bytes] = answers) -> None:  # fmt: skip
            barrier.wait()
            answers[name] = clients[name].command(b"R1", f"UID STORE {uid} +FLAGS ($Claimed)".encode())[-1]

        threads = [threading.Thread(target=claim, args=(n,)) for n in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [n for n, a in answers.items() if a.startswith(b"R1 OK")]
        assert len(winners) == 1, (round_, answers)
        loser = next(n for n in clients if n not in winners)
        assert answers[loser].startswith(b"R1 NO [INUSE]"), answers
        held = ops.registry.get(inbox.id, uid)
        assert held is not None and held.user == winners[0]
        assert f"$claimed_{winners[0]}" in _flags(upstream)[uid]
        _ok(clients[winners[0]].command(b"R2", f"UID STORE {uid} -FLAGS ($Claimed)".encode()))
        assert ops.registry.get(inbox.id, uid) is None
    # claim vs move: bob claims while alice moves the same message.
    answers = {}
    barrier = threading.Barrier(2)

    def run(name: str, text: bytes) -> None:
        barrier.wait()
        answers[name] = clients[name].command(b"R3", text)[-1]

    threads = [
        threading.Thread(target=run, args=("bob", b"UID STORE 8 +FLAGS ($Claimed)")),
        threading.Thread(target=run, args=("alice", b"UID MOVE 8 Archive")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    in_inbox = 8 in upstream_uids("127.0.0.1", upstream.port, "INBOX")
    claim = ops.registry.get(inbox.id, 8)
    if in_inbox:  # bob won: alice's move was refused
        assert answers["alice"].startswith(b"R3 NO [INUSE]"), answers
        assert claim is not None and claim.user == "bob"
    else:  # alice moved first: bob's claim found nothing to claim, or is swept as gone
        assert answers["alice"].startswith(b"R3 OK"), answers
        gw.call(ops.sweep(gw.gw.service._handle))
        assert ops.registry.get(inbox.id, 8) is None
    alice.close()
    bob.close()


def test_cli_lists_and_releases_and_the_running_gateway_follows(
    gw: GatewayHarness, upstream: DovecotServer, tmp_path: Path
) -> None:
    alice = _client(gw, "alice")
    _ok(alice.command(b"A1", b"UID STORE 1,2 +FLAGS ($Claimed)"))
    cfg = write_config(
        tmp_path, upstream_port=upstream.port, extra=f'\n[store]\ndata_dir = "{gw.config.store.data_dir}"\n'
    )
    listed = run("claim", "list", "--json", cfg=cfg)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    found = [(r["folder"], r["uid"], r["user"]) for r in rows]
    assert found == [("INBOX", 1, "alice"), ("INBOX", 2, "alice")]
    released = run("claim", "release", "INBOX", "2", cfg=cfg)
    assert released.returncode == 0 and released.stdout == "released 1 claim(s)\n", released
    ops = gw.gw.service.claims
    assert ops is not None and [c.uid for c in ops.registry.all()] == [1]
    gw.wait_for(lambda: not {"$Claimed", "$claimed_alice"} & _flags(upstream)[2], what="keywords removed")
    assert {"$Claimed", "$claimed_alice"} <= _flags(upstream)[1]
    released = run("claim", "release", "--user", "alice", cfg=cfg)
    assert released.stdout == "released 1 claim(s)\n", released
    gw.wait_for(lambda: not {"$Claimed", "$claimed_alice"} & _flags(upstream)[1], what="keywords removed")
    with gw.gw.journal.engine.connect() as conn:
        rows2 = conn.execute(select(journal.c.command, journal.c.user_name)).all()
    assert [r.user_name for r in rows2 if r.command == "CLAIM RELEASE"] == ["cli", "cli"]
    snippet = run("clients", "thunderbird", cfg=cfg).stdout
    assert 'user_pref("mailnews.tags.$claimed.tag", "Claimed");' in snippet
    assert 'user_pref("mailnews.tags.$claimed_bob.tag", "bob is handling");' in snippet
    alice.close()


def test_claimed_by_me_lists_a_members_own_claims(gw: GatewayHarness, upstream: DovecotServer) -> None:
    """For clients without keywords: a read-only virtual folder per member with their open
    claims (UIDs = claim ids, kept when the claim follows a move); MOVE out of it moves the
    real message as its claimant."""
    alice, bob = _client(gw, "alice"), _client(gw, "bob")
    _ok(alice.command(b"A1", b"UID STORE 3,5 +FLAGS ($Claimed)"))
    _ok(bob.command(b"B1", b"UID STORE 6 +FLAGS ($Claimed)"))
    listed = _ok(alice.command(b"A2", b'LIST "" "*"'))
    assert any(b'"Claimed by me"' in ln for ln in listed), listed
    # Thunderbird asks MYRIGHTS of every listed folder (a NO would be an alert each start).
    rights = _ok(alice.command(b"A2R", b'MYRIGHTS "Claimed by me"'))
    assert rights[0] == b'* MYRIGHTS "Claimed by me" lr\r\n', rights
    acl = alice.command(b"A2A", b'GETACL "Claimed by me"')
    assert acl[-1].startswith(b"A2A NO ["), acl
    opened = _ok(alice.command(b"A3", b'SELECT "Claimed by me"'))
    assert b"* 2 EXISTS\r\n" in opened and b"[READ-ONLY]" in opened[-1], opened
    fetched = _ok(alice.command(b"A4", b"FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    subjects = b"".join(fetched)
    assert b"request 3" in subjects and b"request 5" in subjects and b"request 6" not in subjects
    uids = [int(m) for m in re.findall(rb"UID (\d+)", subjects)]
    _refused_store = alice.command(b"A5", f"UID STORE {uids[0]} +FLAGS (\\Deleted)".encode())
    assert b"NO [READ-ONLY]" in _refused_store[-1], _refused_store
    # MOVE out: the real message moves, the claim follows it (same UID in the virtual folder).
    _ok(alice.command(b"A6", f"UID MOVE {uids[0]} Archive".encode()))
    assert 3 not in upstream_uids("127.0.0.1", upstream.port, "INBOX")
    archive = gw.gw.replica.get("Archive")
    ops = gw.gw.service.claims
    assert archive is not None and ops is not None
    (moved,) = ops.registry.in_mailbox(archive.id).values()
    assert moved.user == "alice" and moved.id == uids[0]
    again = _ok(alice.command(b"A7", b'SELECT "Claimed by me"'))
    assert b"* 2 EXISTS\r\n" in again, again
    bob_view = _ok(bob.command(b"B2", b'SELECT "Claimed by me"'))
    assert b"* 1 EXISTS\r\n" in bob_view, bob_view
    alice.close()
    bob.close()


def test_a_folder_rebuilt_at_the_hoster_ends_its_claims(gw: GatewayHarness) -> None:
    """New UIDVALIDITY: the old UIDs name other messages now, so the claims go."""
    alice = _client(gw, "alice")
    _ok(alice.command(b"A1", b"UID STORE 4 +FLAGS ($Claimed)"))
    alice.close()
    ops = gw.gw.service.claims
    inbox = gw.gw.replica.get("INBOX")
    assert ops is not None and inbox is not None and ops.registry.in_mailbox(inbox.id)

    async def rebuild() -> None:
        gw.gw.replica.reset(inbox, inbox.uidvalidity + 1, "rebuilt at the hoster (test)")
        await asyncio.sleep(0.1)

    gw.call(rebuild())
    assert not ops.registry.in_mailbox(inbox.id)
    with gw.gw.journal.engine.connect() as conn:
        details = [r.detail for r in conn.execute(select(journal.c.detail)) if r.detail]
    assert any("rebuilt at the hoster (test)" in d for d in details), details
