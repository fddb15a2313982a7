"""View models: display statuses, the Gantt timeline, spec diffs and the trigger form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from linkloom.engine.models import RunStatus, StepStatus
from linkloom.engine.records import Attempt, FlowVersion, Run, StepRun
from linkloom.flows.spec import FlowSpec
from linkloom.web import views

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def spec(**overrides: object) -> FlowSpec:
    data: dict[str, object] = {
        "id": "report",
        "inputs": {
            "count": {"type": "integer", "default": 20},
            "to": {"type": "string", "required": True},
            "mode": {"type": "string", "enum": ["fast", "full"], "default": "fast"},
            "dry": {"type": "boolean", "default": True},
            "ids": {"type": "array"},
        },
        "steps": [
            {"id": "fetch", "type": "http", "url": "http://b.test/f"},
            {"id": "send", "type": "http", "url": "http://b.test/s", "depends_on": ["fetch"]},
        ],
    }
    data.update(overrides)
    return FlowSpec.model_validate(data)


def step(step_id: str, status: StepStatus, *, attempt: int = 1, **kw: object) -> StepRun:
    return StepRun(
        id=f"sr-{step_id}", run_id="r1", step_id=step_id, status=status, attempt=attempt, **kw
    )


def test_display_status_calls_a_requeued_failed_attempt_retrying() -> None:
    assert views.display_status(step("a", StepStatus.QUEUED, attempt=0)) == "queued"
    assert views.display_status(step("a", StepStatus.QUEUED, attempt=2)) == "retrying"
    assert views.display_status(step("a", StepStatus.SUCCEEDED)) == "succeeded"


def test_step_statuses_fold_fan_out_children_into_their_parent() -> None:
    steps = [
        step("each", StepStatus.RUNNING),
        StepRun(id="c0", run_id="r1", step_id="each", item_index=0, status=StepStatus.FAILED),
    ]
    assert views.step_statuses(steps) == {"each": "running"}


def test_item_progress_counts_finished_fan_out_items() -> None:
    steps = [
        step("each", StepStatus.RUNNING),
        *(
            StepRun(id=f"c{i}", run_id="r1", step_id="each", item_index=i, status=status)
            for i, status in enumerate(
                [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.RUNNING, StepStatus.QUEUED]
            )
        ),
        step("plain", StepStatus.SUCCEEDED),
    ]
    assert views.item_progress(steps) == {"each": "2/4"}


def test_dag_view_draws_condition_branches_as_edges() -> None:
    flow = spec(
        steps=[
            {
                "id": "check",
                "type": "condition",
                "condition": "{{ true }}",
                "then": ["yes"],
                "else": ["no"],
            },
            {"id": "yes", "type": "transform", "template": 1},
            {"id": "no", "type": "transform", "template": 2},
        ]
    )
    view = views.dag_view(flow, {"yes": "succeeded"})
    assert {(a.source, a.target) for a in view.wide.arrows} == {("check", "yes"), ("check", "no")}
    assert view.narrow.direction == "TB"
    assert view.statuses["yes"] == "succeeded"


def test_timeline_places_attempts_and_running_steps_on_one_scale() -> None:
    run = Run(
        id="r1",
        flow_id="report",
        version=1,
        trigger="manual",
        status=RunStatus.RUNNING,
        created_at=T0,
        started_at=T0,
    )
    attempts = [
        Attempt(
            id="a1",
            step_run_id="sr-fetch",
            run_id="r1",
            step_id="fetch",
            number=1,
            status=StepStatus.FAILED,
            started_at=T0,
            finished_at=T0 + timedelta(seconds=1),
        ),
        Attempt(
            id="a2",
            step_run_id="sr-fetch",
            run_id="r1",
            step_id="fetch",
            number=2,
            status=StepStatus.SUCCEEDED,
            started_at=T0 + timedelta(seconds=2),
            finished_at=T0 + timedelta(seconds=3),
        ),
    ]
    running = step("send", StepStatus.RUNNING, started_at=T0 + timedelta(seconds=3))
    chart = views.timeline(run, attempts, [running], now=T0 + timedelta(seconds=4))
    assert [b.label for b in chart.bars] == ["fetch #1", "fetch #2", "send #1"]
    assert [b.status for b in chart.bars] == ["failed", "succeeded", "running"]
    assert chart.total == 4.0
    assert [(b.x, b.width) for b in chart.bars] == [(0.0, 25.0), (50.0, 25.0), (75.0, 25.0)]


def test_timeline_of_a_run_without_attempts_is_empty() -> None:
    run = Run(
        id="r1",
        flow_id="report",
        version=1,
        trigger="manual",
        status=RunStatus.PENDING,
        created_at=T0,
    )
    assert views.timeline(run, [], [], now=T0).bars == ()


def test_spec_diff_is_side_by_side_and_escaped() -> None:
    def version(n: int, url: str) -> FlowVersion:
        data = spec(steps=[{"id": "fetch", "type": "http", "url": url}]).model_dump(mode="json")
        return FlowVersion(
            flow_id="report",
            version=n,
            spec=data,
            content_hash=str(n),
            source="apply",
            created_at=T0,
        )

    html = str(views.spec_diff(version(1, "http://b.test/old"), version(2, "http://b.test/<new>")))
    assert "version 1" in html
    assert "version 2" in html
    assert "&lt;new&gt;" in html
    assert "<new>" not in html
    assert 'class="diff_chg"' in html or 'class="diff_add"' in html


def test_trigger_fields_follow_the_declared_inputs() -> None:
    fields = {
        f.name: f
        for f in views.trigger_fields(spec(), problems=["missing required input 'to' (string)"])
    }
    assert fields["count"].kind == "integer"
    assert fields["count"].value == "20"
    assert fields["to"].required
    assert "missing" in fields["to"].problem
    assert fields["mode"].kind == "select"
    assert fields["mode"].options == ("fast", "full")
    assert fields["dry"].kind == "checkbox"
    assert fields["dry"].value == "true"
    assert fields["ids"].kind == "json"
    assert fields["count"].problem == ""


def test_read_trigger_form_keeps_text_for_the_engine_and_parses_json() -> None:
    form = {"input.count": "7", "input.to": "a@b.c", "input.ids": "[1, 2]", "input.mode": ""}
    inputs, problems = views.read_trigger_form(spec(), form)
    assert inputs == {"count": "7", "to": "a@b.c", "ids": [1, 2], "dry": False}
    assert problems == []
    _, problems = views.read_trigger_form(spec(), {"input.ids": "[1,"})
    assert problems == ["input 'ids' must be JSON (array)"]


def test_success_rate_counts_finished_runs_only() -> None:
    def run(status: RunStatus) -> Run:
        return Run(
            id=str(status), flow_id="f", version=1, trigger="manual", status=status, created_at=T0
        )

    assert views.success_rate([]) is None
    assert views.success_rate([run(RunStatus.RUNNING)]) is None
    rate = views.success_rate(
        [run(RunStatus.SUCCEEDED), run(RunStatus.FAILED), run(RunStatus.RUNNING)]
    )
    assert rate == 0.5
