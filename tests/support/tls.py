"""Test certificates made by the openssl command line."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certificate(
    directory: Path,
    *,
    name: str = "cert",
    days: int = 365,
    cn: str = "localhost",
    san: tuple[str, ...] = ("DNS:localhost", "IP:127.0.0.1"),
    key_type: str = "ec",
) -> tuple[Path, Path]:
    """A self-signed certificate and its unencrypted key: ``name.pem``, ``name.key``."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    if key_type == "ec":
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    else:
        newkey = ["-newkey", "rsa:2048"]
    args = ["openssl", "req", "-x509", *newkey, "-nodes", "-days", str(days), "-subj", f"/CN={cn}"]
    if san:
        args += ["-addext", "subjectAltName=" + ",".join(san)]
    subprocess.run([*args, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key
