"""The pull request comment reads like the diff page: one line per finding, cases folded."""

from __future__ import annotations

from linkloom.forges import report
from linkloom.proposals import findings
from linkloom.proposals.models import (
    CaseDiff,
    Check,
    CheckName,
    CheckStatus,
    FieldChange,
    Proposal,
    ProposalDiff,
    ProposalStatus,
    StepChange,
    StepDiff,
)


def total_doubled(case: str, gross: int) -> CaseDiff:
    step = StepDiff(
        step_id="total",
        change=StepChange.CHANGED,
        production_status="SUCCEEDED",
        proposed_status="SUCCEEDED",
        changes=(
            FieldChange(path="output.gross", kind="changed", production=gross, proposed=2 * gross),
        ),
    )
    return CaseDiff(
        case=case, production_status="SUCCEEDED", proposed_status="SUCCEEDED", steps=(step,)
    )


def proposal(status: ProposalStatus) -> Proposal:
    return Proposal(
        id="p1",
        title="Double the total",
        author="alice",
        status=status,
        branch="proposals/p1",
        base_commit="a" * 40,
        head_commit="b" * 40,
        flows=("pricing",),
    )


def checks_with_changed_results() -> list[Check]:
    cases = tuple(total_doubled(f"order-{n}", 10 * n) for n in range(1, 5))
    diff = ProposalDiff(cases=cases, findings=findings.group(cases))
    return [
        Check(id=f"c{n}", proposal_id="p1", revision=1, name=name, status=CheckStatus.PASSED)
        for n, name in enumerate((CheckName.VALIDATE, CheckName.PLAN, CheckName.SANDBOX))
    ] + [
        Check(
            id="c9",
            proposal_id="p1",
            revision=1,
            name=CheckName.DIFF,
            status=CheckStatus.ATTENTION,
            summary="results change",
            details={"flows": {"pricing": diff.to_dict()}},
        )
    ]


def test_the_comment_leads_with_findings_and_folds_the_cases() -> None:
    comment = report.compose(
        proposal=proposal(ProposalStatus.READY),
        checks=checks_with_changed_results(),
        public_url="https://loom.example",
    ).comment
    assert "- ⚠️ total: output.gross doubled in 4 of 4 case(s)" in comment
    assert comment.count("<details><summary>cases</summary>") == 1
    assert "`order-3` SUCCEEDED → SUCCEEDED" in comment
    assert "step `total` changed" not in comment  # no per-case tables in the comment


def test_changed_results_hold_the_status_pending_until_a_reviewer_approves() -> None:
    """Merging promotes, so the status a branch protection rule reads must wait for what
    promotion waits for: an approval of results that differ from production."""
    waiting = report.compose(
        proposal=proposal(ProposalStatus.READY),
        checks=checks_with_changed_results(),
        public_url="https://loom.example",
    )
    assert waiting.state == "pending"
    assert waiting.description.startswith("results change, waiting for approval in Link Loom")
    approved = report.compose(
        proposal=proposal(ProposalStatus.APPROVED),
        checks=checks_with_changed_results(),
        public_url="https://loom.example",
    )
    assert approved.state == "success"
    assert approved.description.startswith("approved: ")
