"""The planner on plain data: join rules, skip propagation, condition branches, fan-out."""

from __future__ import annotations

import itertools

import pytest

from linkloom.engine import dag
from linkloom.engine.dag import Plan, StepNode, StepState
from linkloom.engine.models import RunStatus, StepStatus
from linkloom.flows.spec import FlowSpec

S = StepStatus


def plan(*nodes: StepNode, branches: dict | None = None) -> Plan:
    return Plan(nodes={n.id: n for n in nodes}, branches=branches or {})


def states(**kw: StepStatus) -> dict[str, StepState]:
    return {k: StepState(status=v) for k, v in kw.items()}


def test_advance_queues_roots_of_a_fresh_run() -> None:
    p = plan(StepNode(id="a"), StepNode(id="b"), StepNode(id="c", depends_on=("a", "b")))
    d = dag.advance(p, {})
    assert set(d.queue) == {"a", "b"}
    assert not d.skip
    assert not d.done


def test_advance_waits_until_every_upstream_is_terminal() -> None:
    p = plan(StepNode(id="a"), StepNode(id="b"), StepNode(id="c", depends_on=("a", "b")))
    d = dag.advance(p, states(a=S.SUCCEEDED, b=S.RUNNING))
    assert d.queue == ()
    d = dag.advance(p, states(a=S.SUCCEEDED, b=S.SUCCEEDED))
    assert d.queue == ("c",)


@pytest.mark.parametrize(
    ("join", "upstream", "runs"),
    [
        ("all_success", (S.SUCCEEDED, S.SUCCEEDED), True),
        ("all_success", (S.SUCCEEDED, S.FAILED), False),
        ("all_success", (S.SUCCEEDED, S.SKIPPED), False),
        ("all_success", (S.SUCCEEDED, S.CANCELLED), False),
        ("all_done", (S.FAILED, S.SKIPPED), True),
        ("all_done", (S.CANCELLED, S.CANCELLED), True),
        ("one_success", (S.FAILED, S.SUCCEEDED), True),
        ("one_success", (S.FAILED, S.SKIPPED), False),
        ("none_failed", (S.SUCCEEDED, S.SKIPPED), True),
        ("none_failed", (S.SKIPPED, S.SKIPPED), True),
        ("none_failed", (S.SUCCEEDED, S.FAILED), False),
        ("none_failed", (S.SUCCEEDED, S.CANCELLED), False),
    ],
)
def test_join_rule_decides_the_step(join: str, upstream: tuple, runs: bool) -> None:
    p = plan(StepNode(id="a"), StepNode(id="b"), StepNode(id="c", depends_on=("a", "b"), join=join))
    d = dag.advance(p, states(a=upstream[0], b=upstream[1]))
    if runs:
        assert d.queue == ("c",)
    else:
        assert d.skip == {"c": dag.SKIP_JOIN}


def test_join_met_matches_rules_for_every_combination() -> None:
    terminal = [S.SUCCEEDED, S.FAILED, S.SKIPPED, S.CANCELLED]
    for combo in itertools.product(terminal, repeat=3):
        assert dag.join_met("all_done", combo)
        assert dag.join_met("all_success", combo) == all(s is S.SUCCEEDED for s in combo)
        assert dag.join_met("one_success", combo) == (S.SUCCEEDED in combo)
        assert dag.join_met("none_failed", combo) == (
            S.FAILED not in combo and S.CANCELLED not in combo
        )


def test_skip_propagates_down_a_chain_and_run_fails() -> None:
    p = plan(
        StepNode(id="a"),
        StepNode(id="b", depends_on=("a",)),
        StepNode(id="c", depends_on=("b",)),
        StepNode(id="d", depends_on=("c",), join="all_done"),
    )
    d = dag.advance(p, states(a=S.FAILED))
    assert d.skip == {"b": dag.SKIP_JOIN, "c": dag.SKIP_JOIN}
    assert d.queue == ("d",)
    assert not d.done
    d = dag.advance(p, states(a=S.FAILED, b=S.SKIPPED, c=S.SKIPPED, d=S.SUCCEEDED))
    assert d.done
    assert d.status is RunStatus.FAILED


def test_run_status_when_done() -> None:
    p = plan(StepNode(id="a"), StepNode(id="b"))
    assert dag.advance(p, states(a=S.SUCCEEDED, b=S.SKIPPED)).status is RunStatus.SUCCEEDED
    assert dag.advance(p, states(a=S.CANCELLED, b=S.SUCCEEDED)).status is RunStatus.CANCELLED
    assert dag.advance(p, states(a=S.CANCELLED, b=S.FAILED)).status is RunStatus.FAILED


def _condition_spec() -> FlowSpec:
    return FlowSpec.model_validate(
        {
            "id": "branchy",
            "steps": [
                {"id": "check", "type": "condition", "condition": "{{ true }}",
                 "then": ["yes"], "else": ["no"]},
                {"id": "yes", "type": "transform", "template": 1},
                {"id": "no", "type": "transform", "template": 2},
                {"id": "after_no", "type": "transform", "template": 3, "depends_on": ["no"]},
                {"id": "merge", "type": "merge", "depends_on": ["yes", "no"],
                 "join": "none_failed"},
            ],
        }
    )  # fmt: skip


def test_plan_from_spec_adds_implicit_condition_edges() -> None:
    p = dag.plan_from_spec(_condition_spec())
    assert p.nodes["yes"].depends_on == ("check",)
    assert p.nodes["no"].depends_on == ("check",)
    assert p.branches["no"] == (("check", "else"),)
    assert p.roots() == ["check"]


def test_condition_skips_the_branch_not_taken_and_propagates() -> None:
    p = dag.plan_from_spec(_condition_spec())
    st = {"check": StepState(status=S.SUCCEEDED, output={"result": True, "branch": "then"})}
    d = dag.advance(p, st)
    assert d.queue == ("yes",)
    assert d.skip == {"no": dag.SKIP_BRANCH, "after_no": dag.SKIP_JOIN}
    st.update(states(yes=S.SUCCEEDED, no=S.SKIPPED, after_no=S.SKIPPED))
    d = dag.advance(p, st)
    assert d.queue == ("merge",)  # none_failed tolerates the skipped branch


def test_condition_else_branch() -> None:
    p = dag.plan_from_spec(_condition_spec())
    st = {"check": StepState(status=S.SUCCEEDED, output={"result": False, "branch": "else"})}
    d = dag.advance(p, st)
    assert set(d.queue) == {"no"}
    assert d.skip == {"yes": dag.SKIP_BRANCH}


def test_failed_condition_skips_both_branches_by_join() -> None:
    p = dag.plan_from_spec(_condition_spec())
    d = dag.advance(p, states(check=S.FAILED))
    assert d.skip["yes"] == dag.SKIP_JOIN
    assert d.skip["no"] == dag.SKIP_JOIN


@pytest.mark.parametrize(
    ("children", "max_parallel", "queue", "done", "failed"),
    [
        ([S.PENDING] * 5, 2, (0, 1), False, False),
        ([S.PENDING] * 3, None, (0, 1, 2), False, False),
        ([S.RUNNING, S.QUEUED, S.PENDING, S.PENDING], 2, (), False, False),
        ([S.SUCCEEDED, S.RUNNING, S.PENDING, S.PENDING], 2, (2,), False, False),
        ([S.SUCCEEDED, S.SUCCEEDED, S.SUCCEEDED], 2, (), True, False),
        ([S.SUCCEEDED, S.FAILED, S.SUCCEEDED], 2, (), True, True),
        ([S.SUCCEEDED, S.FAILED, S.RUNNING], 2, (), False, False),
        ([], 3, (), True, False),
    ],
)
def test_fanout_bookkeeping(children, max_parallel, queue, done, failed) -> None:  # type: ignore[no-untyped-def]
    d = dag.fanout(children, max_parallel)
    assert d.queue == queue
    assert d.done is done
    assert d.failed is failed
