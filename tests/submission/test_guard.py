"""The reply guard as a pure decision: every rule, the texts, the override, the clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from imapgate.submission.guard import (
    AlreadySent,
    Attempt,
    Busy,
    Claim,
    Clock,
    Copy,
    History,
    Original,
    PastAttempt,
    PastMark,
    PastReply,
    Refuse,
    Send,
    ascii_line,
    decide,
    window_text,
)

BERLIN = ZoneInfo("Europe/Berlin")
CLOCK = Clock(BERLIN)
NOW = datetime(2026, 3, 12, 10, 45, tzinfo=BERLIN).timestamp()
AT_1040 = datetime(2026, 3, 12, 10, 40, tzinfo=BERLIN).timestamp()
AT_1042 = datetime(2026, 3, 12, 10, 42, tzinfo=BERLIN).timestamp()
RCPTS = frozenset({"kunde@example.net"})
MID = "<m1@customer>"
TAIL = "send again within 10 minutes to send anyway."


def original(answered: bool = False) -> Original:
    return Original(MID, (Copy(1, "INBOX", 7, answered),))


def attempt(user: str = "bob", subject: str = "Re: Lieferung") -> Attempt:
    return Attempt(user, RCPTS, subject, NOW)


def run(history: History, orig: Original | None = None, who: str = "bob", subject: str = "Re: Lieferung"):
    return decide(attempt(who, subject), orig if orig is not None else original(), history, window=600,
                  clock=CLOCK)


def test_not_a_reply_goes_out() -> None:
    assert decide(attempt(), None, History(), window=600) == Send()


def test_unanswered_original_goes_out() -> None:
    assert run(History()) == Send()


def test_colleague_replied() -> None:
    got = run(History(replies=(PastReply("alice", AT_1040, "Re: Lieferung"),)))
    assert got == Refuse(
        "replied",
        f'Not sent: alice already replied at 10:40 ("Re: Lieferung"). Read their reply first, or {TAIL}',
    )


def test_colleague_is_sending_right_now() -> None:
    got = run(History(replies=(PastReply("alice", AT_1040, "Re: Lieferung", "sending"),)))
    assert isinstance(got, Refuse)
    assert got.text.startswith('Not sent: alice is sending a reply to this mail right now ("Re: Lieferung").')


def test_colleague_claimed() -> None:
    got = run(History(claims=(Claim("carol", AT_1042),)))
    assert got == Refuse(
        "claimed", f"Not sent: carol is handling this mail (claimed 10:42). Ask carol, or {TAIL}"
    )


def test_claim_wins_over_reply_and_own_claim_is_ignored() -> None:
    h = History(replies=(PastReply("alice", AT_1040, "x"),), claims=(Claim("carol", AT_1042),))
    got = run(h)
    assert isinstance(got, Refuse) and got.kind == "claimed"
    assert run(History(claims=(Claim("bob", AT_1042),))) == Send()


def test_marked_answered_by_colleague_counts_only_while_flag_is_set() -> None:
    h = History(marks=(PastMark("carol", AT_1040),))
    got = run(h, original(answered=True))
    assert got == Refuse(
        "marked",
        f"Not sent: carol already answered this mail at 10:40 (marked answered). Read their reply first, "
        f"or {TAIL}",
    )
    assert run(h, original(answered=False)) == Send()


def test_answered_at_the_mail_server() -> None:
    got = run(History(), original(answered=True))
    assert got == Refuse(
        "answered-at-hoster",
        f"Not sent: this mail was already answered at the mail server. Check the reply first, or {TAIL}",
    )


def test_own_reply_or_mark_is_never_held_back() -> None:
    assert run(History(replies=(PastReply("bob", AT_1040, "x"),)), original(answered=True)) == Send()
    assert run(History(marks=(PastMark("bob", AT_1040),)), original(answered=True)) == Send()


def test_latest_colleague_reply_is_named() -> None:
    h = History(replies=(PastReply("alice", AT_1040, "a"), PastReply("carol", AT_1042, "c")))
    got = run(h)
    assert isinstance(got, Refuse) and got.text.startswith('Not sent: carol already replied at 10:42 ("c")')


def refusal(ts: float, subject: str = "Re: Lieferung", rcpts: frozenset[str] = RCPTS,
            orig: str | None = MID) -> PastAttempt:
    return PastAttempt(ts, "refused", rcpts, subject, orig)


REPLIED = History(replies=(PastReply("alice", AT_1040, "Re: Lieferung"),))


def test_override_same_reply_within_window() -> None:
    h = History(REPLIED.replies, refusals=(refusal(NOW - 60),))
    assert run(h) == Send(overrides="replied")
    assert run(History(REPLIED.replies, refusals=(refusal(NOW - 60),)), subject="re:   LIEFERUNG") == Send(
        overrides="replied"
    )


@pytest.mark.parametrize(
    "past",
    [
        refusal(NOW - 601),  # window over
        refusal(NOW - 60, subject="Re: Anderes"),
        refusal(NOW - 60, rcpts=frozenset({"kunde@example.net", "chef@example.net"})),
        refusal(NOW - 60, orig="<other@customer>"),
    ],
)
def test_no_override(past: PastAttempt) -> None:
    got = run(History(REPLIED.replies, refusals=(past,)))
    assert isinstance(got, Refuse)


def test_retransmission_of_a_sent_message() -> None:
    same = (PastAttempt(AT_1040, "sent", RCPTS, "Re: Lieferung"),)
    assert run(History(same_message=same)) == AlreadySent(AT_1040)
    # Other recipients (a bounce/redirect keeps the Message-ID): not a retransmission.
    other = (PastAttempt(AT_1040, "sent", frozenset({"x@y"}), "Re: Lieferung"),)
    assert run(History(same_message=other)) == Send()


def test_retransmission_while_sending_and_after_unknown_outcome() -> None:
    assert run(History(same_message=(PastAttempt(AT_1040, "sending", RCPTS, "s"),))) == Busy()
    got = run(History(same_message=(PastAttempt(AT_1040, "unknown", RCPTS, "s"),)))
    assert got == Refuse(
        "uncertain",
        "Not sent: an earlier attempt at 10:40 may already have gone out (the gateway stopped while the "
        f"mail server was taking it). Check with the recipients, or {TAIL}",
    )
    h = History(same_message=(PastAttempt(AT_1040, "unknown", RCPTS, "Re: Lieferung"),),
                refusals=(refusal(NOW - 30),))
    assert run(h) == Send(overrides="uncertain")


def test_clock_days_and_zones() -> None:
    yesterday = datetime(2026, 3, 11, 9, 5, tzinfo=BERLIN).timestamp()
    last_year = datetime(2025, 12, 30, 23, 59, tzinfo=BERLIN).timestamp()
    assert CLOCK.when(AT_1040, NOW) == "10:40"
    assert CLOCK.when(yesterday, NOW) == "11 Mar 09:05"
    assert CLOCK.when(last_year, NOW) == "30 Dec 2025 23:59"
    assert Clock(ZoneInfo("UTC")).when(AT_1040, NOW) == "09:40"


def test_window_and_ascii_texts() -> None:
    assert [window_text(s) for s in (600, 60, 90, 3600, 7200, 86400, 10)] == [
        "10 minutes", "1 minute", "90 seconds", "1 hour", "2 hours", "1 day", "10 seconds",
    ]
    assert ascii_line("Re: Lieferung für Müller\r\nBcc: x") == "Re: Lieferung fur Muller Bcc: x"
    assert ascii_line("Ärger 😀 €") == "Arger ? ?"
    assert ascii_line("x" * 100) == "x" * 57 + "..."
    got = run(History(replies=(PastReply("alice", AT_1040, "Über die Lieferung \x00\x1b[2J"),)))
    assert isinstance(got, Refuse) and got.text.isascii() and "\r" not in got.text and "\x1b" not in got.text
