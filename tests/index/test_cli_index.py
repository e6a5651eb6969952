"""``imapgate index status`` / ``index rebuild`` and the lines for ``imapgate check``,
beside a running gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from imapgate.cli import main
from imapgate.demo import SampleMessage
from imapgate.index import indexer
from imapgate.index.report import index_report
from imapgate.store.engine import LOCAL_FILE, open_engine
from tests.conftest import DovecotFactory
from tests.support.gateway import GatewayHarness
from tests.support.postgres import PostgresDatabase
from tests.support.search_corpus import generated

pytestmark = pytest.mark.integration


def _config(path: Path, port: int, data: Path, *, store_url: str = "") -> Path:
    cfg = path / "imapgate.toml"
    url = f'url = "{store_url}"\n' if store_url else ""
    cfg.write_text(
        f'[upstream]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\nuser = "shared"\n'
        f'password = "shared-secret"\n[server]\nallow_plaintext = true\n[store]\ndata_dir = "{data}"\n' + url
    )
    return cfg


def test_status_and_rebuild(
    fresh_dovecot: DovecotFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer, "RECHECK_SECONDS", 0.5)
    dc = fresh_dovecot(
        folders={
            "INBOX": [SampleMessage(r) for r in generated(30, seed=2)],
            "Archive": [SampleMessage(r) for r in generated(10, seed=4)],
        }
    )
    data = tmp_path / "gw"
    cfg = _config(tmp_path, dc.port, data)
    runner = CliRunner()
    with GatewayHarness(upstream_port=dc.port, data_dir=data) as gw:
        index = gw.gw.index
        assert index is not None
        gw.wait_for(index.complete, timeout=60, what="indexing")
        out = runner.invoke(main, ["--config", str(cfg), "index", "status"])
        assert out.exit_code == 0, out.output
        inbox = next(line for line in out.output.splitlines() if line.startswith("INBOX"))
        assert "30/30" in inbox and inbox.rstrip().endswith("done"), out.output
        assert "40 of 40 messages indexed" in out.output
        lines = index_report(open_engine(gw.config.store.url))
        assert "40 of 40 messages indexed (100%)" in lines[1] and "MB on disk" in lines[0], lines

        out = runner.invoke(main, ["--config", str(cfg), "index", "rebuild", "INBOX"])
        assert out.exit_code == 0 and "will be rebuilt" in out.output, out.output
        status = runner.invoke(main, ["--config", str(cfg), "index", "status"]).output
        assert any(ln.startswith("INBOX") and " 0/30" in ln for ln in status.splitlines()), status
        before = index.indexed
        gw.wait_for(lambda: index.complete() and index.indexed >= before + 30, timeout=60, what="the rebuild")
        status = runner.invoke(main, ["--config", str(cfg), "index", "status"]).output
        assert "40 of 40 messages indexed" in status, status
        # The old generation's rows are purged, the new one holds each message once.
        gw.wait_for(lambda: index.store.sizes()["docs"] == 40, timeout=30, what="the purge")

    out = runner.invoke(main, ["--config", str(cfg), "index", "rebuild", "Nope"])
    assert out.exit_code != 0 and "no folder 'Nope'" in out.output


@pytest.mark.slow
def test_status_and_rebuild_of_a_postgresql_node(
    fresh_dovecot: DovecotFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_db: PostgresDatabase,
) -> None:
    """Beside a PostgreSQL store the commands read and retire this node's own index (its
    data_dir's node-cache.sqlite3): folders and counts from PostgreSQL, coverage from the file.
    Before any gateway ran on the node they report nothing indexed and create no file."""
    monkeypatch.setattr(indexer, "RECHECK_SECONDS", 0.5)
    dc = fresh_dovecot(folders={"INBOX": [SampleMessage(r) for r in generated(25, seed=6)]})
    data = tmp_path / "gw"
    cfg = _config(tmp_path, dc.port, data, store_url=postgres_db.url)
    runner = CliRunner()
    local = data / LOCAL_FILE
    out = runner.invoke(main, ["--config", str(cfg), "index", "status"])
    assert out.exit_code == 0 and "no folders yet" in out.output, out.output
    out = runner.invoke(main, ["--config", str(cfg), "index", "rebuild"])
    assert out.exit_code == 0 and "0 folders" in out.output, out.output
    assert not local.exists()
    with GatewayHarness(upstream_port=dc.port, data_dir=data, store={"url": postgres_db.url}) as gw:
        index = gw.gw.index
        assert index is not None
        gw.wait_for(index.complete, timeout=60, what="indexing")
        assert local.exists()
        out = runner.invoke(main, ["--config", str(cfg), "index", "status"])
        assert out.exit_code == 0, out.output
        inbox = next(line for line in out.output.splitlines() if line.startswith("INBOX"))
        assert "25/25" in inbox and inbox.rstrip().endswith("done"), out.output
        out = runner.invoke(main, ["--config", str(cfg), "index", "rebuild", "INBOX"])
        assert out.exit_code == 0 and "will be rebuilt" in out.output, out.output
        status = runner.invoke(main, ["--config", str(cfg), "index", "status"]).output
        assert any(ln.startswith("INBOX") and " 0/25" in ln for ln in status.splitlines()), status
        before = index.indexed
        gw.wait_for(lambda: index.complete() and index.indexed >= before + 25, timeout=60, what="the rebuild")
        status = runner.invoke(main, ["--config", str(cfg), "index", "status"]).output
        assert "25 of 25 messages indexed" in status, status
