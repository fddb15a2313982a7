"""``loom db upgrade`` and ``loom db current`` on a fresh SQLite file."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from linkloom.cli.main import app
from linkloom.store import session


def test_loom_db_upgrade_then_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    before = runner.invoke(app, ["db", "current", "--url", url])
    assert before.exit_code == 0, before.output
    assert "current: none" in before.output
    assert "needs 'loom db upgrade'" in before.output
    done = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert done.exit_code == 0, done.output
    head = session.head_revision()
    assert f"database at revision {head}" in done.output
    after = runner.invoke(app, ["db", "current", "--url", url])
    assert "up to date" in after.output
