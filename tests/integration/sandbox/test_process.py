"""The process backend: a real subprocess with OS limits and no network."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sandbox_helpers import FAKE_ENGINE_ENV, NOTIFY_STEP, make_bundle, real_engine_bundle

from linkloom.sandbox.process import (
    ProcessRunner,
    namespaces_available,
    network_namespace_available,
)

HTTP_STEP = {"id": "fetch", "type": "http", "url": "http://backend.local/api/tasks/fetch-data"}


async def test_process_runs_cases_with_replayed_http() -> None:
    bundle = make_bundle(
        [
            HTTP_STEP,
            {"id": "new", "type": "http", "url": "https://new.example/x"},
            {"id": "t", "type": "transform", "template": {"a": 1}},
        ],
        cases=2,
    )
    result = await ProcessRunner(extra_env=FAKE_ENGINE_ENV).run(bundle)
    assert result.backend == "process"
    assert result.error is None, result.error
    assert [c.case for c in result.cases] == ["case-0", "case-1"]
    case = result.cases[0]
    assert case.steps["fetch"].output == {"status": "SUCCESS", "output": {"rows": 3}}
    assert case.steps["new"].status == "FAILED"
    assert case.steps["new"].error == "unrecorded request: POST https://new.example/x"
    assert [u["url"] for u in case.unrecorded] == ["https://new.example/x"]
    assert case.steps["t"].output == {"a": 1}
    assert case.run_outputs == {"at": "2026-11-21T09:00:00+00:00"}  # the frozen clock
    assert any(note.startswith("network:") for note in result.isolation)


async def test_process_blocks_network_access() -> None:
    if not network_namespace_available():
        pytest.skip("this OS does not permit unshare -rn")
    code = (
        "import socket\n"
        "s = socket.create_connection(('127.0.0.1', 5432), timeout=2)\n"
        "result = 'connected'\n"
    )
    bundle = make_bundle([{"id": "net", "type": "python", "code": code}])
    result = await ProcessRunner(extra_env=FAKE_ENGINE_ENV).run(bundle)
    step = result.cases[0].steps["net"]
    assert step.status == "FAILED"
    assert "refused" in step.error.lower() or "unreachable" in step.error.lower()
    assert "network: none (own network namespace)" in result.isolation


async def test_process_file_size_limit_stops_a_10gb_write() -> None:
    bundle = make_bundle(
        [{"id": "fill", "type": "shell", "command": "head -c 10G /dev/zero > big.bin"}], shell=True
    )
    started = time.monotonic()
    result = await ProcessRunner(extra_env=FAKE_ENGINE_ENV, max_file_size="20m").run(bundle)
    assert time.monotonic() - started < 10
    step = result.cases[0].steps["fill"]
    assert step.status == "FAILED"
    assert result.cases[0].run_status == "FAILED"


@pytest.mark.slow
async def test_process_wall_clock_kills_a_looping_case() -> None:
    bundle = make_bundle(
        [{"id": "loop", "type": "python", "code": "while True:\n    pass\n"}], cases=2
    )
    started = time.monotonic()
    result = await ProcessRunner(extra_env=FAKE_ENGINE_ENV, wall_clock=2).run(bundle)
    assert time.monotonic() - started < 6
    assert not result.ok
    assert "wall-clock limit of 2s exceeded" in result.error
    first, second = result.cases
    assert first.run_status == "ERROR"
    assert "while running case 'case-0'" in first.error
    assert second.error.startswith("wall-clock limit")


@pytest.mark.slow
async def test_process_fork_bomb_ends_as_failed_result() -> None:
    bomb = "bomb() { bomb | bomb & }; bomb; sleep 1; exit 1"
    bundle = make_bundle([{"id": "bomb", "type": "shell", "command": bomb}], shell=True)
    started = time.monotonic()
    result = await ProcessRunner(extra_env=FAKE_ENGINE_ENV, wall_clock=4).run(bundle)
    assert time.monotonic() - started < 10
    case = result.cases[0]
    assert case.run_status in ("FAILED", "ERROR")
    assert case.error or case.steps["bomb"].status == "FAILED"


@pytest.mark.slow
async def test_process_runs_the_production_engine() -> None:
    result = await ProcessRunner().run(real_engine_bundle(NOTIFY_STEP))
    assert result.error is None, result.error
    case = result.case("c1")
    assert case.steps["fetch"].output == {"rows": [1, 2, 3]}
    assert case.steps["shape"].status == "SUCCEEDED"
    assert "unrecorded request: POST https://hooks.example/new" in case.steps["notify"].error
    assert [u["url"] for u in case.unrecorded] == ["https://hooks.example/new"]


@pytest.mark.slow
async def test_process_hostile_template_ends_as_failed_result() -> None:
    loop = {
        "id": "loop",
        "type": "transform",
        "depends_on": ["shape"],
        "template": "{% for i in range(100000000) %}{% for j in range(100000000) %}x"
        "{% endfor %}{% endfor %}",
    }
    started = time.monotonic()
    result = await ProcessRunner(wall_clock=8).run(real_engine_bundle(loop))
    assert time.monotonic() - started < 15
    case = result.case("c1")
    assert case.run_status in ("FAILED", "ERROR")
    assert case.error or case.steps["loop"].status == "FAILED"


async def test_process_cannot_write_outside_its_scratch(tmp_path: Path) -> None:
    if not namespaces_available("-rnm"):
        pytest.skip("this OS does not permit unshare -rnm")
    target = tmp_path / "owned"
    bundle = make_bundle(
        [
            {"id": "escape", "type": "shell", "command": f"echo x > {target}"},
            {"id": "scratch", "type": "shell", "command": "echo ok > here && cat here"},
            {"id": "fill", "type": "shell", "command": "head -c 10G /dev/zero > big"},
        ],
        shell=True,
    )
    result = await ProcessRunner(extra_env=FAKE_ENGINE_ENV, scratch_size="8m").run(bundle)
    steps = result.cases[0].steps
    assert "Read-only file system" in steps["escape"].error
    assert not target.exists()
    assert steps["scratch"].output.strip() == "ok"
    assert "No space left" in steps["fill"].error or "File size" in steps["fill"].error
    assert "filesystem: read-only, tmpfs scratch 8m" in result.isolation
