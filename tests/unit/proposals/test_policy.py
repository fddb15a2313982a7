"""The promotion policy: approvals, owners and the check results that block promotion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from linkloom.proposals import policy
from linkloom.proposals.errors import InvalidPolicy
from linkloom.proposals.models import (
    Check,
    CheckName,
    CheckStatus,
    Proposal,
    ProposalStatus,
    Review,
    ReviewDecision,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NAMES = [n.value for n in CheckName]
PROPOSAL = Proposal(
    id="p1",
    title="t",
    author="ann",
    status=ProposalStatus.READY,
    branch="proposals/p1",
    base_commit="a",
    head_commit="b",
    revision=2,
    flows=("billing",),
)


def checks(diff: CheckStatus = CheckStatus.PASSED, *, at: datetime = T0) -> list[Check]:
    out = []
    for name in CheckName:
        status = diff if name is CheckName.DIFF else CheckStatus.PASSED
        out.append(
            Check(
                id=f"p1-r2-{name.value}", proposal_id="p1", revision=2, name=name, status=status,
                summary=f"{name.value} summary", finished_at=at,
            )
        )  # fmt: skip
    return out


def review(who: str, decision: str = "approve", *, revision: int = 2, at: datetime = T0) -> Review:
    return Review(
        id=f"r-{who}-{decision}",
        proposal_id="p1",
        reviewer=who,
        decision=ReviewDecision(decision),
        revision=revision,
        at=at + timedelta(minutes=1),
    )


def decide(reviews: list[Review], flow: policy.FlowPolicy, **kw: object) -> policy.Decision:
    return policy.decide(
        proposal=PROPOSAL,
        checks=kw.get("checks", checks()),  # type: ignore[arg-type]
        reviews=reviews,
        policies={"billing": flow},
        check_names=NAMES,
    )


def test_policy_file_and_codeowners_parse() -> None:
    found = policy.parse(
        "required_approvals: 2\nowners: ['@alice', bob]\nblock_on: [failed, attention]\n",
        where="flows/billing/policy.yaml",
    )
    assert found.required_approvals == 2
    assert found.owners == ("alice", "bob")
    assert found.block_on == {CheckStatus.FAILED, CheckStatus.ATTENTION}
    owners = "* @ops\nflows/billing/ @alice @org/payments\n"
    assert policy.owners_of(owners, "flows/billing/flow.yaml") == ("alice", "@org/payments")
    assert policy.owners_of(owners, "flows/report/flow.yaml") == ("ops",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("required_approvals: many", "required_approvals"),
        ("owners: alice", "owners must be a list"),
        ("block_on: [passed]", "block_on takes failed, error and attention"),
        ("reviewers: 2", "unknown key"),
        ("- a", "must be a mapping"),
    ],
)
def test_bad_policy_files_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidPolicy, match=message):
        policy.parse(text, where="flows/billing/policy.yaml")


def test_enough_approvals_on_the_current_revision_and_green_checks_allow_promotion() -> None:
    decision = decide([review("bob")], policy.FlowPolicy())
    assert decision.allowed
    assert decision.approvers == ("bob",)


def test_the_author_old_revisions_and_changed_minds_do_not_count() -> None:
    reviews = [
        review("ann"),  # the author
        review("bob", revision=1),  # an older revision
        review("cat"),
        Review(id="x", proposal_id="p1", reviewer="cat", decision=ReviewDecision.REQUEST_CHANGES,
               revision=2, at=T0 + timedelta(minutes=5)),
    ]  # fmt: skip
    decision = decide(reviews, policy.FlowPolicy())
    assert decision.review_reasons == (
        "0 of 1 approval(s) on revision 2",
        "changes requested by cat",
    )


def test_owners_and_more_approvals_are_required_when_the_policy_says_so() -> None:
    flow = policy.FlowPolicy(required_approvals=2, owners=("carol",))
    decision = decide([review("bob"), review("dan")], flow)
    assert decision.review_reasons == ("billing needs an approval from one of its owners: carol",)
    assert decide([review("bob"), review("carol")], flow).allowed


def test_failed_blocks_attention_needs_an_approval_after_the_check() -> None:
    failed = decide([review("bob")], policy.FlowPolicy(), checks=checks(CheckStatus.FAILED))
    assert failed.check_reasons == ("check diff is failed: diff summary",)
    later = T0 + timedelta(hours=1)  # the checks ran again after bob's approval
    stale = decide(
        [review("bob")], policy.FlowPolicy(), checks=checks(CheckStatus.ATTENTION, at=later)
    )
    assert stale.approved  # the reviews are fine …
    assert not stale.allowed  # … but nobody approved after reading what changed
    assert "check diff needs attention" in stale.check_reasons[0]
    fresh = decide([review("bob")], policy.FlowPolicy(), checks=checks(CheckStatus.ATTENTION))
    assert fresh.allowed
    strict = policy.FlowPolicy(block_on=frozenset({CheckStatus.ATTENTION}))
    assert not decide([review("bob")], strict, checks=checks(CheckStatus.ATTENTION)).allowed


def test_unfinished_or_missing_checks_block() -> None:
    running = [*checks()[:3], Check(id="d", proposal_id="p1", revision=2, name=CheckName.DIFF,
                                    status=CheckStatus.RUNNING)]  # fmt: skip
    assert decide([review("bob")], policy.FlowPolicy(), checks=running).check_reasons == (
        "check diff is running",
    )
    assert decide([review("bob")], policy.FlowPolicy(), checks=[]).check_reasons == tuple(
        f"check {n} has not run" for n in NAMES
    )


def test_an_unreadable_policy_file_blocks_promotion_and_says_why() -> None:
    broken = policy.FlowPolicy(problems=("flows/billing/policy.yaml is invalid: …",))
    decision = decide([review("bob")], policy.FlowPolicy().stricter(broken))
    assert decision.review_reasons == ("flows/billing/policy.yaml is invalid: …",)
