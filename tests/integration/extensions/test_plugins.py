"""Step-type plugins: the example ``hash`` plugin installed for real, a broken one reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from linkloom.flows import loading, plugins
from linkloom.flows.errors import SpecInvalid
from linkloom.flows.spec import FlowSpec

LOOM = [sys.executable, "-m", "linkloom"]


def _loom(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LOOM, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


@pytest.mark.slow  # CLI subprocesses
def test_plugins_command_lists_the_installed_hash_plugin(hash_plugin):
    result = _loom("plugins", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = {r["type"]: r for r in json.loads(result.stdout)}
    assert rows["hash"]["status"] == "loaded"
    assert rows["hash"]["package"] == "loom-hash-step"
    assert "algorithm" in rows["hash"]["fields"]


@pytest.mark.slow
def test_plugin_schema_and_validation_know_the_new_type(hash_plugin):
    schema = json.loads(_loom("schema").stdout)
    assert schema["properties"]["steps"]["items"]["discriminator"]["mapping"]["hash"]
    builtin = json.loads(_loom("schema", "--no-plugins").stdout)
    assert "HashStep" not in builtin["$defs"]
    ok = _loom("validate", str(hash_plugin / "flows" / "fingerprint.yaml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_plugin_config_model_validates_the_step_fields(hash_plugin):
    spec = loading.load_flow((hash_plugin / "flows" / "fingerprint.yaml").read_text())
    assert type(spec.step("digest")).__name__ == "HashStep"
    bad = {"id": "f", "steps": [{"id": "d", "type": "hash", "algorithm": "crc32", "value": 1}]}
    with pytest.raises(SpecInvalid):
        loading.load_flow(json.dumps(bad))


class _BrokenEntryPoint(SimpleNamespace):
    def load(self):
        raise ImportError("No module named 'missing_dependency'")


def test_a_plugin_that_fails_to_import_is_reported_and_harms_nothing(hash_plugin):
    good = plugins.report()
    try:
        broken = _BrokenEntryPoint(name="broken", value="broken_pkg:Executor", dist=None)
        not_an_executor = SimpleNamespace(
            name="odd", value="odd:Thing", dist=None, load=lambda: object
        )
        found = plugins.discover(entry_points=[broken, not_an_executor])
        errors = {f.name: f.error for f in found.failed}
        assert "missing_dependency" in errors["broken"]
        assert "type_name" in errors["odd"]
        # builtin and already installed types still validate
        FlowSpec.model_validate(
            {"id": "f", "steps": [{"id": "d", "type": "hash", "value": 1}, {
                "id": "t", "type": "transform", "template": 1}]}
        )  # fmt: skip
    finally:
        plugins._report = good
