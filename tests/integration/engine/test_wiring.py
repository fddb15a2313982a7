"""The wired services: migrate on start, run a flow end to end, and (PostgreSQL) wake a worker
in another set of services through LISTEN/NOTIFY instead of waiting for its poll."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from engine_harness import Backend, Reply, step

from linkloom.config import Settings, load_settings
from linkloom.engine.models import RunStatus
from linkloom.engine.records import RunFilter
from linkloom.engine.worker import Worker
from linkloom.flows.spec import FlowSpec
from linkloom.wiring import Services, build_services
from tests.support import databases


async def test_build_services_migrates_runs_and_stops(tmp_path: Path, backend: Backend) -> None:
    settings = load_settings(
        home=tmp_path, engine={"poll_interval": 0.05}, security={"signing_key": "k" * 32}
    )
    services = build_services(settings)
    await services.start()
    try:
        ready = await services.readiness()
        assert ready["database"] is True
        assert ready["migrations"] is True
        await services.runs.apply_flow(
            FlowSpec.model_validate({"id": "wired", "steps": [step("a", backend)]})
        )
        run = await services.runs.trigger("wired", inputs={})
        async with asyncio.timeout(10):
            done = await services.runs.wait(run.id)
        assert done.status is RunStatus.SUCCEEDED
    finally:
        await services.stop()
    assert (tmp_path / "loom.db").exists()


async def test_notify_wakes_a_worker_in_other_services(pg_database: str, backend: Backend) -> None:
    databases.require_postgres()
    api_side = build_services(load_settings(database={"url": pg_database}))
    worker_side = build_services(
        load_settings(database={"url": pg_database}, engine={"poll_interval": 30})
    )
    await api_side.start(worker=False, migrate=False)
    await worker_side.start(migrate=False)
    try:
        await api_side.runs.apply_flow(
            FlowSpec.model_validate({"id": "notified", "steps": [step("n", backend)]})
        )
        await asyncio.sleep(0.3)  # the worker is now asleep for up to 30 s
        started = time.perf_counter()
        run = await api_side.runs.trigger("notified", inputs={})
        async with asyncio.timeout(10):
            done = await api_side.runs.wait(run.id, poll=0.05)
        assert done.status is RunStatus.SUCCEEDED
        assert time.perf_counter() - started < 5, "the worker slept through the NOTIFY"
    finally:
        await worker_side.stop()
        await api_side.stop()


async def test_embedded_restart_requeues_steps_of_the_dead_process(
    tmp_path: Path, backend: Backend
) -> None:
    """After a crash the embedded server does not wait for old leases to expire."""
    settings = load_settings(home=tmp_path, engine={"poll_interval": 0.05, "lease_seconds": 600})
    first = build_services(settings)
    await first.start(worker=False)
    await first.runs.apply_flow(
        FlowSpec.model_validate(
            {"id": "crashy", "steps": [step("a", backend), step("b", backend, depends_on=["a"])]}
        )
    )
    run = await first.runs.trigger("crashy", inputs={})
    claims = await first.store.claim(
        owner="dead-process", now=first.runs.clock.now(), lease_seconds=600, limit=5
    )
    assert [c.step.step_id for c in claims] == ["a"]
    await first.stop()  # the "dead" process never finishes step a

    assert (await _finish_in_new_services(settings, run.id)) is RunStatus.SUCCEEDED
    [call] = backend.calls_to("/a")
    assert call["headers"]["Idempotency-Key"] == f"{run.id}:a"


async def _idle(worker: Worker) -> None:
    """Until no claim of the worker is being written: a new run's first steps are leased to
    the worker only from slots that no claim in progress may fill."""
    async with asyncio.timeout(5):
        while worker.free_slots < worker.concurrency:  # noqa: ASYNC110 (no event to await)
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _started(settings: Settings, *flows: dict[str, Any]) -> AsyncIterator[Services]:
    """Services with a worker and ``flows`` applied, stopped on the way out."""
    services = build_services(settings)
    await services.start()
    try:
        for raw in flows:
            await services.runs.apply_flow(FlowSpec.model_validate(raw))
        yield services
    finally:
        await services.stop()


async def _finish_in_new_services(settings: Settings, run_id: str) -> RunStatus:
    """Start services (with a worker) on the same database and wait for the run to end."""
    async with _started(settings) as services, asyncio.timeout(10):
        return (await services.runs.wait(run_id, poll=0.05)).status


async def test_a_worker_in_the_process_takes_a_new_runs_first_steps_as_it_is_created(
    tmp_path: Path, backend: Backend
) -> None:
    """No claim round trip: the creating transaction already leases the roots to the worker,
    within the run's max_parallel; the rest is claimed by the worker's loop as usual."""
    settings = load_settings(home=tmp_path, engine={"poll_interval": 30})
    async with _started(
        settings,
        {
            "id": "inline",
            "concurrency": {"max_parallel_steps": 2},
            "steps": [
                step("a", backend),
                step("b", backend),
                step("c", backend),
                step("d", backend, depends_on=["a", "b", "c"]),
            ],
        },
    ) as services:
        [worker] = services.workers
        await _idle(worker)
        for slow in ("/a", "/b"):  # still running when the test looks
            backend.on(slow, Reply(delay=0.5, body={"status": "SUCCESS"}))
        run = await services.runs.trigger("inline", inputs={})
        assert run.status is RunStatus.RUNNING
        assert run.started_at is not None
        stored = await services.store.snapshot(run.id)
        assert stored is not None
        assert stored.run.status is RunStatus.RUNNING
        by_status: dict[str, list[str]] = {}
        for s in stored.steps:
            by_status.setdefault(s.status.value, []).append(s.step_id)
        assert sorted(by_status["RUNNING"]) == ["a", "b"]  # max_parallel_steps: 2
        assert by_status["QUEUED"] == ["c"]
        assert by_status["PENDING"] == ["d"]
        assert {s.lease_owner for s in stored.steps if s.status.value == "RUNNING"} == {
            worker.owner
        }
        async with asyncio.timeout(10):  # c is claimed with a's or b's completion
            done = await services.runs.wait(run.id, poll=0.05)
        assert done.status is RunStatus.SUCCEEDED
        assert sorted(c["path"] for c in backend.calls) == ["/a", "/b", "/c", "/d"]


async def test_without_a_running_worker_a_new_run_waits_pending_for_any_worker(
    tmp_path: Path, backend: Backend
) -> None:
    settings = load_settings(home=tmp_path, engine={"poll_interval": 0.05})
    api_only = build_services(settings)
    await api_only.start(worker=False)
    try:
        await api_only.runs.apply_flow(
            FlowSpec.model_validate({"id": "queued", "steps": [step("a", backend)]})
        )
        run = await api_only.runs.trigger("queued", inputs={})
        assert run.status is RunStatus.PENDING
        stored = await api_only.store.snapshot(run.id)
        assert stored is not None
        assert [(s.step_id, s.status.value, s.lease_owner) for s in stored.steps] == [
            ("a", "QUEUED", None)
        ]
    finally:
        await api_only.stop()
    assert (await _finish_in_new_services(settings, run.id)) is RunStatus.SUCCEEDED


async def test_waiting_here_for_a_run_cancelled_by_another_process_ends_at_the_next_poll(
    tmp_path: Path, backend: Backend
) -> None:
    """A run executing in this process is waited for without reading it (its end is notified
    here); an end decided elsewhere is still seen, by the polling read."""
    backend.on("/slow", Reply(delay=3, body={"status": "SUCCESS"}))
    settings = load_settings(home=tmp_path, engine={"poll_interval": 30})
    here, elsewhere = build_services(settings), build_services(settings)
    await here.start()
    await elsewhere.start(worker=False, migrate=False)
    try:
        await here.runs.apply_flow(
            FlowSpec.model_validate({"id": "waited", "steps": [step("slow", backend)]})
        )
        await _idle(here.workers[0])
        run = await here.runs.trigger("waited", inputs={})
        assert run.status is RunStatus.RUNNING  # taken by this process's worker
        waiting = asyncio.create_task(here.runs.wait(run.id, poll=0.1))
        await asyncio.sleep(0.2)
        await elsewhere.runs.cancel(run.id, actor="someone-else")
        async with asyncio.timeout(2):  # well before the slow step would have answered
            done = await waiting
        assert done.status is RunStatus.CANCELLED
    finally:
        await elsewhere.stop()
        await here.stop()


async def test_simultaneous_triggers_never_run_more_steps_than_the_worker_concurrency(
    tmp_path: Path, backend: Backend
) -> None:
    backend.on("/busy", Reply(delay=0.2, body={"status": "SUCCESS"}))
    settings = load_settings(home=tmp_path, engine={"concurrency": 2, "poll_interval": 30})
    async with _started(
        settings,
        {"id": "burst", "steps": [step("busy", backend)]},
    ) as services:
        await _idle(services.workers[0])
        runs = await asyncio.gather(*(services.runs.trigger("burst") for _ in range(10)))
        assert sum(r.status is RunStatus.RUNNING for r in runs) == 2  # the rest wait their turn
        async with asyncio.timeout(20):
            done = [await services.runs.wait(r.id, poll=0.05) for r in runs]
        assert {d.status for d in done} == {RunStatus.SUCCEEDED}
        assert len(backend.calls_to("/busy")) == 10
        assert backend.peak_in_flight == 2


async def test_a_worker_stopping_while_a_run_is_created_finishes_the_steps_it_took(
    tmp_path: Path, backend: Backend
) -> None:
    """The first steps leased in the creating transaction are in flight before the worker's
    graceful stop decides what to wait for, so nothing stays RUNNING under a stopped worker."""
    settings = load_settings(home=tmp_path, engine={"lease_seconds": 600, "poll_interval": 30})
    services = build_services(settings)
    await services.start()
    await services.runs.apply_flow(
        FlowSpec.model_validate({"id": "stopping", "steps": [step("a", backend)]})
    )
    await services.runs.wait((await services.runs.trigger("stopping")).id)  # spec now cached
    await _idle(services.workers[0])
    backend.on("/a", Reply(delay=0.2, body={"status": "SUCCESS"}))
    triggering = asyncio.create_task(services.runs.trigger("stopping"))
    await asyncio.sleep(0)  # the run is being written: nothing else to wait for
    await services.stop()
    run = await triggering
    assert run.status is RunStatus.RUNNING
    reader = build_services(settings)
    await reader.start(worker=False, migrate=False)
    try:
        stored = await reader.store.snapshot(run.id)
        assert stored is not None
        assert stored.run.status is RunStatus.SUCCEEDED
        assert [s.status.value for s in stored.steps] == ["SUCCEEDED"]
    finally:
        await reader.stop()


async def test_a_trigger_cancelled_while_its_run_is_written_still_starts_the_run(
    tmp_path: Path, backend: Backend
) -> None:
    """The caller going away (a timeout, a dropped request) must not strand the steps leased
    in the creating transaction until their lease expires."""
    settings = load_settings(home=tmp_path, engine={"lease_seconds": 600, "poll_interval": 0.05})
    async with _started(
        settings,
        {"id": "abandoned", "steps": [step("a", backend)]},
    ) as services:
        first = await services.runs.trigger("abandoned")  # the flow's spec is now cached
        await services.runs.wait(first.id, poll=0.05)
        await _idle(services.workers[0])
        triggering = asyncio.create_task(services.runs.trigger("abandoned"))
        await asyncio.sleep(0)  # the run is being written: nothing else to wait for
        triggering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await triggering
        async with asyncio.timeout(10):  # not the 600 s lease
            while True:
                page = await services.store.list_runs(RunFilter(flow_id="abandoned"))
                if len(page.items) == 2 and all(r.status.terminal for r in page.items):
                    break
                await asyncio.sleep(0.05)
        assert [r.status for r in page.items] == [RunStatus.SUCCEEDED] * 2
        assert len(backend.calls_to("/a")) == 2


async def test_a_proposal_service_whose_gitops_fails_to_build_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its GitOps a proposal service would promote without pushing to the team's
    remote: a failed build leaves neither, and the next use fails the same way."""
    from linkloom.wiring import gitops

    def broken(*_args: Any) -> None:
        raise RuntimeError("the remote's credentials are missing")

    monkeypatch.setattr(gitops, "build_gitops", broken)
    settings = load_settings(home=tmp_path, security={"signing_key": "k" * 32})
    services = build_services(settings)
    try:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="credentials are missing"):
                services.proposals  # noqa: B018 - the property builds the service
            with pytest.raises(RuntimeError, match="credentials are missing"):
                await services.proposal_service()
    finally:
        await services.stop()


def _remote_settings(home: Path) -> Settings:
    """Settings whose proposal service comes with GitOps (the remote is not contacted before
    ``GitOps.start``)."""
    return load_settings(
        home=home,
        security={"signing_key": "k" * 32},
        flows={"remote": f"file://{home / 'team-flows.git'}"},
    )


async def test_concurrent_first_uses_build_one_proposal_service_and_one_gitops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's first requests arrive together, on the event loop and in FastAPI's worker
    threads, while the first build is slow (it imports git): exactly one proposal service and
    one GitOps (one publisher, one remote sync) are built, and every caller gets them."""
    from linkloom.wiring import gitops, proposals

    builds: list[str] = []
    real_proposals, real_gitops = proposals.build_proposals, gitops.build_gitops

    def slow_proposals(*args: Any, **kwargs: Any) -> Any:
        builds.append("proposals")
        time.sleep(0.3)  # long enough for every other first use to arrive meanwhile
        return real_proposals(*args, **kwargs)

    def counted_gitops(*args: Any, **kwargs: Any) -> Any:
        builds.append("gitops")
        return real_gitops(*args, **kwargs)

    monkeypatch.setattr(proposals, "build_proposals", slow_proposals)
    monkeypatch.setattr(gitops, "build_gitops", counted_gitops)
    services = build_services(_remote_settings(tmp_path))
    try:
        in_threads = [asyncio.to_thread(lambda: services.proposals) for _ in range(6)]
        in_threads += [asyncio.to_thread(lambda: services.gitops) for _ in range(4)]
        on_the_loop = [services.proposal_service() for _ in range(6)]
        got = await asyncio.gather(*in_threads, *on_the_loop)
    finally:
        await services.stop()
    assert sorted(builds) == ["gitops", "proposals"]
    service, sync = services.proposals, services.gitops
    assert sync is not None
    assert all(found is service for found in got[:6] + got[10:])
    assert all(found is sync for found in got[6:10])
    assert service.publisher is sync.sync
    assert sync.sync.service is service


@pytest.mark.parametrize("accessor", ["proposal_service", "gitops_service"])
async def test_a_first_use_on_the_event_loop_builds_the_proposal_service_off_it(
    accessor: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``await proposal_service()`` and ``await gitops_service()`` (the GitOps API routes, the
    proposal page) let the loop go on serving while the build runs: here the build waits for a
    coroutine that only a free loop can run."""
    from linkloom.wiring import proposals

    loop_ran = threading.Event()
    real = proposals.build_proposals

    def waits_for_the_loop(*args: Any, **kwargs: Any) -> Any:
        assert loop_ran.wait(timeout=10), "the build held the event loop"
        return real(*args, **kwargs)

    async def meanwhile() -> None:
        await asyncio.sleep(0)
        loop_ran.set()

    monkeypatch.setattr(proposals, "build_proposals", waits_for_the_loop)
    services = build_services(_remote_settings(tmp_path))
    try:
        built, _ = await asyncio.gather(getattr(services, accessor)(), meanwhile())
        assert built is (services.proposals if accessor == "proposal_service" else services.gitops)
        assert services.gitops is not None
        assert services.gitops.sync.service is services.proposals
    finally:
        await services.stop()
