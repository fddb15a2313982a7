"""The example step-type plugin (examples/plugin, step type ``hash``) installed into the
running interpreter's environment, for the tests that need a plugin (the engine's, the editor's
palette)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "examples" / "plugin"


def install_example_plugin() -> Path:
    """``pip install -e examples/plugin`` once (skipped when already installed); the running
    process sees it too (its source directory on sys.path, entry points re-discovered), and so
    do servers started from this interpreter."""
    try:
        importlib.metadata.distribution("loom-hash-step")
    except importlib.metadata.PackageNotFoundError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
             "-e", str(PLUGIN_DIR)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    if str(PLUGIN_DIR) not in sys.path:
        sys.path.append(str(PLUGIN_DIR))
    from linkloom.flows import plugins, spec  # noqa: F401 (spec: importing it discovers them)

    report = plugins.report()
    if not any(p.type_name == "hash" for p in report.loaded):
        report = plugins.discover()
    assert any(p.type_name == "hash" for p in report.loaded), report
    return PLUGIN_DIR
