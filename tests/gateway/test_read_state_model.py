"""Property test: random interleavings of read / unread / copy / move /
expunge by several users, through the real write path in front of a real
Dovecot, against a simple model of per-user read state.

The model keeps, per user, the set of (folder, UID) they have read.  After
every step the replica must show each user exactly their own read state, and
nothing of it may have reached upstream's shared flags.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapgate.demo.dovecot import DovecotServer
from imapgate.gateway import operations as gops
from imapgate.gateway.app import Gateway
from imapgate.gateway.policy import Actor
from tests.support.gateway_setup import gateway_config, running_gateway

USERS = ("ann", "ben", "cid")
_run = itertools.count()

op = st.one_of(
    st.tuples(st.just("read"), st.sampled_from(USERS), st.integers(0, 20)),
    st.tuples(st.just("unread"), st.sampled_from(USERS), st.integers(0, 20)),
    st.tuples(st.just("mark"), st.sampled_from(USERS), st.integers(0, 20)),
    st.tuples(st.just("copy"), st.sampled_from(USERS), st.integers(0, 20)),
    st.tuples(st.just("move"), st.sampled_from(USERS), st.integers(0, 20)),
    st.tuples(st.just("expunge"), st.sampled_from(USERS), st.integers(0, 20)),
)


def message(n: int, run: int) -> bytes:
    return (
        f"From: a@example.org\r\nTo: b@example.org\r\nSubject: model {run}-{n}\r\n"
        f"Message-ID: <model-{run}-{n}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()


async def scenario(dc: DovecotServer, data_dir: Path, ops: list[tuple[str, str, int]]) -> None:
    run = next(_run)
    cfg = gateway_config(upstream_port=dc.port, data_dir=data_dir / f"gw{run}", base_dir=data_dir)
    async with running_gateway(cfg, start="none") as gw:
        actors = {u: Actor(gw.users.add(u, "pw").id, u, "model") for u in USERS}
        svc = gw.service
        src, dst = f"ModelA{run}", f"ModelB{run}"
        await gw.sync.sync_list()
        await svc.execute(actors["ann"], gops.Create(src))
        await svc.execute(actors["ann"], gops.Create(dst))
        await svc.execute(actors["ann"], gops.Append(src, [(message(i, run), (), None) for i in range(6)]))
        a, b = gw.replica.get(src), gw.replica.get(dst)
        assert a is not None and b is not None
        model: dict[str, set[tuple[str, int]]] = {u: set() for u in USERS}
        existing: set[tuple[str, int]] = {(src, u) for u in a.uids}

        def pick(folder: str, i: int) -> int | None:
            mb = gw.replica.get(folder)
            assert mb is not None
            return mb.uids[i % len(mb.uids)] if mb.uids else None

        for kind, user, i in ops:
            actor = actors[user]
            folder = src if i % 3 else dst
            uid = pick(folder, i)
            if uid is None:
                continue
            mb = gw.replica.get(folder)
            assert mb is not None
            if kind == "read":
                svc.execute_now(actor, gops.MarkSeen(mb, [uid]))
                model[user].add((folder, uid))
            elif kind == "mark":
                await svc.execute(actor, gops.StoreFlags(mb, [uid], "add", ["\\Seen"]))
                model[user].add((folder, uid))
            elif kind == "unread":
                await svc.execute(actor, gops.StoreFlags(mb, [uid], "remove", ["\\Seen"]))
                model[user].discard((folder, uid))
            elif kind in ("copy", "move"):
                target = dst if folder == src else src
                op = gops.Move(mb, [uid], target) if kind == "move" else gops.Copy(mb, [uid], target)
                res = await svc.execute(actor, op)
                assert len(res.dest) == 1, "COPYUID expected from Dovecot"
                existing.add((target, res.dest[0]))
                if kind == "move":
                    existing.discard((folder, uid))
                for u in USERS:
                    if (folder, uid) in model[u]:
                        model[u].add((target, res.dest[0]))
                        if kind == "move":
                            model[u].discard((folder, uid))
            else:
                await svc.execute(actor, gops.StoreFlags(mb, [uid], "add", ["\\Deleted"]))
                await svc.execute(actor, gops.Expunge(mb, [uid]))
                existing.discard((folder, uid))
                for u in USERS:
                    model[u].discard((folder, uid))
            check(gw, model, (src, dst))
            for f in (src, dst):
                mbf = gw.replica.get(f)
                assert mbf is not None
                assert {(f, u) for u in mbf.uids} == {e for e in existing if e[0] == f}, "lost or extra mail"


def check(gw: Gateway, model: dict[str, set[tuple[str, int]]], folders: tuple[str, str]) -> None:
    replica = gw.replica
    for folder in folders:
        mb = replica.get(folder)
        assert mb is not None
        private = replica.private_flags_of(mb)
        for uid in mb.uids:
            rec = mb.records[uid]
            assert "\\Seen" not in rec.flags, "private read state leaked upstream"
            for user in USERS:
                found = gw.users.get(user)
                assert found is not None
                state = replica.private_state(mb, found.id)
                seen = "\\Seen" in replica.flags_for(mb, rec, state, private)
                assert seen == ((folder, uid) in model[user]), (user, folder, uid)


@pytest.mark.integration
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=12))
def test_private_read_state_matches_model(
    own_dovecot: DovecotServer, tmp_path: Path, ops: list[tuple[str, str, int]]
) -> None:
    asyncio.run(scenario(own_dovecot, tmp_path, ops))


@pytest.fixture
def own_dovecot(fresh_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    """An isolated Dovecot for this test only: the examples create many folders."""
    return fresh_dovecot(folders={})
