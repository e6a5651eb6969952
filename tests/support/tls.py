"""A self-signed test certificate (made by the ``openssl`` CLI) and client contexts trusting it.

For the peers that speak TLS (the test Postfix's STARTTLS) and for the gateway's own TLS
listeners.  An EC P-256 key: generated in a few milliseconds, unlike RSA.  The certificate names
``localhost``, ``mail.example.test`` and ``127.0.0.1`` so clients can verify the host name.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TestCertificate", "make_certificate"]


@dataclass(frozen=True)
class TestCertificate:
    cert: Path
    key: Path

    __test__ = False  # not a pytest test class, whatever its name

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate (host names checked)."""
        context = ssl.create_default_context(cafile=str(self.cert))
        return context


def make_certificate(directory: Path, common_name: str = "mail.example.test") -> TestCertificate:
    """Write ``cert.pem`` and ``key.pem`` (0600) into ``directory``; valid for two days."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is missing (apt-get install -y openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={common_name}",
         "-addext", f"subjectAltName=DNS:{common_name},DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    key.chmod(0o600)
    return TestCertificate(cert, key)
