"""A tiny stand-in ``CaseEngine`` for sandbox plumbing tests (NOT the production engine).

It walks the steps in order: ``http`` posts its ``body`` through the replaying client,
``transform`` returns its ``template``, ``shell`` runs its command (when shell is enabled).
Hostile-behaviour tests use it to reach the OS limits of the backends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from linkloom.sandbox.runner import CaseOutcome, StepOutcome


class FakeEngine:
    async def run(
        self,
        *,
        flow: dict[str, Any],
        case: Any,
        http: Any,
        outbound: Any,
        clock: Any,
        secrets: Any,
        settings: Any,
    ) -> CaseOutcome:
        steps: dict[str, StepOutcome] = {}
        status = "SUCCEEDED"
        for step in flow["steps"]:
            try:
                output = await self._step(step, case, http, settings)
                steps[step["id"]] = StepOutcome(status="SUCCEEDED", output=output)
            except Exception as exc:
                steps[step["id"]] = StepOutcome(status="FAILED", error=str(exc))
                status = "FAILED"
        return CaseOutcome(
            run_status=status, steps=steps, run_outputs={"at": clock.now().isoformat()}
        )

    async def _step(self, step: dict[str, Any], case: Any, http: Any, settings: Any) -> Any:
        kind = step["type"]
        if kind == "transform":
            return step.get("template")
        if kind == "http":
            body = step.get("body") if step.get("body") is not None else {"inputs": case.inputs}
            resp = await http.request(
                step.get("method", "POST"),
                step["url"],
                json=body,
                headers={"X-Loom-Step-Id": step["id"]},
            )
            return resp.json()
        if kind == "shell":
            if not settings.shell_enabled:
                raise RuntimeError("shell steps are disabled")
            proc = await asyncio.create_subprocess_shell(
                step["command"], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"exit {proc.returncode}: {err.decode()[-300:]}")
            return out.decode()[-1000:]
        if kind == "python":  # test-only: run python code (to probe the sandbox itself)
            scope: dict[str, Any] = {}
            exec(step["code"], scope)
            return scope.get("result")
        raise RuntimeError(f"unknown step type {kind}")
