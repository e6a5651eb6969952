"""Property test: the bulk (whole-folder) forms of a selected view answer
exactly what the per-message forms answer.

FETCH 1:* (FLAGS MODSEQ), CHANGEDSINCE, the first unseen message of SELECT,
the keyword list and set-only SEARCH are computed column-wise from ranges,
flag combinations and sparse private modseqs.  After random shared and
private flag changes (with private history compacted to a floor), new and
expunged messages (some expunges not yet announced to the view), both read
modes and an extra private flag, each must equal the one-message-at-a-time
definition (``flags_of``, ``modseq_of``, ``Evaluator.matches``).
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapgate.gateway.app import Gateway
from imapgate.protocol import search as sk
from imapgate.protocol.sequence import STAR, SequenceSet
from imapgate.replica import replica as replica_module
from imapgate.replica.mailbox import MailboxIndex, MessageRecord, flags_wire
from imapgate.server import search as search_eval
from imapgate.server import view as view_module
from imapgate.server.view import SelectedView
from tests.support.gateway_setup import build_gateway, gateway_config

SHARED = ("\\Seen", "\\Flagged", "\\Answered", "$Label1", "work")
N = 30
_run = itertools.count()

flag_sets = st.frozensets(st.sampled_from(SHARED), max_size=3)
uid_lists = st.lists(st.integers(1, N + 4), min_size=1, max_size=12)
op = st.one_of(
    st.tuples(st.just("shared"), uid_lists, flag_sets),
    st.tuples(
        st.just("private"),
        st.sampled_from((0, 1)),
        st.sampled_from(("\\Seen", "$Mine")),
        uid_lists,
        st.booleans(),
    ),
    st.tuples(st.just("expunge"), uid_lists),
    st.tuples(st.just("add"), st.integers(1, 4), flag_sets),
    st.tuples(st.just("flush"), st.booleans()),
)
ranges = st.lists(
    st.tuples(st.integers(1, N + 12) | st.just(STAR), st.integers(1, N + 12) | st.just(STAR)),
    min_size=1,
    max_size=3,
)


def build(tmp: Path, seen: str, extra_private: bool) -> tuple[Gateway, list[int]]:
    folders: dict[str, object] = {"default_seen": seen}
    if extra_private:
        folders["private_flags"] = ["\\Seen", "$Mine"]
    gw = build_gateway(gateway_config(data_dir=tmp / "gw", base_dir=tmp, folders=folders))
    return gw, [gw.users.add(name, "pw-123456").id for name in ("ann", "ben")]


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], tuple[Gateway, list[int]]]:
    """One gateway per read mode and private flag set; each example gets a new folder."""
    return {
        (seen, extra): build(tmp_path_factory.mktemp(f"bulk-{seen}-{extra}"), seen, extra)
        for seen in ("private", "shared")
        for extra in (False, True)
    }


def new_folder(gw: Gateway, initial: list[frozenset[str]]) -> MailboxIndex:
    mb = gw.replica.upsert_mailbox(f"F{next(_run)}", "/", ())
    gw.replica.reset(mb, 1700000000, "test")
    recs = [MessageRecord(u, tuple(f), 0, 1_700_000_000.0 + u, 0, 10 * u) for u, f in enumerate(initial, 1)]
    gw.replica.add_messages(mb, recs)
    gw.replica.set_sync_state(mb, synced=True)
    return mb


def check(view: SelectedView) -> None:
    mb = view.mb
    # Sequence/UID sets resolve to the same targets as one pair at a time.
    for s in (SequenceSet.all(), SequenceSet(((3, 7), (5, 12), (20, STAR))), SequenceSet(((STAR, 30),))):
        for uid in (True, False):
            seqs, uids = view.resolve_columns(s, uid=uid)
            n, largest = len(view.uids), view.uids[-1] if view.uids else 0
            naive = [
                (i + 1, u)
                for i, u in enumerate(view.uids)
                if (s.contains(u, largest) if uid else s.contains(i + 1, n))
            ]
            assert list(zip(seqs, uids, strict=True)) == naive
    # Expunged messages not yet announced to the view are served as it knew them.
    assert all(view.record(u) is not None for u in view.uids)
    uids = list(view.uids)
    recs = [r for u in uids if (r := view.record(u)) is not None]
    wires, _ = view.flag_wires_announced(uids, recs)
    assert wires == [flags_wire(view.flags_of(u)) for u in uids]
    # Every keyword about to be sent was announced (FLAGS) first.
    assert {f for u in uids for f in view.flags_of(u) if not f.startswith("\\")} <= view.announced
    assert view.modseqs(uids, recs) == [view.modseq_of(u) for u in uids]
    bound = view.modseq_bound()
    assert all(view.modseq_of(u) <= bound for u in uids)
    for since in range(0, mb.modseq + 2):
        want = [i for i, u in enumerate(uids) if view.modseq_of(u) > since]
        assert view.changed_since(uids, recs, since) == want, since
    first = next((i + 1 for i, u in enumerate(view.uids) if "\\Seen" not in view.flags_of(u)), 0)
    assert view.first_unseen() == first
    keywords = sorted({f for r in mb.records.values() for f in r.flags if not f.startswith("\\")})
    assert list(mb.keywords()) == keywords
    unseen = next((u for u in mb.uids if "\\Seen" not in mb.records[u].flags), 0)
    assert mb.first_unseen_shared() == unseen
    assert mb.uids_text() == " ".join(str(u) for u in mb.uids).encode()


async def no_content(key: sk.SearchKey) -> set[int]:
    raise AssertionError("no content search expected")


def check_search(view: SelectedView, sets: list[tuple[int, int]]) -> None:
    s = SequenceSet(tuple(sets))
    for keys in (
        (sk.SearchAll(),),
        (sk.SearchUid(s),),
        (sk.SearchSequence(s),),
        (sk.SearchAll(), sk.SearchUid(s), sk.SearchSequence(SequenceSet(((2, STAR),)))),
    ):
        seqs, uids, _ = asyncio.run(search_eval.evaluate(view, keys, no_content))
        ev = search_eval.Evaluator(view, {}, None)
        naive = [(i + 1, u) for i, u in enumerate(view.uids) if ev.matches(i + 1, u, keys)]
        assert list(zip(seqs, uids, strict=True)) == naive, keys


@pytest.mark.parametrize("seen", ["private", "shared"])
@pytest.mark.parametrize("extra_private", [False, True])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    initial=st.lists(flag_sets, min_size=N // 2, max_size=N),
    ops=st.lists(op, max_size=25),
    sets=ranges,
    range_cost=st.sampled_from((0, 1000)),
)
def test_bulk_view_answers_equal_per_message_answers(
    monkeypatch: pytest.MonkeyPatch,
    gateways: dict[tuple[str, bool], tuple[Gateway, list[int]]],
    seen: str,
    extra_private: bool,
    initial: list[frozenset[str]],
    ops: list[tuple[Any, ...]],
    sets: list[tuple[int, int]],
    range_cost: int,
) -> None:
    # Compact private modseqs early, so the floor comes into play.
    monkeypatch.setattr(replica_module, "MAX_PRIVATE_MODSEQS", 2)
    # Walk set ranges (the large-folder path) from a few UIDs on, not from 64.
    monkeypatch.setattr(view_module, "_FEW", 4)
    # Both ways of marking private flags: range by range (0) and merged (1000).
    monkeypatch.setattr(view_module, "_RANGE_COST", range_cost)
    gw, users = gateways[(seen, extra_private)]
    replica = gw.replica
    mb = new_folder(gw, initial)
    views = [SelectedView(replica, mb, user_id=u, readonly=False, wake=lambda: None) for u in users]
    next_uid = len(initial) + 1
    for o in ops:
        if o[0] == "shared":
            _, uid_list, flags = o
            replica.set_shared_flags(mb, {u: sorted(flags) for u in uid_list})
        elif o[0] == "private":
            _, who, flag, uid_list, add = o
            if flag in replica.private_flags_of(mb):
                change = {flag: uid_list}
                replica.set_private_flags(mb, users[who], change if add else {}, {} if add else change)
        elif o[0] == "expunge":
            replica.expunge(mb, o[1])
        elif o[0] == "add":
            _, count, flags = o
            recs = [MessageRecord(next_uid + k, tuple(flags), 0, 1.0e9, 0, 5) for k in range(count)]
            next_uid += count
            replica.add_messages(mb, recs)
        else:
            # Announce pending changes to one view (the other keeps them pending).
            views[0 if o[1] else 1].flush(allow_expunge=True, condstore=True, qresync=False)
        for v in views:
            check(v)
        # \Recent: only messages that arrived after the folder's first fill, in one
        # session at most, and not also still waiting to be claimed.
        assert all(u > len(initial) for v in views for u in v.recent)
        assert not set(views[0].recent) & set(views[1].recent)
        assert not (set(views[0].recent) | set(views[1].recent)) & set(mb.recent)
    fresh = SelectedView(replica, mb, user_id=users[0], readonly=False, wake=lambda: None)
    for v in (*views, fresh):
        check(v)
        check_search(v, sets)
        v.close()


@pytest.mark.parametrize(
    ("seen_uids", "expunge", "want"),
    [
        ([], [], 1),  # nothing read
        ([1, 2, 3, 4, 5, 6], [], 0),  # everything read: no [UNSEEN n] at all
        ([1, 2, 4, 5, 6], [], 3),  # a gap in the middle
        ([1, 2, 3, 4, 5], [], 6),  # only the last unread
        ([2, 3, 5, 6], [1], 3),  # the first one expunged before SELECT
    ],
)
def test_first_unseen_from_private_seen_ranges(
    gateways: dict[tuple[str, bool], tuple[Gateway, list[int]]],
    seen_uids: list[int],
    expunge: list[int],
    want: int,
) -> None:
    gw, users = gateways[("private", False)]
    mb = new_folder(gw, [frozenset()] * 6)
    gw.replica.set_private_flags(mb, users[0], {"\\Seen": seen_uids}, {})
    gw.replica.expunge(mb, expunge)
    view = SelectedView(gw.replica, mb, user_id=users[0], readonly=False, wake=lambda: None)
    assert view.first_unseen() == want
    # The other user has read nothing of it.
    other = SelectedView(gw.replica, mb, user_id=users[1], readonly=False, wake=lambda: None)
    assert other.first_unseen() == (1 if mb.uids else 0)
    view.close()
    other.close()
