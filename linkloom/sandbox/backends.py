"""Choosing the sandbox backend from settings: ``docker`` where an engine and the image exist,
else ``process``; ``auto`` decides per call, so a Docker engine that comes back is used again.
``remote`` sends bundles to a sandbox service (``loom sandbox serve``) at ``remote_url``."""

from __future__ import annotations

import asyncio
from typing import Any

from linkloom.sandbox.docker import DockerRunner, docker_available, image_exists
from linkloom.sandbox.errors import SandboxUnavailable
from linkloom.sandbox.process import ProcessRunner
from linkloom.sandbox.remote import RemoteRunner
from linkloom.sandbox.runner import SandboxRunner


def docker_runner(settings: Any) -> DockerRunner:
    return DockerRunner(
        image=settings.image,
        memory=settings.memory,
        cpus=settings.cpus,
        pids_limit=settings.pids_limit,
        wall_clock=settings.wall_clock_seconds,
    )


def process_runner(settings: Any) -> ProcessRunner:
    return ProcessRunner(wall_clock=settings.wall_clock_seconds, max_processes=settings.pids_limit)


def remote_runner(settings: Any) -> RemoteRunner:
    return RemoteRunner(
        url=settings.remote_url,
        key=settings.remote_key.get_secret_value(),
        wall_clock=settings.wall_clock_seconds,
    )


async def select_runner(settings: Any) -> SandboxRunner:
    """The runner for ``settings`` (``config.SandboxSettings``: backend, image, limits).

    Raises:
        SandboxUnavailable: ``backend="docker"`` was asked for and Docker or the image is missing.
    """
    backend = getattr(settings, "backend", "auto")
    if backend == "process":
        return process_runner(settings)
    if backend == "remote":
        return remote_runner(settings)
    usable = await asyncio.to_thread(lambda: docker_available() and image_exists(settings.image))
    if usable:
        return docker_runner(settings)
    if backend == "docker":
        raise SandboxUnavailable(
            backend="docker",
            reason=(
                f"no Docker engine or no image {settings.image}; run scripts/provision-docker "
                "or 'loom sandbox build-image', or set LOOM_SANDBOX__BACKEND=process"
            ),
        )
    return process_runner(settings)
