"""Fixtures of the submission tests: a gateway (IMAP + SMTP submission) in front of the
peers' Dovecot (``mail_dovecot``: the shared account is the team's mailbox, ``customer``
receives the replies), relaying to the test Postfix (``postfix``: STARTTLS, SASL as
``shared``, LMTP delivery into that Dovecot).

* ``smtp_gateway`` -- the started :class:`GatewayHarness` with alice, bob and carol;
  STARTTLS on its submission listener with the test certificate, AUTH only after TLS;
* ``customer_mail`` -- ``make(subject)``: a customer's mail put into the shared INBOX (by
  IMAP APPEND at Dovecot, as if delivered) and synchronised into the gateway's replica;
  returns its Message-ID and UID;
* helpers: :func:`reply`, :func:`smtp_client`.
"""

from __future__ import annotations

import email.utils
import imaplib
import smtplib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imapgate.demo import DovecotServer
from tests.support.gateway import GatewayHarness
from tests.support.imap import ok, upstream_login
from tests.support.postfix import PostfixServer
from tests.support.tls import TestCertificate

pytestmark = pytest.mark.integration

TEAM = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
SHARED_ADDRESS = "info@example.test"
CUSTOMER = "customer@customer.test"


def submission_config(postfix: PostfixServer, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "allow_plaintext": False,
        "allowed_from": [SHARED_ADDRESS],
        "time_zone": "Europe/Berlin",
        "upstream": {"host": postfix.host, "port": postfix.port, "tls": "starttls"},
    }
    config.update(overrides)
    return config


def make_gateway(
    mail_dovecot: DovecotServer,
    postfix: PostfixServer,
    cert: TestCertificate,
    data_dir: Path,
    **submission: Any,
) -> GatewayHarness:
    return GatewayHarness(
        upstream_port=mail_dovecot.port,
        data_dir=data_dir,
        users=TEAM,
        server={"certificate": str(cert.cert), "private_key": str(cert.key)},
        submission=submission_config(postfix, **submission),
    )


@pytest.fixture
def trust_test_certificate(tls_certificate: TestCertificate, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway verifies Postfix's certificate (the test one) through the default trust store."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate.cert))


@pytest.fixture
def smtp_gateway(
    mail_dovecot: DovecotServer,
    postfix: PostfixServer,
    tls_certificate: TestCertificate,
    tmp_path: Path,
    trust_test_certificate: None,
) -> Iterator[GatewayHarness]:
    with make_gateway(mail_dovecot, postfix, tls_certificate, tmp_path / "gw") as gw:
        yield gw


def smtp_client(
    gw: GatewayHarness, cert: TestCertificate, user: str | None = None, *, timeout: float = 30
) -> smtplib.SMTP:
    """An smtplib client of the gateway's submission port after EHLO + STARTTLS (certificate
    checked), logged in as ``user`` when given."""
    client = smtplib.SMTP(gw.host, gw.smtp_port(), timeout=timeout)
    try:
        client.ehlo("client.example.test")
        client.starttls(context=cert.client_context())
        client.ehlo("client.example.test")
        if user is not None:
            client.login(user, TEAM[user])
    except BaseException:
        client.close()
        raise
    return client


@dataclass(frozen=True)
class CustomerMail:
    message_id: str
    uid: int
    subject: str


def new_message_id(domain: str = "customer.test") -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def customer_message(subject: str, message_id: str) -> bytes:
    return (
        f"From: Kunde <{CUSTOMER}>\r\nTo: {SHARED_ADDRESS}\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nDate: {email.utils.formatdate()}\r\n\r\n"
        "Wo bleibt meine Lieferung?\r\n"
    ).encode()


@pytest.fixture
def customer_mail(
    mail_dovecot: DovecotServer, smtp_gateway: GatewayHarness
) -> Callable[..., CustomerMail]:
    def make(subject: str = "Lieferung", *, flags: str = "") -> CustomerMail:
        mid = new_message_id()
        client = upstream_login(mail_dovecot.host, mail_dovecot.port)
        try:
            typ, data = client.append("INBOX", f"({flags})" if flags else None,
                                      imaplib.Time2Internaldate(time.time()),
                                      customer_message(subject, mid))
            assert typ == "OK", data
            code = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
            uid = int(code.split("APPENDUID", 1)[1].split()[1].rstrip("]"))
        finally:
            client.logout()
        smtp_gateway.call(smtp_gateway.gw.sync.sync_mailbox("INBOX"))
        smtp_gateway.wait_for(
            lambda: uid in smtp_gateway.gw.replica.by_name["INBOX"].records, what="the mail in the replica"
        )
        return CustomerMail(mid, uid, subject)

    return make


def reply(
    original: CustomerMail | None,
    *,
    subject: str | None = None,
    message_id: str | None = None,
    sender: str = SHARED_ADDRESS,
    to: str = CUSTOMER,
    extra: str = "",
    body: str = "Ihre Lieferung kommt morgen.\r\n",
) -> tuple[str, bytes]:
    """A reply as a mail client writes it (In-Reply-To and References naming the original)."""
    mid = message_id or new_message_id("example.test")
    subj = subject if subject is not None else (f"Re: {original.subject}" if original else "Hallo")
    thread = ""
    if original is not None:
        thread = f"In-Reply-To: {original.message_id}\r\nReferences: {original.message_id}\r\n"
    text = (
        f"From: Info <{sender}>\r\nTo: {to}\r\nSubject: {subj}\r\nMessage-ID: {mid}\r\n"
        f"Date: {email.utils.formatdate()}\r\n{thread}{extra}\r\n{body}"
    )
    return mid, text.encode()


def flags_at_dovecot(mail_dovecot: DovecotServer, uid: int) -> set[str]:
    client = upstream_login(mail_dovecot.host, mail_dovecot.port)
    try:
        ok(client.select("INBOX", readonly=True))
        data = ok(client.uid("FETCH", str(uid), "(FLAGS)"))
    finally:
        client.logout()
    text = b" ".join(d for d in data if isinstance(d, bytes)).decode()
    inside = text.split("FLAGS (", 1)[1].split(")", 1)[0]
    return set(inside.split())
