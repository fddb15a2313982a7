from __future__ import annotations

from datetime import UTC, datetime, timedelta

from linkloom.engine.steps.delay import DelayExecutor
from linkloom.engine.steps.subflow import SubflowExecutor
from tests.support.step_context import Clock, make_context, make_services


async def test_delay_suspends_then_succeeds_after_wake_time():
    clock = Clock()
    services = make_services(clock=clock)
    step = {"type": "delay", "duration": "1h"}
    first = await DelayExecutor().execute(make_context(step=step, services=services))
    assert first.suspend_until == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert first.state is not None
    assert first.state["wake_at"] == "2026-01-01T10:00:00+00:00"

    # Woken early (e.g. after a restart): suspends again until the same wake time.
    clock.advance(600)
    early = await DelayExecutor().execute(
        make_context(step=step, services=services, state=first.state)
    )
    assert early.suspend_until == first.suspend_until

    clock.advance(3000)
    done = await DelayExecutor().execute(
        make_context(step=step, services=services, state=first.state)
    )
    assert done.ok
    assert done.output["waited"] == 3600.0


async def test_delay_until_renders_an_iso_datetime():
    step = {"type": "delay", "until": "{{ inputs.at }}"}
    ctx = make_context(step=step, inputs={"at": "2026-01-01T12:30:00Z"})
    result = await DelayExecutor().execute(ctx)
    assert result.suspend_until == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


async def test_delay_until_in_the_past_succeeds_at_once():
    ctx = make_context(step={"type": "delay", "until": "2020-01-01T00:00:00"})
    result = await DelayExecutor().execute(ctx)
    assert result.ok
    assert result.output["waited"] == 0.0


async def test_delay_until_not_a_datetime_fails():
    ctx = make_context(step={"type": "delay", "until": "tomorrow-ish"})
    result = await DelayExecutor().execute(ctx)
    assert result.error is not None
    assert result.error.kind == "config"
    assert "ISO 8601" in result.error.message


class FakeRuns:
    def __init__(self):
        self.started = []
        self.status = "RUNNING"
        self.outputs = {}

    async def start(self, *, flow_id, inputs, parent_run_id, parent_step_id):
        self.started.append((flow_id, inputs, parent_run_id, parent_step_id))
        return "child-1"

    async def read(self, run_id):
        assert run_id == "child-1"
        return self.status, self.outputs


async def test_subflow_starts_child_polls_and_returns_outputs():
    runs = FakeRuns()
    services = make_services(start_subflow=runs.start, read_run=runs.read)
    step = {"type": "flow", "flow": "child", "inputs": {"n": "{{ inputs.n * 2 }}"}}

    first = await SubflowExecutor().execute(
        make_context(step=step, services=services, inputs={"n": 4})
    )
    assert runs.started == [("child", {"n": 8}, "run-1", "s")]
    assert first.suspend_until is not None
    assert first.state == {"child_run_id": "child-1", "polls": 1}
    assert first.suspend_until == services.clock.now() + timedelta(seconds=1)

    waiting = await SubflowExecutor().execute(
        make_context(step=step, services=services, state=first.state)
    )
    assert waiting.suspend_until == services.clock.now() + timedelta(seconds=2)
    assert waiting.state["polls"] == 2
    assert len(runs.started) == 1

    runs.status, runs.outputs = "SUCCEEDED", {"total": 42}
    done = await SubflowExecutor().execute(
        make_context(step=step, services=services, state=first.state)
    )
    assert done.ok
    assert done.output == {"total": 42}


async def test_subflow_failed_child_fails_step():
    runs = FakeRuns()
    runs.status = "FAILED"
    services = make_services(start_subflow=runs.start, read_run=runs.read)
    ctx = make_context(
        step={"type": "flow", "flow": "child"}, services=services, state={"child_run_id": "child-1"}
    )
    result = await SubflowExecutor().execute(ctx)
    assert result.error is not None
    assert "FAILED" in result.error.message
    assert not result.error.retryable


async def test_subflow_without_services_is_a_config_failure():
    result = await SubflowExecutor().execute(make_context(step={"type": "flow", "flow": "x"}))
    assert result.error is not None
    assert result.error.kind == "config"
