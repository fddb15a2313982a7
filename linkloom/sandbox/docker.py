"""The ``docker`` sandbox backend: the in-sandbox runner in a locked-down container.

The container has no network (``network_mode="none"``), a read-only root filesystem with a small
tmpfs at ``/tmp``, memory/CPU/pid limits, uid 65534, no capabilities and no privilege escalation.
The bundle is mounted read-only at ``/bundle``; results come back only on the container's stdout
(the line protocol of ``sandbox/runner.py``). At the wall-clock limit the container is killed.
By default the host's ``linkloom`` package is mounted read-only over the image's copy, so the
sandbox always runs the server's own engine code. Docker SDK calls run in ``asyncio.to_thread``;
Docker API errors become ``SandboxUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.errors import SandboxUnavailable
from linkloom.sandbox.process import PACKAGE_ROOT, parse_size
from linkloom.sandbox.runner import SandboxResult, collect

CONTAINER_PACKAGE = "/opt/linkloom/src"
_MAX_LOG_BYTES = 50 * 1024 * 1024


def docker_available(timeout: float = 3.0) -> bool:
    """Whether a Docker engine answers here."""
    try:
        import docker

        client = docker.from_env(timeout=int(timeout))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure means "not available"
        return False


def image_exists(image: str) -> bool:
    try:
        import docker
        import docker.errors

        client = docker.from_env()
        try:
            client.images.get(image)
            return True
        finally:
            client.close()
    except Exception:
        return False


class DockerRunner:
    """Runs a bundle in a fresh container per bundle."""

    name: ClassVar[str] = "docker"

    def __init__(
        self,
        *,
        image: str = "linkloom/sandbox:latest",
        memory: str | int = "256m",
        cpus: float = 1.0,
        pids_limit: int = 64,
        wall_clock: float = 60.0,
        tmpfs_size: str = "64m",
        mount_package: bool = True,
        extra_mounts: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.image = image
        self.memory = parse_size(memory)
        self.cpus = cpus
        self.pids_limit = pids_limit
        self.wall_clock = wall_clock
        self.tmpfs_size = tmpfs_size
        self.mount_package = mount_package
        self.extra_mounts = dict(extra_mounts or {})  # host path → container path (read-only)
        self.extra_env = dict(extra_env or {})

    def isolation(self) -> tuple[str, ...]:
        return (
            "network: none",
            "root filesystem: read-only",
            f"tmpfs /tmp: {self.tmpfs_size}",
            f"memory: {self.memory // (1024 * 1024)} MiB",
            f"cpus: {self.cpus:g}",
            f"pids: {self.pids_limit}",
            "user: 65534",
            f"wall clock: {self.wall_clock:g}s",
        )

    async def run(self, bundle: SandboxBundle) -> SandboxResult:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="loom-docker-") as tmp:
            bundle_dir = Path(tmp) / "bundle"
            bundle.write(bundle_dir)
            # The container runs as 65534: it must be able to read (never write) the bundle.
            os.chmod(tmp, 0o755)
            os.chmod(bundle_dir, 0o755)
            os.chmod(bundle_dir / "bundle.json", 0o444)
            # SandboxUnavailable (engine down, image missing) propagates: not the flow's fault.
            lines, error = await asyncio.to_thread(self._run_container, bundle_dir)
        return collect(
            lines,
            bundle=bundle,
            backend=self.name,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000,
            isolation=self.isolation(),
        )

    # ------------------------------------------------------------ blocking part (in a thread)

    def _run_container(self, bundle_dir: Path) -> tuple[list[str], str | None]:
        import docker
        import docker.errors
        import requests.exceptions

        try:
            client = docker.from_env()
        except docker.errors.DockerException as exc:
            raise SandboxUnavailable(backend="docker", reason=str(exc)) from exc
        container = None
        try:
            container = client.containers.create(self.image, **self._options(bundle_dir))
            container.start()
            error: str | None = None
            try:
                status = container.wait(timeout=self.wall_clock)
                code = int(status.get("StatusCode", -1))
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
                error = (
                    f"wall-clock limit of {self.wall_clock:g}s exceeded; the container was killed"
                )
                code = None
            output = container.logs(stdout=True, stderr=False)
            if error is None:
                error = self._exit_error(container, code)
            return output.decode("utf-8", "replace").splitlines(), error
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(
                backend="docker",
                reason=f"image {self.image} not found; build it with 'loom sandbox build-image'",
            ) from exc
        except docker.errors.DockerException as exc:
            raise SandboxUnavailable(backend="docker", reason=str(exc)) from exc
        finally:
            if container is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
            client.close()

    def _options(self, bundle_dir: Path) -> dict[str, Any]:
        import docker.types

        volumes = {str(bundle_dir): {"bind": "/bundle", "mode": "ro"}}
        pythonpath = "/opt/linkloom/site-packages"
        if self.mount_package:
            volumes[str(Path(PACKAGE_ROOT) / "linkloom")] = {
                "bind": f"{CONTAINER_PACKAGE}/linkloom",
                "mode": "ro",
            }
            pythonpath = f"{CONTAINER_PACKAGE}:{pythonpath}"
        for host, inside in self.extra_mounts.items():
            volumes[host] = {"bind": inside, "mode": "ro"}
        env = {"PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1", **self.extra_env}
        return {
            "command": ["/bundle"],
            "detach": True,
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {"/tmp": f"rw,size={self.tmpfs_size},mode=1777"},
            "mem_limit": self.memory,
            "memswap_limit": self.memory,  # no swap beyond the memory limit
            "nano_cpus": int(self.cpus * 1_000_000_000),
            "pids_limit": self.pids_limit,
            "user": "65534:65534",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "volumes": volumes,
            "environment": env,
            "working_dir": "/tmp",
            "labels": {"linkloom.sandbox": "1"},
            "log_config": docker.types.LogConfig(
                type="json-file", config={"max-size": str(_MAX_LOG_BYTES)}
            ),
        }

    def _exit_error(self, container: Any, code: int | None) -> str | None:
        if code == 0:
            return None
        with contextlib.suppress(Exception):
            container.reload()
            if container.attrs.get("State", {}).get("OOMKilled"):
                return f"memory limit of {self.memory // (1024 * 1024)} MiB exceeded"
        stderr = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        return f"the sandbox container exited with status {code}" + (f": {tail}" if tail else "")
