"""The docker backend on a real Docker engine (scripts/provision-docker sets one up)."""

from __future__ import annotations

import time

import pytest
from sandbox_helpers import HERE, NOTIFY_STEP, make_bundle, real_engine_bundle

from linkloom.sandbox.docker import DockerRunner, docker_available, image_exists
from linkloom.sandbox.errors import SandboxUnavailable
from tests.support.real import require

# Each test starts one container (1-4 s): marked slow as well as docker.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "linkloom/sandbox:latest"
HTTP_STEP = {"id": "fetch", "type": "http", "url": "http://backend.local/api/tasks/fetch-data"}


def _runner(**kwargs: object) -> DockerRunner:
    require(docker_available(), "no Docker engine answers (run scripts/provision-docker)")
    require(image_exists(IMAGE), f"image {IMAGE} missing (run scripts/provision-docker)")
    return DockerRunner(
        image=IMAGE,
        extra_mounts={str(HERE): "/opt/linkloom/tests"},
        extra_env={
            "PYTHONPATH": "/opt/linkloom/src:/opt/linkloom/site-packages:/opt/linkloom/tests"
        },
        **kwargs,  # type: ignore[arg-type]
    )


async def test_docker_runs_case_without_network() -> None:
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    result = 'connected'\n"
        "except OSError as exc:\n"
        "    result = str(exc)\n"
    )
    bundle = make_bundle(
        [
            HTTP_STEP,
            {"id": "new", "type": "http", "url": "https://new.example/x"},
            {"id": "net", "type": "python", "code": probe},
            {"id": "who", "type": "python", "code": "import os\nresult = os.getuid()"},
        ]
    )
    result = await _runner().run(bundle)
    assert result.backend == "docker"
    assert result.error is None, result.error
    case = result.cases[0]
    assert case.steps["fetch"].output == {"status": "SUCCESS", "output": {"rows": 3}}
    assert case.steps["new"].error == "unrecorded request: POST https://new.example/x"
    assert [u["url"] for u in case.unrecorded] == ["https://new.example/x"]
    assert "unreachable" in case.steps["net"].output.lower()
    assert case.steps["who"].output == 65534
    assert "network: none" in result.isolation


async def test_docker_disk_and_fork_bombs_end_as_failed_steps() -> None:
    bundle = make_bundle(
        [
            {"id": "fill", "type": "shell", "command": "head -c 10G /dev/zero > /tmp/big"},
            {"id": "root", "type": "shell", "command": "echo x > /etc/owned"},
            {
                "id": "bomb",
                "type": "shell",
                "command": "bomb() { bomb | bomb & }; bomb; sleep 0.5; exit 1",
            },
        ],
        shell=True,
    )
    started = time.monotonic()
    result = await _runner(wall_clock=20).run(bundle)
    assert time.monotonic() - started < 20
    steps = result.cases[0].steps
    assert steps["fill"].status == "FAILED"
    assert "No space left" in steps["fill"].error
    assert steps["root"].status == "FAILED"
    assert "Read-only file system" in steps["root"].error
    assert result.cases[0].run_status in ("FAILED", "ERROR")


async def test_docker_wall_clock_kills_looping_case() -> None:
    bundle = make_bundle([{"id": "loop", "type": "python", "code": "while True:\n    pass\n"}])
    started = time.monotonic()
    result = await _runner(wall_clock=3).run(bundle)
    assert time.monotonic() - started < 10
    assert "wall-clock limit of 3s exceeded" in result.error
    assert result.cases[0].run_status == "ERROR"
    assert "while running case 'case-0'" in result.cases[0].error


async def test_docker_missing_image_raises_unavailable() -> None:
    require(docker_available(), "no Docker engine answers (run scripts/provision-docker)")
    runner = DockerRunner(image="linkloom/does-not-exist:never")
    with pytest.raises(SandboxUnavailable, match="build it with 'loom sandbox build-image'"):
        await runner.run(make_bundle([]))


async def test_docker_runs_the_production_engine() -> None:
    require(docker_available(), "no Docker engine answers (run scripts/provision-docker)")
    require(image_exists(IMAGE), f"image {IMAGE} missing (run scripts/provision-docker)")
    result = await DockerRunner(image=IMAGE).run(real_engine_bundle(NOTIFY_STEP))
    assert result.backend == "docker"
    assert result.error is None, result.error
    case = result.case("c1")
    assert case.steps["fetch"].output == {"rows": [1, 2, 3]}
    assert case.steps["shape"].status == "SUCCEEDED"
    assert "unrecorded request: POST https://hooks.example/new" in case.steps["notify"].error
    assert [u["url"] for u in case.unrecorded] == ["https://hooks.example/new"]
