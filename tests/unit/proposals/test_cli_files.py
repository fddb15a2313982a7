"""``loom proposal open FILES``: which repo path each edited file is committed at."""

from __future__ import annotations

from pathlib import Path

from linkloom.cli.proposals import repo_files


def test_cli_files_in_a_checkout_keep_their_repo_path(tmp_path: Path) -> None:
    checkout = tmp_path / "flows" / "work" / "flows" / "daily-report"
    (checkout / "fixtures").mkdir(parents=True)
    (checkout / "flow.yaml").write_text("id: daily-report\n")
    (checkout / "fixtures" / "empty.yaml").write_text("name: empty\n")
    loose = tmp_path / "spec.yaml"
    loose.write_text("id: other\n")
    body = repo_files([checkout / "flow.yaml", checkout / "fixtures" / "empty.yaml", loose])
    assert body["files"] == {
        "flows/daily-report/flow.yaml": "id: daily-report\n",
        "flows/daily-report/fixtures/empty.yaml": "name: empty\n",
    }
    assert body["specs"] == ["id: other\n"]
