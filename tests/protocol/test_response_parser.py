"""Response parser: RFC corpus, real-server lines and quirks, errors.

Every frame is parsed three ways — whole, byte by byte through
``ResponseFramer``, and through the framer with trailing data after it — and
all three must agree.  Canonical lines must also be written back byte-exact.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from imapgate.protocol.envelope import Address, parse_envelope
from imapgate.protocol.errors import UpstreamProtocolError
from imapgate.protocol.framing import Frame, ResponseFramer
from imapgate.protocol.response_parser import parse_response
from imapgate.protocol.response_writer import write_response
from imapgate.protocol.responses import (
    ALERT,
    CLOSED,
    NOMODSEQ,
    READ_WRITE,
    TRYCREATE,
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
    Search,
    Sort,
    StatusResponse,
    TaggedResponse,
    ThreadResponse,
    UidNextCode,
    UidValidityCode,
    UnseenCode,
    UntaggedStatus,
    UntaggedUnknown,
    Vanished,
)
from imapgate.protocol.sequence import SequenceSet


def frames_of(framer: ResponseFramer) -> list[bytes]:
    out: list[bytes] = []
    while (ev := framer.next_event()) is not None:
        assert isinstance(ev, Frame), ev
        out.append(ev.data)
    return out


def parse_all_ways(wire: bytes) -> Response:
    """Parse ``wire`` whole, byte by byte, and with trailing data; all must agree."""
    whole = parse_response(wire)
    f = ResponseFramer()
    got: list[bytes] = []
    for i in range(len(wire)):
        f.feed(wire[i : i + 1])
        got.extend(frames_of(f))
    assert got == [wire]
    f = ResponseFramer()
    f.feed(wire + b"* 1 EXISTS\r\n* 2 EXI")
    frames = frames_of(f)
    assert frames == [wire, b"* 1 EXISTS\r\n"]
    assert f.has_partial_frame()
    assert parse_response(frames[0]) == whole
    assert parse_response(frames[1]) == Exists(1)
    return whole


def ss(text: str) -> SequenceSet:
    from imapgate.protocol.grammar import Reader

    return Reader(text.encode()).sequence_set()


MINUS7 = timezone(-timedelta(hours=7))
ENVELOPE_9051 = (
    b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) '
    b'(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) '
    b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
    b'"<B27397-0100000@cac.washington.edu>")'
)
BODY_9051 = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
DOVECOT_CAPS = [
    "IMAP4rev1",
    "SASL-IR",
    "LOGIN-REFERRALS",
    "ID",
    "ENABLE",
    "IDLE",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "THREAD=ORDEREDSUBJECT",
    "MULTIAPPEND",
    "URL-PARTIAL",
    "CATENATE",
    "UNSELECT",
    "CHILDREN",
    "NAMESPACE",
    "UIDPLUS",
    "LIST-EXTENDED",
    "I18NLEVEL=1",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "ESORT",
    "SEARCHRES",
    "WITHIN",
    "CONTEXT=SEARCH",
    "LIST-STATUS",
    "BINARY",
    "MOVE",
    "SNIPPET=FUZZY",
    "PREVIEW=FUZZY",
    "PREVIEW",
    "STATUS=SIZE",
    "SAVEDATE",
    "LITERAL+",
    "NOTIFY",
    "SPECIAL-USE",
]
THREAD_5256 = (
    b"* THREAD (166)(167)(168)(169)(172)(170)(171)(173)(174 (175)(176)(178)(181)(180))(179)"
    b"(177 (183)(182)(188)(184)(185)(186)(187)(189))(190)(191)(192)(193)(194 195)(196 (197)(198))"
    b"(199)(200 202)(201)(203)(204)(205)(206 207)(208)\r\n"
)

#: (wire, expected) — canonical: the writer must reproduce ``wire`` exactly.
CANONICAL: list[tuple[bytes, Response]] = [
    # RFC 9051 §7.1 status responses
    (b"* OK IMAP4rev2 server ready\r\n", UntaggedStatus("OK", None, "IMAP4rev2 server ready")),
    (
        b"* OK [ALERT] System shutdown in 10 minutes\r\n",
        UntaggedStatus("OK", ALERT, "System shutdown in 10 minutes"),
    ),
    (b"A001 OK LOGIN Completed\r\n", TaggedResponse("A001", "OK", None, "LOGIN Completed")),
    (
        b"* NO Disk is 98% full, please delete unnecessary data\r\n",
        UntaggedStatus("NO", None, "Disk is 98% full, please delete unnecessary data"),
    ),
    (b"* BAD Command line too long\r\n", UntaggedStatus("BAD", None, "Command line too long")),
    (
        b"* PREAUTH IMAP4rev2 server logged in as Smith\r\n",
        UntaggedStatus("PREAUTH", None, "IMAP4rev2 server logged in as Smith"),
    ),
    (
        b"* BYE Autologout; idle for too long\r\n",
        UntaggedStatus("BYE", None, "Autologout; idle for too long"),
    ),
    (
        b'A044 BAD No such command as "BLURDYBLOOP"\r\n',
        TaggedResponse("A044", "BAD", None, 'No such command as "BLURDYBLOOP"'),
    ),
    (
        b"* OK [UNSEEN 12] Message 12 is first unseen\r\n",
        UntaggedStatus("OK", UnseenCode(12), "Message 12 is first unseen"),
    ),
    (
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
        UntaggedStatus("OK", UidValidityCode(3857529045), "UIDs valid"),
    ),
    (
        b"* OK [UIDNEXT 4392] Predicted next UID\r\n",
        UntaggedStatus("OK", UidNextCode(4392), "Predicted next UID"),
    ),
    (
        b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
        UntaggedStatus("OK", PermanentFlagsCode(("\\Deleted", "\\Seen", "\\*")), "Limited"),
    ),
    (
        b"A142 OK [READ-WRITE] SELECT completed\r\n",
        TaggedResponse("A142", "OK", READ_WRITE, "SELECT completed"),
    ),
    (
        b"A003 NO [TRYCREATE] Mailbox doesn't exist: SALES\r\n",
        TaggedResponse("A003", "NO", TRYCREATE, "Mailbox doesn't exist: SALES"),
    ),
    (
        b"A1 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n",
        TaggedResponse("A1", "NO", BadCharsetCode(("UTF-8", "US-ASCII")), "Unsupported charset"),
    ),
    (
        b"A1 NO [BADCHARSET] Unsupported charset\r\n",
        TaggedResponse("A1", "NO", BadCharsetCode(), "Unsupported charset"),
    ),
    (
        b"a NO [REFERRAL imap://user;AUTH=*@SERVER2/] Remote Server\r\n",
        TaggedResponse("a", "NO", AtomCode("REFERRAL", b"imap://user;AUTH=*@SERVER2/"), "Remote Server"),
    ),
    # RFC 5530
    (
        b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
        TaggedResponse("a", "NO", AtomCode("AUTHENTICATIONFAILED"), "Authentication failed"),
    ),
    (b"a NO [OVERQUOTA] Sorry\r\n", TaggedResponse("a", "NO", AtomCode("OVERQUOTA"), "Sorry")),
    (
        b'a NO [ALREADYEXISTS] Mailbox "that" already exists\r\n',
        TaggedResponse("a", "NO", AtomCode("ALREADYEXISTS"), 'Mailbox "that" already exists'),
    ),
    # RFC 4315
    (
        b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n",
        TaggedResponse("A003", "OK", AppendUidCode(38505, ss("3955")), "APPEND completed"),
    ),
    (
        b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
        TaggedResponse("A004", "OK", CopyUidCode(38505, ss("304,319:320"), ss("3956:3958")), "Done"),
    ),
    # RFC 7162
    (
        b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n",
        UntaggedStatus("OK", HighestModseqCode(715194045007), "Highest"),
    ),
    (
        b"* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences\r\n",
        UntaggedStatus("OK", NOMODSEQ, "Sorry, this mailbox format doesn't support modsequences"),
    ),
    (
        b"d105 OK [MODIFIED 7,9] Conditional STORE failed\r\n",
        TaggedResponse("d105", "OK", ModifiedCode(ss("7,9")), "Conditional STORE failed"),
    ),
    (b"* OK [CLOSED] Previous mailbox closed\r\n", UntaggedStatus("OK", CLOSED, "Previous mailbox closed")),
    (
        b"* 1 FETCH (UID 4 MODSEQ (65402) FLAGS (\\Seen))\r\n",
        FetchResponse(1, {b"UID": 4, b"MODSEQ": 65402, b"FLAGS": ("\\Seen",)}),
    ),
    (b"* 50 FETCH (MODSEQ (12111230047))\r\n", FetchResponse(50, {b"MODSEQ": 12111230047})),
    (
        b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n",
        Search((2, 5, 6, 7, 11, 12, 18, 19, 20, 23), 917162500),
    ),
    (
        b"* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n",
        Vanished(ss("41,43:116,118,120:211,214:540"), earlier=True),
    ),
    (b"* VANISHED 405,407,410,425\r\n", Vanished(ss("405,407,410,425"))),
    (b'* ESEARCH (TAG "a") ALL 1:3,5 MODSEQ 1236\r\n', ESearch("a", all=ss("1:3,5"), modseq=1236)),
    (b"* ENABLED CONDSTORE QRESYNC\r\n", Enabled(("CONDSTORE", "QRESYNC"))),
    (b"* ENABLED\r\n", Enabled(())),
    # RFC 9051 §7.2-7.5 data
    (
        b"* CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI XPIG-LATIN\r\n",
        Capability(("IMAP4rev2", "STARTTLS", "AUTH=GSSAPI", "XPIG-LATIN")),
    ),
    (b'* LIST (\\Noselect) "/" ~/Mail/foo\r\n', ListResponse(("\\Noselect",), "/", "~/Mail/foo")),
    (b'* LIST () NIL ""\r\n', ListResponse((), None, "")),
    (b'* LIST (\\Noselect) "\\\\" Bar\r\n', ListResponse(("\\Noselect",), "\\", "Bar")),
    (b'* LIST () "." &ZeVnLIqe-\r\n', ListResponse((), ".", "日本語")),
    (
        b'* LIST () "/" "Fruit Basket" ("OLDNAME" ("Old Fruit"))\r\n',
        ListResponse((), "/", "Fruit Basket", oldname="Old Fruit"),
    ),
    (b'* LSUB () "." #news.comp.mail.misc\r\n', LsubResponse((), ".", "#news.comp.mail.misc")),
    (
        b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" "/")("#ftp/" "/")'
        b'("#news." "."))\r\n',
        Namespace(
            (NamespaceDescriptor("", "/"),),
            (NamespaceDescriptor("~", "/"),),
            (
                NamespaceDescriptor("#shared/", "/"),
                NamespaceDescriptor("#public/", "/"),
                NamespaceDescriptor("#ftp/", "/"),
                NamespaceDescriptor("#news.", "."),
            ),
        ),
    ),
    (
        b'* NAMESPACE NIL NIL (("" "." "X-PARAM" ("FLAG1" "FLAG2")))\r\n',
        Namespace(None, None, (NamespaceDescriptor("", ".", (("X-PARAM", ("FLAG1", "FLAG2")),)),)),
    ),
    (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
        StatusResponse("blurdybloop", {"MESSAGES": 231, "UIDNEXT": 44292}),
    ),
    (
        b"* STATUS INBOX (MESSAGES 17 UIDVALIDITY 1 UNSEEN 16 DELETED 2 SIZE 1234567 RECENT 0 "
        b"HIGHESTMODSEQ 7011231777)\r\n",
        StatusResponse(
            "INBOX",
            {
                "MESSAGES": 17,
                "UIDVALIDITY": 1,
                "UNSEEN": 16,
                "DELETED": 2,
                "SIZE": 1234567,
                "RECENT": 0,
                "HIGHESTMODSEQ": 7011231777,
            },
        ),
    ),
    (b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n', ESearch("A282", min=2, count=3)),
    (b'* ESEARCH (TAG "A283") ALL 2,10:11\r\n', ESearch("A283", all=ss("2,10:11"))),
    (b"* ESEARCH\r\n", ESearch()),
    (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
        Flags(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")),
    ),
    (b"* 23 EXISTS\r\n", Exists(23)),
    (b"* 0 EXISTS\r\n", Exists(0)),
    (b"* 5 RECENT\r\n", Recent(5)),
    (b"* 44 EXPUNGE\r\n", Expunge(44)),
    (
        b"* 23 FETCH (FLAGS (\\Seen) RFC822.SIZE 44827)\r\n",
        FetchResponse(23, {b"FLAGS": ("\\Seen",), b"RFC822.SIZE": 44827}),
    ),
    (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286 ENVELOPE '
        + ENVELOPE_9051
        + b" BODY "
        + BODY_9051
        + b")\r\n",
        FetchResponse(
            12,
            {
                b"FLAGS": ("\\Seen",),
                b"INTERNALDATE": datetime(1996, 7, 17, 2, 44, 25, tzinfo=MINUS7),
                b"RFC822.SIZE": 4286,
                b"ENVELOPE": RawItem(ENVELOPE_9051),
                b"BODY": RawItem(BODY_9051),
            },
        ),
    ),
    (
        b"* 12 FETCH (BODY[HEADER] {34}\r\nSubject: Hi\r\nFrom: a@b.example\r\n\r\n)\r\n",
        FetchResponse(12, {b"BODY[HEADER]": b"Subject: Hi\r\nFrom: a@b.example\r\n\r\n"}),
    ),
    (
        b'* 1 FETCH (BODY[1.2]<0> "abc" BODY[TEXT] NIL BODY[] "")\r\n',
        FetchResponse(1, {b"BODY[1.2]<0>": b"abc", b"BODY[TEXT]": None, b"BODY[]": b""}),
    ),
    (
        b"* 1 FETCH (BINARY[1] ~{3}\r\na\x00b BINARY.SIZE[1] 3)\r\n",
        FetchResponse(1, {b"BINARY[1]": b"a\x00b", b"BINARY.SIZE[1]": 3}),
    ),
    (
        b'* 2 FETCH (RFC822.HEADER {4}\r\nA\r\n\r RFC822.TEXT "q\\"uote")\r\n',
        FetchResponse(2, {b"RFC822.HEADER": b"A\r\n\r", b"RFC822.TEXT": b'q"uote'}),
    ),
    (
        b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] {11}\r\nSubject: x\n)\r\n",
        FetchResponse(3, {b"BODY[HEADER.FIELDS (SUBJECT FROM)]": b"Subject: x\n"}),
    ),
    (b"* 3 FETCH (UID 9 FLAGS ())\r\n", FetchResponse(3, {b"UID": 9, b"FLAGS": ()})),
    (b"* 3 FETCH ()\r\n", FetchResponse(3, {})),
    (b"* SEARCH 2 3 6\r\n", Search((2, 3, 6))),
    (b"* SEARCH\r\n", Search(())),
    # RFC 4731
    (b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800\r\n', ESearch("A285", uid=True, min=7, max=3800)),
    (b'* ESEARCH (TAG "A286") COUNT 15\r\n', ESearch("A286", count=15)),
    (
        b'* ESEARCH (TAG "A1") UID PARTIAL (1:10 5,7)\r\n',
        ESearch("A1", uid=True, extra=(("PARTIAL", b"(1:10 5,7)"),)),
    ),
    # RFC 4314
    (b"* ACL INBOX Fred rwipsldexta\r\n", AclResponse("INBOX", (("Fred", "rwipsldexta"),))),
    (b'* ACL Shared anyone lr -bob ""\r\n', AclResponse("Shared", (("anyone", "lr"), ("-bob", "")))),
    (
        b"* LISTRIGHTS ~/Mail/saved smith la r swicdkxte\r\n",
        ListRightsResponse("~/Mail/saved", "smith", "la", ("r", "swicdkxte")),
    ),
    (b"* MYRIGHTS INBOX rwiptsldaex\r\n", MyRightsResponse("INBOX", "rwiptsldaex")),
    # RFC 5258 / RFC 5819
    (
        b'* LIST (\\Subscribed \\NonExistent) "/" Fruit/Peach ("CHILDINFO" ("SUBSCRIBED"))\r\n',
        ListResponse(("\\Subscribed", "\\NonExistent"), "/", "Fruit/Peach", childinfo=("SUBSCRIBED",)),
    ),
    (b'* LIST () "." INBOX\r\n', ListResponse((), ".", "INBOX")),
    (b"* STATUS INBOX (MESSAGES 17 UNSEEN 16)\r\n", StatusResponse("INBOX", {"MESSAGES": 17, "UNSEEN": 16})),
    # RFC 5256
    (b"* SORT 2 84 882\r\n", Sort((2, 84, 882))),
    (b"* SORT 2 84 (MODSEQ 5)\r\n", Sort((2, 84), 5)),
    (b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n", ThreadResponse(((2,), (3, 6, (4, 23), (44, 7, 96))))),
    (b"* THREAD ((3)(5))\r\n", ThreadResponse((((3,), (5,)),))),
    (b"* THREAD\r\n", ThreadResponse(())),
    # RFC 2971 / continuation
    (b'* ID ("name" "Dovecot")\r\n', IdResponse({"name": "Dovecot"})),
    (
        b'* ID ("name" "Cyrus" "version" "1.5" "os" NIL)\r\n',
        IdResponse({"name": "Cyrus", "version": "1.5", "os": None}),
    ),
    (b"* ID NIL\r\n", IdResponse(None)),
    (b"+ Ready for additional command text\r\n", ContinuationRequest("Ready for additional command text")),
    (
        b"+ YDMGCSqGSIb3EgECAgIBAAD/////6jcyG4GE3KkTzmeTxuiQ3ISCiFQ3AECCg==\r\n",
        ContinuationRequest("YDMGCSqGSIb3EgECAgIBAAD/////6jcyG4GE3KkTzmeTxuiQ3ISCiFQ3AECCg=="),
    ),
    (b"+ \r\n", ContinuationRequest("")),
    (b"+ [ALERT] idling\r\n", ContinuationRequest("idling", ALERT)),
    # real Dovecot lines
    (
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] "
        b"Dovecot (Ubuntu) ready.\r\n",
        UntaggedStatus(
            "OK",
            CapabilityCode(
                (
                    "IMAP4rev1",
                    "SASL-IR",
                    "LOGIN-REFERRALS",
                    "ID",
                    "ENABLE",
                    "IDLE",
                    "LITERAL+",
                    "STARTTLS",
                    "AUTH=PLAIN",
                )
            ),
            "Dovecot (Ubuntu) ready.",
        ),
    ),
    (b"* CAPABILITY " + " ".join(DOVECOT_CAPS).encode() + b"\r\n", Capability(tuple(DOVECOT_CAPS))),
    (
        b"a2 OK [CAPABILITY " + " ".join(DOVECOT_CAPS).encode() + b"] Logged in\r\n",
        TaggedResponse("a2", "OK", CapabilityCode(tuple(DOVECOT_CAPS)), "Logged in"),
    ),
    (
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n",
        UntaggedStatus(
            "OK",
            PermanentFlagsCode(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\*")),
            "Flags permitted.",
        ),
    ),
    (
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n',
        ListResponse(("\\HasNoChildren", "\\Sent"), "/", "Sent"),
    ),
    (
        b"* 3 FETCH (UID 7 FLAGS (\\Seen $Label1 NonJunk) MODSEQ (789))\r\n",
        FetchResponse(3, {b"UID": 7, b"FLAGS": ("\\Seen", "$Label1", "NonJunk"), b"MODSEQ": 789}),
    ),
    (b"* 3 FETCH (FLAGS (\\Seen) UID 7)\r\n", FetchResponse(3, {b"FLAGS": ("\\Seen",), b"UID": 7})),
    (
        b"a3 OK Fetch completed (0.001 + 0.000 secs).\r\n",
        TaggedResponse("a3", "OK", None, "Fetch completed (0.001 + 0.000 secs)."),
    ),
    # unknown data kept verbatim
    (b'* QUOTA "" (STORAGE 10 512)\r\n', UntaggedUnknown(b'* QUOTA "" (STORAGE 10 512)')),
    (
        b"* METADATA INBOX (/private/comment {3}\r\nabc)\r\n",
        UntaggedUnknown(b"* METADATA INBOX (/private/comment {3}\r\nabc)"),
    ),
    (b"* 5 XFOO bar\r\n", UntaggedUnknown(b"* 5 XFOO bar")),
    (
        b'* 2 FETCH (X-GM-MSGID 1278455344230334865 X-GM-LABELS (\\Inbox "Foo Bar") UID 9 '
        b'EMAILID (M6d99ac3275bb4e) PREVIEW "hello")\r\n',
        FetchResponse(
            2,
            {
                b"X-GM-MSGID": RawItem(b"1278455344230334865"),
                b"X-GM-LABELS": RawItem(b'(\\Inbox "Foo Bar")'),
                b"UID": 9,
                b"EMAILID": RawItem(b"(M6d99ac3275bb4e)"),
                b"PREVIEW": RawItem(b'"hello"'),
            },
        ),
    ),
]


@pytest.mark.parametrize(
    ("wire", "expected"), CANONICAL, ids=[w[:40].decode("latin-1") for w, _ in CANONICAL]
)
def test_canonical_corpus(wire: bytes, expected: Response) -> None:
    got = parse_all_ways(wire)
    assert got == expected
    assert write_response(got) == wire
    assert write_response(expected) == wire


def test_thread_rfc5256_example() -> None:
    got = parse_all_ways(THREAD_5256)
    assert isinstance(got, ThreadResponse)
    assert got.threads[8] == (174, (175,), (176,), (178,), (181,), (180,))
    assert write_response(got) == THREAD_5256


#: (wire, expected, canonical rewrite) — servers' deviations that must still parse.
QUIRKS: list[tuple[bytes, Response, bytes]] = [
    (
        b"* 1 fetch (uid 5 flags (\\seen \\FLAGGED))\r\n",
        FetchResponse(1, {b"UID": 5, b"FLAGS": ("\\Seen", "\\Flagged")}),
        b"* 1 FETCH (UID 5 FLAGS (\\Seen \\Flagged))\r\n",
    ),
    (
        b"* 1 FETCH (UID 5 FLAGS (\\Seen) )\r\n",
        FetchResponse(1, {b"UID": 5, b"FLAGS": ("\\Seen",)}),
        b"* 1 FETCH (UID 5 FLAGS (\\Seen))\r\n",
    ),
    (
        b"* 1 FETCH (FLAGS NIL UID 5)\r\n",
        FetchResponse(1, {b"FLAGS": (), b"UID": 5}),
        b"* 1 FETCH (FLAGS () UID 5)\r\n",
    ),
    (
        b"* 1 FETCH (FLAGS ( \\Seen  $X ) MODSEQ ( 5 ) UID 5)\r\n",
        FetchResponse(1, {b"FLAGS": ("\\Seen", "$X"), b"MODSEQ": 5, b"UID": 5}),
        b"* 1 FETCH (FLAGS (\\Seen $X) MODSEQ (5) UID 5)\r\n",
    ),
    (
        b'* 1 FETCH (UID 5 INTERNALDATE "1-Jan-2020 10:00:00 +0000")\r\n',
        FetchResponse(1, {b"UID": 5, b"INTERNALDATE": RawItem(b'"1-Jan-2020 10:00:00 +0000"')}),
        b'* 1 FETCH (UID 5 INTERNALDATE "1-Jan-2020 10:00:00 +0000")\r\n',
    ),
    (
        b'* 1 FETCH (body[header.fields (Subject From)] "x" body[]<10> NIL)\r\n',
        FetchResponse(1, {b"BODY[HEADER.FIELDS (SUBJECT FROM)]": b"x", b"BODY[]<10>": None}),
        b'* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)] "x" BODY[]<10> NIL)\r\n',
    ),
    (
        b"* 1 FETCH (BODY[] {3}\r\na\x00b)\r\n",
        FetchResponse(1, {b"BODY[]": b"a\x00b"}),
        b"* 1 FETCH (BODY[] {3}\r\na\x00b)\r\n",
    ),
    (
        b"* 1 FETCH (FLAGS (\\Seen Foo[bar]))\r\n",
        FetchResponse(1, {b"FLAGS": ("\\Seen", "Foo[bar]")}),
        b"* 1 FETCH (FLAGS (\\Seen Foo[bar]))\r\n",
    ),
    (b"* SEARCH \r\n", Search(()), b"* SEARCH\r\n"),
    (b"* SEARCH 1 2 \r\n", Search((1, 2)), b"* SEARCH 1 2\r\n"),
    (b"a1 OK\r\n", TaggedResponse("a1", "OK", None, ""), b"a1 OK \r\n"),
    (
        b"a1 ok [read-write] done\r\n",
        TaggedResponse("a1", "OK", READ_WRITE, "done"),
        b"a1 OK [READ-WRITE] done\r\n",
    ),
    (b"a1 OK [READ-WRITE]\r\n", TaggedResponse("a1", "OK", READ_WRITE, ""), b"a1 OK [READ-WRITE] \r\n"),
    (b"* ok [uidnext 5] x\r\n", UntaggedStatus("OK", UidNextCode(5), "x"), b"* OK [UIDNEXT 5] x\r\n"),
    (
        b"* OK [UIDNEXT abc] x\r\n",
        UntaggedStatus("OK", AtomCode("UIDNEXT", b"abc"), "x"),
        b"* OK [UIDNEXT abc] x\r\n",
    ),
    (b"* OK [UIDNEXT 5 ] x\r\n", UntaggedStatus("OK", UidNextCode(5), "x"), b"* OK [UIDNEXT 5] x\r\n"),
    (
        b"* OK [no closing bracket\r\n",
        UntaggedStatus("OK", None, "[no closing bracket"),
        b"* OK [no closing bracket\r\n",
    ),
    (b"+\r\n", ContinuationRequest(""), b"+ \r\n"),
    (
        b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n',
        ListResponse(("\\HasNoChildren",), "/", "INBOX"),
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
    ),
    (
        b'* LIST (\\HasNoChildren) "/" inbox\r\n',
        ListResponse(("\\HasNoChildren",), "/", "INBOX"),
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
    ),
    (
        b'* LIST (\\HasNoChildren) "/" "[Gmail]/All Mail"\r\n',
        ListResponse(("\\HasNoChildren",), "/", "[Gmail]/All Mail"),
        b'* LIST (\\HasNoChildren) "/" "[Gmail]/All Mail"\r\n',
    ),
    (
        b'* LIST () "/" "Gr\xc3\xbc\xc3\x9fe"\r\n',
        ListResponse((), "/", "Grüße"),
        b'* LIST () "/" Gr&APwA3w-e\r\n',
    ),
    (b'* LIST () "/" {3}\r\nA B\r\n', ListResponse((), "/", "A B"), b'* LIST () "/" "A B"\r\n'),
    (
        b'* LIST (\\Subscribed) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED") "X-EXT" 12)\r\n',
        ListResponse(("\\Subscribed",), "/", "Foo", childinfo=("SUBSCRIBED",), extended=(("X-EXT", b"12"),)),
        b'* LIST (\\Subscribed) "/" Foo ("CHILDINFO" ("SUBSCRIBED") "X-EXT" 12)\r\n',
    ),
    (
        b'* STATUS "Sent Items" (MESSAGES 3 UIDNEXT 9 )\r\n',
        StatusResponse("Sent Items", {"MESSAGES": 3, "UIDNEXT": 9}),
        b'* STATUS "Sent Items" (MESSAGES 3 UIDNEXT 9)\r\n',
    ),
    (
        b"* status INBOX (messages 3)\r\n",
        StatusResponse("INBOX", {"MESSAGES": 3}),
        b"* STATUS INBOX (MESSAGES 3)\r\n",
    ),
    (
        b"* CAPABILITY IMAP4rev1 IDLE \r\n",
        Capability(("IMAP4rev1", "IDLE")),
        b"* CAPABILITY IMAP4rev1 IDLE\r\n",
    ),
    (b"* THREAD (3 (4 5))\r\n", ThreadResponse(((3, 4, 5),)), b"* THREAD (3 4 5)\r\n"),
    (b"* THREAD (2) (3 6)\r\n", ThreadResponse(((2,), (3, 6))), b"* THREAD (2)(3 6)\r\n"),
    (
        b'* ESEARCH (TAG "a" MAILBOX "x") UID COUNT 0\r\n',
        ESearch("a", uid=True, count=0),
        b'* ESEARCH (TAG "a") UID COUNT 0\r\n',
    ),
    (b"* ESEARCH (TAG a1) COUNT 1\r\n", ESearch("a1", count=1), b'* ESEARCH (TAG "a1") COUNT 1\r\n'),
    (b"* 3 EXISTS \r\n", Exists(3), b"* 3 EXISTS\r\n"),
    (
        b'* NAMESPACE (("" "/") ) NIL NIL\r\n',
        Namespace((NamespaceDescriptor("", "/"),), None, None),
        b'* NAMESPACE (("" "/")) NIL NIL\r\n',
    ),
]


@pytest.mark.parametrize(
    ("wire", "expected", "rewritten"), QUIRKS, ids=[w[:40].decode("latin-1") for w, _, _ in QUIRKS]
)
def test_quirks(wire: bytes, expected: Response, rewritten: bytes) -> None:
    got = parse_all_ways(wire)
    assert got == expected
    assert write_response(got) == rewritten
    assert parse_response(rewritten) == expected


def test_utf8_mailbox_names() -> None:
    got = parse_response(b'* LIST () "/" "Gr\xc3\xbc\xc3\x9fe"\r\n', utf8=True)
    assert got == ListResponse((), "/", "Grüße")
    assert write_response(got, utf8=True) == b'* LIST () "/" "Gr\xc3\xbc\xc3\x9fe"\r\n'


def test_fetch_accessors_and_fast_path_equivalence() -> None:
    fast = parse_response(b"* 123 FETCH (UID 456 FLAGS (\\Seen $Label1) MODSEQ (789))\r\n")
    slow = parse_response(b"* 123 FETCH (UID 456 FLAGS (\\Seen $Label1) MODSEQ (789) )\r\n")
    assert fast == slow
    assert isinstance(fast, FetchResponse)
    assert (fast.uid, fast.flags, fast.modseq) == (456, ("\\Seen", "$Label1"), 789)
    assert list(fast.items) == [b"UID", b"FLAGS", b"MODSEQ"]
    other = parse_response(b"* 1 FETCH (MODSEQ (7) FLAGS () UID 3)\r\n")
    assert isinstance(other, FetchResponse)
    assert list(other.items) == [b"MODSEQ", b"FLAGS", b"UID"]
    assert FetchResponse(1, {}).uid is None


def test_untagged_unknown_name() -> None:
    unknown = parse_response(b'* QUOTA "" (STORAGE 10 512)\r\n')
    assert isinstance(unknown, UntaggedUnknown) and unknown.name == "QUOTA"
    numbered = parse_response(b"* 5 xfoo bar\r\n")
    assert isinstance(numbered, UntaggedUnknown) and numbered.name == "XFOO"


BAD = [
    b"a1 FOO bar\r\n",
    b"a1 OK done",
    b"* 1 FETCH (UID x)\r\n",
    b"* 0 FETCH (UID 1)\r\n",
    b"* 0 EXPUNGE\r\n",
    b"* 1 FETCH (UID 1\r\n",
    b"* 1 FETCH (UID 1)) \r\n",
    b"* 1 FETCH (UID 99999999999)\r\n",
    b"* 1 FETCH (MODSEQ (99999999999999999999))\r\n",
    b"* 1 FETCH (BODY[] {10}\r\nabc)\r\n",
    b'* 1 FETCH (ENVELOPE ("a" ("b")\r\n',
    b"* 1 FETCH (BODYSTRUCTURE " + b"(" * 100 + b")" * 100 + b")\r\n",
    b"* 1 FETCH (FLAGS (\\Seen \x80))\r\n",
    b"* 1 FETCH (FLAGS (\\Seen)\r\n",
    b"* LIST\r\n",
    b'* LIST () "/"\r\n',
    b"* STATUS INBOX (MESSAGES x)\r\n",
    b"* THREAD ()\r\n",
    b"* THREAD ((1)2)\r\n",
    b"* THREAD " + b"(" * 100 + b"1" + b")" * 100 + b"\r\n",
    b"* SEARCH 1 x\r\n",
    b"* VANISHED (EARLIER)\r\n",
    b'* ESEARCH (TAG "a") MIN 0\r\n',
    b'* NAMESPACE (("" "/")) NIL\r\n',
    b'* ID ("a")\r\n',
    b"* ACL INBOX Fred\r\n",
    b"* MYRIGHTS INBOX\r\n",
    b"* CAPABILITY IMAP4rev1 (x)\r\n",
    b"* 1 EXISTS extra\r\n",
    b"\r\n",
    b"",
    b"* \r\n",
    b"*\r\n",
]


@pytest.mark.parametrize("wire", BAD, ids=[w[:30].decode("latin-1") for w in BAD])
def test_malformed_raises_upstream_error(wire: bytes) -> None:
    with pytest.raises(UpstreamProtocolError) as info:
        parse_response(wire)
    assert not info.value.reason.startswith("internal")


def test_error_has_position_and_tag() -> None:
    with pytest.raises(UpstreamProtocolError) as info:
        parse_response(b"* 1 FETCH (UID x)\r\n")
    assert info.value.position == 15
    with pytest.raises(UpstreamProtocolError) as info:
        parse_response(b"a7 WHAT now\r\n")
    assert info.value.tag == "a7"


# --- ENVELOPE ------------------------------------------------------------------------


def test_envelope_rfc9051_example() -> None:
    env = parse_envelope(RawItem(ENVELOPE_9051))
    assert env.date == "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"
    assert env.subject == "IMAP4rev2 WG mtg summary and minutes"
    assert env.from_ == (Address("Terry Gray", None, "gray", "cac.washington.edu"),)
    assert env.from_[0].email == "gray@cac.washington.edu"
    assert env.to == (Address(None, None, "imap", "cac.washington.edu"),)
    assert len(env.cc) == 2 and env.cc[1].name == "John Klensin"
    assert env.bcc == () and env.in_reply_to is None
    assert env.message_id == "<B27397-0100000@cac.washington.edu>"


def test_envelope_from_fetch_with_literal_subject() -> None:
    wire = (
        b'* 1 FETCH (ENVELOPE (NIL {5}\r\nHi\r\n! (("A" NIL "a" "x.example")) NIL NIL NIL NIL NIL '
        b'"<p@x>" "<m@x>"))\r\n'
    )
    resp = parse_all_ways(wire)
    assert isinstance(resp, FetchResponse)
    item = resp.items[b"ENVELOPE"]
    assert isinstance(item, RawItem)
    env = parse_envelope(item)
    assert env.subject == "Hi\r\n!"
    assert env.in_reply_to == "<p@x>" and env.message_id == "<m@x>"
    assert write_response(resp) == wire


@pytest.mark.parametrize(
    ("raw", "message_id"),
    [
        (b"(NIL NIL () NIL NIL NIL NIL NIL NIL <abc@x>)", "<abc@x>"),  # atom for a string
        (b'(NIL "s" (("a" NIL "b")) NIL NIL NIL NIL NIL NIL "<id>")', "<id>"),  # short address
        (b'(NIL "s" (garbage) NIL NIL NIL NIL NIL NIL "<id>" )', "<id>"),
        (b'(NIL "s")', None),  # truncated
        (b'( "d"  "s" NIL NIL NIL NIL NIL NIL NIL  "<id>" )', "<id>"),
        (
            b'(NIL NIL ((NIL NIL "group" NIL)("x" NIL "a" "b")(NIL NIL NIL NIL)) NIL NIL NIL NIL NIL NIL '
            b'"<g>")',
            "<g>",
        ),
    ],
)
def test_envelope_tolerant(raw: bytes, message_id: str | None) -> None:
    assert parse_envelope(raw).message_id == message_id


@pytest.mark.parametrize("raw", [b"", b"NIL", b'"x"', b'("unterminated'])
def test_envelope_garbage(raw: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        parse_envelope(raw)
