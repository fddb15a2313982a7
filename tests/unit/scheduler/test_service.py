from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from linkloom import signing
from linkloom.engine.errors import FlowNotFound, FlowPaused, InputsInvalid
from linkloom.scheduler.errors import BackfillTooLarge, WebhookRejected, WebhookReplayed
from linkloom.scheduler.memory import InMemoryRuns, InMemorySchedulerStore
from linkloom.scheduler.models import FinishedRun
from linkloom.scheduler.service import Scheduler

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
KEY = "test-signing-key"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def flow(flow_id: str = "f", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": flow_id,
        "steps": [{"id": "s", "type": "transform", "template": 1}],
    }
    spec.update(extra)
    return spec


@pytest.fixture
def env() -> tuple[Clock, InMemoryRuns, InMemorySchedulerStore]:
    clock = Clock()
    runs = InMemoryRuns(clock)
    return clock, runs, InMemorySchedulerStore(runs)


def make(env: Any, **kwargs: Any) -> Scheduler:
    clock, runs, store = env
    return Scheduler(store=store, runs=runs, clock=clock, signing_key=KEY, **kwargs)


async def run_for(scheds: list[Scheduler], clock: Clock, seconds: int, step: float = 1.0) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)
        for s in scheds:
            await s.tick()


async def test_tick_creates_one_run_per_fire_time(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 10, "inputs": {"x": 1}}]))
    sched = make(env)
    await sched.tick()  # first sight: state initialised, nothing due yet
    assert runs.runs == {}
    await run_for([sched], clock, 60)
    fired = sorted(r.fire_time for r in runs.of("f"))
    assert fired == [T0 + timedelta(seconds=10 * k) for k in range(1, 7)]
    assert all(r.trigger == "schedule" and r.inputs == {"x": 1} for r in runs.of("f"))
    assert all(r.schedule_id == "schedule-0" for r in runs.of("f"))


async def test_racing_schedulers_create_each_fire_once(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 1}]))
    a, b, c = make(env), make(env), make(env)
    await a.tick()
    await run_for([a, b, c], clock, 30)
    fires = [r.fire_time for r in runs.of("f")]
    assert len(fires) == len(set(fires)) == 30


async def test_catchup_skip_drops_missed_fires(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 60}]))
    sched = make(env)
    await sched.tick()
    clock.advance(3600)  # an hour of downtime
    report = await sched.tick()
    assert report.created == 2  # only the fires within the 60 s grace window
    assert report.skipped == 58
    assert sorted(r.fire_time for r in runs.of("f")) == [
        clock.now() - timedelta(minutes=1),
        clock.now(),
    ]


async def test_catchup_once_runs_one_for_the_missed_window(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 60}], concurrency={"catchup": "once"}))
    sched = make(env)
    await sched.tick()
    clock.advance(3600 + 30)
    await sched.tick()
    fires = sorted(r.fire_time for r in runs.of("f"))
    # the latest missed fire (older than the 60 s grace) plus the on-time one
    assert fires == [T0 + timedelta(seconds=3540), T0 + timedelta(seconds=3600)]


async def test_catchup_all_is_bounded_by_the_limit(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(
        flow(schedules=[{"interval": 60}], concurrency={"catchup": "all", "catchup_limit": 10})
    )
    sched = make(env)
    await sched.tick()
    clock.advance(3600)
    report = await sched.tick()
    assert report.created == 12  # the 10 latest missed + the 2 within the grace window
    assert report.skipped == 48
    fires = sorted(r.fire_time for r in runs.of("f"))
    assert fires[-1] == clock.now()
    assert fires[0] == clock.now() - timedelta(minutes=11)


async def test_overlap_skip_drops_fires_while_a_run_is_active(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 10}], concurrency={"overlap": "skip"}))
    sched = make(env)
    await sched.tick()
    await run_for([sched], clock, 30)
    assert len(runs.of("f")) == 1
    runs.finish(runs.of("f")[0].id)
    await run_for([sched], clock, 10)
    assert len(runs.of("f")) == 2


async def test_overlap_queue_starts_the_fire_when_the_previous_run_ends(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 10}], concurrency={"overlap": "queue"}))
    sched = make(env)
    await sched.tick()
    await run_for([sched], clock, 30)
    assert len(runs.of("f")) == 1
    assert len(store.queue) == 2
    runs.finish(runs.of("f")[0].id)
    await sched.tick()
    started = sorted(runs.of("f"), key=lambda r: r.fire_time)
    assert len(started) == 2
    assert started[1].fire_time == T0 + timedelta(seconds=20)  # oldest queued first, own time
    assert len(store.queue) == 1


async def test_overlap_cancel_previous_cancels_the_running_run(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 10}], concurrency={"overlap": "cancel_previous"}))
    sched = make(env)
    await sched.tick()
    await run_for([sched], clock, 20)
    first, second = sorted(runs.of("f"), key=lambda r: r.fire_time)
    assert runs.cancelled == [first.id]
    assert second.status == "PENDING"


async def test_max_active_runs_with_allow_queues_beyond_the_limit(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 10}], concurrency={"max_active_runs": 2}))
    sched = make(env)
    await sched.tick()
    await run_for([sched], clock, 30)
    assert len(runs.of("f")) == 2
    assert len(store.queue) == 1


async def test_paused_flow_does_not_fire_and_resume_skips_the_missed(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 10}]))
    sched = make(env)
    await sched.tick()
    await sched.pause("f")
    await run_for([sched], clock, 300)
    assert runs.runs == {}
    await sched.resume("f")
    clock.advance(10)
    await sched.tick()
    assert len(runs.of("f")) == 7  # fires within the 60 s grace window only
    with pytest.raises(FlowNotFound):
        await sched.pause("nope")


async def test_new_version_takes_effect_at_the_next_fire(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"id": "main", "cron": "0 * * * *"}]))
    sched = make(env)
    await sched.tick()
    store.put_flow(flow(schedules=[{"id": "main", "interval": 5}]))
    await run_for([sched], clock, 20)
    assert len(runs.of("f")) >= 3
    assert all(r.fire_time.second % 5 == 0 for r in runs.of("f"))
    assert {r.version for r in runs.of("f")} == {2}


async def test_disabled_schedule_never_fires(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow(schedules=[{"interval": 1, "enabled": False}]))
    sched = make(env)
    await run_for([sched], clock, 5)
    assert runs.runs == {}


async def test_next_fire_times_merges_schedules(env: Any) -> None:
    _clock, _runs, store = env
    store.put_flow(
        flow(schedules=[{"id": "a", "cron": "0 13 * * *"}, {"id": "b", "interval": 1800}])
    )
    got = await make(env).next_fire_times("f", n=3)
    assert got == [
        ("b", T0 + timedelta(minutes=30)),
        ("a", T0 + timedelta(hours=1)),
        ("b", T0 + timedelta(hours=1)),
    ]


async def test_backfill_creates_missing_runs_once(env: Any) -> None:
    _clock, runs, store = env
    store.put_flow(flow(schedules=[{"cron": "0 3 * * *"}]))
    sched = make(env)
    start, end = T0 - timedelta(days=5), T0
    dry = await sched.backfill("f", start=start, end=end, dry_run=True)
    assert len(dry.fire_times) == 5
    assert runs.runs == {}
    first = await sched.backfill("f", start=start, end=end)
    again = await sched.backfill("f", start=start, end=end)
    assert len(first.created) == 5
    assert again.created == ()
    assert again.existing == 5
    assert {r.trigger for r in runs.of("f")} == {"backfill"}
    with pytest.raises(BackfillTooLarge):
        await sched.backfill("f", start=start - timedelta(days=365), end=end, limit=100)


def signed(
    body: dict[str, Any], *, at: datetime = T0, key: str = KEY
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, signing.sign(key, raw, timestamp=at.timestamp())


async def test_webhook_maps_payload_to_inputs(env: Any) -> None:
    _clock, runs, store = env
    store.put_flow(
        flow(
            inputs={"ref": {"type": "string"}},
            triggers=[{"type": "webhook", "id": "push", "inputs": {"ref": "{{ payload.ref }}"}}],
        )
    )
    body, headers = signed({"ref": "main", "other": 1})
    run = await make(env).receive_webhook("f", "push", body=body, headers=headers)
    assert runs.runs[run.id].inputs == {"ref": "main"}
    assert runs.runs[run.id].trigger == "webhook"


async def test_webhook_wrong_signature_creates_nothing(env: Any) -> None:
    _clock, runs, store = env
    store.put_flow(flow(triggers=[{"type": "webhook", "id": "push"}]))
    body, headers = signed({"a": 1}, key="wrong")
    with pytest.raises(WebhookRejected):
        await make(env).receive_webhook("f", "push", body=body, headers=headers)
    assert runs.runs == {}
    assert store.deliveries == {}


async def test_webhook_replay_and_stale_timestamp_are_refused(env: Any) -> None:
    _clock, runs, store = env
    store.put_flow(flow(triggers=[{"type": "webhook", "id": "push"}]))
    sched = make(env)
    body, headers = signed({"a": 1})
    await sched.receive_webhook("f", "push", body=body, headers=headers)
    with pytest.raises(WebhookReplayed):
        await sched.receive_webhook("f", "push", body=body, headers=headers)
    body, headers = signed({"a": 2}, at=T0 - timedelta(minutes=10))
    with pytest.raises(WebhookRejected, match="away from now"):
        await sched.receive_webhook("f", "push", body=body, headers=headers)
    assert len(runs.runs) == 1


async def test_webhook_v1_accepted_before_an_upgrade_is_a_replay_after_it(env: Any) -> None:
    """Releases before the server-wide keys stored a v1 delivery's key per trigger only."""
    _clock, runs, store = env
    store.put_flow(flow(triggers=[{"type": "webhook", "id": "push"}]))
    body, headers = signed({"a": 1})
    signed_as = f"v1:{headers[signing.TIMESTAMP_HEADER]}:{headers[signing.SIGNATURE_HEADER][3:]}"
    earlier = "v1:" + hashlib.sha256(signed_as.encode()).hexdigest()
    stored = hashlib.sha256(f"f/push/{earlier}".encode()).hexdigest()
    store.deliveries[stored] = T0  # as the earlier release recorded it, seconds ago
    with pytest.raises(WebhookReplayed):
        await make(env).receive_webhook("f", "push", body=body, headers=headers)
    assert runs.runs == {}


async def test_webhook_github_signature_needs_a_delivery_id(env: Any) -> None:
    _clock, runs, store = env
    store.put_flow(flow(triggers=[{"type": "webhook", "id": "gh", "secret": "GH"}]))
    sched = make(env, secret={"GH": "gh-secret"}.get)
    body = b'{"action": "opened"}'
    headers = signing.sign_github("gh-secret", body)
    with pytest.raises(WebhookRejected, match="X-GitHub-Delivery"):
        await sched.receive_webhook("f", "gh", body=body, headers=headers)
    headers["X-GitHub-Delivery"] = "d-1"
    run = await sched.receive_webhook("f", "gh", body=body, headers=headers)
    assert runs.runs[run.id].inputs == {"action": "opened"}
    with pytest.raises(WebhookReplayed):
        await sched.receive_webhook("f", "gh", body=body, headers=headers)


async def test_event_trigger_starts_downstream_once(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow("up"))
    store.put_flow(
        flow(
            "down",
            inputs={"total": {"type": "integer"}},
            triggers=[
                {
                    "type": "event",
                    "id": "after-up",
                    "flow": "up",
                    "statuses": ["SUCCEEDED"],
                    "inputs": {"total": "{{ event.outputs.total }}"},
                }
            ],
        )
    )
    sched = make(env)
    await sched.tick()
    up = await runs.trigger("up", inputs={})
    clock.advance(1)
    runs.finish(up.id, total=42)
    finished = FinishedRun(
        id=up.id, flow_id="up", status="SUCCEEDED", outputs={"total": 42}, finished_at=clock.now()
    )
    created = await sched.on_run_finished(finished)
    assert len(created) == 1
    assert runs.runs[created[0]].inputs == {"total": 42}
    assert await sched.on_run_finished(finished) == []  # idempotent
    await sched.tick()  # the polling safety net sees the same run and creates nothing
    assert len(runs.of("down")) == 1


async def test_event_trigger_by_polling_and_status_filter(env: Any) -> None:
    clock, runs, store = env
    store.put_flow(flow("up"))
    store.put_flow(flow("down", triggers=[{"type": "event", "id": "e", "flow": "up"}]))
    sched = make(env)
    await sched.tick()
    ok, bad = await runs.trigger("up", inputs={}), await runs.trigger("up", inputs={})
    clock.advance(1)
    runs.finish(ok.id, value=1)
    runs.finish(bad.id, status="FAILED")
    await sched.tick()
    down = runs.of("down")
    assert len(down) == 1
    assert down[0].trigger_info["upstream_run_id"] == ok.id


async def test_webhook_with_bad_inputs_can_be_delivered_again(env: Any) -> None:
    _clock, runs, store = env
    store.put_flow(
        flow(triggers=[{"type": "webhook", "id": "gh", "inputs": {"x": "{{ payload.x }}"}}])
    )

    class Refusing(InMemoryRuns):
        async def trigger(self, flow_id: str, **kwargs: Any) -> Any:
            raise InputsInvalid(flow_id=flow_id, problems=["x: unknown input"])

    clock = env[0]
    sched = Scheduler(store=store, runs=Refusing(clock), clock=clock, signing_key=KEY)
    body, headers = signed({"x": 1})
    with pytest.raises(InputsInvalid):
        await sched.receive_webhook("f", "gh", body=body, headers=headers)
    assert store.deliveries == {}
    run = await make(env).receive_webhook("f", "gh", body=body, headers=headers)
    assert runs.runs[run.id].inputs == {"x": 1}


async def test_webhook_for_paused_flow_is_refused(env: Any) -> None:
    _clock, runs, store = env
    store.put_flow(flow(triggers=[{"type": "webhook", "id": "gh"}]), paused=True)
    body, headers = signed({"x": 1})
    with pytest.raises(FlowPaused):
        await make(env).receive_webhook("f", "gh", body=body, headers=headers)
    assert runs.runs == {}


async def test_old_delivery_keys_are_purged(env: Any) -> None:
    clock, _runs, store = env
    store.put_flow(flow(triggers=[{"type": "webhook", "id": "gh"}]))
    sched = make(env)
    body, headers = signed({"x": 1})
    await sched.receive_webhook("f", "gh", body=body, headers=headers)
    await sched.tick()
    assert len(store.deliveries) == 2  # server-wide, and per trigger as earlier releases kept it
    clock.advance(31 * 86400)
    await sched.tick()
    assert store.deliveries == {}


async def test_fire_lateness_is_recorded_as_a_metric(env: Any) -> None:
    from linkloom import metrics

    clock, _runs, store = env
    store.put_flow(flow(schedules=[{"interval": 10}]))
    sched = make(env)
    labels = {"kind": "interval"}
    name = "loom_scheduler_fire_lateness_seconds_count"
    before = metrics.REGISTRY.get_sample_value(name, labels) or 0.0
    await sched.tick()
    await run_for([sched], clock, 20)
    assert metrics.REGISTRY.get_sample_value(name, labels) == before + 2
