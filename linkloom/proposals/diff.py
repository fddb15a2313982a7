"""Result diffing: what a proposal does differently from current production on the same cases.

For every fixture case the sandbox ran the proposed version and the current production version
on the same inputs, recordings and frozen clock (``sandbox.runner.CaseResult``).
``diff_results(cases, sandbox_result, ignore=[...])`` compares those two runs step by step —
unchanged, changed (a deepdiff turned into ``{path, production, proposed}`` entries), added,
removed, newly failing (a step added by the proposal that fails counts too), newly passing, not
reached (skipped because an upstream step now fails) — and the requests each sent: the proposal's
requests that differ from production's are "sent differently", those nothing could answer
"would have called", those a stub answered "stubbed".

Separately, each case's recording is checked against a replay of the version that recorded it
(production's, or the older recording version's when production moved since): a mismatch marks
the case *not reproducible* (fixture drift or non-determinism, with the first differing step and
path); such cases are shown apart and never counted as changes of the proposal. A flow that is
new in the proposal has no production to replay: its cases' expected results stand in.

Ignore rules are globs on result paths (``output.generated_at``, ``*.timestamp``,
``output.rows[*].id``); a rule also ignores everything below the path it matches.
``findings.group`` turns the result into grouped findings; ``render`` draws it.
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deepdiff import DeepDiff

from linkloom.proposals import findings
from linkloom.proposals.models import (
    CaseDiff,
    DiffSummary,
    FieldChange,
    ProposalDiff,
    Reproduction,
    StepChange,
    StepDiff,
)
from linkloom.sandbox import fixtures, replay, runner

FAILING = frozenset({"FAILED", "CANCELLED", "ERROR", runner.SANDBOX_ERROR})
_UPSTREAM_FAILED = "join"  # skip_reason of a step whose upstream failed
_CATEGORY_KIND = {
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "attribute_added": "added",
    "set_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
    "attribute_removed": "removed",
    "set_item_removed": "removed",
}


def diff_results(
    cases: Sequence[fixtures.FixtureCase],
    result: runner.SandboxResult,
    *,
    ignore: Sequence[str] = (),
    production_version: int | None = None,
) -> ProposalDiff:
    """Diff every case of a sandbox run: the proposal against production, both replayed."""
    by_name = {c.case: c for c in result.cases}
    diffs = []
    for case in cases:
        ran = by_name.get(case.name) or runner.CaseResult.failed(
            case.name, result.error or "the sandbox returned no result for this case"
        )
        diffs.append(diff_case(case, ran, ignore=ignore, production_version=production_version))
    summary = summarise(diffs)
    return ProposalDiff(
        cases=tuple(diffs),
        summary=summary,
        findings=findings.group(diffs),
        backend=result.backend,
        ignore=tuple(ignore),
        production_version=production_version,
    )


def diff_case(
    case: fixtures.FixtureCase,
    result: runner.CaseResult,
    *,
    ignore: Sequence[str] = (),
    production_version: int | None = None,
) -> CaseDiff:
    proposed = result.proposed
    baseline = result.production or _expected_run(case)
    info = _case_info(case)
    error = result.error
    if error is not None:
        return CaseDiff(
            case=case.name,
            production_status=baseline.run_status,
            proposed_status=proposed.run_status,
            unrecorded=tuple(proposed.unrecorded),
            sandbox_error=error,
            **info,
        )
    steps = [
        diff_step(step_id, baseline.steps.get(step_id), proposed.steps.get(step_id), ignore)
        for step_id in _ordered_ids(baseline.steps, proposed.steps)
    ]
    sent, stubbed = request_changes(baseline.requests, proposed.requests, ignore=ignore)
    return CaseDiff(
        case=case.name,
        production_status=baseline.run_status,
        proposed_status=proposed.run_status,
        steps=tuple(steps),
        run_output_changes=tuple(
            changes(baseline.run_outputs, proposed.run_outputs, ignore=ignore, prefix="outputs")
        ),
        unrecorded=tuple(proposed.unrecorded),
        changed_requests=tuple(sent),
        stubbed=tuple(stubbed),
        not_reproducible=reproduction(
            case, result, ignore=ignore, production_version=production_version
        ),
        **info,
    )


def _case_info(case: fixtures.FixtureCase) -> dict[str, Any]:
    return {
        "inputs": dict(case.inputs),
        "source": dict(case.source),
        "recorded_at": case.recorded_at.isoformat(),
        "recorded_status": case.run_status,
    }


def _expected_run(case: fixtures.FixtureCase) -> runner.CaseRun:
    """A new flow has no production to replay: the case's expected results stand in."""
    return runner.CaseRun(
        run_status=case.run_status or "SUCCEEDED",
        steps={
            k: runner.StepOutcome(
                status=v.status, output=v.output, outputs=v.outputs, error=v.error
            )
            for k, v in case.expected.items()
        },
        run_outputs=dict(case.run_outputs),
        requests=tuple(
            replay.SentRequest(
                step_id=x.step_id, item_index=x.item_index, method=x.method, url=x.url,
                body=x.request_body, answer="recording",
            )
            for x in case.exchanges
        ),
    )  # fmt: skip


def diff_step(
    step_id: str,
    production: runner.StepOutcome | fixtures.ExpectedStep | None,
    proposed: runner.StepOutcome | None,
    ignore: Sequence[str] = (),
) -> StepDiff:
    if production is None:
        assert proposed is not None
        failing = proposed.status in FAILING
        return StepDiff(
            step_id=step_id,
            change=StepChange.NEWLY_FAILING if failing else StepChange.ADDED,
            proposed_status=proposed.status,
            proposed_error=proposed.error,
        )
    if proposed is None:
        return StepDiff(
            step_id=step_id,
            change=StepChange.REMOVED,
            production_status=production.status,
            production_error=production.error,
        )
    found = tuple(changes(_view(production), _view(proposed), ignore=ignore))
    was_failing = production.status in FAILING
    is_failing = proposed.status in FAILING
    upstream_failed = getattr(proposed, "skip_reason", None) == _UPSTREAM_FAILED
    if not was_failing and is_failing:
        change = StepChange.NEWLY_FAILING
    elif was_failing and proposed.status == "SUCCEEDED":
        change = StepChange.NEWLY_PASSING
    elif proposed.status == "SKIPPED" and production.status != "SKIPPED" and upstream_failed:
        change = StepChange.NOT_REACHED
    else:
        change = StepChange.CHANGED if found else StepChange.UNCHANGED
    return StepDiff(
        step_id=step_id,
        change=change,
        production_status=production.status,
        proposed_status=proposed.status,
        changes=found,
        proposed_error=proposed.error,
        production_error=production.error,
    )


def _view(step: runner.StepOutcome | fixtures.ExpectedStep) -> dict[str, Any]:
    view = {"status": step.status, "output": step.output, "outputs": step.outputs}
    if step.status in FAILING:
        view["error"] = step.error
    return view


# ---------------------------------------------------------------------------- reproduction


def reproduction(
    case: fixtures.FixtureCase,
    result: runner.CaseResult,
    *,
    ignore: Sequence[str] = (),
    production_version: int | None = None,
) -> Reproduction | None:
    """Whether replaying the version that recorded ``case`` gives the recorded result.

    Returns None when it does (or when nothing can tell: a new flow, or a recording version
    whose spec is gone); else where it first differs. A hand-written case is checked against
    production for the steps it lists.
    """
    replayed = result.recorded
    if replayed is None and case.version in (None, production_version):
        replayed = result.production
    if replayed is None:
        return None
    if replayed.unrecorded:
        call = replayed.unrecorded[0]
        return Reproduction(
            reason=f"the replay of production made a request with no recording: "
            f"{call.get('method')} {call.get('url')} (the case was recorded before "
            "this request was recorded as sent, or production now sends it otherwise)",
            step_id=call.get("step_id"),
        )
    for step_id, expected in case.expected.items():
        got = replayed.steps.get(step_id)
        if got is None:
            return Reproduction(reason="the replay did not run this step", step_id=step_id)
        found = changes(_view(expected), _view(got), ignore=ignore)
        if found:
            first = found[0]
            return Reproduction(
                reason="the replay's result differs from the recorded one",
                step_id=step_id,
                path=first.path,
                recorded=first.production,
                replayed=first.proposed,
            )
    if case.run_status and case.run_status != replayed.run_status and case.expected:
        return Reproduction(
            reason=f"the run ended {replayed.run_status} in the replay, "
            f"{case.run_status} when recorded"
        )
    return None


# ---------------------------------------------------------------------------- requests


def request_changes(
    production: Sequence[replay.SentRequest],
    proposed: Sequence[replay.SentRequest],
    *,
    ignore: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The proposal's requests that differ from production's, and those a stub answered.

    Requests are paired per step (and fan-out item) in the order sent, retries of one request
    counted once; a pair differs when its method, URL or body (volatile paths dropped) does.
    """
    before = _per_step(production)
    sent: list[dict[str, Any]] = []
    stubbed: list[dict[str, Any]] = []
    for key, requests in _per_step(proposed).items():
        previous = before.get(key, [])
        for n, request in enumerate(requests):
            if request.answer == "stub":
                stubbed.append(
                    {"method": request.method, "url": request.url, "step_id": request.step_id,
                     "item_index": request.item_index, "stub": request.stub}
                )  # fmt: skip
                continue
            if request.answer == "unrecorded" or n >= len(previous):
                continue  # unrecorded requests are listed on their own
            other = previous[n]
            found = _request_diff(other, request, ignore)
            if found:
                sent.append(
                    {"method": request.method, "url": request.url, "step_id": request.step_id,
                     "item_index": request.item_index, "changes": [c.to_dict() for c in found]}
                )  # fmt: skip
    return sent, stubbed


def _per_step(
    requests: Iterable[replay.SentRequest],
) -> dict[tuple[str | None, int | None], list[replay.SentRequest]]:
    out: dict[tuple[str | None, int | None], list[replay.SentRequest]] = defaultdict(list)
    for request in requests:
        group = out[(request.step_id, request.item_index)]
        if group and group[-1].key == request.key:
            continue  # a retry of the same request
        group.append(request)
    return out


def _request_diff(
    before: replay.SentRequest, after: replay.SentRequest, ignore: Sequence[str]
) -> list[FieldChange]:
    volatile = replay.DEFAULT_IGNORED_PATHS
    found: list[FieldChange] = []
    if before.method != after.method:
        found.append(FieldChange(path="method", kind="changed", production=before.method,
                                 proposed=after.method))  # fmt: skip
    if replay.normalise_url(before.url) != replay.normalise_url(after.url):
        found.append(
            FieldChange(path="url", kind="changed", production=before.url, proposed=after.url)
        )
    found += changes(
        replay.drop_paths(before.body, volatile),
        replay.drop_paths(after.body, volatile),
        ignore=ignore,
        prefix="body",
    )
    return found


# ---------------------------------------------------------------------------- field changes


def changes(
    production: Any, proposed: Any, *, ignore: Sequence[str] = (), prefix: str = ""
) -> list[FieldChange]:
    """A readable deep diff: one ``FieldChange`` per differing path, ignored paths dropped."""
    if _same(production, proposed):
        return []  # most steps of most cases: skip deepdiff (~3 ms a call) when nothing differs
    tree = DeepDiff(production, proposed, view="tree", verbose_level=2)
    out: list[FieldChange] = []
    for category, levels in tree.items():
        kind = _CATEGORY_KIND.get(category, "changed")
        for level in levels:
            path = format_path(level.path(output_format="list"), prefix=prefix)
            if ignored(path, ignore):
                continue
            out.append(
                FieldChange(
                    path=path,
                    kind=kind,
                    production=None if kind == "added" else _plain(level.t1),
                    proposed=None if kind == "removed" else _plain(level.t2),
                )
            )
    out.sort(key=lambda c: c.path)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (1, 1.0 and true stay different, as deepdiff sees them)."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


def format_path(parts: Iterable[Any], *, prefix: str = "") -> str:
    text = prefix
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(root)"


def ignored(path: str, patterns: Sequence[str]) -> bool:
    """Whether ``path`` or one of its parents matches an ignore glob (``[*]`` matches indexes)."""
    for pattern in patterns:
        glob = pattern.replace("[*]", "[[]*[]]")
        if fnmatch.fnmatchcase(path, glob):
            return True
        if fnmatch.fnmatchcase(path, glob + ".*") or fnmatch.fnmatchcase(path, glob + "[[]*"):
            return True
    return False


def summarise(cases: Iterable[CaseDiff]) -> DiffSummary:
    """Counts over reproducible cases; not reproducible ones are only counted as such."""
    counts = dict.fromkeys(StepChange, 0)
    total = changed_cases = failing = unrecorded = changed_requests = stubbed = errors = 0
    apart = 0
    for case in cases:
        if case.sandbox_error is not None:
            errors += 1
            total += 1
            changed_cases += 1
            continue
        if not case.reproducible:
            apart += 1
            continue
        total += 1
        changed_cases += case.changed
        failing += case.newly_failing
        unrecorded += len(case.unrecorded)
        changed_requests += len(case.changed_requests)
        stubbed += len(case.stubbed)
        for step in case.steps:
            counts[step.change] += 1
    return DiffSummary(
        cases=total,
        cases_changed=changed_cases,
        cases_failing=failing,
        unchanged=counts[StepChange.UNCHANGED],
        changed=counts[StepChange.CHANGED],
        added=counts[StepChange.ADDED],
        removed=counts[StepChange.REMOVED],
        newly_failing=counts[StepChange.NEWLY_FAILING],
        newly_passing=counts[StepChange.NEWLY_PASSING],
        not_reached=counts[StepChange.NOT_REACHED],
        unrecorded=unrecorded,
        changed_requests=changed_requests,
        stubbed=stubbed,
        sandbox_errors=errors,
        not_reproducible=apart,
    )


def _ordered_ids(production: Mapping[str, Any], proposed: Mapping[str, Any]) -> list[str]:
    ids = list(production)
    ids += [s for s in proposed if s not in production]
    return ids


def _plain(value: Any) -> Any:
    """deepdiff hands back the original objects; keep them JSON-able."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
