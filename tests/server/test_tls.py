"""TLS: LOGINDISABLED on plaintext, STARTTLS, implicit TLS (self-signed
certificate made by openssl for the test)."""

from __future__ import annotations

import asyncio
import imaplib
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from imapgate.gateway.app import Gateway
from tests.support.gateway_setup import build_gateway, gateway_config, imap_listener, running_gateway

from .harness import PASSWORDS

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def gateway(tmp_path: Path) -> Gateway:
    cert, key = certificate(tmp_path)
    cfg = gateway_config(
        data_dir=tmp_path / "gw",
        base_dir=tmp_path,
        server={
            # Plaintext is what the test is about: LOGINDISABLED until STARTTLS.
            "allow_plaintext": False,
            "tls_listen": ["127.0.0.1:0"],
            "certificate": str(cert),
            "private_key": str(key),
        },
    )
    return build_gateway(cfg, users={"alice": PASSWORDS["alice"]})


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed test certificate
    return ctx


async def test_plaintext_login_disabled_then_starttls_and_implicit_tls(tmp_path: Path) -> None:
    gw = gateway(tmp_path)

    def clients(plain: int, secure: int) -> None:
        m = imaplib.IMAP4("127.0.0.1", plain)
        assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            m.login("alice", PASSWORDS["alice"])
        m.starttls(client_context())
        caps = m.capability()[1][0].split()
        assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
        assert m.login("alice", PASSWORDS["alice"])[0] == "OK"
        m.logout()
        s = imaplib.IMAP4_SSL("127.0.0.1", secure, ssl_context=client_context())
        assert "STARTTLS" not in s.capabilities and "AUTH=PLAIN" in s.capabilities
        assert s.login("alice", PASSWORDS["alice"])[0] == "OK"
        s.logout()

    async with running_gateway(gw, start="none"), imap_listener(gw) as server:
        plain = next(p for _, p, tls in server.addresses if not tls)
        secure = next(p for _, p, tls in server.addresses if tls)
        await asyncio.to_thread(clients, plain, secure)
