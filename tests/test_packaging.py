"""What ships: ``python -m build`` makes a wheel that installs into a clean
virtual environment (dependencies from the package index) and runs — the
command, the database migrations inside it, the licence in its metadata."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

_NOT_SOURCES = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", "*.pyc",
)


@pytest.mark.timeout(900)
def test_wheel_builds_installs_and_runs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCES)  # the checkout stays untouched
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    log = built.stdout + built.stderr
    assert "deprecated" not in log.lower(), log[-3000:]  # e.g. the project.license table form
    (wheel,) = (tmp_path / "dist").glob("imapgate-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "imapgate/store/migrations/env.py" in names
    assert any(n.startswith("imapgate/store/migrations/versions/0001") for n in names)
    assert "imapgate/py.typed" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    version = subprocess.run(
        [str(venv / "bin" / "imapgate"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("imapgate, version "), version
    # The installed copy (not this checkout) runs, migrations included.
    cfg = tmp_path / "imapgate.toml"
    cfg.write_text('[upstream]\nhost = "h"\nuser = "u"\n[server]\nallow_plaintext = true\n')
    users = subprocess.run(
        [str(venv / "bin" / "imapgate"), "--config", str(cfg), "user", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert users.returncode == 0 and "no users yet" in users.stdout, users
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import imapgate; print(imapgate.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert where.stdout.startswith(str(venv)), where
