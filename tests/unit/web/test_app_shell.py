"""The installable app's versioning: any change to a file of the shell gives a new version,
so a new server's service worker replaces the old shell; the worker and the pages carry it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from linkloom.web import assets


@pytest.fixture
def static(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "static"
    shutil.copytree(assets.STATIC, copy)
    monkeypatch.setattr(assets, "STATIC", copy)
    monkeypatch.setattr(assets, "EDITOR", copy / "editor")
    return copy


def test_shell_version_changes_with_any_file_of_the_shell(static: Path) -> None:
    first = assets.shell_version()
    assert first == assets.shell_version()  # stable while nothing changes
    assert first.startswith(assets.package_version() + "-")
    (static / "app.js").write_text((static / "app.js").read_text() + "\n// changed\n")
    second = assets.shell_version()
    assert second != first
    (static / "sw.js").write_text((static / "sw.js").read_text() + "\n// changed\n")
    assert assets.shell_version() not in (first, second)


def test_shell_files_are_versioned_urls_stylesheet_and_script_first(static: Path) -> None:
    version = assets.shell_version()
    files = assets.shell_files()
    assert files[:2] == [f"/static/app.css?v={version}", f"/static/app.js?v={version}"]
    assert all(f.endswith(f"?v={version}") for f in files)
    assert {f.split("?")[0].rsplit("/", 1)[-1] for f in files[2:]} == set(assets.ICONS)
