"""Result diffing: what a proposal did differently from production on the same fixture cases.

``diff_results(cases, sandbox_result, ignore=[...])`` compares each case's production results
(``FixtureCase.expected`` / ``run_status`` / ``run_outputs``) with the proposal's sandbox results
and classifies every step: unchanged, changed (a deepdiff turned into ``{path, production,
proposed}`` entries), added, removed, newly failing, newly passing. Requests the proposal made that
production never made ("would have called") come from the sandbox's unrecorded list.

Ignore rules are globs on result paths (``output.generated_at``, ``*.timestamp``,
``output.rows[*].id``); a rule also ignores everything below the path it matches.
``render_terminal`` gives a coloured Rich rendering, ``render_html`` escaped HTML for the UI.
"""

from __future__ import annotations

import fnmatch
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deepdiff import DeepDiff
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from linkloom.proposals.models import (
    CaseDiff,
    DiffSummary,
    FieldChange,
    ProposalDiff,
    StepChange,
    StepDiff,
)
from linkloom.sandbox import fixtures, replay, runner

_FAILING = frozenset({"FAILED", "CANCELLED", "ERROR"})
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
) -> ProposalDiff:
    """Diff every case of a sandbox run against its production recording."""
    by_name = {c.case: c for c in result.cases}
    diffs = []
    for case in cases:
        proposed = by_name.get(case.name) or runner.CaseResult(
            case=case.name,
            run_status=runner.SANDBOX_ERROR,
            error=result.error or "the sandbox returned no result for this case",
        )
        diffs.append(diff_case(case, proposed, ignore=ignore))
    return ProposalDiff(
        cases=tuple(diffs),
        summary=summarise(diffs),
        backend=result.backend,
        ignore=tuple(ignore),
    )


def diff_case(
    case: fixtures.FixtureCase, proposed: runner.CaseResult, *, ignore: Sequence[str] = ()
) -> CaseDiff:
    steps: list[StepDiff] = []
    if proposed.error is None:
        for step_id in _ordered_ids(case.expected, proposed.steps):
            steps.append(
                diff_step(step_id, case.expected.get(step_id), proposed.steps.get(step_id), ignore)
            )
    return CaseDiff(
        case=case.name,
        production_status=case.run_status,
        proposed_status=proposed.run_status,
        steps=tuple(steps),
        run_output_changes=tuple(
            changes(case.run_outputs, proposed.run_outputs, ignore=ignore, prefix="outputs")
        )
        if proposed.error is None
        else (),
        unrecorded=tuple(proposed.unrecorded),
        changed_requests=tuple(_request_change(c, ignore) for c in proposed.changed_requests),
        sandbox_error=proposed.error,
    )


def _request_change(call: Mapping[str, Any], ignore: Sequence[str]) -> dict[str, Any]:
    volatile = replay.DEFAULT_IGNORED_PATHS
    found = changes(
        replay.drop_paths(call.get("recorded_body"), volatile),
        replay.drop_paths(call.get("body"), volatile),
        ignore=ignore,
        prefix="body",
    )
    return {
        "method": call.get("method"),
        "url": call.get("url"),
        "step_id": call.get("step_id"),
        "changes": [c.to_dict() for c in found],
    }


def diff_step(
    step_id: str,
    production: fixtures.ExpectedStep | None,
    proposed: runner.StepOutcome | None,
    ignore: Sequence[str] = (),
) -> StepDiff:
    if production is None and proposed is not None:
        return StepDiff(
            step_id=step_id,
            change=StepChange.ADDED,
            proposed_status=proposed.status,
            proposed_error=proposed.error,
        )
    if proposed is None:
        assert production is not None
        return StepDiff(
            step_id=step_id, change=StepChange.REMOVED, production_status=production.status
        )
    assert production is not None
    before = {
        "status": production.status,
        "output": production.output,
        "outputs": production.outputs,
    }
    after = {"status": proposed.status, "output": proposed.output, "outputs": proposed.outputs}
    found = tuple(changes(before, after, ignore=ignore))
    was_failing = production.status in _FAILING
    is_failing = proposed.status in _FAILING
    if not was_failing and is_failing:
        change = StepChange.NEWLY_FAILING
    elif was_failing and not is_failing:
        change = StepChange.NEWLY_PASSING
    else:
        change = StepChange.CHANGED if found else StepChange.UNCHANGED
    return StepDiff(
        step_id=step_id,
        change=change,
        production_status=production.status,
        proposed_status=proposed.status,
        changes=found,
        proposed_error=proposed.error,
    )


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
    counts = dict.fromkeys(StepChange, 0)
    total = changed_cases = unrecorded = changed_requests = errors = 0
    for case in cases:
        total += 1
        changed_cases += case.changed
        unrecorded += len(case.unrecorded)
        changed_requests += len(case.changed_requests)
        errors += case.sandbox_error is not None
        for step in case.steps:
            counts[step.change] += 1
    return DiffSummary(
        cases=total,
        cases_changed=changed_cases,
        unchanged=counts[StepChange.UNCHANGED],
        changed=counts[StepChange.CHANGED],
        added=counts[StepChange.ADDED],
        removed=counts[StepChange.REMOVED],
        newly_failing=counts[StepChange.NEWLY_FAILING],
        newly_passing=counts[StepChange.NEWLY_PASSING],
        unrecorded=unrecorded,
        changed_requests=changed_requests,
        sandbox_errors=errors,
    )


def _ordered_ids(expected: Mapping[str, Any], proposed: Mapping[str, Any]) -> list[str]:
    ids = list(expected)
    ids += [s for s in proposed if s not in expected]
    return ids


def _plain(value: Any) -> Any:
    """deepdiff hands back the original objects; keep them JSON-able."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


# ------------------------------------------------------------------------------- rendering

_STYLE = {
    StepChange.UNCHANGED: "dim",
    StepChange.CHANGED: "yellow",
    StepChange.ADDED: "green",
    StepChange.REMOVED: "red",
    StepChange.NEWLY_FAILING: "bold red",
    StepChange.NEWLY_PASSING: "bold green",
}


def summary_line(summary: DiffSummary) -> str:
    return (
        f"{summary.cases} cases, {summary.cases_changed} with differences: "
        f"{summary.changed} changed, {summary.added} added, {summary.removed} removed, "
        f"{summary.newly_failing} newly failing, {summary.newly_passing} newly passing, "
        f"{summary.unrecorded} unrecorded requests, "
        + (f"{summary.changed_requests} changed requests, " if summary.changed_requests else "")
        + f"{summary.unchanged} unchanged steps"
        + (f", {summary.sandbox_errors} sandbox errors" if summary.sandbox_errors else "")
    )


def _short(value: Any, limit: int = 300) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_terminal(diff: ProposalDiff, *, show_unchanged: bool = False) -> RenderableType:
    """Side-by-side, coloured: one table per case with production and proposed values."""
    colour = "green" if diff.summary.clean else "yellow"
    parts: list[RenderableType] = [
        Text(summary_line(diff.summary), style=f"bold {colour}"),
        Text(f"sandbox backend: {diff.backend or '?'}", style="dim"),
    ]
    for case in diff.cases:
        title = f"case {case.case}: {case.production_status or '?'} → {case.proposed_status}"
        table = Table(title=title, title_justify="left", expand=True, show_lines=False)
        table.add_column("step")
        table.add_column("change")
        table.add_column("path")
        table.add_column("production", style="red", overflow="fold")
        table.add_column("proposed", style="green", overflow="fold")
        if case.sandbox_error:
            table.add_row("—", Text("sandbox error", style="bold red"), "", "", case.sandbox_error)
        for step in case.steps:
            if step.change is StepChange.UNCHANGED and not show_unchanged:
                continue
            label = Text(step.change.value.replace("_", " "), style=_STYLE[step.change])
            if not step.changes:
                table.add_row(
                    step.step_id,
                    label,
                    "status",
                    _short(step.production_status),
                    _short(step.proposed_status)
                    + (f" ({step.proposed_error})" if step.proposed_error else ""),
                )
            for n, change in enumerate(step.changes):
                table.add_row(
                    step.step_id if n == 0 else "",
                    label if n == 0 else "",
                    change.path,
                    _short(change.production),
                    _short(change.proposed),
                )
        for change in case.run_output_changes:
            table.add_row(
                "(run)", "changed", change.path, _short(change.production), _short(change.proposed)
            )
        for call in case.changed_requests:
            for n, change in enumerate(call.get("changes") or [{}]):
                table.add_row(
                    (call.get("step_id") or "?") if n == 0 else "",
                    Text("sent differently", style="magenta") if n == 0 else "",
                    f"{call.get('method')} {call.get('url')} {change.get('path', '')}",
                    _short(change.get("production")),
                    _short(change.get("proposed")),
                )
        for call in case.unrecorded:
            table.add_row(
                call.get("step_id") or "?",
                Text("would have called", style="bold magenta"),
                "",
                "(never called in production)",
                f"{call.get('method')} {call.get('url')}",
            )
        parts.append(table)
    return Group(*parts)


HTML_STYLE = """
.loom-diff table{border-collapse:collapse;width:100%;margin:0 0 1.5em}
.loom-diff th,.loom-diff td{border:1px solid #ddd;padding:.3em .5em;vertical-align:top;
  font-family:ui-monospace,monospace;font-size:.9em;white-space:pre-wrap;word-break:break-word}
.loom-diff .production{background:#fff0f0}.loom-diff .proposed{background:#f0fff0}
.loom-diff .change-unchanged{color:#888}.loom-diff .change-changed{color:#a60}
.loom-diff .change-added,.loom-diff .change-newly_passing{color:#070}
.loom-diff .change-removed,.loom-diff .change-newly_failing,.loom-diff .sandbox-error{color:#b00}
.loom-diff .unrecorded,.loom-diff .changed-request{color:#808}
"""


def render_html(diff: ProposalDiff, *, show_unchanged: bool = False) -> str:
    """An HTML fragment (``<div class="loom-diff">``); every value is escaped."""
    e = html.escape
    out = ['<div class="loom-diff">', f'<p class="summary">{e(summary_line(diff.summary))}</p>']
    out.append(f'<p class="backend">sandbox backend: {e(diff.backend or "?")}</p>')
    for case in diff.cases:
        out.append(
            f'<section class="case" data-case="{e(case.case)}"><h3>case {e(case.case)}: '
            f"{e(case.production_status or '?')} → {e(case.proposed_status)}</h3>"
        )
        out.append(
            "<table><thead><tr><th>step</th><th>change</th><th>path</th>"
            "<th>production</th><th>proposed</th></tr></thead><tbody>"
        )
        if case.sandbox_error:
            out.append(
                '<tr class="sandbox-error"><td>—</td><td>sandbox error</td><td></td><td></td>'
                f"<td>{e(case.sandbox_error)}</td></tr>"
            )
        for step in case.steps:
            if step.change is StepChange.UNCHANGED and not show_unchanged:
                continue
            cls = f"change-{step.change.value}"
            rows = step.changes or (
                FieldChange(
                    path="status",
                    kind="changed",
                    production=step.production_status,
                    proposed=step.proposed_status
                    + (f" ({step.proposed_error})" if step.proposed_error else "")
                    if step.proposed_status
                    else None,
                ),
            )
            for change in rows:
                out.append(
                    f'<tr class="{cls}" data-step="{e(step.step_id)}"><td>{e(step.step_id)}</td>'
                    f"<td>{e(step.change.value.replace('_', ' '))}</td><td>{e(change.path)}</td>"
                    f'<td class="production">{e(_short(change.production, 2000))}</td>'
                    f'<td class="proposed">{e(_short(change.proposed, 2000))}</td></tr>'
                )
        for change in case.run_output_changes:
            out.append(
                f'<tr class="change-changed"><td>(run)</td><td>changed</td><td>{e(change.path)}'
                f'</td><td class="production">{e(_short(change.production, 2000))}</td>'
                f'<td class="proposed">{e(_short(change.proposed, 2000))}</td></tr>'
            )
        for call in case.changed_requests:
            for change in call.get("changes") or [{}]:
                out.append(
                    f'<tr class="changed-request"><td>{e(str(call.get("step_id") or "?"))}</td>'
                    f"<td>sent differently</td><td>{e(str(call.get('method')))} "
                    f"{e(str(call.get('url')))} {e(str(change.get('path', '')))}</td>"
                    f'<td class="production">{e(_short(change.get("production"), 2000))}</td>'
                    f'<td class="proposed">{e(_short(change.get("proposed"), 2000))}</td></tr>'
                )
        for call in case.unrecorded:
            out.append(
                f'<tr class="unrecorded"><td>{e(str(call.get("step_id") or "?"))}</td>'
                "<td>would have called</td><td></td><td>(never called in production)</td>"
                f"<td>{e(str(call.get('method')))} {e(str(call.get('url')))}</td></tr>"
            )
        out.append("</tbody></table></section>")
    out.append("</div>")
    return "\n".join(out)
