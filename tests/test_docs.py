"""The documentation is true: every TOML block in README.md and docs/ loads
(absolute paths are moved under a temp folder, password files created), the
systemd unit shown in docs/deployment.md is the shipped file and systemd
accepts it, the licence is what pyproject says, shell completion works.

A block that is deliberately only part of a file is marked with a
``<!-- partial ... -->`` comment on the line before it (keep that rare)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from imapgate.config import from_dict
from tests.support.cli import IMAPGATE

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n[ ]*```(?P<lang>\w*)\n(?P<body>.*?)\n[ ]*```", re.S)
_PATH_KEYS = {"password_file", "certificate", "private_key", "data_dir"}


def blocks(lang: str) -> list[tuple[str, str, bool]]:
    """(where, text, partial) of every ``lang`` block."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in _BLOCK.finditer(text):
            if m.group("lang") == lang:
                line = text.count("\n", 0, m.start("body"))
                body = "\n".join(x[3:] if x.startswith("   ") else x for x in m.group("body").splitlines())
                partial = m.group("before").strip().startswith("<!-- partial")
                out.append((f"{doc.relative_to(ROOT)}:{line}", body, partial))
    return out


TOML_BLOCKS = blocks("toml")


def test_there_are_blocks_to_test() -> None:
    assert len([b for b in TOML_BLOCKS if not b[2]]) >= 5
    assert len([b for b in TOML_BLOCKS if b[2]]) <= 2  # partial blocks stay rare


def _relocate(data: Any, tmp: Path) -> Any:
    """Absolute paths of the example (``/etc/imapgate/...``) moved under ``tmp``."""
    if isinstance(data, dict):
        return {
            k: (str(tmp / v.lstrip("/")) if k in _PATH_KEYS and isinstance(v, str) and v.startswith("/") else
                _relocate(v, tmp))
            for k, v in data.items()
        }
    return data


@pytest.mark.parametrize(("where", "text"), [(w, t) for w, t, partial in TOML_BLOCKS if not partial])
def test_documented_config_loads(tmp_path: Path, where: str, text: str) -> None:
    data = _relocate(tomllib.loads(text), tmp_path)
    pf = data.get("upstream", {}).get("password_file")
    if pf:
        path = Path(pf) if os.path.isabs(pf) else tmp_path / pf
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret\n")
        path.chmod(0o600)
    cfg = from_dict(data, base_dir=tmp_path)
    assert cfg.upstream.host and cfg.warnings == (), where


def test_deployment_shows_the_shipped_unit() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    shown = [m.group("body") + "\n" for m in _BLOCK.finditer(text) if m.group("lang") == "ini"]
    unit = (ROOT / "contrib" / "imapgate.service").read_text(encoding="utf-8")
    assert shown == [unit]
    for directive in (
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "RestartPreventExitStatus=78",
        "Environment=IMAPGATE_CONFIG=/etc/imapgate/imapgate.toml",
        "ExecStart=/opt/imapgate/bin/imapgate serve",
    ):
        assert re.search(rf"^{re.escape(directive)}$", unit, re.M), directive


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian package systemd) is needed to check the unit"
    imapgate = shutil.which("imapgate", path=str(Path(sys.executable).parent)) or "/bin/true"
    unit = (ROOT / "contrib" / "imapgate.service").read_text(encoding="utf-8")
    copy = tmp_path / "imapgate.service"
    copy.write_text(unit.replace("/opt/imapgate/bin/imapgate", imapgate))
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # Unknown or misspelt directives are reported (and otherwise silently ignored).
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_license_matches_pyproject() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_shell_completion_as_documented() -> None:
    env = {**os.environ, "_IMAPGATE_COMPLETE": "bash_source"}
    script = subprocess.run(IMAPGATE, env=env, capture_output=True, text=True, timeout=60)
    assert "_imapgate_completion()" in script.stdout, script.stderr
    env = {
        **os.environ,
        "_IMAPGATE_COMPLETE": "bash_complete",
        "COMP_WORDS": "imapgate folder set INBOX --seen ",
        "COMP_CWORD": "5",
    }
    choices = subprocess.run(IMAPGATE, env=env, capture_output=True, text=True, timeout=60)
    assert choices.stdout.split() == ["plain,private", "plain,shared", "plain,default"]
