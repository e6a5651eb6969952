"""Property: any command object, written by ``write_command`` (in chunks, with
LITERAL+ or without, modified UTF-7 or UTF-8 names) and parsed back by
``parse_command``, equals the original."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from imapgate.protocol import commands as c
from imapgate.protocol import search as s
from imapgate.protocol.command_parser import (
    NOTIFY_EVENTS,
    SEARCH_RETURN_OPTIONS,
    SORT_KEYS,
    SPECIAL_USE,
    STATUS_ITEMS,
    parse_command,
)
from imapgate.protocol.command_writer import write_command
from imapgate.protocol.fetch_items import MACROS, FetchAttribute, Section, SectionText
from imapgate.protocol.grammar import MAX_NUMBER, MAX_NUMBER64
from imapgate.protocol.sequence import STAR, SequenceSet

SETTINGS = settings(max_examples=300, deadline=None)

tags = st.from_regex(r"[A-Za-z0-9.]{1,10}", fullmatch=True)
atoms = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,8}", fullmatch=True)
# Any text a client could name; NUL cannot travel in a plain literal.
texts = st.text(st.characters(blacklist_categories=["Cs"], min_codepoint=1), max_size=12)
mailboxes = texts.filter(lambda n: n.upper() != "INBOX") | st.just("INBOX")
octets = st.binary(max_size=40).filter(lambda b: b"\x00" not in b)
nz32 = st.integers(1, MAX_NUMBER)
n64 = st.integers(0, MAX_NUMBER64)
flags = st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]) | atoms.map(
    lambda a: "$" + a
)


@st.composite
def sequence_sets(draw: st.DrawFn) -> SequenceSet:
    if draw(st.integers(0, 9)) == 0:
        return SequenceSet.saved()
    bound = st.one_of(nz32, st.just(STAR))
    pairs = draw(st.lists(st.tuples(bound, bound), min_size=1, max_size=5))
    return SequenceSet(tuple(pairs))


uid_sets = sequence_sets()

simple_keys: st.SearchStrategy[s.SearchKey] = st.one_of(
    st.just(s.SearchAll()),
    st.just(s.SearchNew()),
    st.sampled_from(
        [
            s.SearchFlag(f, p)
            for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent")
            for p in (True, False)
        ]
    ),
    st.builds(s.SearchKeywordKey, atoms, st.booleans()),
    st.builds(s.SearchHeader, texts, octets),
    st.builds(s.SearchText, st.sampled_from(s.TEXT_FIELDS), octets),
    st.builds(s.SearchDate, st.sampled_from(s.DATE_KEYS), st.dates()),
    st.builds(s.SearchSize, st.booleans(), n64),
    st.builds(s.SearchSequence, uid_sets),
    st.builds(s.SearchUid, uid_sets),
    st.builds(s.SearchModseq, n64),
    st.builds(
        s.SearchModseq, n64, flags.map(lambda f: "/flags/" + f), st.sampled_from(["priv", "shared", "all"])
    ),
    st.builds(s.SearchAge, st.booleans(), nz32),
)
search_keys = st.recursive(
    simple_keys,
    lambda inner: st.one_of(
        st.builds(s.SearchNot, inner),
        st.builds(s.SearchOr, inner, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda ks: s.SearchAnd(tuple(ks))),
    ),
    max_leaves=8,
)
criteria = st.lists(search_keys, min_size=1, max_size=4).map(tuple)


@st.composite
def fetch_attributes(draw: st.DrawFn) -> FetchAttribute:
    kind = draw(st.sampled_from(["simple", "body", "binary", "binary.size"]))
    if kind == "simple":
        return FetchAttribute(
            draw(
                st.sampled_from(
                    sorted(
                        [
                            "UID",
                            "FLAGS",
                            "INTERNALDATE",
                            "RFC822.SIZE",
                            "ENVELOPE",
                            "BODYSTRUCTURE",
                            "BODY",
                            "MODSEQ",
                            "RFC822",
                            "RFC822.HEADER",
                            "RFC822.TEXT",
                        ]
                    )
                )
            )
        )
    part = tuple(draw(st.lists(st.integers(1, 99), max_size=3)))
    partial = draw(st.none() | st.tuples(st.integers(0, 10**12), st.integers(1, 10**12)))
    if kind == "binary.size":
        return FetchAttribute("BINARY.SIZE", Section(part))
    if kind == "binary":
        return FetchAttribute("BINARY", Section(part), partial, draw(st.booleans()))
    texts_ok: list[SectionText] = ["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"]
    if part:
        texts_ok.append("MIME")
    text = draw(st.sampled_from(texts_ok))
    fields: tuple[str, ...] = ()
    if text.startswith("HEADER.FIELDS"):
        fields = tuple(
            draw(
                st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True), min_size=1, max_size=3)
            )
        )
    return FetchAttribute("BODY", Section(part, text, fields), partial, draw(st.booleans()))


@st.composite
def fetches(draw: st.DrawFn, tag: str) -> c.Fetch:
    uid = draw(st.booleans())
    macro = draw(st.none() | st.sampled_from(sorted(MACROS)))
    attrs = MACROS[macro] if macro else tuple(draw(st.lists(fetch_attributes(), min_size=1, max_size=4)))
    changedsince = draw(st.none() | n64)
    vanished = uid and changedsince is not None and draw(st.booleans())
    return c.Fetch(tag, draw(uid_sets), attrs, uid, macro, changedsince, vanished)


@st.composite
def lists(draw: st.DrawFn, tag: str) -> c.List:
    selection = draw(
        st.none()
        | st.lists(
            st.sampled_from(["SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"]),
            max_size=3,
            unique=True,
        ).map(tuple)
    )
    ret = draw(
        st.none()
        | st.lists(
            st.sampled_from(["CHILDREN", "SUBSCRIBED", "SPECIAL-USE", "STATUS"]), max_size=3, unique=True
        ).map(tuple)
    )
    status_items: tuple[str, ...] = ()
    if ret and "STATUS" in ret:
        status_items = tuple(draw(st.lists(st.sampled_from(sorted(STATUS_ITEMS)), min_size=1, max_size=3)))
    ref = draw(mailboxes)
    patterns = tuple(draw(st.lists(texts, min_size=1, max_size=3)))
    return c.List(tag, ref, patterns, selection, ret, status_items)


@st.composite
def notify_groups(draw: st.DrawFn) -> c.NotifyGroup:
    filt = draw(
        st.sampled_from(
            ["SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"]
        )
    )
    boxes: tuple[str, ...] = ()
    if filt in ("SUBTREE", "MAILBOXES"):
        boxes = tuple(draw(st.lists(mailboxes, min_size=1, max_size=3)))
    names = draw(st.lists(st.sampled_from(sorted(NOTIFY_EVENTS.values())), max_size=3))
    events = tuple(
        c.NotifyEvent(n, tuple(draw(st.lists(fetch_attributes(), max_size=2))) if n == "MessageNew" else ())
        for n in names
    )
    return c.NotifyGroup(filt, events, boxes)


@st.composite
def datetimes(draw: st.DrawFn) -> datetime:
    naive = draw(st.datetimes(datetime(1970, 1, 1), datetime(2099, 12, 31))).replace(microsecond=0)
    offset = timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60)))
    return naive.replace(tzinfo=timezone(offset))


@st.composite
def append_messages(draw: st.DrawFn) -> c.AppendMessage:
    data = draw(st.binary(max_size=60))
    binary = b"\x00" in data or draw(st.booleans())
    when = draw(st.none() | datetimes())
    return c.AppendMessage(data, tuple(draw(st.lists(flags, max_size=3))), when, binary)


def command_for(kind: str, tag: str, draw: st.DrawFn) -> c.Command:
    uid = draw(st.booleans())
    if kind == "simple":
        cls = draw(
            st.sampled_from(
                [
                    c.Capability,
                    c.Noop,
                    c.Logout,
                    c.StartTLS,
                    c.Namespace,
                    c.Idle,
                    c.Check,
                    c.Close,
                    c.Unselect,
                ]
            )
        )
        return cls(tag)
    if kind == "login":
        return c.Login(tag, draw(texts), draw(octets))
    if kind == "authenticate":
        mech = draw(st.from_regex(r"[A-Z][A-Z0-9-]{0,15}", fullmatch=True))
        return c.Authenticate(tag, mech, draw(st.none() | st.binary(max_size=30)))
    if kind == "enable":
        caps = draw(
            st.lists(st.from_regex(r"[A-Z][A-Z0-9=+-]{0,12}", fullmatch=True), min_size=1, max_size=3)
        )
        return c.Enable(tag, tuple(caps))
    if kind == "id":
        params = draw(st.none() | st.lists(st.tuples(texts, st.none() | texts), max_size=3).map(tuple))
        return c.Id(tag, params)
    if kind == "select":
        qresync = draw(
            st.none()
            | st.builds(
                c.QresyncParameters,
                nz32,
                n64,
                st.none() | uid_sets,
                st.none() | st.tuples(uid_sets, uid_sets),
            )
        )
        cls2 = draw(st.sampled_from([c.Select, c.Examine]))
        return cls2(tag, draw(mailboxes), draw(st.booleans()), qresync)
    if kind == "create":
        uses = draw(st.lists(st.sampled_from(sorted(SPECIAL_USE.values())), max_size=2))
        return c.Create(tag, draw(mailboxes), tuple(uses))
    if kind == "mailbox":
        cls3 = draw(st.sampled_from([c.Delete, c.Subscribe, c.Unsubscribe, c.GetAcl, c.MyRights]))
        return cls3(tag, draw(mailboxes))
    if kind == "rename":
        return c.Rename(tag, draw(mailboxes), draw(mailboxes))
    if kind == "list":
        return draw(lists(tag))
    if kind == "lsub":
        return c.Lsub(tag, draw(mailboxes), draw(texts))
    if kind == "status":
        items = draw(st.lists(st.sampled_from(sorted(STATUS_ITEMS)), min_size=1, max_size=4))
        return c.Status(tag, draw(mailboxes), tuple(items))
    if kind == "append":
        return c.Append(
            tag, draw(mailboxes), tuple(draw(st.lists(append_messages(), min_size=1, max_size=3)))
        )
    if kind == "acl":
        ident, rights = draw(texts), draw(st.from_regex(r"[+-]?[a-z]{0,8}", fullmatch=True))
        which = draw(st.sampled_from(["set", "delete", "list"]))
        box = draw(mailboxes)
        if which == "set":
            return c.SetAcl(tag, box, ident, rights)
        return (c.DeleteAcl if which == "delete" else c.ListRights)(tag, box, ident)
    if kind == "notify":
        if draw(st.booleans()):
            return c.NotifyNone(tag)
        return c.NotifySet(
            tag, tuple(draw(st.lists(notify_groups(), min_size=1, max_size=3))), draw(st.booleans())
        )
    if kind == "expunge":
        return c.Expunge(tag, True, draw(uid_sets)) if uid else c.Expunge(tag)
    if kind == "search":
        ret = draw(
            st.none() | st.lists(st.sampled_from(sorted(SEARCH_RETURN_OPTIONS)), max_size=3).map(tuple)
        )
        charset = draw(st.none() | st.sampled_from(["UTF-8", "US-ASCII"]))
        return c.Search(tag, draw(criteria), uid, charset, ret)
    if kind == "fetch":
        return draw(fetches(tag))
    if kind == "store":
        op: c.StoreOperation = draw(st.sampled_from(["set", "add", "remove"]))
        return c.Store(
            tag,
            draw(uid_sets),
            op,
            tuple(draw(st.lists(flags, max_size=3))),
            draw(st.booleans()),
            uid,
            draw(st.none() | n64),
        )
    if kind == "copy":
        cls4 = draw(st.sampled_from([c.Copy, c.Move]))
        return cls4(tag, draw(uid_sets), draw(mailboxes), uid)
    if kind == "sort":
        keys = draw(
            st.lists(
                st.builds(c.SortCriterion, st.sampled_from(sorted(SORT_KEYS)), st.booleans()),
                min_size=1,
                max_size=3,
            )
        )
        return c.Sort(tag, tuple(keys), draw(st.sampled_from(["UTF-8", "US-ASCII"])), draw(criteria), uid)
    assert kind == "thread"
    algo = draw(st.sampled_from(["REFERENCES", "ORDEREDSUBJECT", "REFS"]))
    return c.Thread(tag, algo, draw(st.sampled_from(["UTF-8", "US-ASCII"])), draw(criteria), uid)


KINDS = [
    "simple",
    "login",
    "authenticate",
    "enable",
    "id",
    "select",
    "create",
    "mailbox",
    "rename",
    "list",
    "lsub",
    "status",
    "append",
    "acl",
    "notify",
    "expunge",
    "search",
    "fetch",
    "store",
    "copy",
    "sort",
    "thread",
]


@st.composite
def commands(draw: st.DrawFn) -> c.Command:
    return command_for(draw(st.sampled_from(KINDS)), draw(tags), draw)


@SETTINGS
@given(commands(), st.booleans(), st.booleans())
def test_write_then_parse_is_identity(cmd: c.Command, literal_plus: bool, utf8: bool) -> None:
    chunks = write_command(cmd, literal_plus=literal_plus, utf8=utf8)
    if literal_plus:
        assert len(chunks) == 1
    for chunk in chunks[:-1]:
        # Every chunk but the last ends in a synchronizing literal header.
        assert chunk.endswith(b"}\r\n") and not chunk.endswith(b"+}\r\n")
    assert parse_command(b"".join(chunks), utf8=utf8) == cmd


@SETTINGS
@given(search_keys)
def test_search_key_bytes_parse_back(key: s.SearchKey) -> None:
    wire = b"a SEARCH " + bytes(key) + b"\r\n"
    assert parse_command(wire) == c.Search("a", (key,))


@SETTINGS
@given(fetch_attributes())
def test_fetch_attribute_response_name_is_canonical(attr: FetchAttribute) -> None:
    name = attr.response_name()
    assert b".PEEK" not in name
    assert name == name.upper()
    if attr.partial is not None:
        assert name.endswith(b"<%d>" % attr.partial[0])
