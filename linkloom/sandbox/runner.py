"""The sandbox runner interface and its results.

``SandboxRunner.run(bundle) -> SandboxResult`` is what the proposal checks call; ``docker``,
``process`` and ``inprocess`` implement it (a Kubernetes Job backend would too). Every result
names the backend that produced it and the isolation it had.

Inside the sandbox, ``python -m linkloom.sandbox.entry BUNDLE_DIR`` runs the cases and writes one
JSON line per event on stdout (the only channel out of the container)::

    {"loom_sandbox": 1, "event": "case_started", "case": "c1"}
    {"loom_sandbox": 1, "event": "case", "result": {…CaseResult…}}
    {"loom_sandbox": 1, "event": "done", "duration_ms": 12.5}

``collect()`` turns those lines back into a ``SandboxResult``; a sandbox killed half-way keeps
the cases it finished and marks the others failed with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import httpx

    from linkloom.engine.ports import Clock, SecretResolver
    from linkloom.sandbox.bundle import BundleSettings, SandboxBundle
    from linkloom.sandbox.fixtures import FixtureCase

SANDBOX_ERROR = "ERROR"  # run_status of a case the sandbox could not finish (timeout, crash)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepOutcome:
    """What one step did in the sandbox (the same shape as a fixture's expected step)."""

    status: str
    output: Any = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "output": self.output,
            "outputs": self.outputs,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepOutcome:
        return cls(
            status=str(data.get("status", "")),
            output=data.get("output"),
            outputs=dict(data.get("outputs") or {}),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseOutcome:
    """What a ``CaseEngine`` returns for one case."""

    run_status: str
    steps: dict[str, StepOutcome] = field(default_factory=dict)
    run_outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """One fixture case run on the proposed flow."""

    case: str
    run_status: str  # a RunStatus value, or SANDBOX_ERROR
    steps: dict[str, StepOutcome] = field(default_factory=dict)
    run_outputs: dict[str, Any] = field(default_factory=dict)
    unrecorded: tuple[dict[str, Any], ...] = ()  # {"method", "url", "body", "step_id"}
    # Answered from a same-endpoint recording despite another body (on_body_mismatch="replay"):
    # {"method", "url", "step_id", "recorded_body", "body"}
    changed_requests: tuple[dict[str, Any], ...] = ()
    duration_ms: float = 0.0
    error: str | None = None  # why the sandbox could not finish the case

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "run_status": self.run_status,
            "steps": {k: v.to_dict() for k, v in self.steps.items()},
            "run_outputs": self.run_outputs,
            "unrecorded": [dict(u) for u in self.unrecorded],
            "changed_requests": [dict(c) for c in self.changed_requests],
            "duration_ms": self.duration_ms,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        return cls(
            case=str(data["case"]),
            run_status=str(data.get("run_status", SANDBOX_ERROR)),
            steps={k: StepOutcome.from_dict(v) for k, v in (data.get("steps") or {}).items()},
            run_outputs=dict(data.get("run_outputs") or {}),
            unrecorded=tuple(dict(u) for u in data.get("unrecorded") or ()),
            changed_requests=tuple(dict(c) for c in data.get("changed_requests") or ()),
            duration_ms=float(data.get("duration_ms") or 0.0),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxResult:
    """The outcome of one bundle: per case results plus how and where it ran."""

    backend: str  # docker | process | inprocess
    cases: tuple[CaseResult, ...] = ()
    duration_ms: float = 0.0
    error: str | None = None  # the sandbox itself failed (limit hit, crash, backend down)
    isolation: tuple[str, ...] = ()  # what protected the server, e.g. "network: none"

    @property
    def ok(self) -> bool:
        """The sandbox ran every case to an end (the cases may still have failed runs)."""
        return self.error is None and all(c.error is None for c in self.cases)

    def case(self, name: str) -> CaseResult:
        for result in self.cases:
            if result.case == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "ok": self.ok,
            "cases": [c.to_dict() for c in self.cases],
            "duration_ms": self.duration_ms,
            "error": self.error,
            "isolation": list(self.isolation),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxResult:
        return cls(
            backend=str(data.get("backend", "")),
            cases=tuple(CaseResult.from_dict(c) for c in data.get("cases") or ()),
            duration_ms=float(data.get("duration_ms") or 0.0),
            error=data.get("error"),
            isolation=tuple(data.get("isolation") or ()),
        )


class SandboxRunner(Protocol):
    """Runs a bundle somewhere isolated.

    Whatever the flow does ends in the result (failures are data). Only the backend itself
    failing (Docker down, image missing) raises ``SandboxUnavailable`` (an ``Unavailable``), so
    the caller can retry later or fall back to another backend.
    """

    name: ClassVar[str]

    async def run(self, bundle: SandboxBundle) -> SandboxResult: ...


class CaseEngine(Protocol):
    """Runs one case of a flow on the engine, given the replaying client and frozen clock."""

    async def run(
        self,
        *,
        flow: dict[str, Any],
        case: FixtureCase,
        http: httpx.AsyncClient,
        clock: Clock,
        secrets: SecretResolver,
        settings: BundleSettings,
    ) -> CaseOutcome: ...


# ------------------------------------------------------------------- the stdout line protocol


PROTOCOL_KEY = "loom_sandbox"  # marks our lines apart from anything else a flow may print


def event_line(event: str, **fields: Any) -> str:
    line = {PROTOCOL_KEY: 1, "event": event, **fields}
    return json.dumps(line, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def collect(
    lines: Iterable[str],
    *,
    bundle: SandboxBundle,
    backend: str,
    error: str | None = None,
    duration_ms: float = 0.0,
    isolation: Iterable[str] = (),
) -> SandboxResult:
    """Rebuild a ``SandboxResult`` from entry-point output, filling in unfinished cases."""
    finished: dict[str, CaseResult] = {}
    running: str | None = None
    done = False
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get(PROTOCOL_KEY) != 1:
            continue
        kind = event.get("event")
        if kind == "case_started":
            running = str(event.get("case"))
        elif kind == "case":
            try:
                result = CaseResult.from_dict(event["result"])
            except (KeyError, TypeError, ValueError):
                continue
            finished[result.case] = result
            running = None
        elif kind == "done":
            done = True
        elif kind == "fatal" and error is None:
            error = str(event.get("error"))
    if error is None and not done:
        error = "the sandbox ended without reporting results"
    cases = []
    for case in bundle.cases:
        if case.name in finished:
            cases.append(finished[case.name])
            continue
        reason = error or "not run"
        if case.name == running:
            reason = f"{reason} (while running case {case.name!r})"
        cases.append(CaseResult(case=case.name, run_status=SANDBOX_ERROR, error=reason))
    return SandboxResult(
        backend=backend,
        cases=tuple(cases),
        duration_ms=duration_ms,
        error=error,
        isolation=tuple(isolation),
    )


def with_backend(result: SandboxResult, backend: str) -> SandboxResult:
    return replace(result, backend=backend)
