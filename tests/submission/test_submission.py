"""SMTP submission through the gateway, end to end: smtplib clients → the gateway (IMAP +
submission) → the test Postfix (the hoster's submission server, STARTTLS + SASL) → LMTP →
the customer's INBOX at Dovecot, with the shared mailbox at the same Dovecot.

The guard's refusals are checked by their exact text (times in the configured
Europe/Berlin zone, computed here from the stored record), the override, the team's IDLE
sessions seeing ``\\Answered`` at once, and the journal.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from imapgate.demo import DovecotServer
from imapgate.submission.guard import Claim
from tests.submission.conftest import (
    CUSTOMER,
    SHARED_ADDRESS,
    CustomerMail,
    flags_at_dovecot,
    reply,
    smtp_client,
)
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient
from tests.support.postfix import count_deliveries, wait_for_delivery
from tests.support.tls import TestCertificate

pytestmark = pytest.mark.integration

BERLIN = ZoneInfo("Europe/Berlin")
MailFactory = Callable[..., CustomerMail]


def hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, BERLIN).strftime("%H:%M")


def send(
    gw: GatewayHarness, cert: TestCertificate, user: str, data: bytes, to: tuple[str, ...] = (CUSTOMER,)
) -> tuple[int, str]:
    """Send ``data`` as ``user``; the reply to the end of DATA as (code, text)."""
    client = smtp_client(gw, cert, user)
    try:
        code, msg = client.mail(SHARED_ADDRESS)
        assert code == 250, msg
        for rcpt in to:
            code, msg = client.rcpt(rcpt)
            assert code == 250, msg
        code, msg = client.data(data)
        return code, msg.decode()
    finally:
        client.quit()


def rows(gw: GatewayHarness) -> list:
    assert gw.submission is not None
    return gw.submission.service.replies.recent()


def journal(gw: GatewayHarness, command: str | None = None) -> list:
    entries = gw.gw.journal.recent(200)
    return [e for e in entries if command is None or e.command == command]


# --------------------------------------------------------------------- the reply goes out


def test_reply_goes_out_and_marks_the_original_answered(
    smtp_gateway: GatewayHarness,
    customer_mail: MailFactory,
    tls_certificate: TestCertificate,
    mail_dovecot: DovecotServer,
) -> None:
    original = customer_mail("Lieferung")
    mid, data = reply(original)
    code, text = send(smtp_gateway, tls_certificate, "alice", data)
    # The hoster's own answer, passed through (Postfix's queue id).
    assert code == 250 and text.startswith("2.0.0 Ok: queued as "), text
    wait_for_delivery(mail_dovecot, "customer", mid)
    # \Answered for the whole team: at the hoster and in the replica, through the write path.
    smtp_gateway.wait_for(
        lambda: "\\Answered" in smtp_gateway.gw.replica.by_name["INBOX"].records[original.uid].flags,
        what="\\Answered in the replica",
    )
    assert "\\Answered" in flags_at_dovecot(mail_dovecot, original.uid)
    sent = [r for r in rows(smtp_gateway) if r.message_id == mid]
    assert len(sent) == 1 and sent[0].state == "sent" and sent[0].original == original.message_id
    assert sent[0].user == "alice" and sent[0].recipients == CUSTOMER and sent[0].subject == "Re: Lieferung"
    submit = journal(smtp_gateway, "SUBMIT")[0]
    assert submit.user == "alice" and submit.result == "OK" and submit.mailbox == "INBOX"
    assert submit.uids == str(original.uid)
    assert "answered by alice" in submit.detail and original.message_id in submit.detail
    store = journal(smtp_gateway, "STORE")[0]
    assert store.user == "alice" and store.detail == "add \\Answered" and store.uids == str(original.uid)
    assert store.client.startswith("smtp from 127.0.0.1")
    marks = smtp_gateway.call_soon(
        lambda: smtp_gateway.submission.service.replies.marks_for([original.message_id])  # type: ignore[union-attr]
    )
    assert [(m.user, m.mailbox, m.uid) for m in marks] == [("alice", "INBOX", original.uid)]


def test_a_mail_that_is_not_a_reply_goes_out_unguarded(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate, mail_dovecot: DovecotServer
) -> None:
    mid, data = reply(None, subject="Angebot")
    assert send(smtp_gateway, tls_certificate, "bob", data)[0] == 250
    assert send(smtp_gateway, tls_certificate, "carol", reply(None, subject="Angebot")[1])[0] == 250
    wait_for_delivery(mail_dovecot, "customer", mid)


def test_missing_message_id_and_date_are_added(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate, mail_dovecot: DovecotServer
) -> None:
    data = f"From: {SHARED_ADDRESS}\r\nTo: {CUSTOMER}\r\nSubject: ohne\r\n\r\nText\r\n".encode()
    assert send(smtp_gateway, tls_certificate, "alice", data)[0] == 250
    row = rows(smtp_gateway)[0]
    assert row.message_id.endswith("@example.test>") and row.state == "sent"
    wait_for_delivery(mail_dovecot, "customer", row.message_id)


# --------------------------------------------------------------------- the guard, with the team


def test_team_flow_idle_refusal_override_journal(
    smtp_gateway: GatewayHarness,
    customer_mail: MailFactory,
    tls_certificate: TestCertificate,
    mail_dovecot: DovecotServer,
) -> None:
    """The issue's scenario: alice replies via SMTP → bob's IDLE session sees \\Answered at
    once; bob's reply to the same mail is refused with the text; bob sends again → it goes
    out; the journal has both."""
    original = customer_mail("Lieferung")
    bob_imap = RawClient(smtp_gateway.host, smtp_gateway.port)
    try:
        bob_imap.login("bob", "bob-pw")
        assert bob_imap.command(b"S1", b"SELECT INBOX")[-1].startswith(b"S1 OK")
        bob_imap.idle()
        alice_mid, alice_reply = reply(original)
        assert send(smtp_gateway, tls_certificate, "alice", alice_reply)[0] == 250
        _lines, took = bob_imap.wait_for(rb"FETCH \(.*\\Answered", timeout=5)
        bob_imap.done()
    finally:
        bob_imap.close()
    assert took < 2.0, f"bob's IDLE saw \\Answered after {took:.2f} s"
    alice_row = next(r for r in rows(smtp_gateway) if r.message_id == alice_mid)

    bob_mid, bob_reply = reply(original)
    code, text = send(smtp_gateway, tls_certificate, "bob", bob_reply)
    assert code == 550
    assert text == (
        f'5.7.1 Not sent: alice already replied at {hhmm(alice_row.ts)} ("Re: Lieferung"). '
        "Read their reply first, or send again within 10 minutes to send anyway."
    )
    time.sleep(0.5)
    assert count_deliveries(mail_dovecot, "customer", bob_mid) == 0

    # The same reply again (same original, recipients, subject): it goes out.
    bob_mid2, bob_again = reply(original)
    code, text = send(smtp_gateway, tls_certificate, "bob", bob_again)
    assert code == 250, text
    wait_for_delivery(mail_dovecot, "customer", bob_mid2)
    wait_for_delivery(mail_dovecot, "customer", alice_mid)
    submits = journal(smtp_gateway, "SUBMIT")
    refused = [e for e in submits if e.user == "bob" and e.result == "NO"]
    overridden = [e for e in submits if e.user == "bob" and e.result == "OK"]
    assert len(refused) == 1 and "refused (replied)" in refused[0].detail
    assert "alice already replied" in refused[0].detail
    assert len(overridden) == 1 and "overriding the replied refusal" in overridden[0].detail
    assert "answered by bob" in overridden[0].detail
    assert [e.user for e in submits if e.result == "OK"] == ["bob", "alice"]


def test_override_needs_the_same_recipients_and_subject(
    smtp_gateway: GatewayHarness, customer_mail: MailFactory, tls_certificate: TestCertificate
) -> None:
    original = customer_mail("Rechnung")
    assert send(smtp_gateway, tls_certificate, "alice", reply(original)[1])[0] == 250
    assert send(smtp_gateway, tls_certificate, "bob", reply(original)[1])[0] == 550
    # Another subject, other recipients, another member: each is refused again.
    assert send(smtp_gateway, tls_certificate, "bob", reply(original, subject="AW: Rechnung")[1])[0] == 550
    other = (CUSTOMER, "customer+2@customer.test")
    assert send(smtp_gateway, tls_certificate, "bob", reply(original)[1], to=other)[0] == 550
    assert send(smtp_gateway, tls_certificate, "carol", reply(original)[1])[0] == 550
    # Subject compared without case and extra spaces: the override still counts.
    assert send(smtp_gateway, tls_certificate, "bob", reply(original, subject="re:  rechnung")[1])[0] == 250


def test_override_window_ends(
    mail_dovecot: DovecotServer,
    postfix,
    tls_certificate: TestCertificate,
    tmp_path,
    trust_test_certificate: None,
) -> None:
    from tests.submission.conftest import make_gateway

    with make_gateway(mail_dovecot, postfix, tls_certificate, tmp_path / "gw", override_window="10s") as gw:
        original = _put_original(gw, mail_dovecot, "Termin")
        assert send(gw, tls_certificate, "alice", reply(original)[1])[0] == 250
        code, text = send(gw, tls_certificate, "bob", reply(original)[1])
        assert code == 550 and text.endswith("send again within 10 seconds to send anyway."), text
        # Age the refusal past the window (the store's clock is wall time).
        gw.call_soon(lambda: _age_refusals(gw, 11))
        assert send(gw, tls_certificate, "bob", reply(original)[1])[0] == 550
        assert send(gw, tls_certificate, "bob", reply(original)[1])[0] == 250


def _age_refusals(gw: GatewayHarness, seconds: float) -> None:
    from sqlalchemy import update

    from imapgate.store.schema import submissions

    with gw.gw.journal.engine.begin() as conn:
        conn.execute(
            update(submissions).where(submissions.c.state == "refused").values(ts=submissions.c.ts - seconds)
        )


def _put_original(gw: GatewayHarness, dc: DovecotServer, subject: str, flags: str = "") -> CustomerMail:
    import imaplib

    from tests.submission.conftest import customer_message, new_message_id
    from tests.support.imap import upstream_login

    mid = new_message_id()
    client = upstream_login(dc.host, dc.port)
    try:
        typ, data = client.append(
            "INBOX",
            f"({flags})" if flags else None,
            imaplib.Time2Internaldate(time.time()),
            customer_message(subject, mid),
        )
        assert typ == "OK", data
        uid = int(data[0].decode().split("APPENDUID", 1)[1].split()[1].rstrip("]"))
    finally:
        client.logout()
    gw.call(gw.gw.sync.sync_mailbox("INBOX"))
    return CustomerMail(mid, uid, subject)


def test_own_replies_are_never_held_back(
    smtp_gateway: GatewayHarness, customer_mail: MailFactory, tls_certificate: TestCertificate
) -> None:
    original = customer_mail("Nachfrage")
    assert send(smtp_gateway, tls_certificate, "alice", reply(original)[1])[0] == 250
    smtp_gateway.wait_for(
        lambda: "\\Answered" in smtp_gateway.gw.replica.by_name["INBOX"].records[original.uid].flags
    )
    assert send(smtp_gateway, tls_certificate, "alice", reply(original, subject="Nachtrag")[1])[0] == 250


def test_answered_at_the_mail_server(
    smtp_gateway: GatewayHarness, customer_mail: MailFactory, tls_certificate: TestCertificate
) -> None:
    original = customer_mail("Reklamation", flags="\\Answered")
    code, text = send(smtp_gateway, tls_certificate, "alice", reply(original)[1])
    assert code == 550
    assert text == (
        "5.7.1 Not sent: this mail was already answered at the mail server. Check the reply first, "
        "or send again within 10 minutes to send anyway."
    )
    assert send(smtp_gateway, tls_certificate, "alice", reply(original)[1])[0] == 250


def test_answered_flag_set_through_the_gateway_by_a_colleague(
    smtp_gateway: GatewayHarness, customer_mail: MailFactory, tls_certificate: TestCertificate
) -> None:
    original = customer_mail("Storno")
    carol = smtp_gateway.imaplib_login("carol", "carol-pw")
    try:
        carol.select("INBOX")
        typ, _ = carol.uid("STORE", str(original.uid), "+FLAGS", "(\\Answered)")
        assert typ == "OK"
    finally:
        carol.logout()
    mark = next(e for e in journal(smtp_gateway, "STORE") if e.user == "carol")
    code, text = send(smtp_gateway, tls_certificate, "alice", reply(original)[1])
    assert code == 550
    assert text == (
        f"5.7.1 Not sent: carol already answered this mail at {hhmm(mark.ts)} (marked answered). "
        "Read their reply first, or send again within 10 minutes to send anyway."
    )
    # carol herself may reply; once the flag is taken off again, nobody is held back.
    assert send(smtp_gateway, tls_certificate, "carol", reply(original)[1])[0] == 250


def test_answered_mark_taken_back_no_longer_counts(
    smtp_gateway: GatewayHarness, customer_mail: MailFactory, tls_certificate: TestCertificate
) -> None:
    original = customer_mail("Versehen")
    carol = smtp_gateway.imaplib_login("carol", "carol-pw")
    try:
        carol.select("INBOX")
        assert carol.uid("STORE", str(original.uid), "+FLAGS", "(\\Answered)")[0] == "OK"
        assert carol.uid("STORE", str(original.uid), "-FLAGS", "(\\Answered)")[0] == "OK"
    finally:
        carol.logout()
    assert send(smtp_gateway, tls_certificate, "alice", reply(original)[1])[0] == 250


class _Claims:
    def __init__(self, claims: dict[tuple[int, int], Claim]) -> None:
        self.claims = claims

    def claim_of(self, mailbox_id: int, uid: int) -> Claim | None:
        return self.claims.get((mailbox_id, uid))


def test_a_colleagues_claim_holds_the_reply_back(
    smtp_gateway: GatewayHarness, customer_mail: MailFactory, tls_certificate: TestCertificate
) -> None:
    """The claims seam: a ClaimLookup naming carol (the claims issue provides the real one)."""
    original = customer_mail("Garantie")
    inbox = smtp_gateway.gw.replica.by_name["INBOX"]
    since = time.time() - 120
    assert smtp_gateway.submission is not None
    smtp_gateway.submission.service.claims = _Claims({(inbox.id, original.uid): Claim("carol", since)})
    code, text = send(smtp_gateway, tls_certificate, "alice", reply(original)[1])
    assert code == 550
    assert text == (
        f"5.7.1 Not sent: carol is handling this mail (claimed {hhmm(since)}). Ask carol, or send "
        "again within 10 minutes to send anyway."
    )
    assert send(smtp_gateway, tls_certificate, "carol", reply(original)[1])[0] == 250
    assert send(smtp_gateway, tls_certificate, "alice", reply(original)[1])[0] == 250


def test_a_claim_made_over_imap_holds_a_colleagues_reply_back(
    smtp_gateway: GatewayHarness, customer_mail: MailFactory, tls_certificate: TestCertificate
) -> None:
    """The real lookup: carol claims the original with ``$Claimed`` over IMAP; alice's
    reply is held back with carol's name and time, carol's own reply goes out."""
    original = customer_mail("Reklamation")
    carol = smtp_gateway.imaplib_login("carol", "carol-pw")
    try:
        carol.select("INBOX")
        assert carol.uid("STORE", str(original.uid), "+FLAGS", "($Claimed)")[0] == "OK"
    finally:
        carol.logout()
    inbox = smtp_gateway.gw.replica.by_name["INBOX"]
    claims = smtp_gateway.gw.service.claims
    assert claims is not None
    claim = claims.registry.get(inbox.id, original.uid)
    assert claim is not None and claim.user == "carol"
    code, text = send(smtp_gateway, tls_certificate, "alice", reply(original)[1])
    assert code == 550
    assert text == (
        f"5.7.1 Not sent: carol is handling this mail (claimed {hhmm(claim.claimed_at)}). Ask carol, "
        "or send again within 10 minutes to send anyway."
    )
    assert send(smtp_gateway, tls_certificate, "carol", reply(original)[1])[0] == 250


def test_original_found_through_references(
    smtp_gateway: GatewayHarness, customer_mail: MailFactory, tls_certificate: TestCertificate
) -> None:
    """No In-Reply-To, or one naming an unknown message: References, last to first."""
    original = customer_mail("Kette")
    assert send(smtp_gateway, tls_certificate, "alice", reply(original)[1])[0] == 250
    unknown = "<nobody-knows@elsewhere.test>"
    extra = f"In-Reply-To: {unknown}\r\nReferences: <older@x.test> {original.message_id} {unknown}\r\n"
    _mid, data = reply(None, subject="Re: Kette", extra=extra)
    code, text = send(smtp_gateway, tls_certificate, "bob", data)
    assert code == 550 and "alice already replied" in text, text


def test_the_same_message_twice_is_sent_once(
    smtp_gateway: GatewayHarness,
    customer_mail: MailFactory,
    tls_certificate: TestCertificate,
    mail_dovecot: DovecotServer,
) -> None:
    """A client retrying a message the hoster took (same Message-ID and recipients)."""
    mid, data = reply(customer_mail("Doppelt"))
    assert send(smtp_gateway, tls_certificate, "alice", data)[0] == 250
    code, text = send(smtp_gateway, tls_certificate, "alice", data)
    assert code == 250 and text.startswith("2.0.0 Already sent at ") and "not sent twice" in text
    wait_for_delivery(mail_dovecot, "customer", mid)
    time.sleep(1.0)
    assert count_deliveries(mail_dovecot, "customer", mid) == 1


# --------------------------------------------------------------------- sender checks, AUTH


def test_from_header_spoofing_refused(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate, mail_dovecot: DovecotServer
) -> None:
    for sender in ("ceo@example.test", f"Info <{SHARED_ADDRESS}>, ceo@example.test"):
        data = (
            f"From: {sender}\r\nTo: {CUSTOMER}\r\nSubject: x\r\nMessage-ID: <spoof-{time.time()}@x>\r\n"
            "\r\nbody\r\n"
        ).encode()
        code, text = send(smtp_gateway, tls_certificate, "alice", data)
        assert code == 550
        assert text == (
            "5.7.1 Not sent: ceo@example.test is not an address you may send as through the gateway; "
            f"allowed: {SHARED_ADDRESS}"
        )
    no_from = b"To: x@y.test\r\nSubject: no from\r\n\r\nx\r\n"
    code, text = send(smtp_gateway, tls_certificate, "alice", no_from)
    assert (code, text) == (550, "5.6.0 Not sent: the From header is missing or cannot be read")
    # Case does not matter.
    ok = f"From: INFO@Example.TEST\r\nTo: {CUSTOMER}\r\nSubject: y\r\n\r\nbody\r\n".encode()
    assert send(smtp_gateway, tls_certificate, "alice", ok)[0] == 250


def test_envelope_sender_spoofing_refused(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate
) -> None:
    client = smtp_client(smtp_gateway, tls_certificate, "alice")
    try:
        code, msg = client.mail("ceo@example.test")
        assert (code, msg.decode()) == (
            550,
            "5.7.1 Not sent: ceo@example.test is not an address you may send as through the gateway; "
            f"allowed: {SHARED_ADDRESS}",
        )
    finally:
        client.quit()


def test_no_relaying_without_auth_and_no_auth_without_tls(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate
) -> None:
    client = smtplib.SMTP(smtp_gateway.host, smtp_gateway.smtp_port(), timeout=30)
    try:
        client.ehlo("client.example.test")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN AGFsaWNlAGFsaWNlLXB3") == (
            538,
            b"5.7.11 Encryption required for requested authentication mechanism",
        )
        assert client.mail(SHARED_ADDRESS) == (530, b"5.7.0 Authentication required")
        client.starttls(context=tls_certificate.client_context())
        client.ehlo("client.example.test")
        assert "PLAIN" in client.esmtp_features["auth"] and "LOGIN" in client.esmtp_features["auth"]
        assert client.mail(SHARED_ADDRESS) == (530, b"5.7.0 Authentication required")
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login("alice", "wrong")
        assert err.value.smtp_code == 535
        assert err.value.smtp_error == b"5.7.8 Authentication credentials invalid"
        client.login("alice", "alice-pw")
        assert client.mail(SHARED_ADDRESS)[0] == 250
    finally:
        client.quit()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_mechanisms(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate, mechanism: str
) -> None:
    client = smtp_client(smtp_gateway, tls_certificate)
    try:
        client.user, client.password = "bob", "bob-pw"
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, _ = client.auth(mechanism, auth, initial_response_ok=mechanism == "PLAIN")
        assert code == 235
    finally:
        client.quit()


def test_plaintext_auth_when_allowed(
    mail_dovecot: DovecotServer,
    postfix,
    tls_certificate: TestCertificate,
    tmp_path,
    trust_test_certificate: None,
) -> None:
    from tests.submission.conftest import make_gateway

    with make_gateway(mail_dovecot, postfix, tls_certificate, tmp_path / "gw", allow_plaintext=True) as gw:
        client = smtplib.SMTP(gw.host, gw.smtp_port(), timeout=30)
        try:
            client.ehlo("client.example.test")
            assert client.has_extn("auth")
            client.login("carol", "carol-pw")
            assert client.mail(SHARED_ADDRESS)[0] == 250
        finally:
            client.quit()


def test_implicit_tls_listener(
    mail_dovecot: DovecotServer,
    postfix,
    tls_certificate: TestCertificate,
    tmp_path,
    trust_test_certificate: None,
) -> None:
    from tests.submission.conftest import make_gateway

    with make_gateway(
        mail_dovecot, postfix, tls_certificate, tmp_path / "gw", listen=[], tls_listen=["127.0.0.1:0"]
    ) as gw:
        client = smtplib.SMTP_SSL(
            gw.host, gw.smtp_port(implicit_tls=True), timeout=30, context=tls_certificate.client_context()
        )
        try:
            client.ehlo("client.example.test")
            assert client.has_extn("auth") and not client.has_extn("starttls")
            client.login("alice", "alice-pw")
            mid, data = reply(None, subject="via 465")
            assert client.sendmail(SHARED_ADDRESS, [CUSTOMER], data) == {}
        finally:
            client.quit()
        wait_for_delivery(mail_dovecot, "customer", mid)


# --------------------------------------------------------------------- the hoster's refusals, limits


def test_recipient_refused_by_the_hoster_is_passed_through(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate
) -> None:
    client = smtp_client(smtp_gateway, tls_certificate, "alice")
    try:
        assert client.mail(SHARED_ADDRESS)[0] == 250
        code, msg = client.rcpt("nobody@example.test")
        assert (code, msg.decode()) == (
            550,
            "5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table",
        )
        assert client.rcpt(CUSTOMER)[0] == 250
    finally:
        client.quit()


def test_size_from_the_hoster_and_its_refusals_passed_through(
    mail_dovecot: DovecotServer,
    postfix_factory,
    tls_certificate: TestCertificate,
    tmp_path,
    trust_test_certificate: None,
) -> None:
    from tests.submission.conftest import make_gateway

    small = postfix_factory(message_size_limit=40_000)
    with make_gateway(mail_dovecot, small, tls_certificate, tmp_path / "gw") as gw:
        gw.wait_for(
            lambda: gw.submission is not None and gw.submission.hoster.size == 40_000,
            what="the hoster's SIZE",
        )
        client = smtp_client(gw, tls_certificate, "alice")
        try:
            assert client.esmtp_features["size"] == "40000"
        finally:
            client.quit()
        # The hoster lowers its limit while the gateway still advertises the old one: its
        # refusals reach the client as they are (at MAIL with SIZE=, at the end of DATA).
        small.reconfigure(message_size_limit=20_000)
        client = smtp_client(gw, tls_certificate, "alice")
        try:
            code, msg = client.mail(SHARED_ADDRESS, ["SIZE=30000"])
            assert (code, msg.decode()) == (552, "5.3.4 Message size exceeds fixed limit")
            client.rset()
            got = client.mail(SHARED_ADDRESS)
            assert got[0] == 250, got
            assert client.rcpt(CUSTOMER)[0] == 250
            mid, data = reply(None, subject="gross", body="x" * 70 + "\r\n" * 1 + ("y" * 76 + "\r\n") * 400)
            code, msg = client.data(data)
            assert (code, msg.decode()) == (552, "5.3.4 Error: message file too big")
        finally:
            client.quit()
        assert gw.submission is not None
        assert gw.submission.hoster.size == 20_000  # learnt again from the hoster's EHLO
        state = [r.state for r in gw.submission.service.replies.recent() if r.message_id == mid]
        assert state == []  # refused by the hoster: nothing went out, nothing to remember
        assert any("not sent: 552 5.3.4" in (e.detail or "") for e in gw.gw.journal.recent(20))


def test_limits_recipients_and_line_length(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate, mail_dovecot: DovecotServer
) -> None:
    client = smtp_client(smtp_gateway, tls_certificate, "alice")
    try:
        assert client.mail(SHARED_ADDRESS)[0] == 250
        for i in range(100):
            assert client.rcpt(f"customer+{i}@customer.test")[0] == 250
        assert client.rcpt("customer+x@customer.test") == (
            452,
            b"4.5.3 Too many recipients (at most 100 per message)",
        )
        client.rset()
        assert client.mail(SHARED_ADDRESS)[0] == 250
        assert client.rcpt(CUSTOMER)[0] == 250
        mid, data = reply(None, subject="lang", body="z" * 1200 + "\r\n")
        code, _ = client.data(data)
        assert code == 500
        mid2, data2 = reply(None, subject="danach")
        assert client.sendmail(SHARED_ADDRESS, [CUSTOMER], data2) == {}
    finally:
        client.quit()
    wait_for_delivery(mail_dovecot, "customer", mid2)
    assert count_deliveries(mail_dovecot, "customer", mid) == 0


def test_client_gone_during_data_sends_nothing(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate, mail_dovecot: DovecotServer
) -> None:
    mid, data = reply(None, subject="abgebrochen")
    client = smtp_client(smtp_gateway, tls_certificate, "alice")
    assert client.mail(SHARED_ADDRESS)[0] == 250
    assert client.rcpt(CUSTOMER)[0] == 250
    assert client.docmd("DATA")[0] == 354
    client.send(data[: len(data) // 2])
    client.close()
    # A complete message afterwards still goes out; the broken one never does.
    mid2, data2 = reply(None, subject="vollständig".encode("ascii", "replace").decode())
    assert send(smtp_gateway, tls_certificate, "alice", data2)[0] == 250
    wait_for_delivery(mail_dovecot, "customer", mid2)
    time.sleep(1.0)
    assert count_deliveries(mail_dovecot, "customer", mid) == 0


def test_hostile_input_never_ends_the_server(
    smtp_gateway: GatewayHarness, tls_certificate: TestCertificate, mail_dovecot: DovecotServer
) -> None:
    import socket

    port = smtp_gateway.smtp_port()
    garbage = [
        b"\x00\xff\xfe\r\n",
        b"EHLO " + b"a" * 5000 + b"\r\n",
        b"MAIL FROM:<" + b"\x80" * 50 + b">\r\n",
        b"AUTH PLAIN ====\r\n",
        b"AUTH\r\n",
        b"RCPT TO:<x@y>\r\n",
        b"DATA\r\n",
        b"\r\n" * 3,
        b"STARTTLS now\r\n",
        b"HELO\r\n",
        b"X" * 70000 + b"\r\n",
    ]
    for payload in garbage:
        with socket.create_connection((smtp_gateway.host, port), timeout=10) as s:
            assert s.recv(1024).startswith(b"220 ")
            s.sendall(b"EHLO x\r\n" + payload + b"QUIT\r\n")
            s.settimeout(5)
            got = b""
            with __import__("contextlib").suppress(OSError):
                while chunk := s.recv(65536):
                    got += chunk
            assert b"250" in got
    # Broken headers after a proper login: refused or sent, never a crash.
    for body in (
        b"From: =?utf-8?q?broken?=\r\nSubject: =?x-unknown?b?////?=\r\n\r\nx\r\n",
        b"From: <>\r\nIn-Reply-To: <<<>>>\r\nReferences: " + b"<a@b> " * 5000 + b"\r\n\r\nx\r\n",
        b"From: " + SHARED_ADDRESS.encode() + b"\r\nSubject: \xff\xfe\x00 bin\xc3\r\n\r\n\x00\x01\x02\r\n",
        b"no header at all",
    ):
        code, _text = send(smtp_gateway, tls_certificate, "alice", body)
        assert code in (250, 500, 550), (code, _text)  # 500: a header line over 1000 octets
    mid, data = reply(None, subject="still alive")
    assert send(smtp_gateway, tls_certificate, "alice", data)[0] == 250
    wait_for_delivery(mail_dovecot, "customer", mid)


def test_hoster_closes_an_idle_relay_connection(
    mail_dovecot: DovecotServer,
    postfix_factory,
    tls_certificate: TestCertificate,
    tmp_path,
    trust_test_certificate: None,
) -> None:
    """The client sends two messages on one connection, minutes apart; the hoster has closed
    the gateway's idle connection meanwhile (Postfix's ``smtpd_timeout``): the second goes out."""
    from tests.submission.conftest import make_gateway

    impatient = postfix_factory(main_cf={"smtpd_timeout": "1s"})
    with make_gateway(mail_dovecot, impatient, tls_certificate, tmp_path / "gw") as gw:
        client = smtp_client(gw, tls_certificate, "alice")
        try:
            first, data = reply(None, subject="eins")
            assert client.sendmail(SHARED_ADDRESS, [CUSTOMER], data) == {}
            time.sleep(2.5)
            second, data = reply(None, subject="zwei")
            assert client.sendmail(SHARED_ADDRESS, [CUSTOMER], data) == {}
        finally:
            client.quit()
        wait_for_delivery(mail_dovecot, "customer", first)
        wait_for_delivery(mail_dovecot, "customer", second)
