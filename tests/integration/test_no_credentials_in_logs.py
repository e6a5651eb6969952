"""No password — a team member's or the hoster account's — in any log line.

The gateway runs in front of a real Dovecot with every logger at DEBUG; team
members log in every way the server offers (LOGIN with quoted strings and with
a literal, AUTHENTICATE PLAIN with SASL-IR and with a continuation), with right
and wrong passwords, one with a password typed into the user-name field, a
burst of parallel guesses that locks a name (its refusals too), and repeated
logins answered from the verified-credentials cache; a second gateway starts
with a wrong hoster password (once serving, once at start, where it is
fatal).  Protocol debug (``imapgate.wire``, what ``-v`` shows) is on.  Then no
captured record (message, arguments, exception text) contains a password, nor
the base64 of a SASL PLAIN response — and the wire log did record the
exchanges, with the credentials masked.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imapgate.demo import DovecotServer
from imapgate.errors import OperatorError
from tests.support.gateway import GatewayHarness
from tests.support.imap import RawClient

pytestmark = pytest.mark.integration

UPSTREAM_SECRET = "Hoster-Pa55-q7Zx"
TEAM = {"alice": "Alice-Secret-9fK2", "bob": "Bob-Secret-3mW8"}
WRONG = "Wrong-Guess-Xy71"
BURST = [f"Burst-Guess-{i:02d}-Qv4" for i in range(12)]


def _plain(user: str, password: str) -> bytes:
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())


def _secrets() -> list[str]:
    out = [UPSTREAM_SECRET, WRONG, *TEAM.values(), *BURST]
    for user, pw in [*TEAM.items(), ("alice", WRONG), ("bob", BURST[0])]:
        out.append(_plain(user, pw).decode())
    return out


def _log_text(records: list[logging.LogRecord]) -> str:
    parts: list[str] = []
    for r in records:
        parts.append(r.getMessage())
        parts.append(repr(r.args))
        if r.exc_info and r.exc_info[1] is not None:
            parts.append(repr(r.exc_info[1]))
        if r.exc_text:
            parts.append(r.exc_text)
    return "\n".join(parts)


def test_no_password_in_any_log_line(
    fresh_dovecot: Callable[..., DovecotServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="imapgate")  # -v: protocol debug included
    dc = fresh_dovecot(users={"shared": UPSTREAM_SECRET})
    with GatewayHarness(
        upstream_port=dc.port, data_dir=tmp_path / "gw", upstream_password=UPSTREAM_SECRET, users=TEAM
    ) as gw:
        c = RawClient(gw.host, gw.port)
        try:
            assert c.command(b"a1", b'LOGIN alice "%s"' % WRONG.encode())[-1].startswith(b"a1 NO")
            # A password typed into the user-name field (a classic way to leak one).
            assert c.command(b"a2", b'LOGIN "%s" x' % TEAM["bob"].encode())[-1].startswith(b"a2 NO")
            assert c.command(b"a3", b"AUTHENTICATE PLAIN " + _plain("alice", WRONG))[-1].startswith(b"a3 NO")
            assert c.command(b"a4", b'LOGIN alice "%s"' % TEAM["alice"].encode())[-1].startswith(b"a4 OK")
            c.command(b"a5", b"SELECT INBOX")
            c.command(b"a6", b"LOGOUT")
        finally:
            c.close()
        c = RawClient(gw.host, gw.port)
        try:
            pw = TEAM["bob"].encode()
            assert c.command(b"b1", b"LOGIN bob {%d+}\r\n%s" % (len(pw), pw))[-1].startswith(b"b1 OK")
            # A message whose body holds a password: bodies are not dumped either.
            msg = b"Subject: new password\r\n\r\nYour password is " + pw + b"\r\n"
            assert c.command(b"b2", b"APPEND INBOX {%d+}\r\n%s" % (len(msg), msg))[-1].startswith(b"b2 OK")
            c.command(b"b3", b"SELECT INBOX")
            assert c.command(b"b4", b"FETCH 1:* (BODY[])")[-1].startswith(b"b4 OK")
            c.command(b"b5", b"LOGOUT")
        finally:
            c.close()
        c = RawClient(gw.host, gw.port)
        try:
            assert c.command(b"c1", b"AUTHENTICATE PLAIN " + _plain("alice", TEAM["alice"]))[-1].startswith(
                b"c1 OK"
            )
            c.command(b"c2", b"LOGOUT")
        finally:
            c.close()
        # The same logins again: answered from the cache (no argon2 check).
        for _ in range(2):
            c = RawClient(gw.host, gw.port)
            try:
                assert c.command(b"d1", b'LOGIN alice "%s"' % TEAM["alice"].encode())[-1].startswith(b"d1 OK")
                c.command(b"d2", b"LOGOUT")
            finally:
                c.close()
        assert gw.gw.auth.stats.cache_hits >= 2
        # A burst of parallel guesses for bob: five are checked, the rest refused (locked).
        answers: list[bytes] = []

        def guess(pw: str) -> None:
            g = RawClient(gw.host, gw.port)
            try:
                answers.append(g.command(b"e1", b'LOGIN bob "%s"' % pw.encode())[-1])
            finally:
                g.close()

        threads = [threading.Thread(target=guess, args=(pw,)) for pw in BURST]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(answers) == len(BURST) and all(a.startswith(b"e1 NO") for a in answers)
        assert any(b"too many failed logins" in a for a in answers)
        c = RawClient(gw.host, gw.port)
        try:
            assert c.command(b"f1", b"AUTHENTICATE PLAIN " + _plain("bob", BURST[0]))[-1].startswith(b"f1 NO")
        finally:
            c.close()
    # The hoster refuses the gateway's password: the error is logged, the password is not.
    with GatewayHarness(
        upstream_port=dc.port,
        data_dir=tmp_path / "gw2",
        upstream_password=UPSTREAM_SECRET + "-old",
        users=TEAM,
        initial_sync=False,
    ) as gw2:
        deadline = time.monotonic() + 5
        while not any(
            "upstream" in r.getMessage().lower() for r in caplog.records if r.levelno >= logging.WARNING
        ):
            assert time.monotonic() < deadline, "the refused upstream login was not logged"
            time.sleep(0.1)
        del gw2
    # At start the refused login is fatal; its message names host and user, not the password.
    with pytest.raises(OperatorError) as refused:
        GatewayHarness(
            upstream_port=dc.port,
            data_dir=tmp_path / "gw3",
            upstream_password=UPSTREAM_SECRET + "-old",
        ).start()
    assert "upstream login as shared at 127.0.0.1 failed" in str(refused.value)
    assert UPSTREAM_SECRET not in str(refused.value)
    text = _log_text(caplog.records)
    assert "logged in as alice" in text and "failed login" in text  # the logs did capture the sessions
    assert "too many failed logins (user and address: bob" in text
    # ... and the protocol exchange on both sides, with the logins masked.
    assert "C: a4 LOGIN <credentials hidden>" in text and "C: c1 AUTHENTICATE <credentials hidden>" in text
    assert "C: b1 LOGIN <credentials hidden>" in text
    assert "LOGIN <credentials hidden>" in "\n".join(
        r.getMessage() for r in caplog.records if r.name == "imapgate.wire.upstream"
    )
    assert "C: b2 APPEND INBOX {" in text and "BODY[] {" in text
    leaked = [s for s in _secrets() if s in text]
    assert not leaked, f"secrets in the log: {leaked}"


def test_no_password_in_any_log_line_smtp(
    mail_dovecot: DovecotServer,
    postfix,
    tls_certificate,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same for SMTP submission: AUTH PLAIN (initial response and challenge) and LOGIN
    (both forms), right and wrong, a password as the user name, a locked name; the gateway's
    own hoster password (right, and a wrong one the hoster refuses).  aiosmtpd's own logger
    (``mail.log``) at DEBUG too: it logs every command line."""
    import smtplib

    from tests.submission.conftest import make_gateway, reply

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mail.log")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate.cert))
    team = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
    secrets = [*team.values(), WRONG, "shared-secret", "Hoster-Smtp-Wrong-7Qp"]

    def client(gw: GatewayHarness) -> smtplib.SMTP:
        c = smtplib.SMTP(gw.host, gw.smtp_port(), timeout=30)
        c.ehlo("x.test")
        c.starttls(context=tls_certificate.client_context())
        c.ehlo("x.test")
        return c

    with make_gateway(mail_dovecot, postfix, tls_certificate, tmp_path / "gw") as gw:
        attempts = [
            ("PLAIN", "alice", WRONG, True), ("PLAIN", "alice", team["alice"], False),
            ("PLAIN", "bob", team["bob"], True), ("LOGIN", "bob", team["bob"], True),
            ("LOGIN", "carol", team["carol"], False), ("LOGIN", team["carol"], "x", True),
            ("PLAIN", "alice", team["alice"], True),  # from the cache
        ]
        for mechanism, user, password, initial in attempts:
            c = client(gw)
            try:
                c.user, c.password = user, password
                auth = c.auth_plain if mechanism == "PLAIN" else c.auth_login
                with contextlib.suppress(smtplib.SMTPAuthenticationError):
                    c.auth(mechanism, auth, initial_response_ok=initial)
                if user in team and password == team[user]:
                    _mid, data = reply(None, subject="log check")
                    assert c.sendmail("info@example.test", ["customer@customer.test"], data) == {}
            finally:
                with contextlib.suppress(Exception):
                    c.quit()
        for guess in BURST[:8]:  # locks bob for this address
            c = client(gw)
            try:
                with contextlib.suppress(smtplib.SMTPException):
                    c.login("bob", guess)
            finally:
                with contextlib.suppress(Exception):
                    c.quit()
        secrets += BURST[:8]
    with make_gateway(mail_dovecot, postfix, tls_certificate, tmp_path / "gw2",
                      upstream={"host": postfix.host, "port": postfix.port, "tls": "starttls",
                                "password": "Hoster-Smtp-Wrong-7Qp"}) as gw2:
        c = client(gw2)
        try:
            c.login("alice", team["alice"])
            assert c.mail("info@example.test")[0] == 451
        finally:
            c.quit()
    text = _log_text(caplog.records)
    assert "submission: alice logged in" in text and "failed login" in text
    assert "refused the gateway's login" in text
    plain = [base64.b64encode(b"\0" + u.encode() + b"\0" + p.encode()).decode() for u, p in team.items()]
    leaked = [s for s in [*secrets, *plain] if s in text]
    assert not leaked, f"secrets in the log: {leaked}"
