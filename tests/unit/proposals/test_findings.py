"""Findings: ten cases with the same change read as one line."""

from __future__ import annotations

from linkloom.proposals import findings, render
from linkloom.proposals.models import (
    CaseDiff,
    FieldChange,
    ProposalDiff,
    Reproduction,
    Severity,
    StepChange,
    StepDiff,
)


def case(name: str, *steps: StepDiff, **extra: object) -> CaseDiff:
    return CaseDiff(
        case=name,
        production_status="SUCCEEDED",
        proposed_status=str(extra.pop("proposed_status", "SUCCEEDED")),
        steps=steps,
        **extra,  # type: ignore[arg-type]
    )


def changed(step: str, path: str, before: object, after: object) -> StepDiff:
    return StepDiff(
        step_id=step,
        change=StepChange.CHANGED,
        production_status="SUCCEEDED",
        proposed_status="SUCCEEDED",
        changes=(FieldChange(path=path, kind="changed", production=before, proposed=after),),
    )


def test_describe_names_the_shape_of_a_change() -> None:
    assert findings.describe([(10, 20), (3, 6), (1.5, 3.0)]) == "doubled"
    assert findings.describe([(10, 12), (5, 6)]) == "×1.2"
    assert findings.describe([(10, 15), (1, 6)]) == "+5"
    assert findings.describe([("EUR", "USD"), ("EUR", "USD")]) == '"EUR" → "USD"'
    assert findings.describe([("a", "b"), ("c", "d")]) == "changed"
    assert findings.describe([(None, 1), (None, 2)]) == "added"


def test_the_same_change_in_many_cases_is_one_finding_failures_first() -> None:
    unrecorded = {"method": "POST", "url": "https://x/notify", "step_id": "notify"}
    failing = StepDiff(
        step_id="notify",
        change=StepChange.NEWLY_FAILING,
        production_status="SUCCEEDED",
        proposed_status="FAILED",
        proposed_error="unrecorded request: POST https://x/notify",
    )
    cases = [
        case(f"c{n}", changed("total", "output.gross", 10 * n, 20 * n)) for n in range(1, 5)
    ] + [
        case("c5", failing, proposed_status="FAILED", unrecorded=(unrecorded,)),
        case(
            "c6",
            changed("total", "output.gross", 1, 9),
            not_reproducible=Reproduction(reason="the replay differs", step_id="fetch"),
        ),
    ]
    found = findings.group(cases)
    assert [(f.severity, f.text) for f in found] == [
        (
            Severity.FAILED,
            "notify: newly failing — would have called POST https://x/notify (no recording) "
            "in 1 of 5 case(s)",
        ),
        (Severity.ATTENTION, "total: output.gross doubled in 4 of 5 case(s)"),
        (
            Severity.INFO,
            "1 case(s) not reproducible, shown apart and not counted: the replay differs at fetch",
        ),
    ]
    assert found[1].cases == ("c1", "c2", "c3", "c4")
    markdown = render.render_markdown({"billing": ProposalDiff(cases=tuple(cases), findings=found)})
    assert "- ❌ notify: newly failing" in markdown
    assert "total: output.gross doubled in 4 of 5 case(s)" in markdown
