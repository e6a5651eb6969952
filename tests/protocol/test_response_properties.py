"""Hypothesis: any response object -> write -> frame -> parse gives it back, and
writing what was parsed gives the same bytes again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapgate.protocol.framing import Frame, ResponseFramer
from imapgate.protocol.response_parser import parse_response
from imapgate.protocol.response_writer import write_response
from imapgate.protocol.responses import (
    KNOWN_ATOM_CODES,
    STATUS_ITEMS,
    AclResponse,
    AppendUidCode,
    AtomCode,
    BadCharsetCode,
    Capability,
    CapabilityCode,
    ContinuationRequest,
    CopyUidCode,
    Enabled,
    ESearch,
    Exists,
    Expunge,
    FetchResponse,
    FetchValue,
    Flags,
    HighestModseqCode,
    IdResponse,
    ListResponse,
    ListRightsResponse,
    LsubResponse,
    ModifiedCode,
    MyRightsResponse,
    Namespace,
    NamespaceDescriptor,
    PermanentFlagsCode,
    RawItem,
    Recent,
    Response,
    ResponseCode,
    Search,
    Sort,
    StatusResponse,
    TaggedResponse,
    Thread,
    ThreadResponse,
    UidNextCode,
    UidValidityCode,
    UnseenCode,
    UntaggedStatus,
    UntaggedUnknown,
    Vanished,
)
from imapgate.protocol.sequence import STAR, SequenceSet

U32 = st.integers(0, 2**32 - 1)
NZ32 = st.integers(1, 2**32 - 1)
U63 = st.integers(0, 2**63 - 1)

atom = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-.+=]{0,9}", fullmatch=True)
upper_atom = atom.map(str.upper)
x_name = st.from_regex(r"X-[A-Z0-9]{1,8}", fullmatch=True)
SYSTEM_FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent"]
flag = st.one_of(
    st.sampled_from(SYSTEM_FLAGS), st.from_regex(r"\$?[A-Za-z][A-Za-z0-9_\-]{0,8}", fullmatch=True)
)
flags = st.lists(flag, max_size=5).map(tuple)
# Anything a server might put in a string or name: no surrogates, no controls
# (NUL cannot be in a string; CR/LF force literals, which other tests cover).
text_char = st.characters(blacklist_categories=("Cs", "Cc"))
any_text = st.text(text_char, max_size=20)
resp_text_str = st.text(
    st.characters(codec="utf-8", blacklist_characters="\r\n\x00"), max_size=30
).filter(lambda t: not t.startswith("["))
mailbox_name = any_text.filter(lambda n: n.upper() != "INBOX") | st.just("INBOX")
tag = st.from_regex(r"[A-Za-z0-9.\-_]{1,12}", fullmatch=True)


@st.composite
def seqsets(draw: st.DrawFn, star: bool = True) -> SequenceSet:
    bound = st.one_of(NZ32, st.just(STAR)) if star else NZ32
    pairs = draw(st.lists(st.tuples(bound, bound | st.none()), min_size=1, max_size=5))
    return SequenceSet(tuple((a, a if b is None else b) for a, b in pairs))


codes: st.SearchStrategy[ResponseCode] = st.one_of(
    st.sampled_from(sorted(KNOWN_ATOM_CODES)).map(AtomCode),
    st.builds(AtomCode, x_name, st.none() | st.from_regex(rb"[ -\\^-~]{0,15}", fullmatch=True)),
    st.builds(UidValidityCode, U32),
    st.builds(UidNextCode, U32),
    st.builds(UnseenCode, U32),
    st.builds(HighestModseqCode, U63),
    st.builds(ModifiedCode, seqsets()),
    st.builds(CopyUidCode, U32, seqsets(False), seqsets(False)),
    st.builds(AppendUidCode, U32, seqsets(False)),
    st.builds(PermanentFlagsCode, st.lists(flag | st.just("\\*"), max_size=4).map(tuple)),
    st.builds(CapabilityCode, st.lists(atom, max_size=4).map(tuple)),
    st.builds(BadCharsetCode, st.lists(atom, max_size=3).map(tuple)),
)

# A generic value as servers nest them: the stuff ENVELOPE/BODYSTRUCTURE are made of.
raw_scalar = st.one_of(
    st.just(b"NIL"),
    U32.map(lambda n: b"%d" % n),
    st.from_regex(rb'"(?:[ !#-\[\]-~]|\\\\|\\")*"', fullmatch=True),
    # min_size=1: framing.ResponseFramer does not yet treat "{0}" as a literal header
    st.binary(min_size=1, max_size=12)
    .filter(lambda b: b"\x00" not in b)
    .map(lambda b: b"{%d}\r\n" % len(b) + b),
)
raw_value = st.recursive(
    raw_scalar,
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: b"(" + b" ".join(xs) + b")"),
    max_leaves=12,
)
raw_list = st.lists(raw_value, max_size=5).map(lambda xs: b"(" + b" ".join(xs) + b")")

date_times = st.builds(
    lambda dt, minutes: dt.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(datetime(1900, 1, 1), datetime(9999, 12, 31)).map(lambda d: d.replace(microsecond=0)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
sections = st.sampled_from(
    [
        b"BODY[]",
        b"BODY[TEXT]",
        b"BODY[1.2]",
        b"BODY[HEADER]",
        b"BODY[1.MIME]",
        b"BODY[HEADER.FIELDS (SUBJECT FROM)]",
        b"BODY[HEADER.FIELDS.NOT (X-A)]",
        b"BODY[]<0>",
        b"BODY[2]<1024>",
        b"RFC822",
        b"RFC822.HEADER",
        b"RFC822.TEXT",
    ]
)
binary_sections = st.sampled_from([b"BINARY[]", b"BINARY[1]", b"BINARY[1.2]<5>"])
contents = (
    st.none()
    | st.binary(max_size=40).filter(lambda b: b"\x00" not in b)
    | st.text(max_size=1100).map(lambda t: t.encode("utf-8", "surrogatepass"))
)

fetch_pairs: st.SearchStrategy[tuple[bytes, FetchValue]] = st.one_of(
    st.tuples(st.just(b"UID"), U32),
    st.tuples(st.just(b"FLAGS"), flags),
    st.tuples(st.just(b"MODSEQ"), U63),
    st.tuples(st.just(b"RFC822.SIZE"), U63),
    st.tuples(st.just(b"INTERNALDATE"), date_times),
    st.tuples(st.sampled_from([b"ENVELOPE", b"BODYSTRUCTURE", b"BODY"]), raw_list.map(RawItem)),
    st.tuples(sections, contents.filter(lambda c: c is None or b"\x00" not in c)),
    st.tuples(binary_sections, st.none() | st.binary(max_size=20)),
    st.tuples(st.sampled_from([b"BINARY.SIZE[1]", b"BINARY.SIZE[]"]), U63),
    st.tuples(
        st.sampled_from([b"X-GM-MSGID", b"EMAILID", b"X-GM-LABELS", b"PREVIEW"]),
        (raw_value | raw_list).map(RawItem),
    ),
)
fetches = st.builds(FetchResponse, NZ32, st.lists(fetch_pairs, max_size=6).map(dict))


def _thread_strategy() -> st.SearchStrategy[Thread]:
    members = st.lists(st.integers(1, 10**6), max_size=3)
    return st.recursive(
        st.lists(st.integers(1, 10**6), min_size=1, max_size=3).map(tuple),
        lambda inner: st.tuples(members, st.lists(inner, min_size=2, max_size=3)).map(
            lambda mt: (*mt[0], *mt[1])
        ),
        max_leaves=8,
    )


descs = st.builds(
    NamespaceDescriptor,
    any_text.filter(lambda n: n.upper() != "INBOX"),
    st.none() | st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.lists(st.tuples(any_text, st.lists(any_text, min_size=1, max_size=3).map(tuple)), max_size=2).map(
        tuple
    ),
)
ns_part = st.none() | st.lists(descs, min_size=1, max_size=3).map(tuple)


def list_like(cls: type[ListResponse]) -> st.SearchStrategy[ListResponse]:
    return st.builds(
        cls,
        st.lists(
            st.sampled_from(
                [
                    "\\HasChildren",
                    "\\HasNoChildren",
                    "\\Noselect",
                    "\\Sent",
                    "\\Marked",
                    "\\Subscribed",
                    "\\NonExistent",
                ]
            ),
            max_size=3,
        ).map(tuple),
        st.none() | st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        mailbox_name,
        st.none() | st.lists(st.sampled_from(["SUBSCRIBED", "X-OTHER"]), min_size=1, max_size=2).map(tuple),
        st.none() | mailbox_name,
        st.lists(st.tuples(st.from_regex(r"X-[A-Za-z]{1,6}", fullmatch=True), raw_value), max_size=2).map(
            tuple
        ),
    )


responses: st.SearchStrategy[Response] = st.one_of(
    st.builds(TaggedResponse, tag, st.sampled_from(["OK", "NO", "BAD"]), st.none() | codes, resp_text_str),
    st.builds(
        UntaggedStatus,
        st.sampled_from(["OK", "NO", "BAD", "BYE", "PREAUTH"]),
        st.none() | codes,
        resp_text_str,
    ),
    st.builds(ContinuationRequest, resp_text_str, st.none() | codes),
    st.builds(Capability, st.lists(atom, max_size=6).map(tuple)),
    st.builds(Enabled, st.lists(atom, max_size=3).map(tuple)),
    st.builds(Exists, U32),
    st.builds(Recent, U32),
    st.builds(Expunge, NZ32),
    st.builds(Flags, flags),
    fetches,
    st.builds(Search, st.lists(U32, max_size=8).map(tuple), st.none() | U63),
    st.builds(Sort, st.lists(U32, max_size=8).map(tuple), st.none() | U63),
    st.builds(ThreadResponse, st.lists(_thread_strategy(), max_size=4).map(tuple)),
    st.builds(
        ESearch,
        st.none() | any_text,
        st.booleans(),
        st.none() | NZ32,
        st.none() | NZ32,
        st.none() | seqsets(),
        st.none() | U32,
        st.none() | U63,
        st.lists(st.tuples(x_name, raw_value), max_size=2).map(tuple),
    ),
    list_like(ListResponse),
    list_like(LsubResponse),
    st.builds(
        StatusResponse, mailbox_name, st.dictionaries(st.sampled_from(STATUS_ITEMS) | x_name, U63, max_size=5)
    ),
    st.builds(Namespace, ns_part, ns_part, ns_part),
    st.builds(IdResponse, st.none() | st.dictionaries(any_text, st.none() | any_text, max_size=4)),
    st.builds(Vanished, seqsets(), st.booleans()),
    st.builds(AclResponse, mailbox_name, st.lists(st.tuples(any_text, any_text), max_size=3).map(tuple)),
    st.builds(
        ListRightsResponse, mailbox_name, any_text, any_text, st.lists(any_text, max_size=3).map(tuple)
    ),
    st.builds(MyRightsResponse, mailbox_name, any_text),
    st.from_regex(rb"X[A-Z0-9]{0,6}( [ -~]{0,20})?", fullmatch=True).map(
        lambda b: UntaggedUnknown(b"* " + b)
    ),
)


def single_frame(wire: bytes) -> bytes:
    framer = ResponseFramer()
    framer.feed(wire)
    event = framer.next_event()
    assert isinstance(event, Frame), event
    assert framer.next_event() is None and not framer.has_partial_frame()
    return event.data


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses)
def test_write_parse_roundtrip(resp: Response) -> None:
    wire = write_response(resp)
    assert wire.endswith(b"\r\n")
    assert single_frame(wire) == wire
    parsed = parse_response(wire)
    assert parsed == resp
    assert type(parsed) is type(resp)
    assert write_response(parsed) == wire


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        list_like(ListResponse),
        st.builds(StatusResponse, mailbox_name, st.just({"MESSAGES": 1})),
        st.builds(Namespace, ns_part, ns_part, ns_part),
        st.builds(MyRightsResponse, mailbox_name, any_text),
    )
)
def test_utf8_roundtrip(resp: Response) -> None:
    wire = write_response(resp, utf8=True)
    assert single_frame(wire) == wire
    assert parse_response(wire, utf8=True) == resp


@settings(max_examples=300, deadline=None)
@given(NZ32, U32, flags, st.none() | st.integers(1, 2**63 - 1))
def test_fast_path_agrees_with_general(seq: int, uid: int, fl: tuple[str, ...], modseq: int | None) -> None:
    items: dict[bytes, FetchValue] = {b"UID": uid, b"FLAGS": fl}
    if modseq is not None:
        items[b"MODSEQ"] = modseq
    resp = FetchResponse(seq, items)
    wire = write_response(resp)
    assert parse_response(wire) == resp
    # the same line with a stray space takes the general path
    assert parse_response(wire[:-3] + b" )\r\n") == resp
