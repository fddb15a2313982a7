"""The scheduler against the real run service and store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from scheduler_harness import SIGNING_KEY, T0, Env, db_url, env, pg_url

from linkloom import signing
from linkloom.engine.models import RunStatus
from linkloom.scheduler.errors import WebhookRejected, WebhookReplayed
from linkloom.scheduler.models import FinishedRun
from linkloom.store import tables

__all__ = ["db_url", "env", "pg_url"]  # fixtures


async def scheduled_runs(env: Env, flow_id: str) -> list[Any]:
    r = tables.runs
    query = (
        sa.select(r.c.id, r.c.trigger, r.c.schedule_id, r.c.fire_time, r.c.inputs, r.c.status)
        .where(r.c.flow_id == flow_id)
        .order_by(r.c.fire_time)
    )
    async with env.db.read() as conn:
        return list((await conn.execute(query)).all())


def aware(moment: datetime) -> datetime:
    """SQLite gives naive UTC datetimes back."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def tick_for(env: Env, scheds: list[Any], seconds: int) -> None:
    for _ in range(seconds):
        env.clock.advance(1)
        for s in scheds:
            await s.tick()


async def test_schedule_creates_each_fire_once_across_racing_schedulers(env: Env) -> None:
    await env.apply({"id": "every5", "schedules": [{"interval": 5, "inputs": {}}]})
    a, b = env.scheduler(), env.scheduler()
    await a.tick()
    await tick_for(env, [a, b], 30)
    runs = await scheduled_runs(env, "every5")
    fires = [row.fire_time for row in runs]
    assert len(fires) == len(set(fires)) == 6
    assert {row.trigger for row in runs} == {"schedule"}
    state = {s.schedule_id: s for s in await env.store.schedule_states()}
    assert state["schedule-0"].next_fire_time == T0 + timedelta(seconds=35)
    assert state["schedule-0"].last_fire_time == T0 + timedelta(seconds=30)


async def test_advance_state_is_compare_and_set(env: Env) -> None:
    await env.apply({"id": "cas", "schedules": [{"interval": 60}]})
    await env.scheduler().tick()
    (state,) = await env.store.schedule_states()
    later = state.next_fire_time + timedelta(minutes=1)  # type: ignore[operator]
    kwargs = {"flow_id": "cas", "schedule_id": state.schedule_id, "last_fire_time": None}
    assert await env.store.advance_state(
        expected_next=state.next_fire_time, next_fire_time=later, **kwargs
    )
    assert not await env.store.advance_state(
        expected_next=state.next_fire_time, next_fire_time=later, **kwargs
    )


async def test_pause_resume_and_backfill(env: Env) -> None:
    await env.apply({"id": "daily", "schedules": [{"id": "d", "cron": "0 3 * * *"}]})
    sched = env.scheduler()
    await sched.pause("daily")
    assert (await env.runs.get_flow("daily")).paused
    await sched.resume("daily")
    assert not (await env.runs.get_flow("daily")).paused
    report = await sched.backfill("daily", start=T0 - timedelta(days=3), end=T0)
    again = await sched.backfill("daily", start=T0 - timedelta(days=3), end=T0)
    assert len(report.created) == 3
    assert again.existing == 3
    runs = await scheduled_runs(env, "daily")
    assert [r.trigger for r in runs] == ["backfill"] * 3


async def test_overlap_queue_persists_and_releases(env: Env) -> None:
    await env.apply(
        {"id": "q", "schedules": [{"interval": 10}], "concurrency": {"overlap": "queue"}}
    )
    sched = env.scheduler()
    await sched.tick()
    await tick_for(env, [sched], 30)
    assert len(await scheduled_runs(env, "q")) == 1
    assert len(await env.store.queued_fires()) == 2
    (first,) = await scheduled_runs(env, "q")
    await env.runs.cancel(first.id)
    await sched.tick()
    runs = await scheduled_runs(env, "q")
    assert len(runs) == 2
    assert aware(runs[1].fire_time) == T0 + timedelta(seconds=20)
    assert len(await env.store.queued_fires()) == 1


async def test_webhook_on_real_store(env: Env) -> None:
    await env.apply(
        {
            "id": "hook",
            "inputs": {"ref": {"type": "string", "required": True}},
            "triggers": [{"type": "webhook", "id": "push", "inputs": {"ref": "{{ payload.ref }}"}}],
        }
    )
    sched = env.scheduler()
    body = json.dumps({"ref": "main"}).encode()
    bad = signing.sign("wrong-key", body, timestamp=T0.timestamp())
    with pytest.raises(WebhookRejected):
        await sched.receive_webhook("hook", "push", body=body, headers=bad)
    assert await scheduled_runs(env, "hook") == []
    good = signing.sign(SIGNING_KEY, body, timestamp=T0.timestamp())
    run = await sched.receive_webhook("hook", "push", body=body, headers=good)
    with pytest.raises(WebhookReplayed):
        await sched.receive_webhook("hook", "push", body=body, headers=good)
    (row,) = await scheduled_runs(env, "hook")
    assert row.id == run.id
    assert row.inputs == {"ref": "main"}


async def test_event_trigger_on_real_store(env: Env) -> None:
    await env.apply({"id": "up", "outputs": {"n": 7}})
    await env.apply(
        {
            "id": "down",
            "inputs": {"n": {"type": "integer"}},
            "triggers": [
                {
                    "type": "event",
                    "id": "after",
                    "flow": "up",
                    "inputs": {"n": "{{ event.outputs.n }}"},
                }
            ],
        }
    )
    sched = env.scheduler()
    up = await env.runs.trigger("up", inputs={})
    finished = FinishedRun(
        id=up.id,
        flow_id="up",
        status=RunStatus.SUCCEEDED,
        outputs={"n": 7},
        finished_at=T0 + timedelta(seconds=1),
    )
    assert len(await sched.on_run_finished(finished)) == 1
    assert await sched.on_run_finished(finished) == []
    (row,) = await scheduled_runs(env, "down")
    assert row.inputs == {"n": 7}
    assert row.trigger == "event"


async def test_delivery_keys_are_stored_once(env: Env) -> None:
    kwargs = {"flow_id": "f", "trigger_id": "t", "delivery_key": "k" * 64, "received_at": T0}
    assert await env.store.record_delivery(**kwargs)
    assert not await env.store.record_delivery(**kwargs)
    assert await env.store.forget_deliveries(before=T0 + timedelta(seconds=1)) == 1
    async with env.db.read() as conn:
        count = (
            await conn.execute(sa.select(sa.func.count()).select_from(tables.webhook_deliveries))
        ).scalar()
    assert count == 0


async def test_delivery_key_with_a_window_counts_only_inside_it(env: Env) -> None:
    """A body key older than the replay window is taken again, once, in one statement."""
    kwargs = {"flow_id": "f", "trigger_id": "t", "delivery_key": "b" * 64}
    assert await env.store.record_delivery(**kwargs, received_at=T0)
    inside = T0 + timedelta(hours=1)
    assert not await env.store.record_delivery(
        **kwargs, received_at=inside, seen_since=inside - timedelta(days=1)
    )
    later = T0 + timedelta(days=2)
    window_start = later - timedelta(days=1)
    assert await env.store.record_delivery(**kwargs, received_at=later, seen_since=window_start)
    assert not await env.store.record_delivery(**kwargs, received_at=later, seen_since=window_start)
    assert not await env.store.record_delivery(**kwargs, received_at=later)


async def test_event_pushed_and_polled_starts_one_run(env: Env) -> None:
    """The listener call and the polling safety net agree on the de-duplication key."""
    await env.apply({"id": "up2"})
    await env.apply(
        {
            "id": "down2",
            "triggers": [
                {"type": "event", "id": "on-cancel", "flow": "up2", "statuses": ["CANCELLED"]}
            ],
        }
    )
    pusher, poller = env.scheduler(), env.scheduler()
    await poller.tick()
    up = await env.runs.trigger("up2", inputs={})
    cancelled = await env.runs.cancel(up.id)
    assert cancelled.finished_at is not None
    assert len(await pusher.on_run_finished(cancelled)) == 1
    env.clock.advance(1)
    await poller.tick()
    rows = await scheduled_runs(env, "down2")
    assert len(rows) == 1
    assert rows[0].trigger == "event"
