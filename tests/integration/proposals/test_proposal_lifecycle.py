"""The proposal lifecycle on a real git repo: open → checks → review → promote → rollback."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from proposal_harness import FLOW, World, flow_yaml, make_world

from linkloom.flows import gitstore
from linkloom.proposals import errors
from linkloom.proposals.models import CheckName, CheckStatus, ProposalStatus

SPEC_PATH = "flows/daily-report/flow.yaml"


def changed_title() -> str:
    flow = copy.deepcopy(FLOW)
    flow["steps"][1]["template"]["title"] = "Daily report {{ inputs.day }}"
    return flow_yaml(flow)


@pytest.fixture
async def world(tmp_path: Path) -> World:
    w = await make_world(tmp_path)
    await w.production_runs(["2026-11-19", "2026-11-20"])
    yield w
    await w.http.aclose()


async def test_open_runs_checks_and_diff_shows_only_the_changed_output(world: World) -> None:
    p = await world.service.open(
        title="Friendlier title", author="ann", files={SPEC_PATH: changed_title()}
    )
    assert p.status is ProposalStatus.READY
    assert p.branch == f"proposals/{p.id}"
    assert world.repo.file_at(p.branch, SPEC_PATH) == changed_title()
    assert world.repo.file_at("main", SPEC_PATH) == flow_yaml()
    checks = {c.name: c for c in await world.service.checks(p.id)}
    assert {n: c.status for n, c in checks.items()} == {
        CheckName.VALIDATE: CheckStatus.PASSED,
        CheckName.PLAN: CheckStatus.PASSED,
        CheckName.SANDBOX: CheckStatus.PASSED,
        CheckName.DIFF: CheckStatus.ATTENTION,  # the title changes: a reviewer must look
    }
    plan = checks[CheckName.PLAN].details["flows"][0]
    assert plan["steps"]["changed"] == [{"step_id": "shape", "fields": ["template.title"]}]
    assert plan["schedules"][0]["change"] == "unchanged"
    assert len(plan["schedules"][0]["after"]["next"]) == 5
    assert checks[CheckName.SANDBOX].details["backend"] == "inprocess"
    d = checks[CheckName.DIFF].details["flows"]["daily-report"]
    assert d["summary"]["cases"] == 2
    for case in d["cases"]:
        steps = {s["step_id"]: s for s in case["steps"]}
        assert {k: s["change"] for k, s in steps.items()} == {
            "fetch": "unchanged",
            "shape": "changed",
            "send": "unchanged",
        }
        (change,) = steps["shape"]["changes"]
        assert change["path"] == "output.title"
        assert change["proposed"].startswith("Daily report ")
        assert [r["step_id"] for r in case["changed_requests"]] == ["send"]
        assert case["unrecorded"] == []
    assert "proposal.open" in world.actions()


async def test_self_approval_refused_then_reviewer_approves_and_promotes(world: World) -> None:
    p = await world.service.open(title="Title", author="ann", files={SPEC_PATH: changed_title()})
    with pytest.raises(errors.SelfApproval):
        await world.service.approve(p.id, reviewer="ann")
    with pytest.raises(errors.NotPromotable, match="0 of 1 approval"):
        await world.service.promote(p.id, actor="bob")
    p = await world.service.approve(p.id, reviewer="bob", comment="looks right")
    assert p.status is ProposalStatus.APPROVED
    before = (await world.runs.get_flow("daily-report")).current_version
    p = await world.service.promote(p.id, actor="bob")
    assert p.status is ProposalStatus.PROMOTED
    head = world.repo.head("main")
    assert p.promoted_commit == head
    message = world.repo.log(limit=1)[0].message
    assert f"proposal {p.id}" in message
    assert "Approved-by: bob" in message
    assert world.repo.file_at("main", SPEC_PATH) == changed_title()
    flow = await world.runs.get_flow("daily-report")
    assert flow.current_version == before + 1 == p.promoted_versions["daily-report"]
    version = await world.runs.get_flow_version("daily-report", flow.current_version)
    assert version.git_commit == head
    assert version.source == "promotion"
    spec = await world.runs.get_spec("daily-report")
    assert spec.steps[1].template["title"] == "Daily report {{ inputs.day }}"
    actions = world.actions()
    assert "proposal.approve_refused" in actions
    assert actions.index("proposal.approve") < actions.index("proposal.promote")

    # The next run uses the new version; rollback restores the old one with a commit on main.
    (run_id,) = await world.production_runs(["2026-11-22"])
    assert (await world.runs.get_run(run_id)).version == flow.current_version
    result = await world.service.rollback("daily-report", to_version=before, actor="carol")
    assert world.repo.head("main") == result.commit != head
    assert world.repo.file_at("main", SPEC_PATH) == flow_yaml()
    restored = await world.runs.get_flow("daily-report")
    assert restored.current_version == result.versions["daily-report"] == before + 2
    spec = await world.runs.get_spec("daily-report")
    assert spec.steps[1].template["title"] == "Report for {{ inputs.day }}"
    assert "flow.rollback" in world.actions()
    history = await world.service.history("daily-report")
    assert [h["source"] for h in history] == ["rollback", "promotion", "sync"]
    assert history[0]["commit_subject"].startswith("Roll back daily-report")


async def test_invalid_spec_fails_validate_and_skips_the_sandbox(world: World) -> None:
    broken = flow_yaml().replace("depends_on:\n  - shape", "depends_on:\n  - nowhere")
    assert broken != flow_yaml()
    p = await world.service.open(title="Broken", author="ann", files={SPEC_PATH: broken})
    assert p.status is ProposalStatus.OPEN
    checks = {c.name: c.status for c in await world.service.checks(p.id)}
    assert checks[CheckName.VALIDATE] is CheckStatus.FAILED
    assert checks[CheckName.SANDBOX] is CheckStatus.SKIPPED
    with pytest.raises(errors.InvalidTransition):
        await world.service.approve(p.id, reviewer="bob")
    p = await world.service.revise(p.id, actor="ann", files={SPEC_PATH: changed_title()})
    assert p.revision == 2
    assert p.status is ProposalStatus.READY


async def test_new_endpoint_is_listed_as_unrecorded(world: World) -> None:
    flow = copy.deepcopy(FLOW)
    flow["steps"].append(
        {
            "id": "audit",
            "type": "http",
            "depends_on": ["send"],
            "url": "http://127.0.0.1:8081/api/tasks/audit",
            "retry": {"max_attempts": 3},
        }
    )
    p = await world.service.open(title="Audit", author="ann", files={SPEC_PATH: flow_yaml(flow)})
    diff = (await world.service.check(p.id, CheckName.DIFF)).details
    assert diff["attention"] is True
    case = diff["flows"]["daily-report"]["cases"][0]
    assert [(u["method"], u["url"]) for u in case["unrecorded"]] == [
        ("POST", "http://127.0.0.1:8081/api/tasks/audit")
    ]
    audit = next(s for s in case["steps"] if s["step_id"] == "audit")
    assert audit["change"] == "newly_failing"  # an added step that fails is newly failing
    assert (await world.service.check(p.id, CheckName.DIFF)).status is CheckStatus.FAILED
    assert "unrecorded request: POST http://127.0.0.1:8081/api/tasks/audit" in (
        audit["proposed_error"] or ""
    )


async def test_promoting_one_proposal_makes_another_stale_until_rebased(world: World) -> None:
    first = await world.service.open(title="A", author="ann", files={SPEC_PATH: changed_title()})
    other = copy.deepcopy(FLOW)
    other["steps"][2]["retry"] = {"max_attempts": 2}
    second = await world.service.open(title="B", author="dan", files={SPEC_PATH: flow_yaml(other)})
    await world.service.approve(first.id, reviewer="bob")
    await world.service.promote(first.id, actor="bob")
    # Listing shows it stale (as `loom proposal list` does), also when filtering by status.
    assert [p.id for p in await world.service.list(statuses=[ProposalStatus.STALE])] == [second.id]
    listed = {p.id: p.status for p in await world.service.list()}
    assert listed[second.id] is ProposalStatus.STALE
    second = await world.service.get(second.id)
    assert second.status is ProposalStatus.STALE
    with pytest.raises(errors.ProposalStale):
        await world.service.approve(second.id, reviewer="bob")
    with pytest.raises(errors.ProposalStale):
        await world.service.promote(second.id, actor="bob")
    # Both edited the same file from the same base, on different lines: the rebase merges them.
    rebased = await world.service.rebase(second.id, actor="dan")
    assert rebased.status is ProposalStatus.READY
    assert rebased.base_commit == world.repo.head("main")
    text = world.repo.file_at(rebased.branch, SPEC_PATH)
    assert "Daily report" in text
    assert "max_attempts: 2" in text


async def test_rebase_conflict_is_reported_and_leaves_the_branch(world: World) -> None:
    first = await world.service.open(title="A", author="ann", files={SPEC_PATH: changed_title()})
    clash = copy.deepcopy(FLOW)
    clash["steps"][1]["template"]["title"] = "Weekly {{ inputs.day }}"
    second = await world.service.open(title="B", author="dan", files={SPEC_PATH: flow_yaml(clash)})
    await world.service.approve(first.id, reviewer="bob")
    await world.service.promote(first.id, actor="bob")
    stale = await world.service.get(second.id)
    assert stale.conflicts == (SPEC_PATH,)
    head = world.repo.head(stale.branch)
    with pytest.raises(gitstore.MergeConflict):
        await world.service.rebase(second.id, actor="dan")
    assert world.repo.head(stale.branch) == head
    assert (await world.service.get(second.id)).status is ProposalStatus.STALE


async def test_promotion_failing_part_way_leaves_production_as_it_was(world: World) -> None:
    extra = "id: second\nsteps:\n  - id: a\n    type: transform\n    template: {x: 1}\n"
    files = {SPEC_PATH: changed_title(), "flows/second/flow.yaml": extra}
    p = await world.service.open(title="Two flows", author="ann", files=files)
    assert p.flows == ("daily-report", "second")
    await world.service.approve(p.id, reviewer="bob")
    main_before = world.repo.head("main")
    real_apply = world.runs.apply_flow

    async def failing_apply(spec, **kwargs):  # type: ignore[no-untyped-def]
        if spec.id == "second":
            raise RuntimeError("database went away")
        return await real_apply(spec, **kwargs)

    world.runs.apply_flow = failing_apply  # type: ignore[method-assign]
    with pytest.raises(errors.PromotionFailed, match="database went away"):
        await world.service.promote(p.id, actor="bob")
    world.runs.apply_flow = real_apply  # type: ignore[method-assign]
    assert world.repo.head("main") == main_before
    assert world.repo.file_at("main", SPEC_PATH) == flow_yaml()
    spec = await world.runs.get_spec("daily-report")
    assert spec.steps[1].template["title"] == "Report for {{ inputs.day }}"
    assert (await world.service.get(p.id)).status is ProposalStatus.APPROVED
    promoted = await world.service.promote(p.id, actor="bob")
    assert promoted.status is ProposalStatus.PROMOTED
    assert set(promoted.promoted_versions) == {"daily-report", "second"}


async def test_undoing_a_failed_promotion_keeps_a_commit_made_on_main_meanwhile(
    world: World,
) -> None:
    p = await world.service.open(title="Title", author="ann", files={SPEC_PATH: changed_title()})
    await world.service.approve(p.id, reviewer="bob")
    real_apply = world.runs.apply_flow
    meanwhile: list[str] = []

    async def commit_then_fail(spec, **kwargs):  # type: ignore[no-untyped-def]
        # Someone commits on main after the merge, before the promotion gives up.
        meanwhile.append(world.repo.commit_files("main", {"README.md": "hi\n"}, "Add a readme"))
        raise RuntimeError("database went away")

    world.runs.apply_flow = commit_then_fail  # type: ignore[method-assign]
    with pytest.raises(errors.PromotionFailed, match="database went away"):
        await world.service.promote(p.id, actor="bob")
    world.runs.apply_flow = real_apply  # type: ignore[method-assign]
    # main is not moved back over the other commit (compare-and-swap), and production's
    # version of the flow is untouched.
    assert world.repo.head("main") == meanwhile[0]
    assert (await world.runs.get_spec("daily-report")).steps[1].template["title"] == (
        "Report for {{ inputs.day }}"
    )


async def test_open_from_a_git_ref_touching_two_flows(world: World) -> None:
    world.repo.create_branch("feature/x")
    extra = "id: second\nsteps:\n  - id: a\n    type: transform\n    template: {x: 1}\n"
    world.repo.commit_files(
        "feature/x", {SPEC_PATH: changed_title(), "flows/second/flow.yaml": extra}, "feature"
    )
    p = await world.service.open(title="From ref", author="ann", ref="feature/x")
    assert p.flows == ("daily-report", "second")
    assert p.status is ProposalStatus.READY
    with pytest.raises(errors.NothingToPropose):
        await world.service.open(title="Nothing", author="ann", ref="main")


BROKEN_COMPANIONS = {
    "flows/daily-report/fixtures/stubs.yaml": "stubs: [{url: x, response: {status: 9}}]",
    "flows/daily-report/fixtures/case-1.yaml": "recorded_at: yesterday-ish\n",
    "flows/daily-report/policy.yaml": "owners: alice\n",
}


async def test_broken_fixture_stubs_and_policy_files_fail_the_validate_check(world: World) -> None:
    """Files that arrive as a commit (a git ref, a pull request's head) are checked by the
    validate check; files sent as text are refused before they are committed."""
    world.repo.create_branch("feature/broken")
    world.repo.commit_files("feature/broken", BROKEN_COMPANIONS, "Broken companions")
    p = await world.service.open(title="Broken companions", author="ann", ref="feature/broken")
    assert p.status is ProposalStatus.OPEN
    validate = await world.service.check(p.id, CheckName.VALIDATE)
    assert validate.status is CheckStatus.FAILED
    problems = validate.details["flows"]["daily-report"]["problems"]
    assert sorted((x["file"], x["code"]) for x in problems) == [
        ("flows/daily-report/fixtures/case-1.yaml", "invalid-fixture"),
        ("flows/daily-report/fixtures/stubs.yaml", "invalid-fixture"),
        ("flows/daily-report/policy.yaml", "invalid-policy"),
    ]
