"""Running a proposal's checks: validate, plan, sandbox, diff (in that order).

Each check ends ``passed``, ``failed`` (the proposal needs a new revision), ``skipped`` (an
earlier check failed) or ``error`` (the check could not run, e.g. no sandbox backend; run the
checks again later). What a flow does in the sandbox is data: failing steps, unrecorded
requests and changed outputs go to the diff for reviewers; only a sandbox that could not finish
a case (timeout, limit hit, crash) fails the sandbox check.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from linkloom import metrics
from linkloom.engine.models import RunStatus
from linkloom.engine.records import RunFilter
from linkloom.errors import LinkloomError
from linkloom.flows import gitstore, loading
from linkloom.flows.spec import FlowSpec
from linkloom.proposals import diff, plan
from linkloom.proposals.models import CheckName, CheckStatus, Proposal, ProposalSettings
from linkloom.sandbox import collection, fixtures
from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.runner import SandboxRunner

log = structlog.get_logger(__name__)

RunnerFactory = Callable[[], Awaitable[SandboxRunner]]


@dataclass(slots=True, kw_only=True)
class Outcome:
    """The result of one check before it is stored."""

    status: CheckStatus
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Proposed:
    """One flow as the proposal's head has it."""

    flow_id: str
    kind: str  # added | modified | deleted
    path: str | None
    text: str | None
    spec: FlowSpec | None = None  # set once validated


class Checker:
    """Runs the four checks of one revision. Collaborators come from ``ProposalService``."""

    def __init__(
        self,
        *,
        repo: gitstore.AsyncFlowsRepo,
        runs: Any,
        clock: Any,
        runner: RunnerFactory,
        settings: ProposalSettings,
    ) -> None:
        self.repo = repo
        self.runs = runs
        self.clock = clock
        self.runner = runner
        self.settings = settings

    async def proposed_flows(self, proposal: Proposal) -> list[Proposed]:
        out = []
        for change in await self.repo.changed_flows(gitstore.MAIN, proposal.head_commit):
            found = await self.repo.read_flow(change.flow_id, proposal.head_commit)
            out.append(
                Proposed(
                    flow_id=change.flow_id,
                    kind="deleted" if found is None else change.kind,
                    path=found.path if found else None,
                    text=found.text if found else None,
                )
            )
        return out

    # ------------------------------------------------------------------ validate

    def validate(self, flows: list[Proposed]) -> Outcome:
        details: dict[str, Any] = {}
        errors = warnings = 0
        for flow in flows:
            if flow.text is None:
                details[flow.flow_id] = {"ok": True, "deleted": True, "problems": []}
                continue
            result = loading.check_flow(
                flow.text, filename=flow.path or "", policy=self.settings.policy
            )
            problems = [p.to_dict() for p in result.problems]
            if result.spec is not None and result.spec.id != flow.flow_id:
                problems.append(
                    {
                        "file": flow.path,
                        "line": 1,
                        "column": 1,
                        "path": "$.id",
                        "message": f"the spec's id {result.spec.id!r} differs from its "
                        f"directory flows/{flow.flow_id}/",
                        "hint": f"set id: {flow.flow_id} or move the file",
                        "severity": "error",
                        "code": "id-mismatch",
                    }
                )
            ok = not any(p["severity"] == "error" for p in problems)
            flow.spec = result.spec if ok else None
            errors += sum(p["severity"] == "error" for p in problems)
            warnings += sum(p["severity"] == "warning" for p in problems)
            details[flow.flow_id] = {"ok": ok, "problems": problems}
        status = CheckStatus.FAILED if errors else CheckStatus.PASSED
        text = f"{len(flows)} flow(s): {errors} error(s), {warnings} warning(s)"
        return Outcome(status=status, summary=text, details={"flows": details})

    # ------------------------------------------------------------------ plan

    async def plan(self, flows: list[Proposed]) -> Outcome:
        plans = []
        now = self.clock.now()
        for flow in flows:
            before, version = await self.production_spec(flow.flow_id)
            in_flight = []
            if before is not None:
                for status in (RunStatus.RUNNING, RunStatus.PENDING):
                    page = await self.runs.list_runs(
                        RunFilter(flow_id=flow.flow_id, status=status), limit=100
                    )
                    in_flight.extend(r for r in page.items if not getattr(r, "sandbox", False))
            plans.append(
                plan.plan_flow(
                    flow_id=flow.flow_id,
                    before=before,
                    after=flow.spec,
                    now=now,
                    in_flight=in_flight,
                    before_version=version,
                )
            )
        text = "; ".join(f"{p['flow_id']}: {p['summary']}" for p in plans)
        return Outcome(status=CheckStatus.PASSED, summary=text, details={"flows": plans})

    async def production_spec(self, flow_id: str) -> tuple[FlowSpec | None, int | None]:
        try:
            flow = await self.runs.get_flow(flow_id)
        except LinkloomError:
            return None, None
        return await self.runs.get_spec(flow_id, flow.current_version), flow.current_version

    # ------------------------------------------------------------------ sandbox + diff

    async def cases(self, flow_id: str, ref: str) -> list[fixtures.FixtureCase]:
        production = await collection.production_cases(
            self.runs, flow_id, limit=self.settings.fixture_runs, secrets=self.settings.secrets
        )
        texts = await self.repo.fixture_files(flow_id, ref)
        return collection.flow_cases(production, texts)

    async def sandbox_and_diff(
        self, proposal: Proposal, flows: list[Proposed]
    ) -> tuple[Outcome, Outcome]:
        try:
            runner = await self.runner()
        except LinkloomError as exc:
            reason = f"no sandbox backend: {exc.message}"
            return (
                Outcome(status=CheckStatus.ERROR, summary=reason),
                Outcome(status=CheckStatus.SKIPPED, summary="the sandbox did not run"),
            )
        results: dict[str, Any] = {}
        diffs: dict[str, Any] = {}
        sandbox_ok = True
        unavailable: str | None = None
        started = time.perf_counter()
        for flow in flows:
            if flow.spec is None:
                continue
            cases = await self.cases(flow.flow_id, proposal.head_commit)
            if not cases:
                results[flow.flow_id] = {"backend": runner.name, "cases": [], "note": "no cases"}
                continue
            bundle = SandboxBundle(
                flow=flow.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                cases=tuple(cases),
                settings=self.settings.bundle,
                label=f"proposal {proposal.id} revision {proposal.revision}",
            )
            began = time.perf_counter()
            try:
                result = await runner.run(bundle)
            except LinkloomError as exc:  # the backend itself broke (Docker went away)
                unavailable = exc.message
                metrics.sandbox_finished(
                    backend=runner.name, outcome="error", seconds=time.perf_counter() - began
                )
                break
            metrics.sandbox_finished(
                backend=runner.name,
                outcome="succeeded" if result.ok else "failed",
                seconds=time.perf_counter() - began,
            )
            sandbox_ok = sandbox_ok and result.ok
            results[flow.flow_id] = result.to_dict()
            diffs[flow.flow_id] = diff.diff_results(
                cases, result, ignore=self.settings.ignore
            ).to_dict()
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        if unavailable is not None:
            return (
                Outcome(status=CheckStatus.ERROR, summary=f"sandbox unavailable: {unavailable}"),
                Outcome(status=CheckStatus.SKIPPED, summary="the sandbox did not finish"),
            )
        cases_run = sum(len(r.get("cases") or []) for r in results.values())
        backend = runner.name
        sandbox = Outcome(
            status=CheckStatus.PASSED if sandbox_ok else CheckStatus.FAILED,
            summary=_sandbox_summary(results, backend=backend, cases=cases_run, ok=sandbox_ok),
            details={"backend": backend, "duration_ms": elapsed, "flows": results},
        )
        return sandbox, diff_outcome(diffs, backend=backend)


def _sandbox_summary(results: Mapping[str, Any], *, backend: str, cases: int, ok: bool) -> str:
    if ok:
        return f"{cases} case(s) replayed in {backend}"
    reasons = []
    for flow_id, result in results.items():
        if result.get("error"):
            reasons.append(f"{flow_id}: {result['error']}")
        for case in result.get("cases") or []:
            if case.get("error"):
                reasons.append(f"{flow_id}/{case['case']}: {case['error']}")
    return f"sandbox ({backend}) could not finish: " + "; ".join(reasons[:3])


def diff_outcome(diffs: Mapping[str, Any], *, backend: str) -> Outcome:
    """The diff check: passed when computed; ``attention`` flags what reviewers must look at."""
    parts = []
    attention = False
    for flow_id, data in diffs.items():
        summary = diff.DiffSummary.from_dict(data.get("summary") or {})
        parts.append(f"{flow_id}: {diff.summary_line(summary)}")
        attention = attention or bool(
            summary.newly_failing or summary.unrecorded or summary.sandbox_errors
        )
    text = "; ".join(parts) or "nothing to compare (no fixture cases)"
    return Outcome(
        status=CheckStatus.PASSED,
        summary=text,
        details={"backend": backend, "attention": attention, "flows": dict(diffs)},
    )


CHECK_NAMES = (CheckName.VALIDATE, CheckName.PLAN, CheckName.SANDBOX, CheckName.DIFF)
