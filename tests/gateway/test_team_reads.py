"""What the dashboard reads of the team store (gateway/team_reads.py), on SQLite and
PostgreSQL: "answered by" from the answer marks and the replies sent through the guard,
"answered" marks of the last seconds for the live feed."""

from __future__ import annotations

from sqlalchemy import Engine

from imapgate.gateway.team_reads import answered_by, recent_answers
from imapgate.store.schema import answer_marks, submissions


def _mark(ts: float, user: str, mid: str) -> dict[str, object]:
    return {"ts": ts, "user_name": user, "message_id": mid, "mailbox": "INBOX", "uid": 1}


def _reply(ts: float, user: str, original: str, state: str) -> dict[str, object]:
    return {"ts": ts, "user_name": user, "message_id": f"<r{ts}@x>", "recipients": "c@example.com",
            "subject": "Re: x", "original": original, "state": state}  # fmt: skip


def test_answered_by_marks_and_sent_replies(store_engine: Engine) -> None:
    with store_engine.begin() as conn:
        marks = [
            (20.0, "bob", "<a@x>"),
            (10.0, "alice", "<a@x>"),
            (30.0, "alice", "<a@x>"),
            (5.0, "carol", "<b@x>"),
        ]
        conn.execute(answer_marks.insert(), [_mark(*m) for m in marks])
        conn.execute(
            submissions.insert(),
            [_reply(40.0, "dave", "<a@x>", "sent"), _reply(1.0, "erin", "<b@x>", "refused"),
             _reply(2.0, "frank", "<c@x>", "sent")],
        )  # fmt: skip
    got = answered_by(store_engine, ["<a@x>", "<b@x>", "<c@x>", "<none@x>"])
    # First first, each name once; a refused reply did not answer anything.
    assert got == {"<a@x>": ("alice", "bob", "dave"), "<b@x>": ("carol",), "<c@x>": ("frank",)}
    assert answered_by(store_engine, []) == {}
    assert recent_answers(store_engine, ["<a@x>"], since=15.0) == [
        (20.0, "bob", "<a@x>"),
        (30.0, "alice", "<a@x>"),
    ]
