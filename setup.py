"""Build hook: a wheel of Link Loom carries the web UI's built front-end (the visual editor),
so ``pip install linkloom[server]`` never needs Node.

Building a wheel from a source checkout runs ``scripts/build-web`` (npm, from the committed
lock file; skipped when up to date). A wheel built from an sdist uses the files the sdist
carries. Editable installs (``pip install -e .``) skip the hook: ``scripts/start`` and the
tests build the front-end themselves. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUILT = ROOT / "linkloom" / "web" / "static" / "editor" / "editor.js"


class BuildWithFrontEnd(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            if (ROOT / "frontend" / "package.json").is_file():
                subprocess.run(["bash", str(ROOT / "scripts" / "build-web")], check=True)
            if not BUILT.is_file():
                raise SystemExit(
                    "the web editor is not built (linkloom/web/static/editor/editor.js): "
                    "run scripts/build-web, which needs Node.js 20+ and npm"
                )
        super().run()


setup(cmdclass={"build_py": BuildWithFrontEnd})
