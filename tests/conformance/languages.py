"""The example backend of each SDK, as a real process in its own language.

Each ``Language`` knows how to build its example (once per test session, into the source tree's
usual build folders), how to start its HTTP backend on a port and how to start its pull worker.
The contract every example meets is in ``tests/conformance/README.md``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.real import require

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "backends"


@dataclass(frozen=True)
class Language:
    name: str
    tools: tuple[str, ...]  # executables that must be on PATH
    build: Callable[[], None]
    serve: Callable[[int], list[str]]
    worker: Callable[[], list[str]]
    cwd: Path = REPO
    hint: str = ""  # how to get the toolchain


def _run(
    cmd: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> None:
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed in {cwd} ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )


# ---- Python: examples/backend (FastAPI + linkloom.sdk) -----------------------------------


def _python_build() -> None:
    return None


PYTHON = Language(
    name="python",
    tools=(),
    build=_python_build,
    serve=lambda port: [
        sys.executable,
        "-m",
        "examples.backend",
        "--port",
        str(port),
        "--heartbeat",
        "0.3",
    ],
    worker=lambda: [sys.executable, "-m", "examples.backend.worker"],
)

# ---- TypeScript: examples/backends/typescript (node:http + @linkloom/sdk) ----------------

TS_SDK = REPO / "sdks" / "typescript"
TS_EXAMPLE = EXAMPLES / "typescript"


def _typescript_build() -> None:
    for folder in (TS_SDK, TS_EXAMPLE):
        require(
            (folder / "node_modules").is_dir(),
            f"{folder.relative_to(REPO)}/node_modules is missing: run scripts/provision-sdks "
            "(npm ci from the committed lock files)",
        )
    _run(["npm", "run", "--silent", "build"], TS_SDK)
    _run(["npm", "run", "--silent", "build"], TS_EXAMPLE)


TYPESCRIPT = Language(
    name="typescript",
    tools=("node", "npm"),
    build=_typescript_build,
    serve=lambda port: ["node", str(TS_EXAMPLE / "dist" / "server.js"), "--port", str(port)],
    worker=lambda: ["node", str(TS_EXAMPLE / "dist" / "worker.js")],
    hint="install Node.js 20 and npm",
)

# ---- Go: examples/backends/go (net/http + sdks/go) ---------------------------------------

GO_EXAMPLE = EXAMPLES / "go"
GO_BINARY = GO_EXAMPLE / "bin" / "example-backend"
GO_ENV = {"GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}


def _go_build() -> None:
    _run(["go", "build", "-o", str(GO_BINARY), "."], GO_EXAMPLE, env=GO_ENV)


GO = Language(
    name="go",
    tools=("go",),
    build=_go_build,
    serve=lambda port: [str(GO_BINARY), "serve", "--port", str(port)],
    worker=lambda: [str(GO_BINARY), "worker"],
    hint="apt-get install golang-go",
)

# ---- Java: examples/backends/java (com.sun.net.httpserver + sdks/java) -------------------

JAVA_SDK = REPO / "sdks" / "java"
JAVA_EXAMPLE = EXAMPLES / "java"
JAVA_CLASSES = JAVA_EXAMPLE / "build" / "classes"


def _java_build() -> None:
    _run(["bash", str(JAVA_SDK / "build.sh"), "jar"], JAVA_SDK)
    _run(["bash", str(JAVA_EXAMPLE / "build.sh")], JAVA_EXAMPLE)


def _java_cp() -> str:
    return f"{JAVA_CLASSES}{os.pathsep}{JAVA_SDK / 'build' / 'linkloom-sdk.jar'}"


JAVA = Language(
    name="java",
    tools=("java", "javac"),
    build=_java_build,
    serve=lambda port: [
        "java",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        _java_cp(),
        "example.Backend",
        "serve",
        "--port",
        str(port),
    ],
    worker=lambda: [
        "java",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        _java_cp(),
        "example.Backend",
        "worker",
    ],
    hint="install a JDK 17 (apt-get install openjdk-17-jdk-headless)",
)

LANGUAGES = {lang.name: lang for lang in (PYTHON, TYPESCRIPT, GO, JAVA)}


def prepare(lang: Language) -> None:
    """Skip loudly (fail in CI) without the toolchain; build the example."""
    missing = [tool for tool in lang.tools if shutil.which(tool) is None]
    require(not missing, f"{lang.name} conformance needs {', '.join(missing)}: {lang.hint}")
    lang.build()


@dataclass
class Process:
    """One running example process (backend or worker) with its output in a log file."""

    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> Process:
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_text(self, text: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive():
                raise AssertionError(f"{self.cmd[0]} exited:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not printed in {within}s:\n{self.output()[-3000:]}")

    def wait_healthy(self, url: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.cmd} exited:\n{self.output()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.cmd} not healthy in {within}s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()  # SIGKILL: no goodbye to the server
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def base_env() -> dict[str, str]:
    skip = ("LOOM_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env["PYTHONPATH"] = str(REPO)
    return env
