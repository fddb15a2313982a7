"""The whole engine on ``InMemoryRunStore`` with a frozen clock and ``httpx.MockTransport``:
durable delays and backoff, when/condition skips, input validation, callbacks, redaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from linkloom.engine import callbacks
from linkloom.engine.errors import (
    CallbackAlreadyUsed,
    CallbackDeadlinePassed,
    CallbackTokenInvalid,
    InputsInvalid,
    InvalidTransition,
)
from linkloom.engine.models import RunStatus, StepStatus
from linkloom.engine.ports import StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows.spec import FlowSpec
from linkloom.testing import FrozenClock, InMemoryRunStore, StaticSecrets

KEY = "unit-key"
SECRET = "hunter2-secret"


class Harness:
    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.clock = FrozenClock()
        self.store = InMemoryRunStore()
        secrets = StaticSecrets({"token": SECRET})
        self.runs = RunService(store=self.store, clock=self.clock, secrets=secrets, signing_key=KEY)
        self.requests: list[httpx.Request] = []

        def recording(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        services = StepServices(
            http=httpx.AsyncClient(transport=httpx.MockTransport(recording)),
            clock=self.clock,
            secrets=secrets,
            signing_key=KEY,
            public_url="http://loom.test",
        )
        self.worker = Worker(
            store=self.store,
            executors=builtin_executors(),
            services=services,
            specs=self.runs.specs,
            lease_seconds=30,
        )
        self.worker.runner.rng = lambda: 1.0  # jitter at its maximum: deterministic delays

    async def start(self, raw: dict[str, Any], inputs: dict[str, Any] | None = None) -> str:
        await self.runs.apply_flow(FlowSpec.model_validate(raw))
        run = await self.runs.trigger(raw["id"], inputs=inputs or {})
        await self.worker.run_until_idle()
        return run.id

    async def statuses(self, run_id: str) -> dict[str, StepStatus]:
        return {
            s.step_id: s.status for s in await self.runs.list_steps(run_id) if s.item_index is None
        }


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": "SUCCESS", "output": {"path": request.url.path}})


def http(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "http", "url": f"http://backend.test/{step_id}", **extra}


async def test_delay_is_durable_and_holds_no_worker() -> None:
    h = Harness(ok)
    run_id = await h.start(
        {"id": "wait", "steps": [{"id": "pause", "type": "delay", "duration": "1h"},
                                 http("after", depends_on=["pause"])]}
    )  # fmt: skip
    steps = {s.step_id: s for s in await h.runs.list_steps(run_id)}
    assert steps["pause"].status is StepStatus.QUEUED
    assert steps["pause"].attempt == 0  # waiting uses no attempt
    assert steps["pause"].ready_at == h.clock.now() + timedelta(hours=1)
    assert h.requests == []
    h.clock.advance(3600)
    await h.worker.run_until_idle()
    run = await h.runs.get_run(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert [r.url.path for r in h.requests] == ["/after"]


async def test_backoff_requeues_in_the_future_then_succeeds() -> None:
    answers = iter([httpx.Response(500, json={"error": "x"}), httpx.Response(200, json={"v": 1})])
    h = Harness(lambda request: next(answers))
    retry = {"max_attempts": 3, "initial_delay": 10, "jitter": True}
    run_id = await h.start({"id": "backoff", "steps": [http("s", retry=retry)]})
    [step] = await h.runs.list_steps(run_id)
    assert step.status is StepStatus.QUEUED
    assert (step.ready_at - h.clock.now()).total_seconds() == 10  # jitter rng fixed at 1.0
    await h.worker.run_until_idle()
    assert len(h.requests) == 1  # not before its time
    h.clock.advance(10)
    await h.worker.run_until_idle()
    run = await h.runs.get_run(run_id)
    assert run.status is RunStatus.SUCCEEDED
    [step] = await h.runs.list_steps(run_id)
    assert step.output == {"v": 1}


async def test_when_false_skips_the_step_and_its_dependents() -> None:
    h = Harness(ok)
    run_id = await h.start(
        {
            "id": "whenny",
            "inputs": {"go": {"type": "boolean", "default": False}},
            "steps": [
                http("maybe", when="{{ inputs.go }}"),
                http("child", depends_on=["maybe"]),
                http("always", depends_on=["maybe"], join="all_done"),
            ],
        }
    )
    assert await h.statuses(run_id) == {
        "maybe": StepStatus.SKIPPED,
        "child": StepStatus.SKIPPED,
        "always": StepStatus.SUCCEEDED,
    }
    assert (await h.runs.get_run(run_id)).status is RunStatus.SUCCEEDED
    assert [r.url.path for r in h.requests] == ["/always"]


async def test_condition_branches_with_the_real_condition_step() -> None:
    h = Harness(ok)
    run_id = await h.start(
        {
            "id": "branches",
            "inputs": {"n": {"type": "integer", "required": True}},
            "steps": [
                {"id": "big", "type": "condition", "condition": "{{ inputs.n > 10 }}",
                 "then": ["large"], "else": ["small"]},
                http("large"),
                http("small"),
                http("report", depends_on=["large", "small"], join="one_success"),
            ],
        },
        {"n": 3},
    )  # fmt: skip
    assert await h.statuses(run_id) == {
        "big": StepStatus.SUCCEEDED,
        "large": StepStatus.SKIPPED,
        "small": StepStatus.SUCCEEDED,
        "report": StepStatus.SUCCEEDED,
    }


async def test_inputs_are_validated_with_every_problem_named() -> None:
    h = Harness(ok)
    await h.runs.apply_flow(
        FlowSpec.model_validate(
            {
                "id": "typed",
                "inputs": {
                    "date": {"type": "string", "required": True},
                    "count": {"type": "integer"},
                    "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                },
                "steps": [http("s")],
            }
        )
    )
    with pytest.raises(InputsInvalid) as caught:
        await h.runs.trigger("typed", inputs={"count": "many", "mode": "medium", "extra": 1})
    problems = caught.value.problems
    assert any("'date'" in p and "missing" in p for p in problems)
    assert any("'count'" in p and "integer" in p for p in problems)
    assert any("'mode'" in p and "fast" in p for p in problems)
    assert any("'extra'" in p and "unknown" in p for p in problems)
    run = await h.runs.trigger("typed", inputs={"date": "2026-01-01", "count": "7"})
    assert run.inputs == {"date": "2026-01-01", "count": 7, "mode": "fast"}


async def test_cancel_of_a_finished_run_is_an_invalid_transition() -> None:
    h = Harness(ok)
    run_id = await h.start({"id": "done", "steps": [http("s")]})
    with pytest.raises(InvalidTransition):
        await h.runs.cancel(run_id)
    with pytest.raises(InvalidTransition):
        await h.runs.retry(run_id)


async def test_async_step_deadline_miss_is_retried_then_callback_completes() -> None:
    h = Harness(lambda request: httpx.Response(202, json={}))
    retry = {"max_attempts": 2, "initial_delay": 1, "jitter": False}
    run_id = await h.start(
        {"id": "slowjob", "steps": [http("job", mode="async", heartbeat_timeout=60, retry=retry)]}
    )
    [step] = await h.runs.list_steps(run_id)
    assert step.status is StepStatus.RUNNING
    assert step.lease_owner == "callback"
    h.clock.advance(61)
    await h.worker.run_until_idle()  # deadline missed: attempt 1 failed, retry queued
    h.clock.advance(1)
    await h.worker.run_until_idle()
    [step] = await h.runs.list_steps(run_id)
    assert step.attempt == 2
    assert step.lease_owner == "callback"
    body = json.loads(h.requests[-1].content)
    token = body["callback"]["url"].rsplit("/", 1)[1]
    assert callbacks.parse_token(KEY, token) == (step.id, 2)
    old = callbacks.make_token(KEY, step_run_id=step.id, attempt=1)
    with pytest.raises(CallbackAlreadyUsed):
        await h.runs.complete_callback(old, {"status": "SUCCESS"})
    with pytest.raises(CallbackTokenInvalid):
        await h.runs.complete_callback(token[:-2] + "00", {"status": "SUCCESS"})
    await h.runs.complete_callback(token, {"status": "SUCCESS", "output": 42, "logs": ["done"]})
    run = await h.runs.get_run(run_id)
    assert run.status is RunStatus.SUCCEEDED
    attempts = await h.runs.list_attempts(run_id)
    assert [(a.number, a.status) for a in attempts] == [
        (1, StepStatus.FAILED),
        (2, StepStatus.SUCCEEDED),
    ]


async def test_rendered_secrets_never_persist() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"status": "SUCCESS", "output": {"seen": request.headers["X-Key"]},
                       "logs": f"used {request.headers['X-Key']}"}
        )  # fmt: skip

    h = Harness(echo)
    run_id = await h.start(
        {
            "id": "leaky",
            "steps": [http("s", headers={"X-Key": "{{ secrets.token }}"},
                           outputs={"copy": "{{ output.seen }}"})],
            "outputs": {"again": "{{ steps.s.outputs.copy }}"},
        }
    )  # fmt: skip
    assert h.requests[0].headers["X-Key"] == SECRET
    run = await h.runs.get_run(run_id)
    persisted = repr(
        (
            run,
            await h.runs.list_steps(run_id),
            await h.runs.list_exchanges(run_id),
            await h.runs.events(run_id),
        )
    )
    assert SECRET not in persisted
    assert run.outputs == {"again": "***"}


async def test_fan_out_child_failure_fails_the_run_and_retry_reruns_only_that_child() -> None:
    fail_index = {"value": 2}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("index") == fail_index["value"]:
            return httpx.Response(400, json={"error": "bad item"})
        return httpx.Response(200, json={"status": "SUCCESS", "output": body.get("item")})

    h = Harness(handler)
    run_id = await h.start(
        {
            "id": "fanfail",
            "steps": [
                http("each", for_each="{{ ['a', 'b', 'c', 'd'] }}", max_parallel=2),
                http("after", depends_on=["each"]),
            ],
        }
    )
    run = await h.runs.get_run(run_id)
    assert run.status is RunStatus.FAILED
    steps = await h.runs.list_steps(run_id)
    children = {s.item_index: s.status for s in steps if s.item_index is not None}
    assert children == {
        0: StepStatus.SUCCEEDED,
        1: StepStatus.SUCCEEDED,
        2: StepStatus.FAILED,
        3: StepStatus.SUCCEEDED,
    }
    letters = await h.runs.list_dead_letters(flow_id="fanfail")
    assert [(d.step_id, d.item_index) for d in letters] == [("each", 2)]
    fail_index["value"] = -1
    calls_before = len(h.requests)
    await h.runs.retry(run_id)
    await h.worker.run_until_idle()
    run = await h.runs.get_run(run_id)
    assert run.status is RunStatus.SUCCEEDED
    retried = [json.loads(r.content).get("index") for r in h.requests[calls_before:]]
    assert retried == [2, None]  # only the failed child, then the downstream step
    [parent] = [
        s for s in await h.runs.list_steps(run_id) if s.step_id == "each" and s.item_index is None
    ]
    assert parent.output == ["a", "b", "c", "d"]


async def test_per_flow_limit_caps_running_steps_across_runs() -> None:
    h = Harness(ok)
    await h.runs.apply_flow(
        FlowSpec.model_validate({"id": "capped", "steps": [http(f"s{i}") for i in range(4)]})
    )
    for _ in range(3):
        await h.runs.trigger("capped", inputs={})
    now = h.clock.now()
    first = await h.store.claim(owner="w", now=now, lease_seconds=30, limit=50, per_flow_limit=5)
    assert len(first) == 5
    assert (
        await h.store.claim(owner="w", now=now, lease_seconds=30, limit=50, per_flow_limit=5) == []
    )


async def test_outputs_derived_from_a_secret_are_stored_masked_whatever_the_filters() -> None:
    h = Harness(ok)
    run_id = await h.start(
        {
            "id": "filters",
            "steps": [
                {
                    "id": "forms",
                    "type": "transform",
                    "template": {
                        "up": "{{ secrets.token | upper }}",
                        "rev": "{{ secrets.token | reverse }}",
                        "head": "{{ secrets.token[0:6] }}",
                        "plain": "kept",
                    },
                },
                http("use", depends_on=["forms"], body={"echo": "{{ secrets.token | title }}"}),
            ],
        }
    )
    assert (await h.runs.get_run(run_id)).status is RunStatus.SUCCEEDED
    [forms] = [s for s in await h.runs.list_steps(run_id) if s.step_id == "forms"]
    assert forms.output == {"up": "***", "rev": "***", "head": "***", "plain": "kept"}
    [request] = h.requests
    assert json.loads(request.content) == {"echo": SECRET.title()}  # sent for real
    [exchange] = await h.runs.list_exchanges(run_id)
    assert exchange.request["body"] == {"echo": "***"}  # recorded masked


async def test_a_recorded_exchange_shows_no_callback_token() -> None:
    """An async step's callback URLs are its attempt's credential: a viewer reads recorded
    exchanges, and a token plus any body signed with the shared key completes the attempt."""
    h = Harness(lambda request: httpx.Response(202, json={}))
    run_id = await h.start(
        {"id": "job", "steps": [http("job", mode="async", heartbeat_timeout=60)]}
    )
    sent = h.requests[-1]
    token = json.loads(sent.content)["callback"]["url"].rsplit("/", 1)[1]
    assert sent.headers["X-Loom-Callback-Url"].endswith(token)  # the backend gets it
    [exchange] = await h.runs.list_exchanges(run_id)
    assert token not in json.dumps([exchange.request, exchange.response], default=str)


async def test_a_heartbeat_signed_no_later_than_the_last_counted_one_moves_nothing() -> None:
    """A replayed heartbeat (same signed second) keeps the deadline; a later one moves it, and
    the next attempt starts afresh."""
    h = Harness(lambda request: httpx.Response(202, json={}))
    await h.start(
        {
            "id": "beats",
            "steps": [http("job", mode="async", heartbeat_timeout=5, retry={"max_attempts": 2})],
        }
    )
    token = json.loads(h.requests[-1].content)["callback"]["url"].rsplit("/", 1)[1]
    first = await h.runs.heartbeat(token, signed_at=100)
    h.clock.advance(3)
    assert await h.runs.heartbeat(token, signed_at=100) == first  # a replay
    assert await h.runs.heartbeat(token, signed_at=99) == first  # an older one
    assert await h.runs.heartbeat(token, signed_at=101) > first
    h.clock.advance(10)
    await h.worker.run_until_idle()  # the attempt times out and is retried
    h.clock.advance(3600)
    await h.worker.run_until_idle()
    retried = json.loads(h.requests[-1].content)["callback"]["url"].rsplit("/", 1)[1]
    assert retried != token
    h.clock.advance(1)
    moved_to = h.clock.now() + timedelta(seconds=5)
    assert await h.runs.heartbeat(retried, signed_at=50) == moved_to  # its own first heartbeat


async def test_a_callback_or_heartbeat_after_the_deadline_is_refused_before_any_sweep() -> None:
    """The deadline decides, not when a worker's housekeeping next looks: a result that comes
    late is refused (409) even though no sweep has failed the attempt yet."""
    h = Harness(lambda request: httpx.Response(202, json={}))
    run_id = await h.start(
        {
            "id": "late",
            "steps": [http("job", mode="async", heartbeat_timeout=5, retry={"max_attempts": 1})],
        }
    )
    body = json.loads(h.requests[-1].content)
    token = body["callback"]["url"].rsplit("/", 1)[1]
    h.clock.advance(4)
    await h.runs.heartbeat(token)  # in time: the deadline moves to now + 5 s
    h.clock.advance(6)
    with pytest.raises(CallbackDeadlinePassed):
        await h.runs.heartbeat(token)
    with pytest.raises(CallbackDeadlinePassed) as refused:
        await h.runs.complete_callback(token, {"status": "SUCCESS", "output": "late"})
    assert refused.value.code == "callback_already_used"
    assert "deadline passed" in refused.value.message
    [step] = await h.runs.list_steps(run_id)
    assert step.status is StepStatus.RUNNING  # nothing swept yet; the late result changed nothing
    await h.worker.run_until_idle()  # the sweep fails the attempt as a timeout
    [step] = await h.runs.list_steps(run_id)
    assert step.status is StepStatus.FAILED
    assert step.error["kind"] == "timeout"
