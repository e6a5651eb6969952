"""Running the ``imapgate`` command as an operator does: a real subprocess,
a config file written into a temp folder, and the checks every failure must
pass (one line on stderr, ``imapgate: error: ...``, no traceback, exit status)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import Result

from imapgate.demo.dovecot import find_free_port

IMAPGATE = [sys.executable, "-m", "imapgate.cli"]
UPSTREAM_PASSWORD = "shared-secret"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    tmp_path: Path,
    *,
    upstream_port: int,
    listen_port: int | None = None,
    password: str = UPSTREAM_PASSWORD,
    upstream: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    extra: str = "",
) -> Path:
    """``tmp_path/imapgate.toml`` for an upstream on 127.0.0.1 without TLS (the
    password in ``upstream.pw``, mode 0600) and a gateway on ``listen_port``."""
    pw = tmp_path / "upstream.pw"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    up: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": upstream_port,
        "tls": "none",
        "user": "shared",
        "password_file": "upstream.pw",
    }
    up.update(upstream or {})
    sv: dict[str, Any] = {"listen": [f"127.0.0.1:{listen_port or free_port()}"], "allow_plaintext": True}
    sv.update(server or {})
    lines = ["[upstream]", *(f"{k} = {toml_value(v)}" for k, v in up.items())]
    lines += ["", "[server]", *(f"{k} = {toml_value(v)}" for k, v in sv.items())]
    cfg = tmp_path / "imapgate.toml"
    cfg.write_text("\n".join(lines) + "\n" + extra)
    return cfg


def invoked_ok(result: Result) -> list[str]:
    """The output lines of an in-process ``CliRunner`` run that succeeded."""
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def invoked_error(result: Result) -> str:
    """The one error line of an in-process run that failed (exit status 1), without
    its ``imapgate: error: `` prefix."""
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("imapgate: error: "), lines
    return lines[0].removeprefix("imapgate: error: ")


def free_port() -> int:
    """A free port outside the ephemeral range (``find_free_port`` says why)."""
    return find_free_port()


def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    return free_port()


def env_for(cfg: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "IMAPGATE_CONFIG"}
    if cfg is not None:
        env["IMAPGATE_CONFIG"] = str(cfg)
    return env


def node_configs(
    tmp_path: Path, *, upstream_port: int, store_url: str, upstream: Mapping[str, Any] | None = None
) -> tuple[tuple[int, int], list[Path]]:
    """Two nodes' configs (``tmp_path/a``, ``tmp_path/b``) on one store: their ports and files."""
    store = f'\n[store]\nurl = "{store_url}"\n'
    ports = (free_port(), free_port())
    cfgs = []
    for name, port in zip(("a", "b"), ports, strict=True):
        (tmp_path / name).mkdir()
        cfgs.append(
            write_config(
                tmp_path / name, upstream_port=upstream_port, listen_port=port, upstream=upstream, extra=store
            )
        )
    return ports, cfgs


def run(
    *args: str,
    cfg: Path | None = None,
    input: str | None = None,
    timeout: float = 120,
    prefix: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), *IMAPGATE, *args],
        env=env_for(cfg),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *parts: str, code: int = 1) -> str:
    """The command failed with ``code`` and said so in one ``imapgate: error:``
    line (log lines before it are allowed for ``serve``); no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("imapgate: error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1] == errors[0], proc.stderr
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


@contextmanager
def serving(cfg: Path, log: Path, *args: str, port: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``imapgate serve`` in the background (stderr to ``log``), stopped by SIGTERM."""
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [*IMAPGATE, "serve", *args], env=env_for(cfg), stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        if port is not None:
            deadline = time.monotonic() + 60
            while True:
                try:
                    wait_port(port, timeout=0.5)
                    break
                except TimeoutError:
                    assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
