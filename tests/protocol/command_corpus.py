"""Command corpus shared by the parser and writer tests: mostly the RFCs' own
examples (RFC 9051 §6, RFC 7162, 4314, 5465, 5258, 5819, 6154, 4731, 5182,
5256, 6851, 3516, 4959, 3502, 2971, 8438), each with the object it means and,
where the writer spells it differently, the canonical wire form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from imapgate.protocol import commands as c
from imapgate.protocol import search as s
from imapgate.protocol.fetch_items import MACROS, FetchAttribute, Section
from imapgate.protocol.sequence import STAR, SequenceSet


@dataclass(frozen=True)
class Case:
    wire: bytes
    command: c.Command
    #: The writer's spelling when it differs from ``wire``.
    canonical: bytes | None = None
    utf8: bool = False

    @property
    def written(self) -> bytes:
        return self.wire if self.canonical is None else self.canonical


def seq(text: str) -> SequenceSet:
    if text == "$":
        return SequenceSet.saved()
    ranges = []
    for part in text.split(","):
        a, _, b = part.partition(":")
        lo = STAR if a == "*" else int(a)
        hi = (STAR if b == "*" else int(b)) if b else lo
        ranges.append((lo, hi))
    return SequenceSet(tuple(ranges))


def att(name: str) -> FetchAttribute:
    return FetchAttribute(name)


def body(section: Section, partial: tuple[int, int] | None = None, peek: bool = False) -> FetchAttribute:
    return FetchAttribute("BODY", section, partial, peek)


MESSAGE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)
PST = timezone(-timedelta(hours=8))

CORPUS: list[Case] = [
    # --- RFC 9051 §6.1 / §6.2: any state, not authenticated
    Case(b"abcd CAPABILITY\r\n", c.Capability("abcd")),
    Case(b"a002 NOOP\r\n", c.Noop("a002")),
    Case(b"A023 LOGOUT\r\n", c.Logout("A023")),
    Case(b"a001 STARTTLS\r\n", c.StartTLS("a001")),
    Case(b"a001 LOGIN SMITH SESAME\r\n", c.Login("a001", "SMITH", b"SESAME")),
    Case(b'a001 LOGIN "fred smith" "pa\\"ss"\r\n', c.Login("a001", "fred smith", b'pa"ss')),
    Case(b"a1 LOGIN {5}\r\nalice {5+}\r\nse\r\nt\r\n", c.Login("a1", "alice", b"se\r\nt"),
         b"a1 LOGIN alice {5}\r\nse\r\nt\r\n"),
    Case(b"A001 AUTHENTICATE GSSAPI\r\n", c.Authenticate("A001", "GSSAPI")),
    # RFC 4959 SASL-IR
    Case(b"a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
         c.Authenticate("a", "PLAIN", b"test\x00test\x00test")),
    Case(b"a AUTHENTICATE EXTERNAL =\r\n", c.Authenticate("a", "EXTERNAL", b"")),
    # RFC 2971 ID
    Case(b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")\r\n',
         c.Id("a023", (("name", "sodr"), ("version", "19.34"), ("vendor", "Pink Floyd Music Limited")))),
    Case(b"a ID NIL\r\n", c.Id("a", None)),
    Case(b'a ID ("name" NIL)\r\n', c.Id("a", (("name", None),))),
    # RFC 5161 ENABLE
    Case(b"t2 ENABLE CONDSTORE QRESYNC\r\n", c.Enable("t2", ("CONDSTORE", "QRESYNC"))),
    Case(b"t3 enable utf8=accept\r\n", c.Enable("t3", ("UTF8=ACCEPT",)), b"t3 ENABLE UTF8=ACCEPT\r\n"),
    # --- §6.3 authenticated
    Case(b"A142 SELECT INBOX\r\n", c.Select("A142", "INBOX")),
    Case(b"a1 select inbox\r\n", c.Select("a1", "INBOX"), b"a1 SELECT INBOX\r\n"),
    Case(b"A932 EXAMINE blurdybloop\r\n", c.Examine("A932", "blurdybloop")),
    Case(b'a SELECT "&ZeVnLIqe-"\r\n', c.Select("a", "日本語"), b"a SELECT &ZeVnLIqe-\r\n"),
    Case('a SELECT "日本語"\r\n'.encode(), c.Select("a", "日本語"),
         b"a SELECT {9}\r\n" + "日本語".encode() + b"\r\n", utf8=True),
    # RFC 7162 CONDSTORE / QRESYNC
    Case(b"a03 SELECT INBOX (CONDSTORE)\r\n", c.Select("a03", "INBOX", condstore=True)),
    Case(b"A03 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
         c.Select("A03", "INBOX", qresync=c.QresyncParameters(
             67890007, 20050715194045000, seq("41,43:211,214:541")))),
    Case(b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 "
         b"15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n",
         c.Select("B04", "INBOX", qresync=c.QresyncParameters(
             67890007, 90060115194045000, seq("1:29997"),
             (seq("5000,7500,9000,9990:9999"),
              seq("15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997")),
         ))),
    Case(b"B05 EXAMINE INBOX (QRESYNC (1 2 (3 4)))\r\n",
         c.Examine("B05", "INBOX", qresync=c.QresyncParameters(1, 2, None, (seq("3"), seq("4"))))),
    Case(b"A003 CREATE owatagusiam/\r\n", c.Create("A003", "owatagusiam/")),
    Case(b't1 CREATE "Important Messages" (USE (\\Important))\r\n',
         c.Create("t1", "Important Messages", ("\\Important",))),
    Case(b"t2 CREATE MySpecial (USE (\\drafts \\Sent))\r\n",
         c.Create("t2", "MySpecial", ("\\Drafts", "\\Sent")),
         b"t2 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n"),
    Case(b"A683 DELETE blurdybloop\r\n", c.Delete("A683", "blurdybloop")),
    Case(b"A683 RENAME blurdybloop sarasoop\r\n", c.Rename("A683", "blurdybloop", "sarasoop")),
    Case(b"A002 SUBSCRIBE #news.comp.mail.mime\r\n", c.Subscribe("A002", "#news.comp.mail.mime")),
    Case(b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n", c.Unsubscribe("A002", "#news.comp.mail.mime")),
    Case(b'A101 LIST "" ""\r\n', c.List("A101", "", ("",))),
    Case(b'A102 LIST #news.comp.mail.misc ""\r\n', c.List("A102", "#news.comp.mail.misc", ("",))),
    Case(b"A202 LIST ~/Mail/ %\r\n", c.List("A202", "~/Mail/", ("%",))),
    Case(b'A682 LIST "" *\r\n', c.List("A682", "", ("*",))),
    # RFC 5258 LIST-EXTENDED
    Case(b'A02 LIST (SUBSCRIBED) "" *\r\n', c.List("A02", "", ("*",), ("SUBSCRIBED",))),
    Case(b'A03 LIST () "" % RETURN (CHILDREN)\r\n', c.List("A03", "", ("%",), (), ("CHILDREN",))),
    Case(b'A05 LIST (REMOTE SUBSCRIBED) "/" *\r\n', c.List("A05", "/", ("*",), ("REMOTE", "SUBSCRIBED")),
         b"A05 LIST (REMOTE SUBSCRIBED) / *\r\n"),
    Case(b'A06 LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (CHILDREN)\r\n',
         c.List("A06", "", ("%",), ("SUBSCRIBED", "RECURSIVEMATCH"), ("CHILDREN",))),
    Case(b'C02 LIST "" ("INBOX" "Drafts" "Sent/%")\r\n', c.List("C02", "", ("INBOX", "Drafts", "Sent/%")),
         b'C02 LIST "" (INBOX Drafts Sent/%)\r\n'),
    Case(b'A04 LIST "" % RETURN ()\r\n', c.List("A04", "", ("%",), None, ())),
    # RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE
    Case(b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))\r\n',
         c.List("A01", "", ("%",), None, ("STATUS",), ("MESSAGES", "UNSEEN"))),
    Case(b'A02 LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (CHILDREN STATUS (MESSAGES) SPECIAL-USE)\r\n',
         c.List("A02", "", ("%",), ("SUBSCRIBED", "RECURSIVEMATCH"), ("CHILDREN", "STATUS", "SPECIAL-USE"),
                ("MESSAGES",))),
    Case(b't1 LIST "" "%" RETURN (SPECIAL-USE)\r\n', c.List("t1", "", ("%",), None, ("SPECIAL-USE",)),
         b't1 LIST "" % RETURN (SPECIAL-USE)\r\n'),
    Case(b't3 LIST (SPECIAL-USE) "" *\r\n', c.List("t3", "", ("*",), ("SPECIAL-USE",))),
    Case(b'A002 LSUB "#news." "comp.mail.*"\r\n', c.Lsub("A002", "#news.", "comp.mail.*"),
         b"A002 LSUB #news. comp.mail.*\r\n"),
    Case(b"A02 NAMESPACE\r\n", c.Namespace("A02")),
    Case(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
         c.Status("A042", "blurdybloop", ("UIDNEXT", "MESSAGES"))),
    Case(b"A043 STATUS INBOX (MESSAGES SIZE HIGHESTMODSEQ DELETED)\r\n",
         c.Status("A043", "INBOX", ("MESSAGES", "SIZE", "HIGHESTMODSEQ", "DELETED"))),
    Case(b'A003 APPEND saved-messages (\\Seen) {%d}\r\n' % len(MESSAGE) + MESSAGE + b"\r\n",
         c.Append("A003", "saved-messages", (c.AppendMessage(MESSAGE, ("\\Seen",)),))),
    Case(b'A004 APPEND INBOX (\\Seen $MDNSent) "07-Feb-1994 21:52:25 -0800" {5+}\r\nhello\r\n',
         c.Append("A004", "INBOX", (c.AppendMessage(
             b"hello", ("\\Seen", "$MDNSent"), datetime(1994, 2, 7, 21, 52, 25, tzinfo=PST)),)),
         b'A004 APPEND INBOX (\\Seen $MDNSent) " 7-Feb-1994 21:52:25 -0800" {5}\r\nhello\r\n'),
    # RFC 3502 MULTIAPPEND, RFC 3516 literal8
    Case(b"A005 APPEND Drafts (\\Draft) {3}\r\nabc () ~{4}\r\nx\x00yz {1}\r\nz\r\n",
         c.Append("A005", "Drafts", (
             c.AppendMessage(b"abc", ("\\Draft",)),
             c.AppendMessage(b"x\x00yz", (), None, binary=True),
             c.AppendMessage(b"z"),
         )),
         b"A005 APPEND Drafts (\\Draft) {3}\r\nabc ~{4}\r\nx\x00yz {1}\r\nz\r\n"),
    Case(b"a001 IDLE\r\n", c.Idle("a001")),
    # RFC 4314 ACL
    Case(b"A001 GETACL INBOX/Drafts\r\n", c.GetAcl("A001", "INBOX/Drafts")),
    Case(b"A002 SETACL INBOX/Drafts Chris lrc\r\n", c.SetAcl("A002", "INBOX/Drafts", "Chris", "lrc")),
    Case(b"A035 SETACL INBOX/Drafts anyone -w\r\n", c.SetAcl("A035", "INBOX/Drafts", "anyone", "-w")),
    Case(b"A036 SETACL INBOX/Drafts John +kx\r\n", c.SetAcl("A036", "INBOX/Drafts", "John", "+kx")),
    Case(b'A037 SETACL INBOX "-Fred" ""\r\n', c.SetAcl("A037", "INBOX", "-Fred", ""),
         b'A037 SETACL INBOX -Fred ""\r\n'),
    Case(b"A003 DELETEACL INBOX/Drafts Chris\r\n", c.DeleteAcl("A003", "INBOX/Drafts", "Chris")),
    Case(b"a LISTRIGHTS ~/Mail/saved smith\r\n", c.ListRights("a", "~/Mail/saved", "smith")),
    Case(b"A003 MYRIGHTS INBOX\r\n", c.MyRights("A003", "INBOX")),
    # RFC 5465 NOTIFY
    Case(b"b NOTIFY NONE\r\n", c.NotifyNone("b")),
    Case(b"a NOTIFY SET STATUS (selected MessageNew (uid body.peek[header.fields (from to subject)]) "
         b"MessageExpunge) (subtree Lists MessageNew)\r\n",
         c.NotifySet("a", (
             c.NotifyGroup("SELECTED", (
                 c.NotifyEvent("MessageNew", (att("UID"), body(
                     Section((), "HEADER.FIELDS", ("from", "to", "subject")), peek=True))),
                 c.NotifyEvent("MessageExpunge"),
             )),
             c.NotifyGroup("SUBTREE", (c.NotifyEvent("MessageNew"),), ("Lists",)),
         ), status=True),
         b"a NOTIFY SET STATUS (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (from to subject)]) "
         b"MessageExpunge)) (SUBTREE Lists (MessageNew))\r\n"),
    Case(b"c NOTIFY SET (INBOXES (MessageNew MessageExpunge FlagChange)) (MAILBOXES (Sent Drafts) NONE)"
         b" (PERSONAL (MailboxName SubscriptionChange))\r\n",
         c.NotifySet("c", (
             c.NotifyGroup("INBOXES", (c.NotifyEvent("MessageNew"), c.NotifyEvent("MessageExpunge"),
                                       c.NotifyEvent("FlagChange"))),
             c.NotifyGroup("MAILBOXES", (), ("Sent", "Drafts")),
             c.NotifyGroup("PERSONAL", (c.NotifyEvent("MailboxName"), c.NotifyEvent("SubscriptionChange"))),
         ))),
    # --- §6.4 selected
    Case(b"FXXZ CHECK\r\n", c.Check("FXXZ")),
    Case(b"A341 CLOSE\r\n", c.Close("A341")),
    Case(b"A342 UNSELECT\r\n", c.Unselect("A342")),
    Case(b"A202 EXPUNGE\r\n", c.Expunge("A202")),
    Case(b"A202 UID EXPUNGE 3000:3002\r\n", c.Expunge("A202", True, seq("3000:3002"))),
    Case(b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
         c.Search("A282", (s.SearchFlag("\\Flagged"), s.SearchDate("SINCE", date(1994, 2, 1)),
                           s.SearchNot(s.SearchText("FROM", b"Smith"))), return_options=("MIN", "COUNT")),
         b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM Smith\r\n"),
    Case(b"A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM Smith\r\n",
         c.Search("A283", (s.SearchFlag("\\Flagged"), s.SearchDate("SINCE", date(1994, 2, 1)),
                           s.SearchNot(s.SearchText("FROM", b"Smith"))), return_options=())),
    Case(b'A284 SEARCH TEXT "string not in mailbox"\r\n',
         c.Search("A284", (s.SearchText("TEXT", b"string not in mailbox"),))),
    Case(b"A285 SEARCH CHARSET UTF-8 TEXT {12}\r\n\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\r\n",
         c.Search("A285", (s.SearchText("TEXT", "日本語の".encode()),), charset="UTF-8")),
    Case(b'A286 search charset utf-8 subject "Gr\xc3\xbc\xc3\x9fe"\r\n',
         c.Search("A286", (s.SearchText("SUBJECT", "Grüße".encode()),), charset="UTF-8"),
         b"A286 SEARCH CHARSET UTF-8 SUBJECT {7}\r\nGr\xc3\xbc\xc3\x9fe\r\n"),
    Case(b"A287 UID SEARCH OR (SEEN UNANSWERED) NOT (DELETED DRAFT) LARGER 1000 SMALLER 20000 UID 1:*\r\n",
         c.Search("A287", (
             s.SearchOr(s.SearchAnd((s.SearchFlag("\\Seen"), s.SearchFlag("\\Answered", False))),
                        s.SearchNot(s.SearchAnd((s.SearchFlag("\\Deleted"), s.SearchFlag("\\Draft")))),),
             s.SearchSize(True, 1000), s.SearchSize(False, 20000), s.SearchUid(seq("1:*"))), uid=True)),
    Case(b"A288 SEARCH 2:4,7 NEW OLD RECENT UNFLAGGED UNDRAFT UNDELETED UNSEEN ANSWERED ALL\r\n",
         c.Search("A288", (s.SearchSequence(seq("2:4,7")), s.SearchNew(), s.SearchFlag("\\Recent", False),
                           s.SearchFlag("\\Recent"), s.SearchFlag("\\Flagged", False),
                           s.SearchFlag("\\Draft", False), s.SearchFlag("\\Deleted", False),
                           s.SearchFlag("\\Seen", False), s.SearchFlag("\\Answered"), s.SearchAll()))),
    Case(b'A289 SEARCH HEADER Message-ID "<x@y>" KEYWORD $Forwarded UNKEYWORD $Junk SENTBEFORE "1-Jan-2020" '
         b"SENTON 2-Jan-2020 SENTSINCE 3-Jan-2020 BEFORE 4-Jan-2020 ON 5-Jan-2020 BODY x CC y BCC z TO w\r\n",
         c.Search("A289", (
             s.SearchHeader("Message-ID", b"<x@y>"), s.SearchKeywordKey("$Forwarded"),
             s.SearchKeywordKey("$Junk", False), s.SearchDate("SENTBEFORE", date(2020, 1, 1)),
             s.SearchDate("SENTON", date(2020, 1, 2)), s.SearchDate("SENTSINCE", date(2020, 1, 3)),
             s.SearchDate("BEFORE", date(2020, 1, 4)), s.SearchDate("ON", date(2020, 1, 5)),
             s.SearchText("BODY", b"x"), s.SearchText("CC", b"y"), s.SearchText("BCC", b"z"),
             s.SearchText("TO", b"w"))),
         b"A289 SEARCH HEADER Message-ID <x@y> KEYWORD $Forwarded UNKEYWORD $Junk SENTBEFORE 1-Jan-2020 "
         b"SENTON 2-Jan-2020 SENTSINCE 3-Jan-2020 BEFORE 4-Jan-2020 ON 5-Jan-2020 "
         b"BODY x CC y BCC z TO w\r\n"),
    Case(b'A290 SEARCH HEADER X-Empty ""\r\n', c.Search("A290", (s.SearchHeader("X-Empty", b""),))),
    # RFC 7162 MODSEQ search key, RFC 5032 WITHIN
    Case(b'a102 SEARCH MODSEQ "/flags/\\\\draft" all 620162338\r\n',
         c.Search("a102", (s.SearchModseq(620162338, "/flags/\\draft", "all"),))),
    Case(b"a103 SEARCH OR NOT MODSEQ 720162338 LARGER 50000\r\n",
         c.Search("a103", (s.SearchOr(s.SearchNot(s.SearchModseq(720162338)), s.SearchSize(True, 50000)),))),
    Case(b"a104 UID SEARCH YOUNGER 3600 OLDER 60\r\n",
         c.Search("a104", (s.SearchAge(True, 3600), s.SearchAge(False, 60)), uid=True)),
    # RFC 5182 SEARCHRES
    Case(b"A282 SEARCH RETURN (SAVE) FLAGGED\r\n",
         c.Search("A282", (s.SearchFlag("\\Flagged"),), return_options=("SAVE",))),
    Case(b"A283 FETCH $ (UID INTERNALDATE FLAGS RFC822.SIZE)\r\n",
         c.Fetch("A283", seq("$"), (att("UID"), att("INTERNALDATE"), att("FLAGS"), att("RFC822.SIZE")))),
    Case(b"A284 UID SEARCH UID $ SEEN\r\n",
         c.Search("A284", (s.SearchUid(seq("$")), s.SearchFlag("\\Seen")), uid=True)),
    Case(b"A285 SEARCH $\r\n", c.Search("A285", (s.SearchSequence(seq("$")),))),
    # FETCH
    Case(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
         c.Fetch("A654", seq("2:4"), (att("FLAGS"), body(Section((), "HEADER.FIELDS", ("DATE", "FROM")))))),
    Case(b"A999 UID FETCH 4827313:4828442 FLAGS\r\n",
         c.Fetch("A999", seq("4827313:4828442"), (att("FLAGS"),), uid=True)),
    Case(b"A003 FETCH 12 FULL\r\n", c.Fetch("A003", seq("12"), MACROS["FULL"], macro="FULL")),
    Case(b"A004 fetch 1:* all\r\n", c.Fetch("A004", seq("1:*"), MACROS["ALL"], macro="ALL"),
         b"A004 FETCH 1:* ALL\r\n"),
    Case(b"A005 FETCH 1 FAST\r\n", c.Fetch("A005", seq("1"), MACROS["FAST"], macro="FAST")),
    Case(b"A006 FETCH 1 BODY[]\r\n", c.Fetch("A006", seq("1"), (body(Section()),))),
    Case(b"A007 FETCH 1 (BODY[1.MIME] BODY[2.HEADER] BODY[TEXT] RFC822.HEADER BODYSTRUCTURE ENVELOPE "
         b"INTERNALDATE UID MODSEQ RFC822 RFC822.TEXT BODY BODY.PEEK[3.1.TEXT]<10.20> "
         b"BODY[HEADER.FIELDS.NOT (X-Foo)] BODY[1.2.3])\r\n",
         c.Fetch("A007", seq("1"), (
             body(Section((1,), "MIME")), body(Section((2,), "HEADER")), body(Section((), "TEXT")),
             att("RFC822.HEADER"), att("BODYSTRUCTURE"), att("ENVELOPE"), att("INTERNALDATE"), att("UID"),
             att("MODSEQ"), att("RFC822"), att("RFC822.TEXT"), att("BODY"),
             body(Section((3, 1), "TEXT"), (10, 20), True),
             body(Section((), "HEADER.FIELDS.NOT", ("X-Foo",))), body(Section((1, 2, 3)))))),
    # RFC 3516 BINARY
    Case(b"t FETCH 1 (BINARY.PEEK[1.2]<0.100> BINARY[] BINARY.SIZE[1])\r\n",
         c.Fetch("t", seq("1"), (FetchAttribute("BINARY", Section((1, 2)), (0, 100), True),
                                 FetchAttribute("BINARY", Section()),
                                 FetchAttribute("BINARY.SIZE", Section((1,)))))),
    # RFC 7162 CHANGEDSINCE / VANISHED
    Case(b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
         c.Fetch("s100", seq("1:*"), (att("FLAGS"),), uid=True, changedsince=12345)),
    Case(b"a103 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
         c.Fetch("a103", seq("300:500"), (att("FLAGS"),), uid=True, changedsince=12345, vanished=True)),
    Case(b"a104 FETCH 1:* (UID MODSEQ) (CHANGEDSINCE 0)\r\n",
         c.Fetch("a104", seq("1:*"), (att("UID"), att("MODSEQ")), changedsince=0)),
    # STORE
    Case(b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n", c.Store("A003", seq("2:4"), "add", ("\\Deleted",))),
    Case(b"A004 STORE 1 -FLAGS.SILENT \\seen $Label1\r\n",
         c.Store("A004", seq("1"), "remove", ("\\Seen", "$Label1"), silent=True),
         b"A004 STORE 1 -FLAGS.SILENT (\\Seen $Label1)\r\n"),
    Case(b"A005 UID STORE 1:*,7 FLAGS ()\r\n", c.Store("A005", seq("1:*,7"), "set", (), uid=True)),
    Case(b"a STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
         c.Store("a", seq("7,5,9"), "add", ("\\Deleted",), silent=True, unchangedsince=320162338)),
    Case(b"A003 COPY 2:4 MEETING\r\n", c.Copy("A003", seq("2:4"), "MEETING")),
    Case(b"A004 UID COPY 2:4 Inbox\r\n", c.Copy("A004", seq("2:4"), "INBOX", uid=True),
         b"A004 UID COPY 2:4 INBOX\r\n"),
    # RFC 6851 MOVE
    Case(b"a UID MOVE 42:69 foo\r\n", c.Move("a", seq("42:69"), "foo", uid=True)),
    Case(b"b MOVE 1 Trash\r\n", c.Move("b", seq("1"), "Trash")),
    # RFC 5256 SORT / THREAD
    Case(b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n",
         c.Sort("A282", (c.SortCriterion("SUBJECT"),), "UTF-8", (s.SearchDate("SINCE", date(1994, 2, 1)),))),
    Case(b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n",
         c.Sort("A283", (c.SortCriterion("SUBJECT"), c.SortCriterion("DATE", True)), "UTF-8",
                (s.SearchAll(),))),
    Case(b'A284 UID SORT (ARRIVAL) US-ASCII TEXT "not in mailbox"\r\n',
         c.Sort("A284", (c.SortCriterion("ARRIVAL"),), "US-ASCII", (s.SearchText("TEXT", b"not in mailbox"),),
                uid=True)),
    Case(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n",
         c.Thread("A283", "ORDEREDSUBJECT", "UTF-8", (s.SearchDate("SINCE", date(2000, 3, 5)),)),
         b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-Mar-2000\r\n"),
    Case(b'A284 UID THREAD REFERENCES US-ASCII TEXT "gewp"\r\n',
         c.Thread("A284", "REFERENCES", "US-ASCII", (s.SearchText("TEXT", b"gewp"),), uid=True),
         b"A284 UID THREAD REFERENCES US-ASCII TEXT gewp\r\n"),
]
