"""Handlers of the mailbox commands: LIST (LIST-EXTENDED, LIST-STATUS,
SPECIAL-USE), LSUB, STATUS, SELECT/EXAMINE (CONDSTORE, QRESYNC), CREATE,
DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, APPEND."""

from __future__ import annotations

from ..gateway import operations as ops
from ..gateway.errors import OperationError
from ..protocol import commands as cmd
from ..protocol import response_writer as rw
from ..protocol import responses as rsp
from ..protocol.sequence import SequenceSet
from ..replica.mailbox import MailboxIndex
from .listing import Hierarchy, pattern_regex, selection_error
from .session import AUTH, Done, Session, State, command
from .view import SelectedView

#: RFC 4314 §4: the rights that let a SELECT change anything (else it is READ-ONLY).
CHANGE_RIGHTS = "swite"

STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT", "HIGHESTMODSEQ")


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
            out[item] = _recent_count(s, mb)
        elif item == "HIGHESTMODSEQ":
            if private:
                replica.private_state(mb, actor.user_id)
            out[item] = replica.highest_modseq_for(mb, actor.user_id if private else None)
        else:
            raise OperationError(f"unknown STATUS item {item}", "CLIENTBUG", status="BAD")
    return out


def _recent_count(s: Session, mb: MailboxIndex) -> int:
    """STATUS RECENT: the messages no session has claimed yet (recent for the
    next one to open the folder), plus this session's own when it has the
    folder open, as Dovecot counts.  None under IMAP4rev2 (RFC 9051)."""
    if s.imap4rev2:
        return 0
    view = s.view
    if view is None or view.mb is not mb or not view.recent:
        return len(mb.recent)
    if view.readonly:  # EXAMINE shows unclaimed ones without taking them
        return len(set(mb.recent) | set(view.recent))
    return len(mb.recent) + len(view.recent)


async def _hierarchy(s: Session, *, subscriptions: bool = False) -> tuple[Hierarchy, frozenset[str]]:
    """The folders this user may see (RFC 4314 LOOKUP), with their attributes, and
    (``subscriptions``) the names the user counts as subscribed."""
    found = await s.gw.service.execute(s.require_actor(), ops.ListFolders(subscriptions=subscriptions))
    return Hierarchy(dict(found.folders), s.gw.replica.delimiter()), found.subscribed


@command(cmd.List, AUTH)
async def list_(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.List)
    selection = c.selection_options or ()
    returns = c.return_options or ()
    problem = selection_error(selection, returns)
    if problem is not None:
        raise OperationError(problem, "CLIENTBUG", status="BAD")
    if len(c.patterns) == 1 and c.patterns[0] == "" and not selection:
        s.send_response(rsp.ListResponse(("\\Noselect",), s.gw.replica.delimiter(), ""))
        return Done("LIST completed")
    tree, subscribed = await _hierarchy(s, subscriptions=True)
    entries = tree.select(
        [pattern_regex(c.reference, p, tree.delimiter) for p in c.patterns],
        selection=selection,
        returns=returns,
        # RFC 5258 §3: an extended LIST (options or several patterns) gets
        # \NonExistent for levels that are not folders.
        extended=c.selection_options is not None or c.return_options is not None or len(c.patterns) > 1,
        subscribed=subscribed,
    )
    want_status = "STATUS" in {o.upper() for o in returns} and bool(c.status_items)
    for e in entries:
        s.send_response(rsp.ListResponse(e.attributes, tree.delimiter, e.name, e.childinfo))
        mb = s.gw.replica.get(e.name) if e.exists and want_status else None
        if (
            mb is not None
            and not any(a.upper() == "\\NOSELECT" for a in mb.attributes)
            # STATUS needs r (RFC 4314 §4); a folder listed with l only tells no counts.
            and "r" in s.gw.service.execute_now(s.require_actor(), ops.MyRights(e.name))
        ):
            s.send_response(rsp.StatusResponse(e.name, _status_items(s, mb, c.status_items)))
        await s.maybe_flush()
    return Done("LIST completed")


@command(cmd.Lsub, AUTH)
async def lsub(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Lsub)
    tree, subscribed = await _hierarchy(s, subscriptions=True)
    for e in tree.lsub(pattern_regex(c.reference, c.pattern, tree.delimiter), subscribed):
        s.send_response(rsp.LsubResponse(e.attributes, tree.delimiter, e.name))
    return Done("LSUB completed")


@command(cmd.Status, AUTH)
async def status(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Status)
    mb = await s.gw.service.execute(s.require_actor(), ops.Status(c.mailbox))
    s.send_response(rsp.StatusResponse(mb.name, _status_items(s, mb, c.items)))
    return Done("STATUS completed")


async def _select(s: Session, c: cmd.SelectBase, readonly: bool) -> Done:
    actor = s.require_actor()
    # A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
    s.select_view(None)
    if c.qresync is not None and not s.qresync:
        raise OperationError("QRESYNC parameter without ENABLE QRESYNC", "CLIENTBUG", status="BAD")
    mb = await s.gw.service.execute(actor, ops.Select(c.mailbox, readonly))
    rights = s.gw.service.execute_now(actor, ops.MyRights(mb.name))
    verb = "EXAMINE" if readonly else "SELECT"
    # RFC 4314 §4: without any of s w i t e nothing can be changed, so READ-ONLY.
    readonly = readonly or not set(rights) & set(CHANGE_RIGHTS)
    if c.condstore:
        s.enabled.add("CONDSTORE")
    view = SelectedView(
        s.gw.replica,
        mb,
        user_id=actor.user_id,
        readonly=readonly,
        wake=s.wake,
        recent=not s.imap4rev2,
        rights=rights,
    )
    s.select_view(view)
    # FLAGS lists every keyword in use (and this user's private ones).
    for line in view.flags_lines():
        s.send(line)
    s.send(rw.exists_line(view.exists))
    if view.track_recent:
        s.send(rw.recent_line(len(view.recent)))
    unseen = view.first_unseen()
    if unseen:
        s.send_response(rsp.UntaggedStatus("OK", rsp.UnseenCode(unseen), "First unseen"))
    s.send_response(rsp.UntaggedStatus("OK", rsp.UidValidityCode(mb.uidvalidity), "UIDs valid"))
    s.send_response(rsp.UntaggedStatus("OK", rsp.UidNextCode(mb.uidnext), "Predicted next UID"))
    s.send_response(rsp.UntaggedStatus("OK", rsp.HighestModseqCode(view.highest_modseq()), "Highest"))
    if c.qresync is not None and c.qresync.uidvalidity == mb.uidvalidity:
        await _qresync(s, view, c.qresync)
    return Done(f"{verb} completed", rsp.READ_ONLY if readonly else rsp.READ_WRITE)


async def _qresync(s: Session, view: SelectedView, q: cmd.QresyncParameters) -> None:
    """RFC 7162 §3.2.5: what changed since the client's modseq."""
    mb = view.mb
    known = q.known_uids
    largest = mb.uidnext
    vanished = [
        u for u, m in mb.expunged.items() if m > q.modseq and (known is None or known.contains(u, largest))
    ]
    if vanished:
        s.send(rw.vanished_line(SequenceSet.from_ids(vanished), earlier=True))
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
    await s.gw.service.execute(s.require_actor(), ops.Create(name, c.special_use))
    return Done("CREATE completed")


@command(cmd.Delete, AUTH)
async def delete(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Delete)
    if s.view is not None and s.view.mb.name == c.mailbox:
        s.select_view(None)
    await s.gw.service.execute(s.require_actor(), ops.Delete(c.mailbox))
    return Done("DELETE completed")


@command(cmd.Rename, AUTH)
async def rename(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Rename)
    new_name = c.new_name.rstrip(s.gw.replica.delimiter())
    await s.gw.service.execute(s.require_actor(), ops.Rename(c.mailbox, new_name))
    return Done("RENAME completed")


@command(cmd.Subscribe, AUTH)
async def subscribe(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Subscribe)
    await s.gw.service.execute(s.require_actor(), ops.Subscribe(c.mailbox))
    return Done("SUBSCRIBE completed")


@command(cmd.Unsubscribe, AUTH)
async def unsubscribe(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Unsubscribe)
    await s.gw.service.execute(s.require_actor(), ops.Unsubscribe(c.mailbox))
    return Done("UNSUBSCRIBE completed")


@command(cmd.Append, AUTH)
async def append(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Append)
    if s.gw.replica.get(c.mailbox) is None and not s.gw.service.virtual.is_virtual(c.mailbox):
        raise OperationError(f"mailbox {c.mailbox!r} does not exist", "TRYCREATE")
    for m in c.messages:
        if not m.data:
            raise OperationError("empty message", "CLIENTBUG", status="BAD")
    messages = [(m.data, m.flags, m.internal_date) for m in c.messages]
    result = await s.gw.service.execute(s.require_actor(), ops.Append(c.mailbox, messages))
    code = None
    if result.dest:
        code = rsp.AppendUidCode(result.uidvalidity, SequenceSet.from_ids(result.dest))
    return Done("APPEND completed", code)


__all__ = ["State"]
