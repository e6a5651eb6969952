"""Handlers of the mailbox commands: LIST (LIST-EXTENDED, LIST-STATUS,
SPECIAL-USE), LSUB, STATUS, SELECT/EXAMINE (CONDSTORE, QRESYNC), CREATE,
DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, APPEND."""

from __future__ import annotations

import re

from ..gateway import policy as rights
from ..gateway.errors import OperationError
from ..protocol import commands as cmd
from ..protocol import responses as rsp
from ..protocol.sequence import SequenceSet
from ..replica.mailbox import MailboxIndex
from .session import AUTH, Done, Session, State, command
from .view import SelectedView

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
#: Attributes that describe hierarchy and are recomputed from the replica.
_CHILD_ATTRS = {"\\HASCHILDREN", "\\HASNOCHILDREN"}
SPECIAL_USE = {"\\ALL", "\\ARCHIVE", "\\DRAFTS", "\\FLAGGED", "\\JUNK", "\\SENT", "\\TRASH", "\\IMPORTANT"}
STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT", "HIGHESTMODSEQ")


def pattern_regex(reference: str, pattern: str, delimiter: str) -> re.Pattern[str]:
    """LIST pattern (with its reference) as a regex: ``*`` any, ``%`` any but the delimiter."""
    full = pattern if pattern.startswith(delimiter) or not reference else reference + pattern
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(delimiter)}]*")
        else:
            out.append(re.escape(ch))
    rx = "".join(out)
    # INBOX is case-insensitive (RFC 9051 §5.1).
    if full[:5].upper() == "INBOX" and full[:5] != "INBOX":
        rx = "(?i:INBOX)" + rx[5:] if len(full) >= 5 else rx
    return re.compile(rx + r"\Z", re.DOTALL)


def _attributes(s: Session, mb: MailboxIndex, names: set[str], subscribed: bool | None) -> tuple[str, ...]:
    attrs = [a for a in mb.attributes if a.upper() not in _CHILD_ATTRS and a.upper() != "\\SUBSCRIBED"]
    prefix = mb.name + s.gw.replica.delimiter()
    has_children = any(n.startswith(prefix) for n in names)
    attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
    if subscribed:
        attrs.append("\\Subscribed")
    return tuple(attrs)


def _status_items(s: Session, mb: MailboxIndex, items: tuple[str, ...]) -> dict[str, int]:
    actor = s.require_actor()
    replica = s.gw.replica
    private = replica.private_flags_of(mb)
    out: dict[str, int] = {}
    for item in items:
        item = item.upper()
        if item == "MESSAGES":
            out[item] = mb.exists
        elif item == "UIDNEXT":
            out[item] = mb.uidnext
        elif item == "UIDVALIDITY":
            out[item] = mb.uidvalidity
        elif item == "UNSEEN":
            if "\\Seen" in private:
                seen = replica.private_state(mb, actor.user_id).flags.get("\\Seen")
                out[item] = mb.exists - (len(seen) if seen else 0)
            else:
                out[item] = mb.shared_counts()[0]
        elif item == "DELETED":
            out[item] = mb.shared_counts()[1]
        elif item == "SIZE":
            out[item] = mb.shared_counts()[2]
        elif item == "RECENT":
            out[item] = 0
        elif item == "HIGHESTMODSEQ":
            if private:
                replica.private_state(mb, actor.user_id)
            out[item] = replica.highest_modseq_for(mb, actor.user_id if private else None)
        else:
            raise OperationError(f"unknown STATUS item {item}", "CLIENTBUG", status="BAD")
    return out


@command(cmd.List, AUTH)
async def list_(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.List)
    actor = s.require_actor()
    sel = {o.upper() for o in (c.selection_options or ())}
    ret = {o.upper() for o in (c.return_options or ())}
    if len(c.patterns) == 1 and c.patterns[0] == "" and not sel:
        s.send_response(rsp.ListResponse(("\\Noselect",), s.gw.replica.delimiter(), ""))
        return Done("LIST completed")
    only_subscribed = "SUBSCRIBED" in sel
    show_subscribed = only_subscribed or "SUBSCRIBED" in ret
    special_only = "SPECIAL-USE" in sel
    delim = s.gw.replica.delimiter()
    regexes = [pattern_regex(c.reference, p, delim) for p in c.patterns]
    names = set(s.gw.replica.names())
    for name in sorted(names, key=lambda n: (n != "INBOX", n)):
        if not any(rx.match(name) for rx in regexes):
            continue
        mb = s.gw.replica.get(name)
        if mb is None:
            continue
        if not _may_see(s, name):
            continue
        subscribed = s.gw.subscriptions.is_subscribed(actor.user_id, name)
        if only_subscribed and not subscribed:
            continue
        if special_only and not any(a.upper() in SPECIAL_USE for a in mb.attributes):
            continue
        s.send_response(
            rsp.ListResponse(_attributes(s, mb, names, subscribed if show_subscribed else None), delim, name)
        )
        if "STATUS" in ret and c.status_items and not any(a.upper() == "\\NOSELECT" for a in mb.attributes):
            s.send_response(rsp.StatusResponse(name, _status_items(s, mb, c.status_items)))
        await s.maybe_flush()
    return Done("LIST completed")


def _may_see(s: Session, name: str) -> bool:
    try:
        s.gw.service.policy.authorize(s.require_actor(), name, rights.LOOKUP)
    except OperationError:
        return False
    return True


@command(cmd.Lsub, AUTH)
async def lsub(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Lsub)
    actor = s.require_actor()
    delim = s.gw.replica.delimiter()
    rx = pattern_regex(c.reference, c.pattern, delim)
    names = set(s.gw.replica.names())
    for name in sorted(names, key=lambda n: (n != "INBOX", n)):
        mb = s.gw.replica.get(name)
        if mb is None or not rx.match(name) or not _may_see(s, name):
            continue
        if s.gw.subscriptions.is_subscribed(actor.user_id, name):
            s.send_response(rsp.LsubResponse(_attributes(s, mb, names, None), delim, name))
    return Done("LSUB completed")


@command(cmd.Status, AUTH)
async def status(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Status)
    s.gw.service.policy.authorize(s.require_actor(), c.mailbox, rights.READ)
    mb = await s.gw.service.ensure_synced(c.mailbox)
    s.send_response(rsp.StatusResponse(mb.name, _status_items(s, mb, c.items)))
    return Done("STATUS completed")


async def _select(s: Session, c: cmd.SelectBase, readonly: bool) -> Done:
    actor = s.require_actor()
    # A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
    s.select_view(None)
    if c.qresync is not None and not s.qresync:
        raise OperationError("QRESYNC parameter without ENABLE QRESYNC", "CLIENTBUG", status="BAD")
    s.gw.service.policy.authorize(actor, c.mailbox, rights.READ)
    mb = await s.gw.service.ensure_synced(c.mailbox)
    if c.condstore:
        s.enabled.add("CONDSTORE")
    view = SelectedView(s.gw.replica, mb, user_id=actor.user_id, readonly=readonly, wake=s.wake)
    s.select_view(view)
    flags = (*SYSTEM_FLAGS, *mb.keywords())
    s.send_response(rsp.Flags(flags))
    # Offer \* (new keywords) only when the hoster can keep them.
    keywords_ok = mb.permanent_flags is None or "\\*" in mb.permanent_flags
    permanent = () if readonly else (*flags, "\\*") if keywords_ok else flags
    s.send_response(rsp.UntaggedStatus("OK", rsp.PermanentFlagsCode(permanent), "Limited"))
    s.send(b"* %d EXISTS\r\n* 0 RECENT\r\n" % view.exists)
    unseen = view.first_unseen()
    if unseen:
        s.send_response(rsp.UntaggedStatus("OK", rsp.UnseenCode(unseen), "First unseen"))
    s.send_response(rsp.UntaggedStatus("OK", rsp.UidValidityCode(mb.uidvalidity), "UIDs valid"))
    s.send_response(rsp.UntaggedStatus("OK", rsp.UidNextCode(mb.uidnext), "Predicted next UID"))
    s.send_response(rsp.UntaggedStatus("OK", rsp.HighestModseqCode(view.highest_modseq()), "Highest"))
    if c.qresync is not None and c.qresync.uidvalidity == mb.uidvalidity:
        await _qresync(s, view, c.qresync)
    return Done(
        f"{'EXAMINE' if readonly else 'SELECT'} completed", rsp.READ_ONLY if readonly else rsp.READ_WRITE
    )


async def _qresync(s: Session, view: SelectedView, q: cmd.QresyncParameters) -> None:
    """RFC 7162 §3.2.5: what changed since the client's modseq."""
    mb = view.mb
    known = q.known_uids
    largest = mb.uidnext
    vanished = [
        u for u, m in mb.expunged.items() if m > q.modseq and (known is None or known.contains(u, largest))
    ]
    if vanished:
        s.send(b"* VANISHED (EARLIER) " + bytes(SequenceSet.from_ids(vanished)) + b"\r\n")
    if q.modseq >= view.modseq_bound():
        return  # nothing changed for this user: no per-message pass
    uids = view.uids  # just selected: every one has its record
    records = mb.records
    for i in view.changed_since(uids, [records[u] for u in uids], q.modseq):
        if uids[i] in records:  # not expunged while an earlier part was written
            s.send(view.flags_line(i + 1, uids[i], True))
            await s.maybe_flush()


@command(cmd.Select, AUTH)
async def select(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Select)
    return await _select(s, c, readonly=False)


@command(cmd.Examine, AUTH)
async def examine(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Examine)
    return await _select(s, c, readonly=True)


@command(cmd.Create, AUTH)
async def create(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Create)
    name = c.mailbox.rstrip(s.gw.replica.delimiter())
    if not name:
        raise OperationError("empty mailbox name", "CANNOT")
    if name.upper() == "INBOX":
        raise OperationError("INBOX already exists", "ALREADYEXISTS")
    await s.gw.service.create(s.require_actor(), name, c.special_use)
    return Done("CREATE completed")


@command(cmd.Delete, AUTH)
async def delete(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Delete)
    if s.view is not None and s.view.mb.name == c.mailbox:
        s.select_view(None)
    await s.gw.service.delete(s.require_actor(), c.mailbox)
    return Done("DELETE completed")


@command(cmd.Rename, AUTH)
async def rename(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Rename)
    await s.gw.service.rename(s.require_actor(), c.mailbox, c.new_name.rstrip(s.gw.replica.delimiter()))
    return Done("RENAME completed")


@command(cmd.Subscribe, AUTH)
async def subscribe(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Subscribe)
    s.gw.subscriptions.subscribe(s.require_actor().user_id, c.mailbox)
    return Done("SUBSCRIBE completed")


@command(cmd.Unsubscribe, AUTH)
async def unsubscribe(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Unsubscribe)
    s.gw.subscriptions.unsubscribe(s.require_actor().user_id, c.mailbox)
    return Done("UNSUBSCRIBE completed")


@command(cmd.Append, AUTH)
async def append(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Append)
    if s.gw.replica.get(c.mailbox) is None:
        raise OperationError(f"mailbox {c.mailbox!r} does not exist", "TRYCREATE")
    for m in c.messages:
        if not m.data:
            raise OperationError("empty message", "CLIENTBUG", status="BAD")
    result = await s.gw.service.append(
        s.require_actor(), c.mailbox, [(m.data, m.flags, m.internal_date) for m in c.messages]
    )
    code = None
    if result.dest:
        code = rsp.AppendUidCode(result.uidvalidity, SequenceSet.from_ids(result.dest))
    return Done("APPEND completed", code)


__all__ = ["State"]
