"""``imapgate demo --store-url``: the demo's config puts the gateway's state into PostgreSQL,
the password in a file of its own (never in the config the demo prints the path of)."""

from __future__ import annotations

from pathlib import Path

from imapgate.config import load
from imapgate.runner import _Created, _demo_config


def test_demo_on_postgresql_writes_url_and_password_file(tmp_path: Path) -> None:
    created = _Created()
    cfg = _demo_config(tmp_path, 10143, 1143, created, 8080, "postgresql://gw:S3c%40ret@db.example:5432/demo")
    text = cfg.read_text()
    assert 'url = "postgresql://gw@db.example:5432/demo"' in text and "S3c" not in text
    assert (tmp_path / "store.password").read_text() == "S3c@ret\n"
    loaded = load(cfg)
    assert loaded.store.url == "postgresql://gw:S3c%40ret@db.example:5432/demo"


def test_demo_default_stays_sqlite(tmp_path: Path) -> None:
    cfg = _demo_config(tmp_path, 10143, 1143, _Created(), 8080)
    assert load(cfg).store.url.startswith("sqlite:///")
