"""Result diffing of a proposal's sandbox run against production."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rich.console import Console

from linkloom.proposals import diff, render
from linkloom.proposals.models import ProposalDiff, StepChange
from linkloom.sandbox.fixtures import ExpectedStep, FixtureCase
from linkloom.sandbox.runner import CaseResult, CaseRun, SandboxResult, StepOutcome

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def _case() -> FixtureCase:
    return FixtureCase(
        name="c1",
        recorded_at=T0,
        expected={
            "fetch": ExpectedStep(status="SUCCEEDED", output={"rows": [1, 2], "at": "t1"}),
            "shape": ExpectedStep(status="SUCCEEDED", output={"total": 3, "title": "Report"}),
            "send": ExpectedStep(status="SUCCEEDED", output={"sent": True}),
            "legacy": ExpectedStep(status="SUCCEEDED", output=1),
            "flaky": ExpectedStep(status="FAILED", error="boom"),
        },
        run_status="SUCCEEDED",
        run_outputs={"total": 3},
    )


def _result(**overrides: object) -> SandboxResult:
    steps = {
        "fetch": StepOutcome(status="SUCCEEDED", output={"rows": [1, 2], "at": "t2"}),
        "shape": StepOutcome(status="SUCCEEDED", output={"total": 3, "title": "<b>Daily</b>"}),
        "send": StepOutcome(status="FAILED", error="unrecorded request: POST https://new/x"),
        "flaky": StepOutcome(status="SUCCEEDED", output="ok"),
        "audit": StepOutcome(status="SUCCEEDED", output={"logged": True}),
    }
    case = CaseResult(
        case="c1",
        proposed=CaseRun(
            run_status="FAILED",
            steps=steps,
            run_outputs={"total": 3},
            unrecorded=({"method": "POST", "url": "https://new/x", "body": {}, "step_id": "send"},),
        ),
    )
    return SandboxResult(backend="docker", cases=(case,), **overrides)  # type: ignore[arg-type]


def test_diff_classifies_each_step() -> None:
    result = diff.diff_results([_case()], _result(), ignore=["output.at"])
    case = result.case("c1")
    kinds = {s.step_id: s.change for s in case.steps}
    assert kinds == {
        "fetch": StepChange.UNCHANGED,  # only the ignored volatile path differs
        "shape": StepChange.CHANGED,
        "send": StepChange.NEWLY_FAILING,
        "legacy": StepChange.REMOVED,
        "flaky": StepChange.NEWLY_PASSING,
        "audit": StepChange.ADDED,
    }
    shape = next(s for s in case.steps if s.step_id == "shape")
    assert [c.to_dict() for c in shape.changes] == [
        {
            "path": "output.title",
            "kind": "changed",
            "production": "Report",
            "proposed": "<b>Daily</b>",
        }
    ]
    assert case.unrecorded[0]["url"] == "https://new/x"
    s = result.summary
    assert (s.cases, s.cases_changed, s.unchanged, s.changed, s.added, s.removed) == (
        1,
        1,
        1,
        1,
        1,
        1,
    )
    assert (s.newly_failing, s.newly_passing, s.unrecorded) == (1, 1, 1)
    assert result.backend == "docker"


def test_diff_without_ignore_reports_the_volatile_path() -> None:
    result = diff.diff_results([_case()], _result())
    fetch = result.case("c1").steps[0]
    assert fetch.change is StepChange.CHANGED
    assert [(c.path, c.production, c.proposed) for c in fetch.changes] == [
        ("output.at", "t1", "t2")
    ]


def test_diff_paths_for_lists_added_and_removed_keys() -> None:
    found = diff.changes({"a": [1, 2], "x": 1}, {"a": [1, 3, 4], "y": 2})
    assert [(c.path, c.kind, c.production, c.proposed) for c in found] == [
        ("a[1]", "changed", 2, 3),
        ("a[2]", "added", None, 4),
        ("x", "removed", 1, None),
        ("y", "added", None, 2),
    ]
    assert diff.ignored("output.rows[3].id", ["output.rows[*].id"])
    assert diff.ignored("output.meta.generated", ["output.meta"])
    assert diff.ignored("output.a.timestamp", ["*.timestamp"])
    assert not diff.ignored("output.metadata", ["output.meta"])


def test_diff_identical_results_are_clean() -> None:
    case = _case()
    steps = {
        k: StepOutcome(status=v.status, output=v.output, error=v.error)
        for k, v in case.expected.items()
    }
    result = SandboxResult(
        backend="process",
        cases=(
            CaseResult(
                case="c1",
                proposed=CaseRun(run_status="SUCCEEDED", steps=steps, run_outputs={"total": 3}),
            ),
        ),
    )
    d = diff.diff_results([case], result)
    assert d.summary.clean
    assert not d.case("c1").changed
    assert d.summary.unchanged == 5


def test_diff_sandbox_error_and_missing_case() -> None:
    result = SandboxResult(
        backend="docker",
        cases=(CaseResult.failed("c1", "wall-clock limit exceeded"),),
    )
    other = FixtureCase(name="c2", recorded_at=T0)
    d = diff.diff_results([_case(), other], result)
    assert d.case("c1").sandbox_error == "wall-clock limit exceeded"
    assert d.case("c2").sandbox_error == "the sandbox returned no result for this case"
    assert d.summary.sandbox_errors == 2


def test_diff_is_json_serialisable_and_round_trips() -> None:
    d = diff.diff_results([_case()], _result(), ignore=["output.at"])
    data = json.loads(json.dumps(d.to_dict()))
    assert ProposalDiff.from_dict(data) == d
    assert data["summary"]["newly_failing"] == 1


def test_render_terminal_shows_both_sides_and_would_have_called() -> None:
    d = diff.diff_results([_case()], _result(), ignore=["output.at"])
    console = Console(width=160, record=True, color_system=None)
    console.print(render.render_terminal(d, cases=True))
    text = console.export_text()
    assert "output.title" in text
    assert "Report" in text
    assert "<b>Daily</b>" in text
    assert "would have called" in text
    assert "POST https://new/x" in text
    assert "newly failing" in text


def test_render_html_escapes_values() -> None:
    d = diff.diff_results([_case()], _result(), ignore=["output.at"])
    page = render.render_html(d)
    assert "&lt;b&gt;Daily&lt;/b&gt;" in page
    assert "<b>Daily</b>" not in page
    assert 'class="change-newly_failing"' in page
    assert "would have called" in page
