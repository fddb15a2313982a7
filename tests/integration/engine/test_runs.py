"""Real flows through the worker against a real local backend, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

from engine_harness import FAST_RETRY, SECRET, SIGNING_KEY, Engine, Reply, step

from linkloom import signing
from linkloom.engine.models import RunStatus, StepStatus


async def test_parallel_branches_run_concurrently_and_join(engine: Engine) -> None:
    b = engine.backend
    b.on("/left", Reply(body={"status": "SUCCESS", "output": 1}, delay=0.3))
    b.on("/right", Reply(body={"status": "SUCCESS", "output": 2}, delay=0.3))
    await engine.apply(
        {
            "id": "diamond",
            "steps": [
                step("start", b),
                step("left", b, depends_on=["start"]),
                step("right", b, depends_on=["start"]),
                step("join", b, depends_on=["left", "right"]),
            ],
            "outputs": {"sum": "{{ steps.left.output + steps.right.output }}"},
        }
    )
    run = await engine.run("diamond")
    assert run.status is RunStatus.SUCCEEDED
    assert run.outputs == {"sum": 3}
    spans = {
        a.step_id: (a.started_at, a.finished_at) for a in await engine.runs.list_attempts(run.id)
    }
    (l0, l1), (r0, r1) = spans["left"], spans["right"]
    assert l0 < r1, "the independent branches did not overlap in time"
    assert r0 < l1, "the independent branches did not overlap in time"
    join_call = b.calls_to("/join")[0]["body"]
    assert join_call["upstream"] == {
        "left": {"output": 1, "outputs": {}},
        "right": {"output": 2, "outputs": {}},
    }


async def test_wire_contract_headers_signature_and_envelope(engine: Engine) -> None:
    b = engine.backend
    await engine.apply(
        {
            "id": "wire",
            "inputs": {"n": {"type": "integer", "default": 1}},
            "steps": [step("one", b)],
        }
    )
    run = await engine.run("wire", {"n": "5"})
    assert run.status is RunStatus.SUCCEEDED
    call = b.calls_to("/one")[0]
    headers, body = call["headers"], call["body"]
    assert headers["Idempotency-Key"] == f"{run.id}:one"
    assert headers["X-Loom-Run-Id"] == run.id
    assert headers["X-Loom-Flow-Id"] == "wire"
    assert headers["X-Loom-Flow-Version"] == "1"
    assert headers["X-Loom-Step-Id"] == "one"
    assert headers["X-Loom-Attempt"] == "1"
    assert body["inputs"] == {"n": 5}
    assert body["idempotency_key"] == f"{run.id}:one"
    assert body["callback"] is None
    assert signing.SIGNATURE_HEADER in headers


async def test_500_then_success_is_retried_with_the_same_idempotency_key(engine: Engine) -> None:
    b = engine.backend
    b.on(
        "/flaky",
        Reply(status=500, body={"error": "boom"}),
        Reply(status=503, body={"error": "busy"}),
        Reply(body={"status": "SUCCESS", "output": "ok"}),
    )
    await engine.apply({"id": "flaky", "steps": [step("flaky", b, retry=FAST_RETRY)]})
    run = await engine.run("flaky")
    assert run.status is RunStatus.SUCCEEDED
    calls = b.calls_to("/flaky")
    assert [c["headers"]["X-Loom-Attempt"] for c in calls] == ["1", "2", "3"]
    assert {c["headers"]["Idempotency-Key"] for c in calls} == {f"{run.id}:flaky"}
    attempts = await engine.runs.list_attempts(run.id)
    assert [(a.number, a.status) for a in attempts] == [
        (1, StepStatus.FAILED),
        (2, StepStatus.FAILED),
        (3, StepStatus.SUCCEEDED),
    ]
    assert attempts[0].error is not None
    assert attempts[0].error["status"] == 500


async def test_4xx_is_not_retried_and_lands_in_dead_letters(engine: Engine) -> None:
    b = engine.backend
    b.on("/bad", Reply(status=404, body={"error": "no such thing"}))
    await engine.apply(
        {
            "id": "bad",
            "steps": [step("bad", b, retry=FAST_RETRY), step("after", b, depends_on=["bad"])],
        }
    )
    run = await engine.run("bad")
    assert run.status is RunStatus.FAILED
    assert len(b.calls_to("/bad")) == 1
    assert b.calls_to("/after") == []
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert steps["bad"].status is StepStatus.FAILED
    assert steps["bad"].error is not None
    assert "HTTP 404" in steps["bad"].error["message"]
    assert steps["after"].status is StepStatus.SKIPPED
    assert run.error is not None
    assert run.error["step_id"] == "bad"
    letters = await engine.runs.list_dead_letters(flow_id="bad")
    assert [(d.run_id, d.step_id) for d in letters] == [(run.id, "bad")]


async def test_timeout_is_a_retryable_recorded_error(engine: Engine) -> None:
    b = engine.backend
    b.on("/slow", Reply(body={"status": "SUCCESS"}, delay=2))
    retry = {**FAST_RETRY, "max_attempts": 2}
    await engine.apply({"id": "slow", "steps": [step("slow", b, timeout=0.2, retry=retry)]})
    started = time.perf_counter()
    run = await engine.run("slow")
    assert time.perf_counter() - started < 1.5
    assert run.status is RunStatus.FAILED
    attempts = await engine.runs.list_attempts(run.id)
    assert len(attempts) == 2
    assert all(a.error and a.error["kind"] == "timeout" for a in attempts)


async def test_garbage_and_dropped_connections_end_in_clear_errors(engine: Engine) -> None:
    b = engine.backend
    b.on("/garbage", Reply(body="<html>oops</html>", headers={"Content-Type": "text/html"}))
    b.on("/dropped", Reply(drop=True))
    await engine.apply(
        {
            "id": "faults",
            "steps": [
                step("garbage", b),
                step("dropped", b, retry={**FAST_RETRY, "max_attempts": 2}),
            ],
        }
    )
    run = await engine.run("faults")
    assert run.status is RunStatus.FAILED
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert steps["garbage"].error is not None
    assert steps["garbage"].error["kind"] == "bad_response"
    assert "non-JSON" in steps["garbage"].error["message"]
    assert steps["dropped"].error is not None
    assert steps["dropped"].error["kind"] == "connection"
    assert len(b.calls_to("/dropped")) == 2


async def test_backend_failed_status_fails_the_step_with_its_message(engine: Engine) -> None:
    b = engine.backend
    b.on("/no", Reply(body={"status": "FAILED", "error": "invoice missing", "logs": "checked"}))
    await engine.apply({"id": "nope", "steps": [step("no", b, retry=FAST_RETRY)]})
    run = await engine.run("nope")
    assert run.status is RunStatus.FAILED
    assert len(b.calls_to("/no")) == 1
    events = await engine.runs.events(run.id)
    assert any(e.kind == "log" and e.message == "checked" for e in events)
    assert any(e.kind == "step_failed" and "invoice missing" in e.message for e in events)


async def test_exchanges_are_recorded_with_secrets_redacted(engine: Engine) -> None:
    b = engine.backend
    b.on("/secret", Reply(body={"status": "SUCCESS", "output": {"echo": SECRET}}))
    await engine.apply(
        {
            "id": "secretive",
            "steps": [
                step(
                    "secret",
                    b,
                    headers={"Authorization": "Bearer {{ secrets.api_token }}",
                             "X-Note": "t={{ secrets.api_token }}"},
                    query={"token": "{{ secrets.api_token }}"},
                    body={"key": "{{ secrets.api_token }}", "plain": 1},
                )
            ],
        }
    )  # fmt: skip
    run = await engine.run("secretive")
    assert run.status is RunStatus.SUCCEEDED
    sent = b.calls_to("/secret")[0]
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"  # the backend got the real one
    exchanges = await engine.runs.list_exchanges(run.id)
    assert len(exchanges) == 1
    x = exchanges[0]
    assert x.status == 200
    assert x.method == "POST"
    assert SECRET not in repr(x)
    assert x.request["headers"]["Authorization"] == "***"
    assert x.request["headers"]["X-Loom-Signature"] == "***"
    assert x.request["body"] == {"key": "***", "plain": 1}
    steps = await engine.runs.list_steps(run.id)
    assert SECRET not in repr(steps)


async def test_logs_and_engine_events_are_ordered_and_followable(engine: Engine) -> None:
    b = engine.backend
    b.on("/a", Reply(body={"status": "SUCCESS", "output": 1, "logs": "line one\nline two"}))
    await engine.apply({"id": "logs", "steps": [step("a", b), step("z", b, depends_on=["a"])]})
    run = await engine.runs.trigger("logs", inputs={})
    seen = []
    async with asyncio.timeout(10):
        async for event in engine.runs.follow(run.id, poll=0.02):
            seen.append(event)
    kinds = [e.kind for e in seen]
    assert kinds[0] == "run_created"
    assert kinds[-1] == "run_finished"
    messages = [e.message for e in seen if e.kind == "log"]
    assert messages[:2] == ["line one", "line two"]
    ids = [e.id for e in seen]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def test_cancel_abandons_in_flight_attempts(engine: Engine) -> None:
    b = engine.backend
    b.on("/long", Reply(body={"status": "SUCCESS"}, delay=3))
    await engine.apply(
        {"id": "long", "steps": [step("long", b), step("next", b, depends_on=["long"])]}
    )
    run = await engine.runs.trigger("long", inputs={})
    async with asyncio.timeout(5):
        while not b.calls_to("/long"):  # noqa: ASYNC110 - polling a plain list the server fills
            await asyncio.sleep(0.01)
    cancelled = await engine.runs.cancel(run.id, actor="tester")
    assert cancelled.status is RunStatus.CANCELLED
    steps = {s.step_id: s.status for s in await engine.runs.list_steps(run.id)}
    assert steps == {"long": StepStatus.CANCELLED, "next": StepStatus.CANCELLED}
    attempts = await engine.runs.list_attempts(run.id)
    assert [(a.step_id, a.status) for a in attempts] == [("long", StepStatus.CANCELLED)]
    await asyncio.sleep(0.1)
    assert (await engine.runs.get_run(run.id)).status is RunStatus.CANCELLED
    assert b.calls_to("/next") == []


async def test_retry_from_failure_keeps_succeeded_outputs(engine: Engine) -> None:
    b = engine.backend
    b.on("/first", Reply(body={"status": "SUCCESS", "output": "kept"}))
    b.on(
        "/second",
        Reply(status=400, body={"error": "fix me"}),
        Reply(body={"status": "SUCCESS", "output": 2}),
    )
    await engine.apply(
        {
            "id": "fix",
            "steps": [step("first", b), step("second", b, depends_on=["first"]),
                      step("third", b, depends_on=["second"])],
            "outputs": {"first": "{{ steps.first.output }}"},
        }
    )  # fmt: skip
    run = await engine.run("fix")
    assert run.status is RunStatus.FAILED
    await engine.runs.retry(run.id)
    async with asyncio.timeout(10):
        again = await engine.runs.wait(run.id)
    assert again.id == run.id
    assert again.status is RunStatus.SUCCEEDED
    assert again.outputs == {"first": "kept"}
    assert len(b.calls_to("/first")) == 1
    assert len(b.calls_to("/second")) == 2
    assert len(b.calls_to("/third")) == 1
    second = [c["headers"]["X-Loom-Attempt"] for c in b.calls_to("/second")]
    assert second == ["1", "2"]


async def test_dead_letter_redrive_reruns_only_the_failed_part(engine: Engine) -> None:
    b = engine.backend
    b.on(
        "/pay",
        Reply(status=422, body={"error": "card declined"}),
        Reply(body={"status": "SUCCESS", "output": "paid"}),
    )
    await engine.apply(
        {"id": "shop", "steps": [step("cart", b), step("pay", b, depends_on=["cart"])]}
    )
    run = await engine.run("shop", {})
    assert run.status is RunStatus.FAILED
    [letter] = await engine.runs.list_dead_letters(flow_id="shop")
    [redriven] = await engine.runs.redrive([letter.id])
    async with asyncio.timeout(10):
        done = await engine.runs.wait(redriven.id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.trigger == "redrive"
    assert done.trigger_info["original_run_id"] == run.id
    assert len(b.calls_to("/cart")) == 1  # kept from the failed run
    assert len(b.calls_to("/pay")) == 2
    assert await engine.runs.list_dead_letters(flow_id="shop") == []
    [used] = await engine.runs.list_dead_letters(flow_id="shop", include_redriven=True)
    assert used.redrive_run_id == redriven.id


async def test_fan_out_collects_ordered_outputs_within_max_parallel(engine: Engine) -> None:
    b = engine.backend
    b.on("/item", Reply(body={"status": "SUCCESS", "output": "x"}, delay=0.05))
    await engine.apply(
        {
            "id": "fan",
            "steps": [
                {**step("item", b), "for_each": "{{ inputs.items }}", "max_parallel": 3,
                 "body": {"n": "{{ item }}"}},
                step("after", b, depends_on=["item"]),
            ],
            "inputs": {"items": {"type": "array"}},
            "outputs": {"count": "{{ steps.item.output | length }}"},
        }
    )  # fmt: skip
    run = await engine.run("fan", {"items": list(range(7))})
    assert run.status is RunStatus.SUCCEEDED
    assert run.outputs == {"count": 7}
    calls = b.calls_to("/item")
    assert sorted(c["body"]["n"] for c in calls) == list(range(7))
    keys = {c["headers"]["Idempotency-Key"] for c in calls}
    assert keys == {f"{run.id}:item:{i}" for i in range(7)}


async def test_expired_lease_of_a_dead_worker_is_reclaimed(engine: Engine) -> None:
    """A step claimed by a worker that died is re-queued when its lease expires and finishes,
    with the same idempotency key."""
    b = engine.backend
    await engine.worker.stop(grace=0)
    await engine.apply({"id": "lease", "steps": [step("only", b)]})
    run = await engine.runs.trigger("lease", inputs={})
    clock = engine.worker.clock
    [claim] = await engine.store.claim(
        owner="dead-worker", now=clock.now(), lease_seconds=0.2, limit=5
    )
    assert claim.step.step_id == "only"
    await asyncio.sleep(0.3)
    await engine.worker.start()
    async with asyncio.timeout(10):
        done = await engine.runs.wait(run.id)
    assert done.status is RunStatus.SUCCEEDED
    events = await engine.runs.events(run.id)
    assert any(e.kind == "lease_expired" for e in events)
    [call] = b.calls_to("/only")
    assert call["headers"]["Idempotency-Key"] == f"{run.id}:only"
    assert call["headers"]["X-Loom-Attempt"] == "1"  # the lost attempt does not count


async def test_async_step_completes_through_a_signed_callback(engine: Engine) -> None:
    b = engine.backend
    b.on("/long", Reply(status=202, body={"accepted": True}))
    await engine.apply(
        {"id": "async", "steps": [step("long", b, mode="async", heartbeat_timeout=30),
                                   step("after", b, depends_on=["long"])]}
    )  # fmt: skip
    run = await engine.runs.trigger("async", inputs={})
    async with asyncio.timeout(5):
        while True:
            steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
            if steps["long"].lease_owner == "callback":
                break
            await asyncio.sleep(0.02)
    call = b.calls_to("/long")[0]
    url = call["headers"]["X-Loom-Callback-Url"]
    assert call["body"]["callback"]["url"] == url
    token = url.rsplit("/", 1)[1]
    await engine.runs.heartbeat(token)
    await engine.runs.complete_callback(token, {"status": "SUCCESS", "output": {"rows": 3}})
    async with asyncio.timeout(10):
        done = await engine.runs.wait(run.id)
    assert done.status is RunStatus.SUCCEEDED
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert steps["long"].output == {"rows": 3}
    import pytest

    from linkloom.engine.errors import CallbackAlreadyUsed

    with pytest.raises(CallbackAlreadyUsed):
        await engine.runs.complete_callback(token, {"status": "SUCCESS", "output": 1})
    assert SIGNING_KEY not in token


async def test_graceful_stop_requeues_abandoned_attempts_at_once(engine: Engine) -> None:
    b = engine.backend
    b.on("/stuck", Reply(body={"status": "SUCCESS"}, delay=3))
    await engine.apply({"id": "stopping", "steps": [step("stuck", b)]})
    run = await engine.runs.trigger("stopping", inputs={})
    async with asyncio.timeout(5):
        while not b.calls_to("/stuck"):  # noqa: ASYNC110 - polling a plain list the server fills
            await asyncio.sleep(0.01)
    await engine.worker.stop(grace=0.1)
    [stuck] = await engine.runs.list_steps(run.id)
    assert stuck.status is StepStatus.QUEUED
    assert stuck.lease_owner is None
    assert stuck.attempt == 0
