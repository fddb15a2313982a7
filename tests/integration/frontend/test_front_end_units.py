"""The front-end's own unit tests (vitest, in frontend/src/**/*.test.ts): spec ↔ graph
conversion that keeps every field, key order and comment, minimal YAML diffs, cycle checks,
the layout's stability, the placing of validation problems."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.e2e.web_harness import ROOT, build_front_end

pytestmark = [pytest.mark.slow]


def test_front_end_unit_tests_pass_in_vitest() -> None:
    build_front_end()  # npm ci from the lock file when needed
    done = subprocess.run(
        ["npx", "--no-install", "vitest", "run", "--reporter=verbose", "--color=false"],
        cwd=ROOT / "frontend",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": os.environ["PATH"], "CI": "true", "NO_COLOR": "1"},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    counts = re.search(r"Tests\s+(\d+) passed", output)
    assert counts, output
    assert int(counts.group(1)) >= 20, output  # the suite is there, not an empty run
    assert not re.search(r"\d+ failed", output), output
