"""The ``shell`` step: run a command on the worker, only where the operator enables it.

A string ``command`` runs through ``/bin/sh -c`` (``args`` become ``$1``, ``$2``, …); a list runs
directly. The environment is a minimal one (``PATH``, ``HOME``, ``LANG``) plus the rendered
``env``. The process gets its own session; on timeout or cancellation the whole process group is
killed. stdout and stderr are each kept up to ``max_output_bytes`` (reading continues so the
child never stalls on a full pipe; the rest is dropped and ``truncated`` set). The output is
``{"exit_code", "stdout", "stderr", "truncated"}``; a non-zero exit fails the attempt, retryable
only when the step declares its own ``retry`` policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from typing import Any, ClassVar

from linkloom.engine.models import StepResult
from linkloom.engine.ports import StepContext
from linkloom.engine.steps import outcomes
from linkloom.engine.steps.outcomes import StepConfigError

_BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
_CHUNK = 65536
_PIPE_GRACE = 1.0  # seconds to finish reading the pipes once the command has exited


class ShellExecutor:
    """Runs ``shell`` steps as child processes of the worker."""

    type_name: ClassVar[str] = "shell"

    async def execute(self, ctx: StepContext) -> StepResult:
        if not ctx.services.shell_enabled:
            return outcomes.failed(
                "config",
                "shell steps are disabled on this server; an operator can enable them with "
                "LOOM_ENGINE__SHELL_ENABLED=true",
            )
        return await outcomes.guarded(ctx, self._run)

    async def _run(self, ctx: StepContext) -> StepResult:
        step: Any = ctx.step
        argv = _argv(outcomes.render(ctx, step.command), outcomes.render(ctx, list(step.args)))
        env = _base_env()
        for key, value in outcomes.render(ctx, dict(step.env)).items():
            env[str(key)] = value if isinstance(value, str) else _text(value)
        cwd = outcomes.render(ctx, step.cwd) if step.cwd else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            return outcomes.failed("config", f"cannot start {argv[0]!r}: {exc}")
        limit = int(step.max_output_bytes)
        out, err = _Capture(limit), _Capture(limit)
        readers = asyncio.gather(out.read(proc.stdout), err.read(proc.stderr))
        # Stop a little before the engine's own per-attempt timeout, to keep the output.
        budget = ctx.timeout - min(0.5, ctx.timeout * 0.1) if ctx.timeout > 0 else None
        try:
            async with asyncio.timeout(budget):
                await _finish(proc, readers)
        except TimeoutError:
            await _kill(proc)
            await _drain(readers)
            return outcomes.failed(
                "timeout",
                f"the command ran longer than {budget or 0:g}s and was killed",
                retryable=True,
                output=_output(None, out, err),
            )
        except asyncio.CancelledError:
            await _kill(proc)
            await _drain(readers)
            raise
        output = _output(proc.returncode, out, err)
        if proc.returncode != 0:
            tail = output["stderr"].strip().splitlines()[-1:] or [""]
            return outcomes.failed(
                "exit_status",
                f"the command exited with status {proc.returncode}"
                + (f": {tail[0][:300]}" if tail[0] else ""),
                retryable=step.retry is not None,
                output=output,
            )
        return StepResult(output=output)


class _Capture:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    async def read(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_CHUNK):
            room = self.limit - self.size
            if room > 0:
                self.chunks.append(chunk[:room])
                self.size += min(len(chunk), room)
            if len(chunk) > max(room, 0):
                self.truncated = True

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


def _output(code: int | None, out: _Capture, err: _Capture) -> dict[str, Any]:
    return {
        "exit_code": code,
        "stdout": out.text(),
        "stderr": err.text(),
        "truncated": out.truncated or err.truncated,
    }


def _argv(command: Any, args: list[Any]) -> list[str]:
    extra = [_text(a) for a in args]
    if isinstance(command, str):
        if not command.strip():
            raise StepConfigError("the shell command is empty")
        return ["/bin/sh", "-c", command, "sh", *extra]
    if isinstance(command, list) and command:
        return [_text(c) for c in command] + extra
    raise StepConfigError("'command' must be a string or a non-empty list of strings")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _base_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the whole process group (the shell and everything it started), then reap."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), timeout=5)


async def _drain(readers: asyncio.Future[Any]) -> None:
    """Let the readers see end-of-file after a kill; give up after a moment."""
    try:
        await asyncio.wait_for(readers, timeout=_PIPE_GRACE)
    except TimeoutError:
        readers.cancel()


async def _finish(proc: asyncio.subprocess.Process, readers: asyncio.Future[Any]) -> None:
    """Wait for the command and its output.

    ``proc.wait()`` only returns once the pipes close, and a background grandchild may hold them
    open after the command exited; so watch ``returncode`` too, and once the command has exited
    give the readers ``_PIPE_GRACE`` before killing the group.
    """
    while not readers.done():
        if proc.returncode is not None:
            done, _ = await asyncio.wait({readers}, timeout=_PIPE_GRACE)
            if not done:
                await _kill(proc)
                await _drain(readers)
            break
        await asyncio.wait({readers}, timeout=0.05)
    await proc.wait()
