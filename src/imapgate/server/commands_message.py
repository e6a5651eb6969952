"""Handlers of the selected-state commands: FETCH, STORE, SEARCH (ESEARCH),
COPY, MOVE, EXPUNGE, UID EXPUNGE, CHECK, CLOSE, UNSELECT, IDLE."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from ..gateway import operations as ops
from ..gateway.errors import OperationError
from ..gateway.mailservice import cache_key, is_content
from ..gateway.virtual import VirtualIndex
from ..protocol import commands as cmd
from ..protocol import response_writer as rw
from ..protocol import responses as rsp
from ..protocol.fetch_items import FetchAttribute
from ..protocol.response_writer import flags_body
from ..protocol.search import SearchKey
from ..protocol.sequence import SequenceSet
from ..replica.mailbox import MessageRecord
from . import search as search_eval
from .session import AUTH, SELECTED, Done, Session, State, command
from .view import SelectedView

#: Messages whose content is fetched and written per round: bounds memory of a
#: FETCH of a whole large folder's bodies.
CONTENT_ROUND = 100
_FAST_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ"})
#: Lines of a flags-only FETCH formatted per piece (about 250 KB).
FLAGS_ROUND = 4096


def _check_set(view: SelectedView, seqset: SequenceSet, uid: bool) -> None:
    if seqset.is_saved:
        raise OperationError("$ (SEARCHRES) is not supported", "CANNOT", status="BAD")
    if not uid and view.seq_out_of_range(seqset):
        raise OperationError(
            f"message number out of range (mailbox has {view.exists})", "CLIENTBUG", status="BAD"
        )


def _targets(
    s: Session, view: SelectedView, seqset: SequenceSet, uid: bool, *, announce: bool = False
) -> list[tuple[int, int]]:
    """(seq, uid) of the messages named; ``announce``: pending expunges are sent
    first for a UID command (see ``_announce_expunges``)."""
    _check_set(view, seqset, uid)
    if announce:
        _announce_expunges(s, view, uid)
    return view.resolve(seqset, uid=uid)


def _announce_expunges(s: Session, view: SelectedView, uid: bool) -> None:
    """Before a UID command runs, tell the client about messages expunged
    elsewhere (RFC 9051 §7.5.1 allows EXPUNGE with UID commands; Dovecot does
    the same), so it never names a message this session still shows but that
    is gone: UID FETCH/STORE/SEARCH then answer OK, not NO [EXPUNGEISSUED].
    By sequence number, nothing is announced (numbers must not shift)."""
    if uid:
        for line in view.take_expunges(qresync=s.qresync):
            s.send(line)


def _read_only(view: SelectedView) -> OperationError:
    """The NO for a change in a folder open read-only (EXAMINE, no rights, virtual)."""
    if isinstance(view.mb, VirtualIndex):
        return OperationError(f"{view.mb.name} is a read-only virtual folder", "READ-ONLY")
    return OperationError("mailbox is open read-only (EXAMINE)", "READ-ONLY")


# --- FETCH ------------------------------------------------------------------------------------
@command(cmd.Fetch, SELECTED, allow_expunge=True)
async def fetch(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Fetch)
    view = s.require_view()
    actor = s.require_actor()
    attrs = list(c.attributes)
    names = {a.name for a in attrs}
    if c.uid and "UID" not in names:
        attrs.insert(0, FetchAttribute("UID"))
    if c.changedsince is not None or "MODSEQ" in names:
        s.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE enabling command
    if c.vanished and not (c.uid and s.qresync and c.changedsince is not None):
        raise OperationError(
            "VANISHED needs UID FETCH with CHANGEDSINCE after ENABLE QRESYNC", "CLIENTBUG", "BAD"
        )
    # With CONDSTORE on, every FETCH that reports FLAGS reports MODSEQ too (as
    # Dovecot does; clients keep their modseq cache current from it).
    if (
        s.condstore
        and "MODSEQ" not in {a.name for a in attrs}
        and (c.changedsince is not None or "FLAGS" in names)
    ):
        attrs.append(FetchAttribute("MODSEQ"))
    await s.gw.service.execute(actor, ops.ReadMessages(view.mb))
    _check_set(view, c.sequence_set, c.uid)
    _announce_expunges(s, view, c.uid)
    seqs, uids = view.resolve_columns(c.sequence_set, uid=c.uid)
    mb = view.mb
    if c.vanished and c.changedsince is not None:
        largest = view.uids[-1] if view.uids else 0
        gone = [
            u for u, m in mb.expunged.items() if m > c.changedsince and c.sequence_set.contains(u, largest)
        ]
        if gone:
            s.send(rw.vanished_line(SequenceSet.from_ids(gone), earlier=True))
    if c.uid and c.changedsince is not None and c.changedsince >= view.modseq_bound():
        # Nothing changed for this user since then (the CONDSTORE reopen case).
        return Done("FETCH completed")
    # RFC 2180 §4.1.1: a message expunged by someone else but not yet announced
    # to this session (only possible by sequence number: UID commands announced
    # it above) is served from what the view kept of it.
    seqs, uids, recs = _present(view, seqs, uids)
    if c.changedsince is not None:
        keep = view.changed_since(uids, recs, c.changedsince)
        seqs, uids, recs = [seqs[i] for i in keep], [uids[i] for i in keep], [recs[i] for i in keep]
    if not uids:
        return Done("FETCH completed")

    seen_changed: set[int] = set()
    if any(a.sets_seen for a in attrs) and not view.readonly:
        marked = await s.gw.service.execute(actor, ops.MarkSeen(mb, uids))
        seen_changed = set(marked)
        view.suppress.update(seen_changed)
    names = {a.name for a in attrs}
    if names <= _FAST_ITEMS:
        await _fetch_flags_fast(s, view, seqs, uids, recs, attrs)
        return Done("FETCH completed")
    content_attrs = [a for a in attrs if is_content(a)]
    # Per-attribute work done once per command, not once per message.
    plan = [
        (a, a.name, cache_key(a) if is_content(a) else b"", a.response_name() if is_content(a) else b"")
        for a in attrs
    ]
    pairs = list(zip(seqs, uids, strict=True))
    shows_flags = "FLAGS" in names
    lost = False  # content of a message gone at the hoster that the cache lacks
    for i in range(0, len(pairs), CONTENT_ROUND):
        chunk = pairs[i : i + CONTENT_ROUND]
        content = {}
        if content_attrs:
            fetch = ops.FetchContent(mb, [u for _, u in chunk], content_attrs)
            content = await s.gw.service.execute(actor, fetch)
        for seq, uid in chunk:
            rec = view.record(uid)  # also one expunged meanwhile, not yet announced
            if rec is None or any((uid, ckey) not in content for _, _, ckey, _ in plan if ckey):
                # Neither the cache nor the hoster has it any more (RFC 2180 §4.1.2).
                lost = True
                continue
            items: list[bytes] = []
            has_flags = False
            flags = view.flags_of(uid)
            if shows_flags or uid in seen_changed:
                for line in view.announce_keywords((flags,)):
                    s.send(line)
            for a, n, ckey, rname in plan:
                if n == "UID":
                    items.append(rw.uid_item(uid))
                elif n == "FLAGS":
                    has_flags = True
                    items.append(rw.flags_item(flags_body(flags)))
                elif n == "MODSEQ":
                    items.append(rw.modseq_item(view.modseq_of(uid)))
                elif n == "INTERNALDATE":
                    tz = timezone(timedelta(minutes=rec.tz_offset))
                    when = datetime.fromtimestamp(rec.internal_date, UTC).astimezone(tz)
                    items.append(rw.internaldate_item(when))
                elif n == "RFC822.SIZE":
                    items.append(rw.size_item(rec.size))
                else:
                    items.append(_content_item(a, rname, content.get((uid, ckey))))
            if uid in seen_changed and not has_flags:
                items.append(rw.flags_item(flags_body(flags)))
                if s.condstore:
                    items.append(rw.modseq_item(view.modseq_of(uid)))
            s.send(rw.fetch_raw_line(seq, items))
        await s.maybe_flush()
    if lost:
        raise OperationError(
            "some requested messages were expunged and their content is no longer available",
            "EXPUNGEISSUED",
        )
    return Done("FETCH completed")


def _present(
    view: SelectedView, seqs: Sequence[int], uids: list[int]
) -> tuple[Sequence[int], list[int], list[MessageRecord]]:
    """The targets with their records, including messages expunged but not yet
    announced to this view (``view.record``).  One C-level pass in the usual
    case (nothing expunged)."""
    try:
        return seqs, uids, list(map(view.mb.records.__getitem__, uids))
    except KeyError:
        found = [(q, u, r) for q, u in zip(seqs, uids, strict=True) if (r := view.record(u)) is not None]
        return [q for q, _, _ in found], [u for _, u, _ in found], [r for _, _, r in found]


def _content_item(a: FetchAttribute, name: bytes, value: bytes | None) -> bytes:
    """``name`` is ``a.response_name()``, computed once per command by the caller."""
    if a.name in ("ENVELOPE", "BODYSTRUCTURE") or (a.name == "BODY" and a.section is None):
        # Verbatim wire bytes from upstream (cached).
        return rw.verbatim_item(name, value)
    if a.name == "BINARY.SIZE":
        return rw.binary_size_item(name, value)
    if a.partial is not None and value is not None:
        start, length = a.partial
        value = value[start : start + length]
    # BINARY content holding NUL becomes a literal8 there (``name`` is BINARY[...]).
    return rw.section_item(name, value)


async def _fetch_flags_fast(
    s: Session,
    view: SelectedView,
    seqs: Sequence[int],
    uids: list[int],
    recs: list[MessageRecord],
    attrs: list[FetchAttribute],
) -> None:
    """FETCH of UID/FLAGS/MODSEQ only: the flag-sync hot path (100,000 lines).

    Built column by column (flags per distinct combination, modseqs), then
    formatted by the writer's ``fetch_flags_lines`` (one template ``%`` per
    line), written in pieces of ``FLAGS_ROUND`` lines."""
    names = [a.name for a in attrs]
    wires: list[bytes] | None = None
    if "FLAGS" in names:
        wires, announce = view.flag_wires_announced(uids, recs)
        for line in announce:
            s.send(line)
    modseqs = view.modseqs(uids, recs) if "MODSEQ" in names else None
    want_uid = "UID" in names
    for i in range(0, len(uids), FLAGS_ROUND):
        j = i + FLAGS_ROUND
        s.send(
            rw.fetch_flags_lines(
                seqs[i:j],
                uids[i:j] if want_uid else None,
                wires[i:j] if wires is not None else None,
                modseqs[i:j] if modseqs is not None else None,
            )
        )
        await s.maybe_flush()


# --- STORE ------------------------------------------------------------------------------------
@command(cmd.Store, SELECTED)
async def store(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Store)
    view = s.require_view()
    if view.readonly:
        raise _read_only(view)
    if c.unchangedsince is not None:
        s.enable_condstore()
    pairs = _targets(s, view, c.sequence_set, c.uid, announce=True)
    seq_of = {u: q for q, u in pairs}
    op = ops.StoreFlags(view.mb, [u for _, u in pairs], c.operation, c.flags, c.unchangedsince)
    result = await s.gw.service.execute(s.require_actor(), op)
    view.suppress.update(result.changed)
    if not c.silent:
        # A keyword new to this session is announced before the FETCH carrying it.
        shown = [view.flags_of(u) for u in result.changed if u in seq_of and u in view.mb.records]
        for line in view.announce_keywords(shown):
            s.send(line)
    for uid in result.changed:
        seq = seq_of.get(uid)
        if seq is None or uid not in view.mb.records:
            continue
        if c.silent:
            if s.condstore:
                # RFC 7162 §3.1.3: MODSEQ is reported even for .SILENT.
                s.send(rw.fetch_modseq_line(seq, uid, view.modseq_of(uid)))
            continue
        s.send(view.flags_line(seq, uid, s.condstore))
    code = None
    if result.modified:
        ids = result.modified if c.uid else [seq_of[u] for u in result.modified if u in seq_of]
        code = rsp.ModifiedCode(SequenceSet.from_ids(ids))
    return Done("STORE completed", code)


# --- SEARCH -----------------------------------------------------------------------------------
@command(cmd.Search, SELECTED, allow_expunge=True)
async def search(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Search)
    view = s.require_view()
    actor = s.require_actor()
    await s.gw.service.execute(actor, ops.ReadMessages(view.mb))
    if c.charset is not None and not s.gw.service.charset_supported(c.charset):
        raise OperationError(f"charset {c.charset} is not supported", "BADCHARSET")
    mb = view.mb
    _announce_expunges(s, view, c.uid)

    async def upstream(key: SearchKey) -> set[int]:
        return await s.gw.service.execute(actor, ops.SearchContent(mb, key, c.charset))

    if search_eval.uses_modseq(c.criteria):
        s.enable_condstore()  # RFC 7162 §3.1: SEARCH MODSEQ enables CONDSTORE
    seqs, uids, ev = await search_eval.evaluate(view, c.criteria, upstream)
    ids: Sequence[int] = uids if c.uid else seqs
    opts = {o.upper() for o in c.return_options or ()} or {"ALL"}
    highest = None
    if ev.modseq_used:
        highest = _search_modseq(view, uids, opts if c.return_options is not None else None)
    if c.return_options is None:
        if c.uid and highest is None and len(uids) == mb.exists and uids == mb.uids:
            # Every message (UID SEARCH ALL on reopen): the folder's cached list.
            s.send(rw.search_line_joined(mb.uids_text()))
        else:
            s.send(rw.search_line(ids, highest if highest else None))
        return Done("SEARCH completed")
    if "SAVE" in opts:
        raise OperationError("SEARCH RETURN (SAVE) is not supported", "CANNOT", status="BAD")
    s.send_response(
        rsp.ESearch(
            tag=c.tag,
            uid=c.uid,
            min=min(ids) if ids and "MIN" in opts else None,
            max=max(ids) if ids and "MAX" in opts else None,
            all=SequenceSet.from_ids(ids) if ids and "ALL" in opts else None,
            count=len(ids) if "COUNT" in opts else None,
            modseq=highest if highest else None,
        )
    )
    return Done("SEARCH completed")


def _search_modseq(view: SelectedView, uids: list[int], opts: set[str] | None) -> int:
    """The MODSEQ a search with a MODSEQ criterion reports (RFC 7162 §3.1.5): of
    the one message returned for RETURN (MIN) or (MAX) alone, the higher of the
    two for (MIN MAX), else the highest of all messages found."""
    if not uids:
        return 0
    if opts is not None and not opts & {"ALL", "COUNT"}:
        picked = [uids[0]] if "MIN" in opts else []
        if "MAX" in opts:
            picked.append(uids[-1])
        if picked:
            return max(view.modseq_of(u) for u in picked)
    return max(view.modseq_of(u) for u in uids)


# --- COPY / MOVE ------------------------------------------------------------------------------
async def _copy(s: Session, c: cmd.Copy | cmd.Move, move: bool) -> Done:
    view = s.require_view()
    # MOVE out of a virtual folder is its provider's (e.g. restore), not an expunge here.
    if move and view.readonly and not isinstance(view.mb, VirtualIndex):
        raise _read_only(view)
    pairs = _targets(s, view, c.sequence_set, c.uid)
    uids = [u for _, u in pairs]
    op = ops.Move(view.mb, uids, c.mailbox) if move else ops.Copy(view.mb, uids, c.mailbox)
    result = await s.gw.service.execute(s.require_actor(), op)
    code = None
    if result.dest:
        code = rsp.CopyUidCode(
            result.uidvalidity, SequenceSet.from_ids(result.source), SequenceSet.from_ids(result.dest)
        )
    if move:
        if code is not None:
            s.send_response(rsp.UntaggedStatus("OK", code, "Moved"))
        return Done("MOVE completed")
    return Done("COPY completed", code)


@command(cmd.Copy, SELECTED)
async def copy(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Copy)
    return await _copy(s, c, move=False)


@command(cmd.Move, SELECTED)
async def move(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Move)
    return await _copy(s, c, move=True)


# --- EXPUNGE / CLOSE / UNSELECT / CHECK / IDLE ------------------------------------------------------
@command(cmd.Expunge, SELECTED)
async def expunge(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.Expunge)
    view = s.require_view()
    if view.readonly:
        raise _read_only(view)
    uids = None
    if c.uid_set is not None:
        uids = [u for _, u in view.resolve(c.uid_set, uid=True)]
    await s.gw.service.execute(s.require_actor(), ops.Expunge(view.mb, uids))
    return Done("EXPUNGE completed")


@command(cmd.Close, SELECTED)
async def close(s: Session, c: cmd.Command) -> Done:
    view = s.require_view()
    if not view.readonly:
        try:
            await s.gw.service.execute(s.require_actor(), ops.Expunge(view.mb))
        except OperationError as exc:
            if exc.code != "NOPERM":
                raise
    # CLOSE sends no EXPUNGE responses (RFC 9051 §6.4.1).
    s.select_view(None)
    return Done("CLOSE completed")


@command(cmd.Unselect, SELECTED)
async def unselect(s: Session, c: cmd.Command) -> Done:
    s.select_view(None)
    return Done("UNSELECT completed")


@command(cmd.Check, SELECTED)
async def check(s: Session, c: cmd.Command) -> Done:
    return Done("CHECK completed")


@command(cmd.Idle, AUTH)
async def idle(s: Session, c: cmd.Command) -> Done:
    s.send_response(rsp.ContinuationRequest("idling"))
    ok = await s.idle_until_done()
    if s.state == State.LOGOUT:
        raise OperationError("connection closed during IDLE", None, status="ANSWERED")
    if not ok:
        raise OperationError("expected DONE to end IDLE", "CLIENTBUG", status="BAD")
    return Done("IDLE terminated")
