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

from linkloom.sandbox.replay import SentRequest

if TYPE_CHECKING:
    import httpx

    from linkloom.engine.ports import Clock, HttpPort, SecretResolver
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
    skip_reason: str | None = None  # for SKIPPED: join (an upstream failed), branch, when

    def to_dict(self) -> dict[str, Any]:
        out = {
            "status": self.status,
            "output": self.output,
            "outputs": self.outputs,
            "error": self.error,
        }
        if self.skip_reason:
            out["skip_reason"] = self.skip_reason
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepOutcome:
        return cls(
            status=str(data.get("status", "")),
            output=data.get("output"),
            outputs=dict(data.get("outputs") or {}),
            error=data.get("error"),
            skip_reason=data.get("skip_reason"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseOutcome:
    """What a ``CaseEngine`` returns for one case."""

    run_status: str
    steps: dict[str, StepOutcome] = field(default_factory=dict)
    run_outputs: dict[str, Any] = field(default_factory=dict)


PROPOSED = "proposed"  # the proposal's version of the flow
PRODUCTION = "production"  # the current production version, replayed on the same case
RECORDED = "recorded"  # the version that recorded the case, when production has moved since


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseRun:
    """One version of the flow run on one case."""

    run_status: str  # a RunStatus value, or SANDBOX_ERROR
    steps: dict[str, StepOutcome] = field(default_factory=dict)
    run_outputs: dict[str, Any] = field(default_factory=dict)
    requests: tuple[SentRequest, ...] = ()  # every request sent, as recorded, and its answer
    unrecorded: tuple[dict[str, Any], ...] = ()  # {"method", "url", "body", "step_id"}
    duration_ms: float = 0.0
    error: str | None = None  # why the sandbox could not finish this run

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_status": self.run_status,
            "steps": {k: v.to_dict() for k, v in self.steps.items()},
            "run_outputs": self.run_outputs,
            "requests": [r.to_dict() for r in self.requests],
            "unrecorded": [dict(u) for u in self.unrecorded],
            "duration_ms": self.duration_ms,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseRun:
        return cls(
            run_status=str(data.get("run_status", SANDBOX_ERROR)),
            steps={k: StepOutcome.from_dict(v) for k, v in (data.get("steps") or {}).items()},
            run_outputs=dict(data.get("run_outputs") or {}),
            requests=tuple(SentRequest.from_dict(r) for r in data.get("requests") or ()),
            unrecorded=tuple(dict(u) for u in data.get("unrecorded") or ()),
            duration_ms=float(data.get("duration_ms") or 0.0),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """One fixture case: the proposed version's run, and replays of production on it.

    ``production`` is the current production version replayed on the same inputs and
    recordings (what the proposal is diffed against); ``recorded`` the version that recorded the
    case, replayed when production has moved since (what the recording is checked against).
    """

    case: str
    proposed: CaseRun
    production: CaseRun | None = None
    recorded: CaseRun | None = None

    # The proposed run, read directly (most callers want it).
    @property
    def run_status(self) -> str:
        return self.proposed.run_status

    @property
    def steps(self) -> dict[str, StepOutcome]:
        return self.proposed.steps

    @property
    def run_outputs(self) -> dict[str, Any]:
        return self.proposed.run_outputs

    @property
    def unrecorded(self) -> tuple[dict[str, Any], ...]:
        return self.proposed.unrecorded

    @property
    def error(self) -> str | None:
        """Why the sandbox could not finish one of the case's runs."""
        for run in self.runs().values():
            if run.error:
                return run.error
        return None

    @property
    def duration_ms(self) -> float:
        return sum(r.duration_ms for r in self.runs().values())

    def runs(self) -> dict[str, CaseRun]:
        found = {PROPOSED: self.proposed, PRODUCTION: self.production, RECORDED: self.recorded}
        return {side: run for side, run in found.items() if run is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, **{side: r.to_dict() for side, r in self.runs().items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        def side(name: str) -> CaseRun | None:
            found = data.get(name)
            return CaseRun.from_dict(found) if isinstance(found, Mapping) else None

        proposed = side(PROPOSED) or CaseRun.from_dict(data)  # older results: one flat run
        return cls(
            case=str(data["case"]),
            proposed=proposed,
            production=side(PRODUCTION),
            recorded=side(RECORDED),
        )

    @classmethod
    def failed(cls, case: str, error: str) -> CaseResult:
        """A case the sandbox could not run at all."""
        return cls(case=case, proposed=CaseRun(run_status=SANDBOX_ERROR, error=error))


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
    """Runs one case of a flow on the engine, given the replay (as the engine's ``HttpPort``
    for http steps, and behind an httpx client for the rest) and a frozen clock."""

    async def run(
        self,
        *,
        flow: dict[str, Any],
        case: FixtureCase,
        http: httpx.AsyncClient,
        outbound: HttpPort,
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
        cases.append(CaseResult.failed(case.name, reason))
    return SandboxResult(
        backend=backend,
        cases=tuple(cases),
        duration_ms=duration_ms,
        error=error,
        isolation=tuple(isolation),
    )


def with_backend(result: SandboxResult, backend: str) -> SandboxResult:
    return replace(result, backend=backend)
