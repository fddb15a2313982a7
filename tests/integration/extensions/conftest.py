"""The example plugin (examples/plugin) installed into the running interpreter's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.plugins import install_example_plugin


@pytest.fixture(scope="session")
def hash_plugin() -> Path:
    """``pip install -e examples/plugin`` once (see ``tests.support.plugins``)."""
    return install_example_plugin()
