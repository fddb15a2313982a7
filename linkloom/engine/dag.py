"""The pure planner: which steps of a run become ready, which are skipped, when the run ends.

Works on plain data. ``plan_from_spec`` derives a ``Plan`` from a flow spec; ``advance`` takes
the current status (and output, for ``condition`` steps) of every logical step and returns the
decisions. Fan-out bookkeeping for ``for_each`` children is ``fanout``.

Rules:
- A PENDING step is decided once all its upstream steps are terminal.
- A step listed in a condition step's ``then``/``else`` implicitly depends on that condition;
  when the condition succeeds with the other branch, the step is SKIPPED (reason ``branch``).
- Otherwise the join rule decides: ``all_success`` (default; every upstream SUCCEEDED),
  ``all_done`` (always runs), ``one_success`` (some upstream SUCCEEDED), ``none_failed`` (no
  upstream FAILED or CANCELLED). An unmet rule skips the step (reason ``join``), so skipping
  propagates down ``all_success`` chains.
- The run is done when every step is terminal: FAILED if any step FAILED, else CANCELLED if any
  was CANCELLED, else SUCCEEDED.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from linkloom.engine.models import RunStatus, StepStatus

if TYPE_CHECKING:
    from linkloom.flows.spec import FlowSpec

SKIP_JOIN = "join"  # the join rule was not met (upstream failed or skipped)
SKIP_BRANCH = "branch"  # on the branch a condition did not take
SKIP_WHEN = "when"  # its ``when`` rendered false


@dataclass(frozen=True, slots=True, kw_only=True)
class StepNode:
    id: str
    depends_on: tuple[str, ...] = ()  # effective upstream, including implicit condition edges
    join: str = "all_success"
    fan_out: bool = False
    max_parallel: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    nodes: Mapping[str, StepNode]
    # step id → the (condition step id, branch name) pairs it belongs to
    branches: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def roots(self) -> list[str]:
        return [n.id for n in self.nodes.values() if not n.depends_on]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepState:
    status: StepStatus
    output: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    queue: tuple[str, ...] = ()
    skip: Mapping[str, str] = field(default_factory=dict)  # step id → reason
    done: bool = False
    status: RunStatus | None = None  # the run's final status when ``done``


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutDecision:
    queue: tuple[int, ...] = ()  # indices of PENDING children to queue now
    done: bool = False
    failed: bool = False  # a child FAILED (or was CANCELLED) for good


def plan_from_spec(spec: FlowSpec) -> Plan:
    """Derive the planner's view of a spec (deps, join rules, condition branches, fan-out)."""
    branches: dict[str, list[tuple[str, str]]] = {}
    for step in spec.steps:
        if getattr(step, "type", None) == "condition":
            then, else_ = getattr(step, "then", ()), getattr(step, "else_", ())  # ConditionStep
            for name, members in (("then", then), ("else", else_)):
                for member in members:
                    branches.setdefault(member, []).append((step.id, name))
    nodes: dict[str, StepNode] = {}
    for step in spec.steps:
        deps = list(step.depends_on)
        for cond_id, _ in branches.get(step.id, []):
            if cond_id not in deps:
                deps.append(cond_id)
        nodes[step.id] = StepNode(
            id=step.id,
            depends_on=tuple(deps),
            join=step.join,
            fan_out=step.for_each is not None,
            max_parallel=step.max_parallel,
        )
    return Plan(nodes=nodes, branches={k: tuple(v) for k, v in branches.items()})


def advance(plan: Plan, states: Mapping[str, StepState]) -> Decision:
    """Decide the PENDING steps whose upstream is terminal; propagate skips to a fixed point.

    Steps missing from ``states`` count as PENDING.
    """
    current: dict[str, StepStatus] = {
        sid: (states[sid].status if sid in states else StepStatus.PENDING) for sid in plan.nodes
    }
    queue: list[str] = []
    skip: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for node in plan.nodes.values():
            if current[node.id] is not StepStatus.PENDING:
                continue
            verdict = _decide(plan, node, current, states)
            if verdict is None:
                continue
            changed = True
            if verdict == "queue":
                queue.append(node.id)
                current[node.id] = StepStatus.QUEUED
            else:
                skip[node.id] = verdict
                current[node.id] = StepStatus.SKIPPED
    done = all(s.terminal for s in current.values())
    return Decision(
        queue=tuple(queue), skip=skip, done=done, status=run_status(current) if done else None
    )


def _decide(
    plan: Plan,
    node: StepNode,
    current: Mapping[str, StepStatus],
    states: Mapping[str, StepState],
) -> str | None:
    upstream = [current.get(dep, StepStatus.SUCCEEDED) for dep in node.depends_on]
    if not all(s.terminal for s in upstream):
        return None
    for cond_id, branch in plan.branches.get(node.id, ()):
        if current.get(cond_id) is StepStatus.SUCCEEDED:
            taken = _branch_taken(states.get(cond_id))
            if taken is not None and taken != branch:
                return SKIP_BRANCH
    return "queue" if join_met(node.join, upstream) else SKIP_JOIN


def _branch_taken(state: StepState | None) -> str | None:
    if state is None or not isinstance(state.output, Mapping):
        return None
    branch = state.output.get("branch")
    return branch if branch in ("then", "else") else None


def join_met(join: str, upstream: Sequence[StepStatus]) -> bool:
    """Whether a step with this join rule runs, given its (terminal) upstream statuses."""
    if not upstream:
        return True
    if join == "all_done":
        return True
    if join == "one_success":
        return any(s is StepStatus.SUCCEEDED for s in upstream)
    if join == "none_failed":
        return not any(s in (StepStatus.FAILED, StepStatus.CANCELLED) for s in upstream)
    return all(s is StepStatus.SUCCEEDED for s in upstream)  # all_success


def run_status(statuses: Mapping[str, StepStatus]) -> RunStatus:
    values = set(statuses.values())
    if StepStatus.FAILED in values:
        return RunStatus.FAILED
    if StepStatus.CANCELLED in values:
        return RunStatus.CANCELLED
    return RunStatus.SUCCEEDED


def fanout(children: Sequence[StepStatus], max_parallel: int | None) -> FanoutDecision:
    """Given the statuses of a fan-out's children (by index), queue more or finish.

    At most ``max_parallel`` children are QUEUED or RUNNING at once; the parent is done when
    every child is terminal, and failed when any child FAILED or was CANCELLED.
    """
    active = sum(1 for s in children if s in (StepStatus.QUEUED, StepStatus.RUNNING))
    room = len(children) if max_parallel is None else max(0, max_parallel - active)
    queue = tuple(i for i, s in enumerate(children) if s is StepStatus.PENDING)[:room]
    done = not queue and all(s.terminal for s in children)
    failed = done and any(s in (StepStatus.FAILED, StepStatus.CANCELLED) for s in children)
    return FanoutDecision(queue=queue, done=done, failed=failed)
