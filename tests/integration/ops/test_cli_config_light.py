"""The CLI's own configuration works on a client-only install (no server extra)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERVER_ONLY = (
    "pydantic_settings",
    "structlog",
    "prometheus_client",
    "fastapi",
    "sqlalchemy",
    "uvicorn",
    "alembic",
)


def test_cli_config_without_server_packages(tmp_path: Path) -> None:
    code = f"""
import sys
for name in {SERVER_ONLY!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
from typer.testing import CliRunner
from linkloom.cli import settings
from linkloom.cli.apps import app
runner = CliRunner()
assert runner.invoke(app, ["config", "set", "server-url", "http://loom:8080"]).exit_code == 0
assert runner.invoke(app, ["config", "set", "token", "tok-secret-1234567"]).exit_code == 0
assert settings.cli_config() == settings.CliConfig(
    server_url="http://loom:8080", token="tok-secret-1234567"
)
print("ok")
"""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("LOOM_SERVER_URL", None)
    env.pop("LOOM_TOKEN", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert (tmp_path / "linkloom" / "cli.json").is_file()
