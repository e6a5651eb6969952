"""Self-signed test certificates (made by the ``openssl`` command line) and client
contexts trusting them.

For the peers that speak TLS (the test Postfix's STARTTLS), for the gateway's own TLS
listeners, and for the start-up and ``imapgate check`` tests, which need certificates
with a chosen lifetime, host names and key type.  EC P-256 keys by default: generated in
a few milliseconds, unlike RSA.  ``CA:TRUE`` lets a client use the certificate itself as
its trust anchor.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TestCertificate", "make_certificate"]


@dataclass(frozen=True)
class TestCertificate:
    cert: Path
    key: Path

    __test__ = False  # not a pytest test class, whatever its name

    def __iter__(self) -> Iterator[Path]:
        """``cert, key = make_certificate(...)``."""
        return iter((self.cert, self.key))

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate (host names checked)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_certificate(
    directory: Path,
    common_name: str = "mail.example.test",
    *,
    name: str = "cert",
    days: int = 365,
    san: tuple[str, ...] | None = None,
    key_type: str = "ec",
) -> TestCertificate:
    """Write ``<name>.pem`` and ``<name>.key`` (0600) into ``directory``.

    ``san`` defaults to the common name, ``localhost`` and ``127.0.0.1``; ``key_type``
    is ``"ec"`` or ``"rsa"``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is missing (apt-get install -y openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    if key_type == "ec":
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    else:
        newkey = ["-newkey", "rsa:2048"]
    names = san if san is not None else (f"DNS:{common_name}", "DNS:localhost", "IP:127.0.0.1")
    args = [openssl, "req", "-x509", *newkey, "-nodes", "-days", str(days), "-subj", f"/CN={common_name}"]
    if names:
        args += ["-addext", "subjectAltName=" + ",".join(names)]
    args += ["-addext", "basicConstraints=critical,CA:TRUE", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return TestCertificate(cert, key)
