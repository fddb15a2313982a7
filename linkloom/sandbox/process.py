"""The ``process`` sandbox backend: the in-sandbox runner as a limited subprocess.

Used where no Docker engine is reachable. The child (``python -m linkloom.sandbox.entry``) gets:

* its own session/process group, killed as a whole at the wall-clock limit;
* ``setrlimit`` limits set in ``preexec_fn``: address space, CPU seconds, file size (a step that
  writes 10 GB gets SIGXFSZ), open files, no core dumps;
* a process limit a fork bomb hits: a ``pids`` cgroup when the server runs as root (root ignores
  ``RLIMIT_NPROC``; every process left in it is killed at the end), else ``RLIMIT_NPROC``;
* a new, empty network namespace (``unshare -rn``) where the OS permits it; otherwise the result
  says so in ``isolation`` (or fails, with ``require_network_isolation``);
* with a mount namespace too (``unshare -rnm``), a read-only view of every filesystem and a
  size-capped tmpfs as its only writable scratch directory;
* a scratch directory as cwd/HOME/TMPDIR, a minimal environment, and a cap on its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import ClassVar

import linkloom
from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.runner import SandboxResult, collect

_MiB = 1024 * 1024
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(linkloom.__file__)))


def parse_size(value: str | int) -> int:
    """``"256m"`` / ``"1g"`` / ``"512k"`` / bytes → bytes."""
    if isinstance(value, int):
        return value
    text = value.strip().lower().rstrip("b")
    units = {"k": 1024, "m": _MiB, "g": 1024 * _MiB}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@functools.cache
def namespaces_available(flags: str = "-rn") -> bool:
    """Whether ``unshare <flags>`` works here (``-rn``: user + network, ``-rnm``: + mounts)."""
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(
            ["unshare", flags, "true"], capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def network_namespace_available() -> bool:
    return namespaces_available("-rn")


# Run inside ``unshare -rnm``: every mount read-only, then a size-capped tmpfs as the only
# writable place (a step writing 10 GB fills it and fails), then the runner.
_READ_ONLY_PRELUDE = """
for m in $(cut -d' ' -f5 /proc/self/mountinfo | sort -u); do
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount -t tmpfs -o "size=$LOOM_SCRATCH_SIZE,mode=1777" loom-scratch "$LOOM_SCRATCH" || exit 97
cd "$LOOM_SCRATCH" && exec "$@"
"""


class PidsCgroup:
    """A throw-away ``pids`` cgroup (v1 or v2) capping and later killing a sandbox's processes."""

    BASES = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, limit: int) -> PidsCgroup | None:
        for base in cls.BASES:
            if not (base / "cgroup.procs").exists():
                continue
            path = base / f"linkloom-sandbox-{uuid.uuid4().hex[:12]}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / "pids.max").write_text(str(limit))
                return cls(path)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return None

    def enter(self) -> None:
        """Called in the child before exec: move it into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def kill_all(self) -> None:
        for _ in range(50):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill_all()
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


def _user_process_count(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count


class ProcessRunner:
    """Runs a bundle in a resource-limited subprocess."""

    name: ClassVar[str] = "process"

    def __init__(
        self,
        *,
        wall_clock: float = 60.0,
        address_space: str | int = "2g",
        max_file_size: str | int = "100m",
        max_processes: int = 64,
        max_output: str | int = "50m",
        scratch_size: str = "64m",
        require_network_isolation: bool = False,
        python: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.wall_clock = wall_clock
        self.address_space = parse_size(address_space)
        self.max_file_size = parse_size(max_file_size)
        self.max_processes = max_processes
        self.max_output = parse_size(max_output)
        self.scratch_size = scratch_size
        self.require_network_isolation = require_network_isolation
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})

    async def run(self, bundle: SandboxBundle) -> SandboxResult:
        started = time.perf_counter()
        as_root = os.geteuid() == 0
        isolation = [
            f"wall clock: {self.wall_clock:g}s",
            f"address space: {self.address_space // _MiB} MiB",
            f"file size: {self.max_file_size // _MiB} MiB",
        ]
        cgroup = PidsCgroup.create(self.max_processes) if as_root else None
        if cgroup is not None:
            isolation.append(f"processes: {self.max_processes} (pids cgroup)")
        elif as_root:
            isolation.append("processes: NOT limited (root, and no writable pids cgroup)")
        else:
            isolation.append(f"processes: {self.max_processes} (RLIMIT_NPROC)")
        netns = network_namespace_available()
        mountns = netns and namespaces_available("-rnm")
        if mountns:
            isolation.append(f"filesystem: read-only, tmpfs scratch {self.scratch_size}")
        else:
            isolation.append("filesystem: NOT protected (no mount namespace here)")
        if netns:
            isolation.append("network: none (own network namespace)")
        else:
            isolation.append("network: NOT isolated (unshare -rn is not permitted here)")
            if self.require_network_isolation:
                return collect(
                    [],
                    bundle=bundle,
                    backend=self.name,
                    error="network isolation is required but unshare -rn is not permitted here",
                    isolation=isolation,
                )
        try:
            with tempfile.TemporaryDirectory(prefix="loom-sandbox-") as tmp:
                root = Path(tmp)
                bundle_dir, scratch = root / "bundle", root / "scratch"
                bundle.write(bundle_dir)
                (bundle_dir / "bundle.json").chmod(0o444)
                scratch.mkdir()
                lines, error = await self._execute(
                    bundle_dir=bundle_dir,
                    scratch=scratch,
                    cgroup=cgroup,
                    netns=netns,
                    mountns=mountns,
                )
        finally:
            if cgroup is not None:
                await asyncio.to_thread(cgroup.remove)
        return collect(
            lines,
            bundle=bundle,
            backend=self.name,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000,
            isolation=isolation,
        )

    async def _execute(
        self,
        *,
        bundle_dir: Path,
        scratch: Path,
        cgroup: PidsCgroup | None,
        netns: bool,
        mountns: bool,
    ) -> tuple[list[str], str | None]:
        argv = [self.python, "-m", "linkloom.sandbox.entry", str(bundle_dir)]
        if mountns:
            argv = ["unshare", "-rnm", "--", "sh", "-c", _READ_ONLY_PRELUDE, "loom-sandbox", *argv]
        elif netns:
            argv = ["unshare", "-rn", "--", *argv]
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": PACKAGE_ROOT,
            "LOOM_SCRATCH": str(scratch),
            "LOOM_SCRATCH_SIZE": self.scratch_size,
            **self.extra_env,
        }
        nproc = None
        if os.geteuid() != 0:  # RLIMIT_NPROC counts every process of the user, not just ours
            nproc = self.max_processes + _user_process_count(os.getuid())
        limits = _Limits(
            address_space=self.address_space,
            cpu_seconds=int(self.wall_clock) + 5,
            file_size=self.max_file_size,
            processes=nproc,
            cgroup=cgroup,
        )
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=scratch,
            env=env,
            start_new_session=True,
            preexec_fn=limits.apply,
        )
        out = _Capped(self.max_output)
        err = _Capped(64 * 1024, keep_tail=True)
        readers = asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr))
        error: str | None = None
        try:
            async with asyncio.timeout(self.wall_clock):
                while not readers.done():
                    if out.overflow:
                        error = f"the sandbox wrote over {self.max_output // _MiB} MiB of output"
                        break
                    await asyncio.wait([readers], timeout=0.05)
                if error is None:
                    await proc.wait()
        except TimeoutError:
            error = f"wall-clock limit of {self.wall_clock:g}s exceeded; the sandbox was killed"
        finally:
            _kill_group(proc.pid)
            if cgroup is not None:
                await asyncio.to_thread(cgroup.kill_all)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            readers.cancel()
            with contextlib.suppress(BaseException):
                await readers
        if error is None and proc.returncode not in (0, None):
            error = _describe_exit(proc.returncode, err.text())
        return out.lines(), error


class _Limits:
    def __init__(
        self,
        *,
        address_space: int,
        cpu_seconds: int,
        file_size: int,
        processes: int | None,
        cgroup: PidsCgroup | None,
    ) -> None:
        self.address_space = address_space
        self.cpu_seconds = cpu_seconds
        self.file_size = file_size
        self.processes = processes
        self.cgroup = cgroup

    def apply(self) -> None:
        if self.cgroup is not None:
            self.cgroup.enter()
        resource.setrlimit(resource.RLIMIT_AS, (self.address_space, self.address_space))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size, self.file_size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.processes is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.processes, self.processes))


class _Capped:
    """Collects a stream up to ``limit`` bytes; beyond it, flags ``overflow`` and drops data."""

    def __init__(self, limit: int, *, keep_tail: bool = False) -> None:
        self.limit = limit
        self.keep_tail = keep_tail
        self.data = bytearray()
        self.overflow = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            self.data += chunk
            if len(self.data) > self.limit:
                if self.keep_tail:
                    del self.data[: len(self.data) - self.limit]
                else:
                    self.overflow = True
                    del self.data[self.limit :]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()


def _kill_group(pid: int) -> None:
    for _ in range(20):  # a fork bomb may keep spawning for a moment
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.01)


def _describe_exit(code: int, stderr: str) -> str:
    if code < 0:
        sig = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        reasons = {
            "SIGXCPU": "CPU time limit exceeded",
            "SIGXFSZ": "file size limit exceeded",
            "SIGKILL": "killed",
            "SIGSEGV": "crashed",
        }
        return f"the sandbox process ended by {sig} ({reasons.get(sig, 'signal')})"
    if code == 97:
        return "the sandbox could not mount its scratch tmpfs"
    tail = stderr.strip().splitlines()[-3:]
    detail = ": " + " | ".join(tail) if tail else ""
    return f"the sandbox process exited with status {code}{detail}"
