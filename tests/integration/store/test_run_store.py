"""``SqlRunStore`` contracts on SQLite and PostgreSQL: exclusive claims, the schedule uniqueness,
pagination, flow versions, atomic run updates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from linkloom.engine import transitions
from linkloom.engine.errors import DuplicateRun, FlowChanged, FlowNotFound
from linkloom.engine.models import RunStatus, StepStatus
from linkloom.engine.records import RunChanges, RunFilter
from linkloom.engine.service import RunService
from linkloom.flows.spec import FlowSpec
from linkloom.store import session
from linkloom.store.runs import SqlRunStore
from linkloom.store.tables import metadata
from linkloom.testing import FrozenClock
from tests.support import databases
from tests.support.real import POSTGRES_URL


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str | None]:
    if not POSTGRES_URL:
        yield None
        return
    with databases.fresh_database("s", migrate=True) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlRunStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
        await session.upgrade(url)
    else:
        databases.require_postgres()
        url = request.getfixturevalue("pg_url")
    db = session.Database(url)
    if request.param == "postgres":  # claims see every run: start each test empty
        async with db.begin() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.exec_driver_sql(f"TRUNCATE {names} CASCADE")
    yield SqlRunStore(db)
    await db.dispose()


def _spec(flow_id: str, n: int = 1) -> FlowSpec:
    steps = [{"id": f"s{i}", "type": "http", "url": "http://x/"} for i in range(n)]
    return FlowSpec.model_validate({"id": flow_id, "steps": steps})


async def test_claim_never_hands_one_step_to_two_workers(store: SqlRunStore) -> None:
    clock = FrozenClock(datetime.now(UTC))
    svc = RunService(store=store, clock=clock)
    flow = f"claims-{uuid.uuid4().hex[:6]}"
    await svc.apply_flow(_spec(flow, 20))
    for _ in range(3):
        await svc.trigger(flow)
    results = await asyncio.gather(
        *[store.claim(owner=f"w{i}", now=clock.now(), lease_seconds=30, limit=7) for i in range(6)]
    )
    ids = [c.step.id for claims in results for c in claims]
    assert len(ids) == 42  # 6 claimers x 7, out of 60 ready
    assert len(set(ids)) == 42
    assert all(c.step.attempt == 1 for claims in results for c in claims)
    rest = await store.claim(owner="late", now=clock.now(), lease_seconds=30, limit=100)
    assert len(rest) == 18
    assert not {c.step.id for c in rest} & set(ids)
    assert await store.claim(owner="later", now=clock.now(), lease_seconds=30, limit=5) == []


async def test_claim_respects_ready_at_and_run_max_parallel(store: SqlRunStore) -> None:
    clock = FrozenClock(datetime.now(UTC))
    svc = RunService(store=store, clock=clock, per_run_limit=2)
    flow = f"limits-{uuid.uuid4().hex[:6]}"
    await svc.apply_flow(_spec(flow, 5))
    run = await svc.trigger(flow)
    assert run.max_parallel == 2
    first = await store.claim(owner="w", now=clock.now(), lease_seconds=30, limit=10)
    assert len(first) == 2
    assert await store.claim(owner="w", now=clock.now(), lease_seconds=30, limit=10) == []
    earlier = clock.now() - timedelta(seconds=5)
    assert await store.claim(owner="w2", now=earlier, lease_seconds=30, limit=10) == []


async def test_schedule_fire_time_is_unique(store: SqlRunStore) -> None:
    svc = RunService(store=store, clock=FrozenClock(datetime.now(UTC)))
    flow = f"sched-{uuid.uuid4().hex[:6]}"
    await svc.apply_flow(_spec(flow))
    fire = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    first = await svc.trigger(flow, trigger="schedule", schedule_id="daily", fire_time=fire)
    with pytest.raises(DuplicateRun):
        await svc.trigger(flow, trigger="schedule", schedule_id="daily", fire_time=fire)
    found = await store.find_scheduled_run(flow_id=flow, schedule_id="daily", fire_time=fire)
    assert found is not None
    assert found.id == first.id
    assert found.fire_time == fire


async def test_list_runs_pages_newest_first_with_a_cursor(store: SqlRunStore) -> None:
    clock = FrozenClock(datetime.now(UTC))
    svc = RunService(store=store, clock=clock)
    flow = f"pages-{uuid.uuid4().hex[:6]}"
    await svc.apply_flow(_spec(flow))
    made = []
    for _ in range(5):
        made.append((await svc.trigger(flow)).id)
        clock.advance(1)
    seen: list[str] = []
    cursor = None
    while True:
        page = await svc.list_runs(RunFilter(flow_id=flow), limit=2, cursor=cursor)
        seen.extend(r.id for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(made))
    pending = await svc.list_runs(RunFilter(flow_id=flow, status=RunStatus.PENDING))
    assert len(pending.items) == 5


async def test_list_runs_pages_past_ties_with_every_filter(store: SqlRunStore) -> None:
    """Runs created in the same instant page by id: no run is repeated or skipped, whichever
    filter picks the index."""
    clock = FrozenClock(datetime.now(UTC))
    svc = RunService(store=store, clock=clock)
    flow = f"ties-{uuid.uuid4().hex[:6]}"
    await svc.apply_flow(_spec(flow))
    parent = await svc.trigger(flow)
    clock.advance(1)
    made = set()
    for i in range(7):
        run = await svc.trigger(flow, trigger="webhook", parent_run_id=parent.id)
        made.add(run.id)
        if i == 3:
            clock.advance(1)  # two instants, four and three runs each
    filters = [
        RunFilter(flow_id=flow, trigger="webhook"),
        RunFilter(flow_id=flow, status=RunStatus.PENDING, trigger="webhook"),
        RunFilter(trigger="webhook", parent_run_id=parent.id),
        RunFilter(parent_run_id=parent.id),
        RunFilter(flow_id=flow, created_after=clock.now() - timedelta(seconds=1)),
    ]
    for filters_ in filters:
        seen: list[str] = []
        cursor = None
        while True:
            page = await svc.list_runs(filters_, limit=2, cursor=cursor)
            seen.extend(r.id for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)), filters_
        assert set(seen) == made, filters_


async def test_flow_versions_only_change_with_content(store: SqlRunStore) -> None:
    svc = RunService(store=store, clock=FrozenClock(datetime.now(UTC)))
    flow = f"vers-{uuid.uuid4().hex[:6]}"
    v1 = await svc.apply_flow(_spec(flow, 1))
    again = await svc.apply_flow(_spec(flow, 1))
    v2 = await svc.apply_flow(_spec(flow, 2))
    assert (v1.version, again.version, v2.version) == (1, 1, 2)
    back = await svc.rollback(flow, version=1, actor="ops")
    assert back.version == 3
    assert back.source == "rollback"
    assert (await svc.get_flow(flow)).current_version == 3
    assert [v.version for v in await svc.list_flow_versions(flow)] == [1, 2, 3]


async def test_update_run_writes_everything_or_nothing(store: SqlRunStore) -> None:
    clock = FrozenClock(datetime.now(UTC))
    svc = RunService(store=store, clock=clock)
    flow = f"atomic-{uuid.uuid4().hex[:6]}"
    await svc.apply_flow(_spec(flow))
    run = await svc.trigger(flow)
    snap = await store.snapshot(run.id)
    assert snap is not None
    step = snap.steps[0]

    def broken(snapshot: Any) -> RunChanges:
        raise RuntimeError("mutation failed half way")

    with pytest.raises(RuntimeError):
        await store.update_run(run.id, broken)

    def good(snapshot: Any) -> RunChanges:
        s = snapshot.steps[0]
        return RunChanges(steps=(replace(s, status=StepStatus.SKIPPED),))

    changes = await store.update_run(run.id, good)
    assert changes is not None
    after = await store.snapshot(run.id)
    assert after is not None
    assert after.steps[0].id == step.id
    assert after.steps[0].status is StepStatus.SKIPPED
    assert await store.update_run("no-such-run", good) is None


async def test_concurrent_sibling_completions_queue_the_join_once(store: SqlRunStore) -> None:
    """Two workers finishing both parents of a join at once: exactly one queues it."""
    clock = FrozenClock(datetime.now(UTC))
    svc = RunService(store=store, clock=clock)
    flow = f"join-{uuid.uuid4().hex[:6]}"
    spec = FlowSpec.model_validate(
        {
            "id": flow,
            "steps": [
                {"id": "a", "type": "http", "url": "http://x/"},
                {"id": "b", "type": "http", "url": "http://x/"},
                {"id": "j", "type": "http", "url": "http://x/", "depends_on": ["a", "b"]},
            ],
        }
    )
    await svc.apply_flow(spec)
    run = await svc.trigger(flow)
    claims = await store.claim(owner="w", now=clock.now(), lease_seconds=30, limit=5)
    assert len(claims) == 2
    compiled = await svc.specs.get(flow, 1)
    ctx = transitions.Context(plan=compiled.plan, now=clock.now())
    ok = transitions.Outcome(kind=transitions.OutcomeKind.SUCCEEDED, output=1)
    await asyncio.gather(
        *[
            store.update_run(
                run.id,
                transitions.apply_outcome(c.step.id, attempt=1, owner="w", outcome=ok, ctx=ctx),
            )
            for c in claims
        ]
    )
    snap = await store.snapshot(run.id)
    assert snap is not None
    assert {s.step_id: s.status for s in snap.steps}["j"] is StepStatus.QUEUED
    [join] = await store.claim(owner="w", now=clock.now(), lease_seconds=30, limit=5)
    assert join.step.step_id == "j"


async def test_trigger_runs_the_current_version_even_when_another_process_changed_it(
    store: SqlRunStore,
) -> None:
    """A service remembers each flow's current version and skips reading it before creating a
    run; the creating transaction checks it, so a change made elsewhere is never missed."""
    clock = FrozenClock(datetime.now(UTC))
    here, elsewhere = RunService(store=store, clock=clock), RunService(store=store, clock=clock)
    flow = f"moving-{uuid.uuid4().hex[:6]}"
    one_input = {"id": flow, "inputs": {"a": {"type": "string", "required": True}}, "steps": [
        {"id": "s", "type": "http", "url": "http://x/"}]}  # fmt: skip
    await here.apply_flow(FlowSpec.model_validate(one_input))
    assert (await here.trigger(flow, inputs={"a": "x"})).version == 1

    await elsewhere.apply_flow(_spec(flow, 2))  # version 2 declares no inputs
    again = await here.trigger(flow)  # valid for version 2, not for version 1 (`a` required)
    assert again.version == 2
    assert (await here.trigger(flow)).version == 2
    await elsewhere.apply_flow(_spec(flow, 3))  # same inputs: only the store's check sees it
    assert (await here.trigger(flow)).version == 3

    await elsewhere.delete_flow(flow)
    with pytest.raises(FlowNotFound):
        await here.trigger(flow)
    runs = await store.list_runs(RunFilter(flow_id=flow))
    assert sorted(r.version for r in runs.items) == [1, 2, 2, 3]


async def test_trigger_of_a_named_current_version_reads_no_flow_and_misses_no_change(
    store: SqlRunStore,
) -> None:
    """The scheduler names the version it read for every fire: when that is the version this
    service last saw current, the run is created without reading the flow first; a version
    changed elsewhere meanwhile still gets its run of the version named."""
    clock = FrozenClock(datetime.now(UTC))
    here, elsewhere = RunService(store=store, clock=clock), RunService(store=store, clock=clock)
    flow = f"named-{uuid.uuid4().hex[:6]}"
    await here.apply_flow(_spec(flow, 1))
    reads = 0
    real_get_flow = store.get_flow

    async def counting_get_flow(flow_id: str) -> Any:
        nonlocal reads
        reads += 1
        return await real_get_flow(flow_id)

    store.get_flow = counting_get_flow  # type: ignore[method-assign]
    try:
        for _ in range(3):
            assert (await here.trigger(flow, version=1)).version == 1
        assert reads == 0
        await elsewhere.apply_flow(_spec(flow, 2))
        assert (await here.trigger(flow, version=1)).version == 1  # as named, after a read
        assert reads == 1
        assert (await here.trigger(flow, version=2)).version == 2
        assert reads == 1  # version 2 is now the one this service saw current
    finally:
        store.get_flow = real_get_flow  # type: ignore[method-assign]


async def test_create_run_if_current_refuses_a_version_that_is_no_longer_current(
    store: SqlRunStore,
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    svc = RunService(store=store, clock=clock)
    flow = f"stale-{uuid.uuid4().hex[:6]}"
    await svc.apply_flow(_spec(flow, 1))
    await svc.apply_flow(_spec(flow, 2))
    run = await svc.trigger(flow, version=1)  # an explicit version is not checked
    assert run.version == 1
    stale = replace(run, id=str(uuid.uuid4()))
    with pytest.raises(FlowChanged):
        await store.create_run(stale, (), if_current=True)
    assert await store.get_run(stale.id) is None
    await store.create_run(replace(stale, version=2), (), if_current=True)
    assert (await store.get_run(stale.id)) is not None


async def test_recent_runs_reads_each_flows_newest_runs_at_once(store: SqlRunStore) -> None:
    clock = FrozenClock(datetime.now(UTC))
    svc = RunService(store=store, clock=clock)
    flows = [f"recent-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    made: dict[str, list[str]] = {f: [] for f in flows}
    for flow in flows:
        await svc.apply_flow(_spec(flow))
    for i in range(5):
        for flow in flows[:2]:  # the third flow never runs
            made[flow].append((await svc.trigger(flow)).id)
        clock.advance(1 if i != 2 else 0)  # ties too
    found = await svc.recent_runs([*flows, "no-such-flow"], limit=3)
    for flow in flows[:2]:
        expected = await svc.list_runs(RunFilter(flow_id=flow), limit=3)
        assert [r.id for r in found[flow]] == [r.id for r in expected.items]
        assert {r.id for r in found[flow]} <= set(made[flow])
    assert found[flows[2]] == []
    assert found["no-such-flow"] == []
