from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from linkloom.cli import settings as cli_settings
from linkloom.cli.apps import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("LOOM_SERVER_URL", raising=False)
    monkeypatch.delenv("LOOM_TOKEN", raising=False)
    return tmp_path / "xdg"


def test_cli_config_defaults_without_file() -> None:
    assert cli_settings.cli_config() == cli_settings.CliConfig(
        server_url="http://127.0.0.1:8080", token=None
    )


def test_cli_config_set_get_roundtrip_private_file(config_home: Path) -> None:
    set_url = runner.invoke(app, ["config", "set", "server-url", "https://loom.example/"])
    assert set_url.exit_code == 0
    assert runner.invoke(app, ["config", "set", "token", "llt_0123456789abcdef"]).exit_code == 0

    path = config_home / "linkloom" / "cli.json"
    assert json.loads(path.read_text()) == {
        "server_url": "https://loom.example",
        "token": "llt_0123456789abcdef",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert runner.invoke(app, ["config", "get", "server-url"]).stdout.strip() == (
        "https://loom.example"
    )
    masked = runner.invoke(app, ["config", "get", "token"]).stdout
    assert "0123456789abcdef" not in masked
    revealed = runner.invoke(app, ["config", "get", "token", "--reveal"]).stdout.strip()
    assert revealed == "llt_0123456789abcdef"
    assert cli_settings.cli_config().token == "llt_0123456789abcdef"


def test_cli_config_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    cli_settings.save_cli_config(server_url="http://file:1", token="file-token")
    monkeypatch.setenv("LOOM_SERVER_URL", "http://env:2/")
    monkeypatch.setenv("LOOM_TOKEN", "env-token")
    assert cli_settings.cli_config() == cli_settings.CliConfig(
        server_url="http://env:2", token="env-token"
    )


def test_cli_config_unset_keeps_other_values() -> None:
    cli_settings.save_cli_config(server_url="http://a:1", token="t-1234")
    assert runner.invoke(app, ["config", "unset", "token"]).exit_code == 0
    assert cli_settings.cli_config() == cli_settings.CliConfig(server_url="http://a:1", token=None)


def test_cli_config_rejects_unknown_key_and_bad_url() -> None:
    with pytest.raises(cli_settings.UnknownCliKey, match="use 'server-url' or 'token'"):
        runner.invoke(app, ["config", "set", "colour", "red"], catch_exceptions=False)
    with pytest.raises(cli_settings.BadServerUrl):
        cli_settings.save_cli_config(server_url="loom.example")


def test_cli_config_unreadable_file_names_the_path(config_home: Path) -> None:
    path = config_home / "linkloom" / "cli.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(cli_settings.CliConfigUnreadable, match=str(path)):
        cli_settings.cli_config()


def test_config_show_masks_secrets_yaml_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_SECURITY__SIGNING_KEY", "very-secret-signing-key")
    monkeypatch.setenv("LOOM_SECRETS__CRM_TOKEN", "crm-secret-value")
    monkeypatch.setenv("LOOM_DATABASE__URL", "postgresql+psycopg://loom:db-pw-1@db:5432/loom")
    monkeypatch.setenv("LOOM_ENGINE__CONCURRENCY", "7")

    as_yaml = runner.invoke(app, ["config", "show"])
    as_json = runner.invoke(app, ["config", "show", "--output", "json"])
    for result in (as_yaml, as_json):
        assert result.exit_code == 0, result.output
        for secret in ("very-secret-signing-key", "crm-secret-value", "db-pw-1"):
            assert secret not in result.stdout
    data = json.loads(as_json.stdout)
    assert yaml.safe_load(as_yaml.stdout) == data
    assert data["engine"]["concurrency"] == 7
    assert data["security"]["signing_key"] == "***"
    assert data["secrets"] == {"CRM_TOKEN": "***"}  # a secret's name keeps its case
    assert data["database"]["url"] == "postgresql+psycopg://loom:***@db:5432/loom"


def test_config_show_reports_invalid_settings_as_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_ENGINE__CONCURRENCY", "zero")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code != 0
    assert "LOOM_ENGINE__CONCURRENCY" in str(result.exception)
