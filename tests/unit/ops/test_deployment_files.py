"""The Dockerfile and docker-compose.yml say what docs/operations.md says they do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from linkloom.cli import settings as cli_settings

ROOT = Path(__file__).parents[3]
LOOM_SERVICES = ("migrate", "api", "scheduler", "worker", "sandbox-image")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _instructions() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile_base_image_is_a_build_argument() -> None:
    lines = _instructions()
    assert lines[0].startswith("ARG BASE_IMAGE=")
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms
    assert all(line.split()[1] == "${BASE_IMAGE}" for line in froms)
    assert 'ENTRYPOINT ["loom"]' in lines
    assert any(line.startswith("RUN ") and "install" in line and " git " in line for line in lines)
    assert any(line.startswith("USER ") and not line.startswith("USER root") for line in lines)
    assert any(line.startswith("HEALTHCHECK") and "/healthz" in line for line in lines)


def test_compose_runs_postgres_api_one_scheduler_two_workers_and_the_sandbox_image() -> None:
    services = _compose()["services"]
    assert services["postgres"]["image"].endswith("postgres:16}")
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["api"]["command"] == ["server"]
    assert services["api"]["environment"]["LOOM_SERVER__RUN_WORKERS"] == "false"
    assert services["api"]["environment"]["LOOM_SERVER__RUN_SCHEDULER"] == "false"
    assert services["scheduler"]["command"] == ["scheduler"]
    assert services["scheduler"].get("deploy", {}).get("replicas", 1) == 1
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["sandbox-image"]["command"] == ["sandbox", "build-image"]


def test_compose_loom_services_use_production_postgres_and_known_settings() -> None:
    known = {row.env for _, rows in cli_settings.setting_docs() for row in rows}
    for name in LOOM_SERVICES:
        env = _compose()["services"][name]["environment"]
        assert env["LOOM_MODE"] == "production", name
        assert env["LOOM_DATABASE__URL"].startswith("postgresql+psycopg://"), name
        for variable in env:
            assert variable in known, f"{name}: {variable} is not a setting"


def test_compose_secrets_come_from_the_environment_not_the_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"LOOM_SECURITY__SIGNING_KEY: \$\{LOOM_SIGNING_KEY:\?", text)
    assert re.search(r"POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:\?", text)


def test_operations_guide_names_only_real_settings() -> None:
    """Every LOOM_* variable docs/operations.md mentions is a setting or a documented extra."""
    known = {row.env for _, rows in cli_settings.setting_docs() for row in rows}
    outside_settings = {
        "LOOM_SERVER_URL",  # CLI client (loom config)
        "LOOM_TOKEN",
        "LOOM_SIGNING_KEY",  # docker-compose.yml variables
        "LOOM_PUBLIC_URL",
        "LOOM_DATA_DIR",
    }
    text = (ROOT / "docs" / "operations.md").read_text()
    named = set(re.findall(r"LOOM_[A-Z0-9_]*[A-Z0-9]", text)) - {"LOOM_SECRETS"}
    unknown = sorted(named - known - outside_settings)
    assert not unknown, f"docs/operations.md names variables that are not settings: {unknown}"
