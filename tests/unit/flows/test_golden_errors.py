"""Golden tests: each kind of spec error, reported at its exact line and column.

Each ``tests/fixtures/specs/errors/<name>.<ext>`` has a ``<name>.expected`` holding what
``loom validate`` prints for it. A first line ``# policy: ...`` sets the operator policy.
Regenerate after a deliberate change with ``LOOM_TEST_UPDATE_GOLDEN=1 pytest -k golden`` and
review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from linkloom.flows.loading import check_flow
from linkloom.flows.models import Policy

ERRORS = Path(__file__).parents[2] / "fixtures" / "specs" / "errors"
CASES = sorted(p for p in ERRORS.iterdir() if p.suffix in (".yaml", ".json"))


def _policy(text: bytes) -> Policy | None:
    first = text.split(b"\n", 1)[0].decode("utf-8", "replace")
    if not first.startswith("# policy:"):
        return None
    words = first.removeprefix("# policy:").split()
    hosts = [w.split("=", 1)[1] for w in words if w.startswith("allowed_hosts=")]
    return Policy(
        allowed_hosts=hosts,
        require_timeout="require_timeout" in words,
        require_retry="require_retry" in words,
        shell_enabled="no_shell" not in words,
    )


def _report(path: Path) -> str:
    data = path.read_bytes()
    result = check_flow(data, filename=path.name, policy=_policy(data))
    return "".join(problem.format() + "\n" for problem in result.problems)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_golden_error_report(path):
    expected_file = path.with_suffix(".expected")
    actual = _report(path)
    if os.environ.get("LOOM_TEST_UPDATE_GOLDEN") == "1":
        expected_file.write_text(actual)
    assert actual, "every golden case must report at least one problem"
    assert actual == expected_file.read_text()


def test_golden_cases_cover_every_error_kind():
    codes = set()
    for path in CASES:
        data = path.read_bytes()
        codes |= {
            p.code for p in check_flow(data, filename=path.name, policy=_policy(data)).problems
        }
    assert codes >= {
        "unknown-field",
        "schema",
        "missing-field",
        "duplicate-step-id",
        "unknown-step",
        "cycle",
        "template-syntax",
        "unknown-input",
        "unknown-output",
        "not-upstream",
        "unknown-reference",
        "invalid-cron",
        "invalid-timezone",
        "unknown-step-type",
        "invalid-url",
        "invalid-value",
        "unreachable",
        "unused-input",
        "unused-output",
        "yaml-syntax",
        "duplicate-key",
        "json-syntax",
        "encoding",
        "not-a-mapping",
        "policy-host",
        "policy-timeout",
        "policy-retry",
        "policy-shell",
    }
