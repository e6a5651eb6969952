"""The reply guard: is this message the second answer to a customer's mail?

A pure decision over (the attempt, the original it replies to, that original's
history); no I/O here.  ``service.py`` gathers the inputs (the replica's copies
of the original, the store's records, the claims) and acts on the answer.

Theory of operation.  A message whose ``In-Reply-To`` or ``References`` names a
message the replica knows is a reply to it (``SubmittedMessage.candidates``:
In-Reply-To first, then References from the last to the first; the first one
known is the original).  It is held back when

1. another member holds a claim on the original (``ClaimLookup``; the claims
   issue fills it, ``NoClaims`` answers "none" until then);
2. another member already answered it: a reply sent through the gateway
   (a ``submissions`` row, also one whose outcome is unknown), or ``\\Answered``
   set through the gateway while the original still carries it (an
   ``answer_marks`` row);
3. it carries ``\\Answered`` in the replica and nobody answered it through the
   gateway: it was answered at the mail server (webmail, another client).

A member's own replies and marks never hold back their own reply.  The same
member sending the same reply again — same original, recipients and subject —
within the override window sends it anyway (the refused attempt is in the
history).  Before all that, a message the same member already submitted (same
Message-ID and recipients) is a retransmission: answered "already sent" without
sending it twice, "being sent" while the first attempt runs, and held back like
a refusal when the gateway stopped while the hoster was taking the first one.

Every text is one ASCII line (SMTP replies are ASCII without SMTPUTF8, RFC 5321
§4.2): subjects are folded to ASCII and cut.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

#: Characters of the subject quoted in a refusal: the whole reply line must stay
#: well within SMTP's 512 octets (RFC 5321 §4.5.3.1.5) and readable in a dialog.
MAX_SUBJECT_SHOWN = 60


# --------------------------------------------------------------------- claims seam


@dataclass(frozen=True)
class Claim:
    user: str
    since: float


class ClaimLookup(Protocol):
    """Who holds a claim on a message (the claims issue implements this)."""

    def claim_of(self, mailbox_id: int, uid: int) -> Claim | None: ...


class NoClaims:
    """No claims exist yet."""

    def claim_of(self, mailbox_id: int, uid: int) -> Claim | None:
        return None


# --------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Copy:
    """One copy of the original in the replica."""

    mailbox_id: int
    mailbox: str
    uid: int
    #: The shared ``\\Answered`` flag, as the replica holds it now.
    answered: bool


@dataclass(frozen=True)
class Original:
    message_id: str
    copies: tuple[Copy, ...]

    @property
    def answered(self) -> bool:
        return any(c.answered for c in self.copies)


@dataclass(frozen=True)
class PastReply:
    """A reply to the original through the gateway (``state`` "sent", "unknown", or
    "sending": going out right now)."""

    user: str
    ts: float
    subject: str
    state: str = "sent"


@dataclass(frozen=True)
class PastMark:
    """``\\Answered`` set on the original through the gateway."""

    user: str
    ts: float


@dataclass(frozen=True)
class PastAttempt:
    """One of the sender's own earlier submissions: of this Message-ID (``state``
    sending/sent/unknown), or a refused one (``state`` "refused", with the
    original it replied to)."""

    ts: float
    state: str
    recipients: frozenset[str]
    subject: str
    original: str | None = None
    kind: str = ""


@dataclass(frozen=True)
class History:
    replies: tuple[PastReply, ...] = ()
    marks: tuple[PastMark, ...] = ()
    claims: tuple[Claim, ...] = ()
    #: The sender's refused attempts within the override window.
    refusals: tuple[PastAttempt, ...] = ()
    #: The sender's earlier submissions of the same Message-ID.
    same_message: tuple[PastAttempt, ...] = ()


@dataclass(frozen=True)
class Attempt:
    user: str
    recipients: frozenset[str]
    subject: str
    now: float


# --------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Send:
    #: The kind of refusal this attempt overrides (None: nothing to override).
    overrides: str | None = None


@dataclass(frozen=True)
class AlreadySent:
    """The same message was sent before: answer success, do not send it twice."""

    ts: float


@dataclass(frozen=True)
class Busy:
    """The same message is being sent right now (another connection)."""


@dataclass(frozen=True)
class Refuse:
    #: "claimed", "replied", "marked", "answered-at-hoster", "uncertain".
    kind: str
    text: str


Decision = Send | AlreadySent | Busy | Refuse


@dataclass(frozen=True)
class Clock:
    """How times and the window appear in texts."""

    zone: tzinfo | None = None

    def when(self, ts: float, now: float) -> str:
        """``10:40`` today, ``3 Mar 10:40`` this year, ``3 Mar 2025 10:40`` before."""
        at = datetime.fromtimestamp(ts, self.zone) if self.zone else datetime.fromtimestamp(ts)
        ref = datetime.fromtimestamp(now, self.zone) if self.zone else datetime.fromtimestamp(now)
        hm = at.strftime("%H:%M")
        if at.date() == ref.date():
            return hm
        day = f"{at.day} {at.strftime('%b')}"
        if at.year == ref.year:
            return f"{day} {hm}"
        return f"{day} {at.year} {hm}"


def window_text(seconds: float) -> str:
    """``10 minutes``, ``1 hour``, ``90 seconds``."""
    s = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size and s % size == 0:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{s} second{'s' if s != 1 else ''}"


def ascii_line(text: str, limit: int = MAX_SUBJECT_SHOWN) -> str:
    """``text`` as one printable ASCII line of at most ``limit`` characters
    (accents dropped, other characters as ``?``)."""
    folded = unicodedata.normalize("NFKD", text)
    out = []
    for ch in folded:
        if unicodedata.combining(ch):
            continue
        if " " <= ch <= "~":
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
        else:
            out.append("?")
    line = " ".join("".join(out).split())
    if len(line) > limit:
        line = line[: limit - 3].rstrip() + "..."
    return line


def normalized_subject(subject: str) -> str:
    return " ".join(subject.split()).casefold()


# --------------------------------------------------------------------- the decision


def decide(
    attempt: Attempt,
    original: Original | None,
    history: History,
    *,
    window: float,
    clock: Clock | None = None,
) -> Decision:
    clock = clock or Clock()
    tail = f"send again within {window_text(window)} to send anyway."
    refusal = _retransmission(attempt, history, clock, tail)
    if isinstance(refusal, (AlreadySent, Busy)):
        return refusal
    if refusal is None and original is not None:
        refusal = _reply_refusal(attempt, original, history, clock, tail)
    if refusal is None:
        return Send()
    if _overridden(attempt, original, history, window):
        return Send(overrides=refusal.kind)
    return refusal


def _retransmission(
    attempt: Attempt, history: History, clock: Clock, tail: str
) -> AlreadySent | Busy | Refuse | None:
    same = [a for a in history.same_message if a.recipients == attempt.recipients]
    sent = [a for a in same if a.state == "sent"]
    if sent:
        return AlreadySent(max(a.ts for a in sent))
    if any(a.state == "sending" for a in same):
        return Busy()
    unknown = [a for a in same if a.state == "unknown"]
    if unknown:
        when = clock.when(max(a.ts for a in unknown), attempt.now)
        return Refuse(
            "uncertain",
            f"Not sent: an earlier attempt at {when} may already have gone out (the gateway stopped "
            f"while the mail server was taking it). Check with the recipients, or {tail}",
        )
    return None


def _reply_refusal(
    attempt: Attempt, original: Original, history: History, clock: Clock, tail: str
) -> Refuse | None:
    me = attempt.user
    claims = [c for c in history.claims if c.user != me]
    if claims:
        c = max(claims, key=lambda c: c.since)
        return Refuse(
            "claimed",
            f"Not sent: {c.user} is handling this mail (claimed {clock.when(c.since, attempt.now)}). "
            f"Ask {c.user}, or {tail}",
        )
    replies = [r for r in history.replies if r.user != me]
    if replies:
        r = max(replies, key=lambda r: r.ts)
        subject = f' ("{ascii_line(r.subject)}")' if r.subject.strip() else ""
        if r.state == "sending":
            return Refuse(
                "replied",
                f"Not sent: {r.user} is sending a reply to this mail right now{subject}. "
                f"Read their reply first, or {tail}",
            )
        return Refuse(
            "replied",
            f"Not sent: {r.user} already replied at {clock.when(r.ts, attempt.now)}{subject}. "
            f"Read their reply first, or {tail}",
        )
    if not original.answered:
        return None
    marks = [m for m in history.marks if m.user != me]
    if marks:
        m = max(marks, key=lambda m: m.ts)
        return Refuse(
            "marked",
            f"Not sent: {m.user} already answered this mail at {clock.when(m.ts, attempt.now)} "
            f"(marked answered). Read their reply first, or {tail}",
        )
    if any(r.user == me for r in history.replies) or any(m.user == me for m in history.marks):
        return None  # answered by the sender themselves
    return Refuse(
        "answered-at-hoster",
        f"Not sent: this mail was already answered at the mail server. Check the reply first, or {tail}",
    )


def _overridden(attempt: Attempt, original: Original | None, history: History, window: float) -> bool:
    want_original = original.message_id if original is not None else None
    subject = normalized_subject(attempt.subject)
    return any(
        r.state == "refused"
        and attempt.now - r.ts <= window
        and r.original == want_original
        and r.recipients == attempt.recipients
        and normalized_subject(r.subject) == subject
        for r in history.refusals
    )
