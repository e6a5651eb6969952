"""The private Postfix as the hoster's submission server: STARTTLS + AUTH through Dovecot,
delivery to Dovecot by LMTP, and the refusals the reply guard must pass on (size, recipient)."""

from __future__ import annotations

import base64
import smtplib
import uuid
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy

import pytest

from imapgate.demo import DovecotServer
from tests.support.peers import DOVECOT_USERS, PostfixFactory
from tests.support.postfix import PostfixServer, count_deliveries, inbox_messages, wait_for_delivery

pytestmark = pytest.mark.integration


def _message(to: str = "customer@customer.test", size: int = 0) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alice@example.test"
    message["To"] = to
    message["Subject"] = "Re: your order"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content("Thank you, it ships today.\n" + "x" * size)
    return message


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _delivered(dovecot: DovecotServer, user: str, message_id: str) -> EmailMessage:
    for path in inbox_messages(dovecot, user):
        parsed = BytesParser(policy=default_policy).parsebytes(path.read_bytes())
        if parsed["Message-ID"] == message_id:
            assert isinstance(parsed, EmailMessage)
            return parsed
    raise AssertionError(f"{message_id} not in {user}'s INBOX")


def test_starttls_auth_plain_and_delivery_by_lmtp(postfix: PostfixServer,
                                                  mail_dovecot: DovecotServer) -> None:
    message = _message()
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as client:
        client.ehlo("gateway.example.test")
        assert client.has_extn("starttls")
        assert not client.has_extn("auth"), "AUTH must only be offered after STARTTLS"
        client.starttls(context=postfix.certificate.client_context())
        client.ehlo("gateway.example.test")
        assert {"PLAIN", "LOGIN"} <= set(client.esmtp_features["auth"].upper().split())
        client.user, client.password = "alice", DOVECOT_USERS["alice"]
        code, _ = client.auth("PLAIN", client.auth_plain)
        assert code == 235
        assert client.send_message(message) == {}
    message_id = message["Message-ID"]
    wait_for_delivery(mail_dovecot, "customer", message_id)
    postfix.wait_queue_empty()
    assert count_deliveries(mail_dovecot, "customer", message_id) == 1
    delivered = _delivered(mail_dovecot, "customer", message_id)
    assert delivered["Subject"] == "Re: your order"
    # Received over TLS with SMTP AUTH ("ESMTPSA"), then handed over by LMTP.
    received = " ".join(str(value) for value in delivered.get_all("Received", []))
    assert "ESMTPSA" in received and "LMTP" in received
    assert delivered["Delivered-To"] == "customer@customer.test"


def test_implicit_tls_submission(postfix: PostfixServer, mail_dovecot: DovecotServer) -> None:
    message = _message()
    context = postfix.certificate.client_context()
    with smtplib.SMTP_SSL(postfix.host, postfix.smtps_port, context=context, timeout=30) as client:
        client.ehlo("gateway.example.test")
        assert not client.has_extn("starttls")  # already TLS
        client.login("carol", DOVECOT_USERS["carol"])
        assert client.send_message(message) == {}
    wait_for_delivery(mail_dovecot, "customer", message["Message-ID"])


def test_plaintext_and_unauthenticated_clients_are_refused(postfix: PostfixServer) -> None:
    message = _message()
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as client:
        client.ehlo("gateway.example.test")
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.send_message(message)
        assert info.value.smtp_code == 530
        assert b"5.7.0 Must issue a STARTTLS command first" in info.value.smtp_error
    with postfix.client() as client:  # TLS, but no AUTH
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.send_message(message)
        code, text = refused.value.recipients["customer@customer.test"]
        assert code == 554 and b"Recipient address rejected: Access denied" in text


def test_wrong_password_is_refused(postfix: PostfixServer) -> None:
    with postfix.client() as client:
        # One mechanism only: smtplib's login() would try each in turn, and Dovecot delays every
        # failure by auth_failure_delay (2 s), as a hoster does.
        code, text = client.docmd("AUTH", "PLAIN " + _plain("alice", "not-her-password"))
    assert code == 535 and text.startswith(b"5.7.8 Error: authentication failed")


def test_rejected_recipient(postfix: PostfixServer, mail_dovecot: DovecotServer) -> None:
    message = _message(to="nobody@example.test, customer@customer.test")
    with postfix.client("bob") as client:
        refused = client.send_message(message)
    code, text = refused["nobody@example.test"]
    assert code == 550
    assert text == (b"5.1.1 <nobody@example.test>: Recipient address rejected: "
                    b"User unknown in virtual mailbox table")
    # The other recipient still gets it, once.
    wait_for_delivery(mail_dovecot, "customer", message["Message-ID"])
    postfix.wait_queue_empty()
    assert count_deliveries(mail_dovecot, "customer", message["Message-ID"]) == 1


def test_message_too_large(postfix_factory: PostfixFactory, mail_dovecot: DovecotServer) -> None:
    small = postfix_factory(message_size_limit=20_000)
    big = _message(size=30_000)
    with small.client("alice") as client:
        assert client.esmtp_features["size"] == "20000"
        # Declared with SIZE=: refused at MAIL FROM.
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.send_message(big)
        assert info.value.smtp_code == 552
        assert info.value.smtp_error == b"5.3.4 Message size exceeds fixed limit"
        client.rset()
        # Not declared: refused at the end of DATA, as a relay that streams would see it.
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt("customer@customer.test")[0] == 250
        code, text = client.data(big.as_bytes())
        # Postfix's own words differ here from the MAIL FROM refusal.
        assert (code, text) == (552, b"5.3.4 Error: message file too big")
    small.wait_queue_empty()
    assert count_deliveries(mail_dovecot, "customer", big["Message-ID"]) == 0


def test_reconfigure_changes_the_limit_of_a_running_instance(postfix_factory: PostfixFactory) -> None:
    server = postfix_factory(message_size_limit=50_000)
    server.reconfigure(message_size_limit=10_000)
    with server.client("carol") as client:
        assert client.esmtp_features["size"] == "10000"
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.send_message(_message(size=20_000))


def test_several_recipients_each_delivered_once(postfix: PostfixServer, mail_dovecot: DovecotServer) -> None:
    message = _message(to="customer@customer.test")
    message["Cc"] = "bob@example.test"
    with postfix.client("alice") as client:
        assert client.send_message(message) == {}
    for user in ("customer", "bob"):
        wait_for_delivery(mail_dovecot, user, message["Message-ID"])
    postfix.wait_queue_empty()
    assert [count_deliveries(mail_dovecot, u, message["Message-ID"]) for u in ("customer", "bob", "alice")] \
        == [1, 1, 0]
