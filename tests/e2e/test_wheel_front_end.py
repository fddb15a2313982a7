"""The wheel carries the built web editor: a wheel built from this checkout (the build hook
runs scripts/build-web) installs into a fresh virtualenv and serves the editor with no Node
and no source tree in sight."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.e2e.web_harness import ROOT, build_front_end

pytestmark = [pytest.mark.slow]

SERVE_CHECK = textwrap.dedent(
    """
    import pathlib, re, sys
    import linkloom
    from linkloom.web import assets
    where = linkloom.__file__
    assert "site-packages" in where and "{root}" not in where, where
    built = assets.editor()
    assert built.available, "the installed package has no built editor"
    from fastapi.testclient import TestClient
    from linkloom import config
    from linkloom.api.app import create_app
    settings = config.load_settings(
        home=pathlib.Path("home"),
        database={{"url": "sqlite+aiosqlite:///loom.db"}},
        server={{"auth": False, "run_scheduler": False}},
    )
    with TestClient(create_app(settings)) as client:
        page = client.get("/editor/new")
        assert page.status_code == 200, page.text
        script = re.search(r'src="(/static/editor/editor.js\\?v=[^"]+)"', page.text).group(1)
        js = client.get(script)
        assert js.status_code == 200 and len(js.content) > 100_000, js.status_code
        assert "immutable" in js.headers["cache-control"]
        assert client.get("/editor/schema").json()["title"] == "Link Loom flow spec"
    print("served", script)
    """
)


def test_wheel_carries_the_built_editor_and_serves_it_without_node(tmp_path: Path) -> None:
    build_front_end()
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = out.glob("linkloom-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "linkloom/web/static/editor/editor.js" in names
    assert "linkloom/web/static/editor/editor.css" in names
    assert not any(n.startswith("frontend/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # the server's dependencies come from this test's environment (no downloads); linkloom
    # itself only from the wheel, which the fresh site-packages puts first on the path
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work)}  # no node on this PATH is needed
    done = subprocess.run(
        [str(python), "-c", SERVE_CHECK.format(root=ROOT)],
        cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "served /static/editor/editor.js?v=0.1.0-" in done.stdout
    shutil.rmtree(ROOT / "build", ignore_errors=True)
