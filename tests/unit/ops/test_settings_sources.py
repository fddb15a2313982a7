from __future__ import annotations

from pathlib import Path

import pytest

from linkloom import config, wiring
from linkloom.cli import settings as cli_settings

ROOT = Path(__file__).parents[3]


def test_settings_read_a_toml_file_named_by_loom_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "loom.toml"
    path.write_text('mode = "development"\n[engine]\nconcurrency = 5\nlease_seconds = 9.5\n')
    monkeypatch.setenv("LOOM_CONFIG_FILE", str(path))
    settings = config.load_settings()
    assert settings.engine.concurrency == 5
    assert settings.engine.lease_seconds == 9.5
    assert settings.engine.poll_interval == 1.0  # untouched defaults survive


def test_settings_environment_wins_over_the_file_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "loom.yaml"
    path.write_text("engine:\n  concurrency: 5\n  per_host_limit: 3\nsecrets:\n  crm: from-file\n")
    monkeypatch.setenv("LOOM_ENGINE__CONCURRENCY", "11")
    settings = config.load_settings(config_file=path)
    assert settings.engine.concurrency == 11
    assert settings.engine.per_host_limit == 3
    assert settings.secrets["crm"].get_secret_value() == "from-file"


def test_settings_keyword_overrides_win_over_everything(tmp_path: Path) -> None:
    path = tmp_path / "loom.json"
    path.write_text('{"server": {"port": 9000}}')
    assert config.load_settings(config_file=path, server={"port": 9100}).server.port == 9100


def test_settings_missing_or_unsupported_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigFileNotFound, match=r"nope\.toml not found"):
        config.load_settings(config_file=tmp_path / "nope.toml")
    ini = tmp_path / "loom.ini"
    ini.write_text("[engine]\n")
    with pytest.raises(config.ConfigFileUnsupported, match=r"\.toml, \.yaml"):
        config.load_settings(config_file=ini)


def test_settings_invalid_values_name_the_variable_and_production_rules() -> None:
    with pytest.raises(config.SettingsInvalid, match="LOOM_ENGINE__CONCURRENCY"):
        config.load_settings(engine={"concurrency": 0})
    with pytest.raises(config.SettingsInvalid, match="LOOM_SECURITY__SIGNING_KEY"):
        config.load_settings(mode="production")
    with pytest.raises(config.SettingsInvalid, match="PostgreSQL"):
        config.load_settings(mode="production", security={"signing_key": "k" * 32})


def test_settings_verification_keys_current_first() -> None:
    settings = config.load_settings(
        security={"signing_key": "new-key", "previous_signing_keys": ["old-key"]}
    )
    assert settings.verification_keys == ["new-key", "old-key"]


def test_settings_every_setting_has_a_description() -> None:
    rows = [row for _, group in cli_settings.setting_docs() for row in group]
    assert len(rows) > 40
    assert all(row.description for row in rows)


def test_settings_committed_configuration_doc_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == cli_settings.render_reference(), "run ./scripts/gen-config-docs"


def test_a_secrets_name_keeps_its_case_from_the_environment_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "loom.yaml"
    path.write_text("secrets:\n  FromFile: f\n  MyToken: overridden\n")
    monkeypatch.setenv("LOOM_SECRETS__MyToken", "env-value")
    monkeypatch.setenv("LOOM_SECRETS__OPENAI_API_KEY", "k")
    monkeypatch.setenv("loom_engine__concurrency", "6")  # other settings: any case
    settings = config.load_settings(config_file=path)
    values = {name: value.get_secret_value() for name, value in settings.secrets.items()}
    assert values == {"MyToken": "env-value", "OPENAI_API_KEY": "k", "FromFile": "f"}
    assert settings.engine.concurrency == 6
    assert wiring.spec_policy(settings).secret_names == {"MyToken", "OPENAI_API_KEY", "FromFile"}
