"""The gateway killed (SIGKILL of ``imapgate serve``) in the middle of a submission: the
client sees a failure, and the hoster got the message at most once.

* Killed while the client is still sending DATA (three moments: right after ``354``, half
  the content, all of it but the final dot): the hoster's transaction had MAIL and RCPT
  (mirrored while the client sent them) but never the end of the data, so Postfix drops it.
  The client's retry to the restarted gateway is delivered exactly once.
* Killed after the end of the data went to the hoster and before its answer (Postfix held
  in ``smtpd_end_of_data_restrictions = sleep``): whether Postfix delivered it or not, the
  restarted gateway knows the outcome is unknown and holds the client's automatic retry back
  with an explanation; only sending it again (the override) sends it once more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from imapgate.demo.dovecot import find_free_port
from imapgate.store.engine import open_engine
from imapgate.team.users import UserDirectory
from tests.submission.conftest import CUSTOMER, SHARED_ADDRESS, TEAM, reply
from tests.support.postfix import PostfixServer, count_deliveries, wait_for_delivery
from tests.support.tls import TestCertificate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAPGATE = [sys.executable, "-m", "imapgate.cli"]


class ServeProcess:
    """``imapgate serve`` with IMAP and submission on fixed ports and one store."""

    def __init__(self, base: Path, dovecot: DovecotServer, postfix: PostfixServer,
                 cert: TestCertificate) -> None:
        self.base = base
        self.imap_port = find_free_port()
        self.smtp_port = find_free_port()
        self.cert = cert
        data_dir = base / "store"
        (base / "upstream.pw").write_text("shared-secret\n")
        (base / "upstream.pw").chmod(0o600)
        self.config = base / "imapgate.toml"
        self.config.write_text(f"""
[upstream]
host = "127.0.0.1"
port = {dovecot.port}
tls = "none"
user = "shared"
password_file = "upstream.pw"

[server]
listen = ["127.0.0.1:{self.imap_port}"]
certificate = "{cert.cert}"
private_key = "{cert.key}"

[store]
data_dir = "{data_dir}"

[submission]
listen = ["127.0.0.1:{self.smtp_port}"]
allowed_from = ["{SHARED_ADDRESS}"]

[submission.upstream]
host = "{postfix.host}"
port = {postfix.port}
tls = "starttls"
""")
        engine = open_engine(f"sqlite:///{data_dir / 'imapgate.sqlite3'}")
        users = UserDirectory(engine)
        for name, password in TEAM.items():
            users.add(name, password)
        engine.dispose()
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self, timeout: float = 60) -> None:
        log = self.base / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        # The gateway verifies Postfix's (test) certificate through the default trust store.
        env = {**os.environ, "SSL_CERT_FILE": str(self.cert.cert)}
        with log.open("wb") as fh:
            self.proc = subprocess.Popen([*IMAPGATE, "--config", str(self.config), "serve"],
                                         stdout=fh, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while "imapgate: ready:" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"imapgate serve did not get ready:\n{log.read_text(errors='replace')}")
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def client(self, user: str = "alice") -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)
        client.ehlo("client.example.test")
        client.starttls(context=self.cert.client_context())
        client.ehlo("client.example.test")
        client.login(user, TEAM[user])
        return client

    def log_problems(self) -> list[str]:
        return [f"{log.name}: {line}" for log in self.logs
                for line in log.read_text(errors="replace").splitlines()
                if " ERROR " in line or "Traceback" in line]


def _start_transaction(client: smtplib.SMTP) -> None:
    assert client.mail(SHARED_ADDRESS)[0] == 250
    assert client.rcpt(CUSTOMER)[0] == 250  # mirrored at the hoster before this answer
    assert client.docmd("DATA")[0] == 354


def _fails(client: smtplib.SMTP, rest: bytes) -> None:
    """The client's view after the kill: the connection is gone, sending fails."""
    with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
        client.send(rest + b".\r\n")
        client.getreply()
    client.close()


def test_killed_during_data_hoster_gets_nothing(
    mail_dovecot: DovecotServer, postfix: PostfixServer, tls_certificate: TestCertificate, tmp_path: Path
) -> None:
    gw = ServeProcess(tmp_path, mail_dovecot, postfix, tls_certificate)
    gw.start()
    try:
        messages = []
        for cut in ("after-354", "half", "all-but-the-dot"):
            mid, data = reply(None, subject=f"kill {cut}", body=("Zeile\r\n" * 2000))
            messages.append((mid, data))
            client = gw.client()
            _start_transaction(client)
            sent = {"after-354": 0, "half": len(data) // 2, "all-but-the-dot": len(data)}[cut]
            client.send(data[:sent])
            time.sleep(0.2)  # the gateway has read it
            gw.kill()
            _fails(client, data[sent:])
            postfix.wait_queue_empty()
            gw.start()
        time.sleep(1.0)
        assert [count_deliveries(mail_dovecot, "customer", mid) for mid, _ in messages] == [0, 0, 0]
        # The client retries each: delivered exactly once.
        for mid, data in messages:
            client = gw.client()
            try:
                assert client.sendmail(SHARED_ADDRESS, [CUSTOMER], data) == {}
            finally:
                client.quit()
            wait_for_delivery(mail_dovecot, "customer", mid)
        postfix.wait_queue_empty()
        time.sleep(0.5)
        assert [count_deliveries(mail_dovecot, "customer", mid) for mid, _ in messages] == [1, 1, 1]
    finally:
        gw.stop()
    assert gw.log_problems() == []


def test_killed_while_the_hoster_takes_the_end_of_data(
    mail_dovecot: DovecotServer, postfix_factory, tls_certificate: TestCertificate, tmp_path: Path
) -> None:
    slow = postfix_factory(main_cf={"smtpd_end_of_data_restrictions": "sleep 3"})
    gw = ServeProcess(tmp_path, mail_dovecot, slow, tls_certificate)
    gw.start()
    try:
        mid, data = reply(None, subject="kill at the dot")
        client = gw.client()
        _start_transaction(client)
        client.send(data + b".\r\n")
        time.sleep(1.0)  # the end of the data is at Postfix, which holds its answer
        gw.kill()
        with contextlib.suppress(smtplib.SMTPServerDisconnected, OSError):
            code, _ = client.getreply()
            pytest.fail(f"the client got an answer ({code}) from a killed gateway")
        client.close()
        slow.wait_queue_empty()
        time.sleep(1.0)
        delivered = count_deliveries(mail_dovecot, "customer", mid)
        assert delivered in (0, 1)
        gw.start()
        client = gw.client()
        try:
            with pytest.raises(smtplib.SMTPDataError) as err:
                client.sendmail(SHARED_ADDRESS, [CUSTOMER], data)
            assert err.value.smtp_code == 550
            text = err.value.smtp_error.decode()
            assert text.startswith("5.7.1 Not sent: an earlier attempt at ")
            assert "may already have gone out" in text
        finally:
            client.quit()
        time.sleep(0.5)
        assert count_deliveries(mail_dovecot, "customer", mid) == delivered
        # Sent again on purpose (within the override window): it goes out.
        client = gw.client()
        try:
            assert client.sendmail(SHARED_ADDRESS, [CUSTOMER], data) == {}
        finally:
            client.quit()
        wait_for_delivery(mail_dovecot, "customer", mid, count=delivered + 1)
    finally:
        gw.stop()
    print(f"Postfix delivered the message whose answer the gateway never read: {bool(delivered)}")
