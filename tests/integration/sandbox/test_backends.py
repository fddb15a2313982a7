"""Choosing the sandbox backend from settings."""

from __future__ import annotations

import pytest

from linkloom.config import SandboxSettings
from linkloom.sandbox import backends
from linkloom.sandbox.docker import DockerRunner, docker_available
from linkloom.sandbox.errors import SandboxUnavailable
from linkloom.sandbox.process import ProcessRunner


async def test_backends_process_setting_always_gives_process() -> None:
    runner = await backends.select_runner(SandboxSettings(backend="process", pids_limit=32))
    assert isinstance(runner, ProcessRunner)
    assert runner.max_processes == 32


async def test_backends_auto_falls_back_to_process_without_the_image() -> None:
    settings = SandboxSettings(backend="auto", image="linkloom/does-not-exist:never")
    assert isinstance(await backends.select_runner(settings), ProcessRunner)


async def test_backends_docker_setting_without_the_image_is_unavailable() -> None:
    settings = SandboxSettings(backend="docker", image="linkloom/does-not-exist:never")
    with pytest.raises(SandboxUnavailable, match="LOOM_SANDBOX__BACKEND=process"):
        await backends.select_runner(settings)


@pytest.mark.docker
async def test_backends_auto_prefers_docker_when_ready() -> None:
    from linkloom.sandbox.docker import image_exists
    from tests.support.real import require

    require(
        docker_available() and image_exists("linkloom/sandbox:latest"),
        "no Docker engine or sandbox image (run scripts/provision-docker)",
    )
    assert isinstance(await backends.select_runner(SandboxSettings()), DockerRunner)
