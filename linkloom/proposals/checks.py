"""Running a proposal's checks: validate, plan, sandbox, diff (in that order).

Each check ends ``passed``, ``attention`` (it finished and a reviewer must look), ``failed`` (the
proposal needs a new revision), ``skipped`` (an earlier check failed) or ``error`` (the check
could not run, e.g. no sandbox backend; run the checks again later).

The sandbox runs every case on the proposed version and on the current production version (and
on the version that recorded it, when production moved since); it fails only when it could not
finish a case (timeout, limit hit, crash). The diff check then tells the truth about what the
proposal changes: ``failed`` when a case newly fails or a request has no recording and no stub,
``attention`` when results change, ``passed`` when nothing does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from linkloom import metrics
from linkloom.engine.models import RunStatus
from linkloom.engine.records import RunFilter
from linkloom.errors import LinkloomError
from linkloom.flows import gitstore, loading
from linkloom.flows.spec import FlowSpec
from linkloom.proposals import diff, limits, plan, render
from linkloom.proposals.models import (
    CheckName,
    CheckStatus,
    DiffSummary,
    Proposal,
    ProposalSettings,
    Severity,
)
from linkloom.sandbox import collection, fixtures
from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.errors import InvalidFixture
from linkloom.sandbox.runner import SandboxRunner

if TYPE_CHECKING:
    from linkloom.engine.service import RunService

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
        runs: RunService,
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

    async def validate(self, proposal: Proposal, flows: list[Proposed]) -> Outcome:
        """Every spec as ``loom validate`` checks it, and the files beside it at the head: fixture
        cases, ``stubs.yaml`` and ``policy.yaml`` must parse."""
        details: dict[str, Any] = {}
        errors = warnings = 0
        for flow in flows:
            companions = await self.companion_problems(flow.flow_id, proposal.head_commit)
            if flow.text is None:
                errors += len(companions)
                details[flow.flow_id] = {
                    "ok": not companions,
                    "deleted": True,
                    "problems": companions,
                }
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
            problems += companions
            ok = not any(p["severity"] == "error" for p in problems)
            flow.spec = result.spec if ok else None
            errors += sum(p["severity"] == "error" for p in problems)
            warnings += sum(p["severity"] == "warning" for p in problems)
            details[flow.flow_id] = {"ok": ok, "problems": problems}
        status = CheckStatus.FAILED if errors else CheckStatus.PASSED
        text = f"{len(flows)} flow(s): {errors} error(s), {warnings} warning(s)"
        return Outcome(status=status, summary=text, details={"flows": details})

    async def companion_problems(self, flow_id: str, ref: str) -> list[dict[str, Any]]:
        """Problems of the fixture cases, stubs and policy files of ``flow_id`` at ``ref``
        (``limits.companion_problem``, which also refuses such files before they are
        committed)."""
        from linkloom.proposals import policy

        out: list[dict[str, Any]] = []
        directory = f"{gitstore.FLOWS_DIR}/{flow_id}"
        for name, text in (await self.repo.fixture_files(flow_id, ref)).items():
            path = f"{directory}/fixtures/{name}.yaml"
            problem = limits.companion_problem(path, text)
            if problem is not None:
                out.append(_problem(path, problem, "invalid-fixture"))
        path = f"{directory}/{policy.POLICY_FILE}"
        text = await self.repo.file_at(ref, path)
        if text is not None:
            problem = limits.companion_problem(path, text)
            if problem is not None:
                out.append(_problem(path, problem, "invalid-policy"))
        return out

    # ------------------------------------------------------------------ plan

    async def plan(self, flows: list[Proposed]) -> Outcome:
        plans = []
        now = self.clock.now()
        for flow in flows:
            before, version = await self.production_spec(flow.flow_id)
            in_flight: list[Any] = []
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
                    before_text=await self.production_text(flow.flow_id, version),
                    after_text=flow.text,
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

    async def production_text(self, flow_id: str, version: int | None) -> str | None:
        """Production's spec as written in git: the file at the commit the version came from,
        when its text is the one the version recorded (None for a version applied by hand)."""
        if version is None:
            return None
        try:
            found = await self.runs.get_flow_version(flow_id, version)
        except LinkloomError:
            return None
        if not found.git_commit:
            return None
        try:
            file: gitstore.FlowFile | None = await self.repo.read_flow(flow_id, found.git_commit)
        except LinkloomError:
            return None  # that commit is gone (a rewritten remote)
        if file is None or file.content_hash != found.content_hash:
            return None
        return file.text

    # ------------------------------------------------------------------ sandbox + diff

    async def cases(self, flow_id: str, ref: str) -> list[fixtures.FixtureCase]:
        production = await collection.production_cases(
            self.runs,
            flow_id,
            limit=self.settings.fixture_runs,
            failed=self.settings.failed_fixture_runs,
            secrets=self.settings.secrets,
        )
        texts = await self.repo.fixture_files(flow_id, ref)
        return collection.flow_cases(production, texts)

    async def bundle(self, proposal: Proposal, flow: Proposed) -> SandboxBundle | None:
        """What the sandbox runs for one flow: the proposed and production specs, the specs
        of older versions that recorded cases, the proposal's stubs and the cases (None: no
        cases). Raises ``InvalidFixture`` for a case or stubs file that does not parse."""
        assert flow.spec is not None
        cases = await self.cases(flow.flow_id, proposal.head_commit)
        if not cases:
            return None
        texts = await self.repo.fixture_files(flow.flow_id, proposal.head_commit)
        production, version = await self.production_spec(flow.flow_id)
        versions: dict[int, dict[str, Any]] = {}
        for case in cases:
            recorded = case.version
            if production is None or recorded in (None, version) or recorded in versions:
                continue
            try:
                spec = await self.runs.get_spec(flow.flow_id, recorded)
            except LinkloomError:
                continue  # that version is gone: the case cannot be checked for reproduction
            versions[recorded] = _dump(spec)
        return SandboxBundle(
            flow=_dump(flow.spec),
            production=_dump(production) if production is not None else None,
            production_version=version if production is not None else None,
            versions=versions,
            stubs=fixtures.stubs_from_texts(texts),
            cases=tuple(cases),
            settings=self.settings.bundle,
            label=f"proposal {proposal.id} revision {proposal.revision}",
        )

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
            try:
                bundle = await self.bundle(proposal, flow)
            except InvalidFixture as exc:
                sandbox_ok = False
                results[flow.flow_id] = {"backend": runner.name, "cases": [], "error": exc.message}
                continue
            if bundle is None:
                results[flow.flow_id] = {"backend": runner.name, "cases": [], "note": "no cases"}
                continue
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
                bundle.cases,
                result,
                ignore=self.settings.ignore,
                production_version=bundle.production_version,
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


def _problem(path: str, message: str, code: str) -> dict[str, Any]:
    return {
        "file": path, "line": 1, "column": 1, "path": "$", "message": message, "hint": "",
        "severity": "error", "code": code,
    }  # fmt: skip


def _dump(spec: FlowSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


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
    """The diff check: ``failed`` when a case newly fails or a call has no answer, ``attention``
    when results change, ``passed`` when nothing does (or there is nothing to compare)."""
    parts = []
    severities = set()
    for flow_id, data in diffs.items():
        summary = DiffSummary.from_dict(data.get("summary") or {})
        parts.append(f"{flow_id}: {render.summary_line(summary)}")
        severities.add(summary.severity)
    if Severity.FAILED in severities:
        status = CheckStatus.FAILED
    elif Severity.ATTENTION in severities:
        status = CheckStatus.ATTENTION
    else:
        status = CheckStatus.PASSED
    text = "; ".join(parts) or "nothing to compare (no fixture cases)"
    return Outcome(
        status=status,
        summary=text,
        details={
            "backend": backend,
            "attention": status is not CheckStatus.PASSED,
            "flows": dict(diffs),
        },
    )


CHECK_NAMES = (CheckName.VALIDATE, CheckName.PLAN, CheckName.SANDBOX, CheckName.DIFF)
