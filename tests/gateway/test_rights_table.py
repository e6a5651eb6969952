"""The one rights table (gateway/rights.py), table-driven: which RFC 4314 rights
each operation needs, on which folder (RFC 4314 §4; STORE per flag)."""

from __future__ import annotations

from typing import Any

import pytest

from imapgate.gateway import operations as ops
from imapgate.gateway.rights import Need, flag_rights, parent_of, required
from imapgate.protocol.fetch_items import FetchAttribute
from imapgate.protocol.search import SearchText
from imapgate.replica.mailbox import MailboxIndex


def _mb(name: str) -> MailboxIndex:
    mb = MailboxIndex.__new__(MailboxIndex)
    mb.name = name
    return mb


INBOX = _mb("INBOX")
BODY = FetchAttribute("BODY", peek=True)

CASES: list[tuple[ops.Operation[Any], tuple[Need, ...]]] = [
    # an internal note (the dashboard; never upstream): as reading the message
    (ops.AddNote(INBOX, 1, "called the customer"), (Need("INBOX", "lr"),)),
    # STORE (issue 11): r, plus per flag \Seen -> s, \Deleted -> t, others -> w, each a
    # need of its own for +FLAGS/-FLAGS (a denied flag is left out, RFC 4314 §4);
    # a replace needs w and the letters of its flags, all or nothing
    (
        ops.StoreFlags(INBOX, [1], "add", ["\\Seen"]),
        (Need("INBOX", "r"), Need("INBOX", "s", flags=("\\Seen",))),
    ),
    (
        ops.StoreFlags(INBOX, [1], "remove", ["\\seen"]),
        (Need("INBOX", "r"), Need("INBOX", "s", flags=("\\seen",))),
    ),
    (
        ops.StoreFlags(INBOX, [1], "add", ["\\Deleted"]),
        (Need("INBOX", "r"), Need("INBOX", "t", flags=("\\Deleted",))),
    ),
    (
        ops.StoreFlags(INBOX, [1], "add", ["\\Flagged"]),
        (Need("INBOX", "r"), Need("INBOX", "w", flags=("\\Flagged",))),
    ),
    (
        ops.StoreFlags(INBOX, [1], "add", ["$Label1"]),
        (Need("INBOX", "r"), Need("INBOX", "w", flags=("$Label1",))),
    ),
    (
        ops.StoreFlags(INBOX, [1], "add", ["\\Seen", "\\Deleted", "\\Answered"]),
        (
            Need("INBOX", "r"),
            Need("INBOX", "s", flags=("\\Seen",)),
            Need("INBOX", "t", flags=("\\Deleted",)),
            Need("INBOX", "w", flags=("\\Answered",)),
        ),
    ),
    (ops.StoreFlags(INBOX, [1], "set", ["\\Seen"]), (Need("INBOX", "rsw"),)),
    (ops.StoreFlags(INBOX, [1], "set", []), (Need("INBOX", "rw"),)),
    (ops.StoreFlags(INBOX, [1], "add", ["\\Recent"]), (Need("INBOX", "r"),)),
    # implicit \Seen: s, skipped (not refused) without it
    (ops.MarkSeen(INBOX, [1]), (Need("INBOX", "s", skip_if_denied=True),)),
    (ops.Expunge(INBOX), (Need("INBOX", "e"),)),
    (ops.Expunge(INBOX, [1, 2]), (Need("INBOX", "e"),)),
    # a destination the user may not see answers as a missing one: TRYCREATE
    (ops.Copy(INBOX, [1], "Archive"), (Need("INBOX", "r"), Need("Archive", "i", missing="TRYCREATE"))),
    (ops.Move(INBOX, [1], "Archive"), (Need("INBOX", "rte"), Need("Archive", "i", missing="TRYCREATE"))),
    (ops.Append("Sent", []), (Need("Sent", "i", missing="TRYCREATE"),)),
    (ops.Create("Projects/2024"), (Need("Projects", "k"),)),
    # a top-level name: k on INBOX, whose entries it inherits (issue 11)
    (ops.Create("Top"), (Need("INBOX", "k"),)),
    (ops.Delete("Old"), (Need("Old", "x"),)),
    (ops.Rename("Old", "Projects/New"), (Need("Old", "x"), Need("Projects", "k"))),
    (ops.Subscribe("Archive"), (Need("Archive", "l"),)),
    (ops.Unsubscribe("Archive"), ()),
    (ops.SetReadMode("INBOX", "shared"), (Need("INBOX", "a"),)),
    # reads
    (ops.Select("INBOX"), (Need("INBOX", "r"),)),
    (ops.Select("INBOX", readonly=True), (Need("INBOX", "r"),)),
    (ops.EnsureSynced("INBOX"), (Need("INBOX", "r"),)),
    (ops.Status("INBOX"), (Need("INBOX", "lr"),)),
    (ops.ReadMessages(INBOX), (Need("INBOX", "r"),)),
    (ops.FetchContent(INBOX, [1], [BODY]), (Need("INBOX", "r"),)),
    # who took a message away is read like the message: r
    (ops.ExplainGone(INBOX, [1], 1), (Need("INBOX", "r"),)),
    (ops.SearchContent(INBOX, SearchText("BODY", b"x")), (Need("INBOX", "r"),)),
    (ops.ListFolders(), (Need(None, "l"),)),
    # RFC 4314 ACL commands: MYRIGHTS l (a folder without it does not exist), the rest a
    (ops.MyRights("INBOX"), (Need("INBOX", "l"),)),
    (ops.GetAcl("INBOX"), (Need("INBOX", "a"),)),
    (ops.ListRights("INBOX", "bob"), (Need("INBOX", "a"),)),
    (ops.SetAcl("INBOX", "bob", "lr"), (Need("INBOX", "a"),)),
    (ops.DeleteAcl("INBOX", "bob"), (Need("INBOX", "a"),)),
]


def _id(value: object) -> str:
    return type(value).__name__ if isinstance(value, ops.Operation) else ""


@pytest.mark.parametrize(("op", "needs"), CASES, ids=_id)
def test_rights_table(op: ops.Operation[Any], needs: tuple[Need, ...]) -> None:
    assert required(op) == needs


def test_every_operation_is_in_the_table() -> None:
    covered = {type(op) for op, _ in CASES}
    assert set(ops.ALL) == covered


def test_an_unknown_operation_is_an_error() -> None:
    class Frob(ops.Operation[None]):
        pass

    with pytest.raises(TypeError, match="Frob"):
        required(Frob())


def test_the_parent_follows_the_delimiter() -> None:
    assert parent_of("a.b.c", ".") == "a.b"
    assert parent_of("a/b", ".") == "INBOX"
    assert required(ops.Create("Team.Sales"), ".") == (Need("Team", "k"),)


def test_flag_rights() -> None:
    assert flag_rights("add", []) == ""
    assert flag_rights("set", []) == "w"
    assert flag_rights("add", ["\\DELETED", "\\SEEN"]) == "st"
