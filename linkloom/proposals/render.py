"""Drawing a proposal's diff for people: the terminal (Rich), the web UI (HTML), pull requests
(Markdown). Each leads with the grouped findings; the per-case tables follow (in the terminal
with ``cases=True``, on the web and in Markdown folded under each flow).

Every value is escaped for its medium; values derived from secrets are already ``***``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from linkloom.proposals.models import (
    CaseDiff,
    DiffSummary,
    FieldChange,
    Finding,
    ProposalDiff,
    Severity,
    StepChange,
)

_STYLE = {
    StepChange.UNCHANGED: "dim",
    StepChange.CHANGED: "yellow",
    StepChange.ADDED: "green",
    StepChange.REMOVED: "red",
    StepChange.NEWLY_FAILING: "bold red",
    StepChange.NEWLY_PASSING: "bold green",
    StepChange.NOT_REACHED: "red",
}
_SEVERITY_STYLE = {Severity.FAILED: "bold red", Severity.ATTENTION: "yellow", Severity.INFO: "dim"}
_MARK = {Severity.FAILED: "✗", Severity.ATTENTION: "!", Severity.INFO: "·"}


def summary_line(summary: DiffSummary) -> str:
    """One line of counts: what the diff check's summary says."""
    if summary.cases == 0 and not summary.not_reproducible:
        return "no cases to compare"
    parts = [f"{summary.cases} case(s), {summary.cases_changed} with differences"]
    counts = (
        (summary.newly_failing, "newly failing"),
        (summary.unrecorded, "unrecorded request(s)"),
        (summary.changed, "changed"),
        (summary.added, "added"),
        (summary.removed, "removed"),
        (summary.newly_passing, "newly passing"),
        (summary.not_reached, "not reached"),
        (summary.changed_requests, "sent differently"),
        (summary.stubbed, "stubbed"),
        (summary.sandbox_errors, "sandbox error(s)"),
    )
    found = [f"{n} {what}" for n, what in counts if n]
    if found:
        parts.append(", ".join(found))
    elif summary.cases:
        parts.append(f"all {summary.unchanged} step result(s) unchanged")
    if summary.not_reproducible:
        parts.append(f"{summary.not_reproducible} not reproducible (shown apart)")
    return "; ".join(parts)


def _short(value: Any, limit: int = 300) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _origin(case: CaseDiff) -> str:
    """Where a case comes from: its recorded run and version, and when."""
    run = case.source.get("run_id")
    version = case.source.get("flow_version")
    if not run:
        return "a hand-written case"
    when = (case.recorded_at or "")[:19].replace("T", " ")
    status = f", {case.recorded_status}" if case.recorded_status else ""
    return f"recorded from run {run} (version {version}{status}) at {when} UTC"


def _status_row(step: Any) -> FieldChange:
    proposed = step.proposed_status
    if proposed and step.proposed_error:
        proposed = f"{proposed} ({step.proposed_error})"
    production = step.production_status
    if production and step.production_error:
        production = f"{production} ({step.production_error})"
    return FieldChange(path="status", kind="changed", production=production, proposed=proposed)


def _rows(case: CaseDiff, show_unchanged: bool) -> list[tuple[str, str, str, str, Any, Any]]:
    """(css/style key, step, change label, path, production, proposed) of a case's table."""
    rows: list[tuple[str, str, str, str, Any, Any]] = []
    if case.sandbox_error:
        rows.append(("sandbox-error", "—", "sandbox error", "", None, case.sandbox_error))
    for step in case.steps:
        if step.change is StepChange.UNCHANGED and not show_unchanged:
            continue
        label = step.change.value.replace("_", " ")
        for n, change in enumerate(step.changes or (_status_row(step),)):
            first = n == 0
            rows.append(
                (step.change.value, step.step_id if first else "", label if first else "",
                 change.path, change.production, change.proposed)
            )  # fmt: skip
    for change in case.run_output_changes:
        rows.append(
            ("changed", "(run)", "changed", change.path, change.production, change.proposed)
        )
    for call in case.changed_requests:
        for n, change in enumerate(call.get("changes") or [{}]):
            rows.append(
                ("changed-request", str(call.get("step_id") or "?") if n == 0 else "",
                 "sent differently" if n == 0 else "",
                 f"{call.get('method')} {call.get('url')} {change.get('path', '')}".strip(),
                 change.get("production"), change.get("proposed"))
            )  # fmt: skip
    for call in case.stubbed:
        rows.append(
            ("stubbed", str(call.get("step_id") or "?"), "stubbed",
             f"{call.get('method')} {call.get('url')}", "(never called in production)",
             f"answered by stub {call.get('stub')!r}")
        )  # fmt: skip
    for call in case.unrecorded:
        rows.append(
            ("unrecorded", str(call.get("step_id") or "?"), "would have called", "",
             "(never called in production)", f"{call.get('method')} {call.get('url')}")
        )  # fmt: skip
    return rows


# ------------------------------------------------------------------------------- terminal


def render_terminal(
    diff: ProposalDiff, *, show_unchanged: bool = False, cases: bool = False
) -> RenderableType:
    """The findings, coloured by severity; with ``cases`` one side-by-side table per case."""
    colour = {None: "green", Severity.ATTENTION: "yellow", Severity.FAILED: "red"}
    parts: list[RenderableType] = [
        Text(
            summary_line(diff.summary), style=f"bold {colour.get(diff.summary.severity, 'white')}"
        ),
        Text(
            f"production: version {diff.production_version} replayed"
            if diff.production_version is not None
            else "a new flow: compared with its cases' expected results",
            style="dim",
        ),
    ]
    for finding in diff.findings:
        line = Text(f"  {_MARK[finding.severity]} ", style=_SEVERITY_STYLE[finding.severity])
        line.append(finding.text)
        parts.append(line)
    if not cases:
        if any(c.changed or not c.reproducible for c in diff.cases):
            parts.append(Text("per-case tables: --cases", style="dim"))
        return Group(*parts)
    for case in diff.cases:
        title = f"case {case.case}: {case.production_status or '?'} → {case.proposed_status}"
        if not case.reproducible and case.not_reproducible is not None:
            title += f"  [not reproducible: {case.not_reproducible.reason}]"
        table = Table(
            title=title, caption=f"{_origin(case)}; inputs {_short(case.inputs, 120)}",
            title_justify="left", caption_justify="left", expand=True, show_lines=False,
        )  # fmt: skip
        table.add_column("step")
        table.add_column("change")
        table.add_column("path")
        table.add_column("production", style="red", overflow="fold")
        table.add_column("proposed", style="green", overflow="fold")
        for kind, step, label, path, before, after in _rows(case, show_unchanged):
            style = _STYLE.get(StepChange(kind), "magenta") if kind in _STEP_KINDS else "magenta"
            table.add_row(step, Text(label, style=style), path, _short(before), _short(after))
        parts.append(table)
    return Group(*parts)


_STEP_KINDS = frozenset(c.value for c in StepChange)


# ------------------------------------------------------------------------------- html

HTML_STYLE = """
.loom-diff table{border-collapse:collapse;width:100%;margin:0 0 1.5em}
.loom-diff th,.loom-diff td{border:1px solid #ddd;padding:.3em .5em;vertical-align:top;
  font-family:ui-monospace,monospace;font-size:.9em;white-space:pre-wrap;word-break:break-word}
.loom-diff .production{background:#fff0f0}.loom-diff .proposed{background:#f0fff0}
.loom-diff .change-unchanged{color:#888}.loom-diff .change-changed{color:#a60}
.loom-diff .change-added,.loom-diff .change-newly_passing{color:#070}
.loom-diff .change-removed,.loom-diff .change-newly_failing,.loom-diff .sandbox-error,
.loom-diff .change-not_reached{color:#b00}
.loom-diff .unrecorded,.loom-diff .changed-request,.loom-diff .stubbed{color:#808}
.loom-diff .finding{margin:.2em 0}.loom-diff .finding-failed summary{color:#b00;font-weight:600}
.loom-diff .finding-attention summary{color:#a60}.loom-diff .finding-info summary{color:#666}
.loom-diff .origin{color:#666;font-size:.9em;margin:.2em 0 .5em}
"""


def render_html(diff: ProposalDiff, *, show_unchanged: bool = False) -> str:
    """An HTML fragment (``<div class="loom-diff">``); every value is escaped."""
    e = html.escape
    out = ['<div class="loom-diff">', f'<p class="summary">{e(summary_line(diff.summary))}</p>']
    version = (
        f"production version {diff.production_version} replayed on the same cases"
        if diff.production_version is not None
        else "a new flow: compared with its cases' expected results"
    )
    out.append(f'<p class="backend">{e(version)}; sandbox backend: {e(diff.backend or "?")}</p>')
    if diff.findings:
        out.append('<div class="findings">')
        for finding in diff.findings:
            links = ", ".join(f'<a href="#case-{e(name)}">{e(name)}</a>' for name in finding.cases)
            out.append(
                f'<details class="finding finding-{finding.severity.value}" '
                f'data-kind="{e(finding.kind)}"><summary>{e(finding.text)}</summary>'
                f'<p class="cases">cases: {links}</p></details>'
            )
        out.append("</div>")
    out.append('<details class="cases"><summary>per-case tables</summary>')
    for case in diff.cases:
        apart = "" if case.reproducible else " not-reproducible"
        out.append(
            f'<section class="case{apart}" id="case-{e(case.case)}" data-case="{e(case.case)}">'
            f"<h3>case {e(case.case)}: {e(case.production_status or '?')} → "
            f"{e(case.proposed_status)}</h3>"
            f'<p class="origin">{e(_origin(case))}; inputs '
            f"<code>{e(_short(case.inputs, 500))}</code></p>"
        )
        if case.not_reproducible is not None:
            r = case.not_reproducible
            where = f" at {r.step_id} {r.path or ''}" if r.step_id else ""
            out.append(
                f'<p class="reproduction">not reproducible: {e(r.reason)}{e(where)} '
                f"(recorded {e(_short(r.recorded, 200))}, replayed {e(_short(r.replayed, 200))})"
                "; not counted as a change of the proposal</p>"
            )
        out.append(
            "<table><thead><tr><th>step</th><th>change</th><th>path</th>"
            "<th>production</th><th>proposed</th></tr></thead><tbody>"
        )
        for kind, step, label, path, before, after in _rows(case, show_unchanged):
            cls = f"change-{kind}" if kind in _STEP_KINDS else kind
            step_attr = f' data-step="{e(step)}"' if step else ""
            out.append(
                f'<tr class="{cls}"{step_attr}><td>{e(step)}</td><td>{e(label)}</td>'
                f'<td>{e(path)}</td><td class="production">{e(_short(before, 2000))}</td>'
                f'<td class="proposed">{e(_short(after, 2000))}</td></tr>'
            )
        out.append("</tbody></table></section>")
    out.append("</details></div>")
    return "\n".join(out)


# ------------------------------------------------------------------------------- markdown


def render_markdown(
    diffs: Mapping[str, ProposalDiff], *, title: str = "Link Loom diff", link: str | None = None
) -> str:
    """The findings of every flow as Markdown (a pull request comment), cases folded."""
    lines = [f"### {title}"]
    if link:
        lines.append(f"[Open the proposal]({link})")
    if not diffs:
        lines.append("")
        lines.append("Nothing to compare: no fixture cases.")
    for flow_id, diff in diffs.items():
        lines += ["", flow_markdown(flow_id, diff)]
    return "\n".join(lines) + "\n"


def flow_markdown(flow_id: str, diff: ProposalDiff) -> str:
    """One flow's findings as Markdown: its summary line, a bullet per finding, and the cases
    that differ folded under ``<details>``."""
    lines = [f"**{_md(flow_id)}**: {_md(summary_line(diff.summary))}", ""]
    for finding in diff.findings:
        lines.append(f"- {_md_mark(finding)} {_md(finding.text)}")
    if not diff.findings:
        lines.append("- nothing changes")
    changed = [c for c in diff.cases if c.changed or not c.reproducible]
    if changed:
        lines += ["", "<details><summary>cases</summary>", ""]
        for case in changed:
            lines.append(
                f"- `{_md(case.case)}` {_md(case.production_status or '?')} → "
                f"{_md(case.proposed_status)} — {_md(_origin(case))}"
            )
        lines += ["", "</details>"]
    return "\n".join(lines)


def _md_mark(finding: Finding) -> str:
    return {Severity.FAILED: "❌", Severity.ATTENTION: "⚠️", Severity.INFO: "ℹ️"}[finding.severity]


def _md(text: str) -> str:
    """Escape text for inline Markdown: no HTML, links, code spans, emphasis or table cells
    from data (characters special only at the start of a line need no escape here)."""
    out = html.escape(str(text), quote=False)
    for ch in "\\`*_[]|~":
        out = out.replace(ch, "\\" + ch)
    return out
