from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from linkloom.sdk import (
    CallbackSender,
    Deferred,
    InMemoryIdempotencyStore,
    Retryable,
    TaskDispatcher,
    TaskRequest,
    TaskResult,
)
from linkloom.sdk.handlers import TaskRoute
from linkloom.sdk.testing import signed_delivery, task_envelope

KEY = "unit-key"


def dispatcher(**options: Any) -> TaskDispatcher:
    options.setdefault("signing_key", KEY)
    return TaskDispatcher(**options)


async def deliver(d: TaskDispatcher, handler: Any, *, async_task: bool = False, **envelope: Any):
    body, headers = signed_delivery(task_envelope(**envelope), key=KEY)
    route = TaskRoute(handler=handler, async_task=async_task, name="t")
    return await d.dispatch(route, body=body, headers=headers)


# -- signatures ---------------------------------------------------------------------------------


async def test_dispatch_accepts_a_correctly_signed_delivery() -> None:
    reply = await deliver(dispatcher(), lambda task: {"ok": True})
    assert reply.status_code == 200
    assert reply.body["status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda body, headers: (body, {**headers, "X-Loom-Signature": "v1=" + "0" * 64}), "match"),
        (lambda body, headers: (body.replace(b"run-1", b"run-2"), headers), "match"),
        (lambda body, headers: (body, {"Content-Type": "application/json"}), "missing"),
    ],
    ids=["wrong-signature", "tampered-body", "unsigned"],
)
async def test_dispatch_rejects_bad_signatures_with_401(mutate: Any, reason: str) -> None:
    ran = []
    body, headers = signed_delivery(task_envelope(), key=KEY)
    body, headers = mutate(body, headers)
    route = TaskRoute(handler=lambda: ran.append(1), name="t")
    reply = await dispatcher().dispatch(route, body=body, headers=headers)
    assert reply.status_code == 401
    assert reply.body["code"] == "invalid_signature"
    assert reason in reply.body["error"]
    assert ran == []


async def test_dispatch_rejects_a_delivery_signed_with_another_key() -> None:
    body, headers = signed_delivery(task_envelope(), key="someone-else")
    reply = await dispatcher().dispatch(TaskRoute(handler=lambda: 1), body=body, headers=headers)
    assert reply.status_code == 401


async def test_dispatch_rejects_a_stale_timestamp_within_configured_tolerance() -> None:
    body, headers = signed_delivery(task_envelope(), key=KEY, timestamp=time.time() - 120)
    strict = await dispatcher(tolerance=60).dispatch(
        TaskRoute(handler=lambda: 1), body=body, headers=headers
    )
    lenient = await dispatcher(tolerance=600).dispatch(
        TaskRoute(handler=lambda: 1), body=body, headers=headers
    )
    assert strict.status_code == 401
    assert "away from now" in strict.body["error"]
    assert lenient.status_code == 200


async def test_dispatch_accepts_unsigned_deliveries_only_when_verification_is_off() -> None:
    with pytest.raises(ValueError, match="verify_signatures=False"):
        TaskDispatcher(signing_key=None)
    d = TaskDispatcher(signing_key=None, verify_signatures=False)
    reply = await d.dispatch(
        TaskRoute(handler=lambda: 7), body=json.dumps(task_envelope()).encode(), headers={}
    )
    assert reply.body["output"] == 7


async def test_dispatch_answers_400_when_the_body_is_not_json() -> None:
    body, headers = signed_delivery(b"{nope", key=KEY)
    reply = await dispatcher().dispatch(TaskRoute(handler=lambda: 1), body=body, headers=headers)
    assert reply.status_code == 400


# -- return values and exceptions -----------------------------------------------------------


async def test_dispatch_maps_a_plain_value_and_request_logs_to_success() -> None:
    def handler(task: TaskRequest) -> list[int]:
        task.log(f"Fetched {task.inputs['count']} records")
        return list(range(task.inputs["count"]))

    reply = await deliver(dispatcher(), handler, inputs={"count": 3})
    assert reply.body == {"status": "SUCCESS", "output": [0, 1, 2], "logs": ["Fetched 3 records"]}


async def test_dispatch_runs_async_handlers_and_handlers_without_parameters() -> None:
    async def handler(task: TaskRequest) -> str:
        await asyncio.sleep(0)
        return task.step_id or ""

    assert (await deliver(dispatcher(), handler, step_id="s1")).body["output"] == "s1"
    assert (await deliver(dispatcher(), lambda: "none")).body["output"] == "none"


async def test_dispatch_passes_a_task_result_through() -> None:
    reply = await deliver(dispatcher(), lambda: TaskResult.failed("quota exceeded", logs="tried"))
    assert reply.status_code == 200
    assert reply.body == {
        "status": "FAILED",
        "output": None,
        "logs": ["tried"],
        "error": "quota exceeded",
    }


async def test_dispatch_turns_an_exception_into_a_failed_result() -> None:
    def handler(task: TaskRequest) -> None:
        task.log("about to fail")
        raise ValueError("record 7 has no id")

    reply = await deliver(dispatcher(), handler)
    assert reply.status_code == 200
    assert reply.body["status"] == "FAILED"
    assert reply.body["error"] == "ValueError: record 7 has no id"
    assert reply.body["logs"] == ["about to fail"]


async def test_dispatch_answers_503_with_retry_after_for_retryable() -> None:
    def handler() -> None:
        raise Retryable("database is restarting", retry_after=30)

    reply = await deliver(dispatcher(), handler)
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "30"
    assert reply.body["error"] == "database is restarting"
    assert reply.body["retryable"] is True


# -- de-duplication -------------------------------------------------------------------------


async def test_dispatch_returns_the_stored_reply_for_a_repeated_key_without_running_again() -> None:
    calls: list[int] = []

    def charge(task: TaskRequest) -> dict[str, int]:
        calls.append(1)
        return {"charge": len(calls)}

    d = dispatcher(idempotency=InMemoryIdempotencyStore())
    first = await deliver(d, charge, idempotency_key="run-1:charge")
    again = await deliver(d, charge, idempotency_key="run-1:charge", attempt=2)
    other = await deliver(d, charge, idempotency_key="run-2:charge")
    assert calls == [1, 1]
    assert again.body == first.body == {"status": "SUCCESS", "output": {"charge": 1}, "logs": []}
    assert again.headers["X-Loom-Idempotent-Replay"] == "true"
    assert other.body["output"] == {"charge": 2}


async def test_a_replayed_delivery_under_a_new_idempotency_key_header_is_still_a_repeat() -> None:
    """The header is not signed: a captured delivery re-sent with another ``Idempotency-Key``
    must not run the handler again; the envelope's key (signed with the body) decides."""
    calls: list[int] = []

    def charge(task: TaskRequest) -> dict[str, int]:
        calls.append(1)
        return {"charge": len(calls)}

    d = dispatcher(idempotency=InMemoryIdempotencyStore())
    route = TaskRoute(handler=charge, async_task=False, name="t")
    body, headers = signed_delivery(task_envelope(idempotency_key="run-1:charge"), key=KEY)
    first = await d.dispatch(route, body=body, headers=headers)
    again = await d.dispatch(route, body=body, headers={**headers, "Idempotency-Key": "fresh"})
    assert calls == [1]
    assert again.body == first.body
    assert again.headers["X-Loom-Idempotent-Replay"] == "true"


async def test_dispatch_runs_the_handler_again_after_a_failed_attempt() -> None:
    outcomes = iter([ValueError("first"), Retryable("second"), "third"])

    def handler() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    d = dispatcher(idempotency=InMemoryIdempotencyStore())
    replies = [await deliver(d, handler, idempotency_key="k") for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 503, 200, 200]
    assert replies[0].body["status"] == "FAILED"
    assert replies[2].body["output"] == replies[3].body["output"] == "third"


async def test_dispatch_answers_503_to_a_duplicate_while_the_first_is_running() -> None:
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    d = dispatcher(idempotency=InMemoryIdempotencyStore())
    first = asyncio.create_task(deliver(d, slow, idempotency_key="k"))
    await asyncio.sleep(0.01)
    duplicate = await deliver(d, slow, idempotency_key="k")
    release.set()
    assert duplicate.status_code == 503
    assert "still being processed" in duplicate.body["error"]
    assert (await first).body["output"] == "done"


# -- async steps (callbacks through a mock transport) ---------------------------------------


class Receiver:
    """Records the callbacks and heartbeats a dispatcher posts."""

    def __init__(self, *, callback_status: int = 200) -> None:
        self.posts: list[tuple[str, dict[str, Any], httpx.Headers]] = []
        self.callback_status = callback_status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.posts.append((request.url.path, json.loads(request.content), request.headers))
        if request.url.path.endswith("/heartbeat"):
            return httpx.Response(200, json={})
        return httpx.Response(self.callback_status, json={})

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.posts]


ASYNC_CALLBACK = {
    "url": "http://loom.test/api/v1/callbacks/tok",
    "heartbeat_url": "http://loom.test/api/v1/callbacks/tok/heartbeat",
}


def async_dispatcher(receiver: Receiver, **options: Any) -> TaskDispatcher:
    sender = CallbackSender(signing_key=KEY, transport=httpx.MockTransport(receiver), backoff=0.01)
    return dispatcher(callbacks=sender, heartbeat_interval=0.02, **options)


async def test_async_task_answers_202_then_posts_heartbeats_and_a_signed_callback() -> None:
    from linkloom import signing

    receiver = Receiver()
    d = async_dispatcher(receiver)

    async def report(task: TaskRequest) -> dict[str, int]:
        task.log("rendering")
        await asyncio.sleep(0.15)
        return {"pages": 3}

    reply = await deliver(d, report, async_task=True, callback=ASYNC_CALLBACK)
    assert reply.status_code == 202
    assert receiver.posts == []  # nothing is posted before the work is done
    await d.drain()
    paths = receiver.paths()
    assert paths[-1] == "/api/v1/callbacks/tok"
    assert paths.count("/api/v1/callbacks/tok/heartbeat") >= 2
    _, body, headers = receiver.posts[-1]
    assert body == {"status": "SUCCESS", "output": {"pages": 3}, "logs": ["rendering"]}
    raw = json.dumps(body).encode()
    signing.verify(KEY, raw, dict(headers))  # the callback is signed with the shared key


async def test_async_task_posts_a_failed_result_when_the_work_raises() -> None:
    receiver = Receiver()
    d = async_dispatcher(receiver)

    def broken() -> None:
        raise RuntimeError("renderer crashed")

    await deliver(d, broken, async_task=True, callback=ASYNC_CALLBACK)
    await d.drain()
    _, body, _ = receiver.posts[-1]
    assert body["status"] == "FAILED"
    assert body["error"] == "RuntimeError: renderer crashed"


async def test_async_task_runs_inline_when_the_step_is_not_async() -> None:
    receiver = Receiver()
    reply = await deliver(async_dispatcher(receiver), lambda: 5, async_task=True)
    assert reply.status_code == 200
    assert reply.body["output"] == 5
    assert receiver.posts == []


async def test_deferred_work_is_completed_by_callback_and_deduplicated() -> None:
    receiver = Receiver()
    store = InMemoryIdempotencyStore()
    d = async_dispatcher(receiver, idempotency=store)
    runs: list[int] = []

    def handler(task: TaskRequest) -> Deferred:
        return Deferred(lambda t: runs.append(1) or {"done": True})

    first = await deliver(d, handler, callback=ASYNC_CALLBACK, idempotency_key="k")
    await d.drain()
    again = await deliver(d, handler, callback=ASYNC_CALLBACK, idempotency_key="k")
    assert first.status_code == 202
    assert runs == [1]
    assert receiver.paths()[-1] == "/api/v1/callbacks/tok"
    # After completion the stored final result answers a re-delivery at once.
    assert again.status_code == 200
    assert again.body["output"] == {"done": True}


async def test_callback_sender_stops_on_409_and_retries_server_errors() -> None:
    statuses = iter([503, 502, 409])
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        seen.append(status)
        return httpx.Response(status)

    sender = CallbackSender(signing_key=KEY, transport=httpx.MockTransport(handler), backoff=0.001)
    outcome = await sender.complete("http://loom.test/api/v1/callbacks/x", {"n": 1})
    assert outcome == "already_completed"
    assert seen == [503, 502, 409]


async def test_callback_sender_retries_connection_errors_then_gives_up() -> None:
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        raise httpx.ConnectError("refused", request=request)

    sender = CallbackSender(
        signing_key=KEY, transport=httpx.MockTransport(handler), retries=3, backoff=0.001
    )
    outcome = await sender.complete("http://loom.test/api/v1/callbacks/x", {"n": 1})
    assert outcome == "gave_up"
    assert len(attempts) == 4


async def test_deferred_without_work_answers_202_and_leaves_the_callback_to_the_app() -> None:
    receiver = Receiver()
    store = InMemoryIdempotencyStore()
    d = async_dispatcher(receiver, idempotency=store)
    runs: list[int] = []

    def handler() -> Deferred:
        runs.append(1)
        return Deferred()

    first = await deliver(d, handler, callback=ASYNC_CALLBACK, idempotency_key="k")
    again = await deliver(d, handler, callback=ASYNC_CALLBACK, idempotency_key="k")
    await d.drain()
    assert (first.status_code, again.status_code) == (202, 202)
    assert runs == [1]  # the hand-off happened once
    assert receiver.posts == []


async def test_deferring_on_a_step_that_is_not_async_is_a_clear_error() -> None:
    reply = await deliver(dispatcher(), lambda: Deferred())
    assert reply.status_code == 500
    assert "mode: async" in reply.body["error"]


async def test_retryable_in_async_work_posts_a_failed_result_marked_retryable() -> None:
    receiver = Receiver()
    d = async_dispatcher(receiver)

    def busy() -> None:
        raise Retryable("warehouse locked", retry_after=0.3)

    await deliver(d, busy, async_task=True, callback=ASYNC_CALLBACK)
    await d.drain()
    _, body, _ = receiver.posts[-1]
    assert body == {"status": "FAILED", "output": None, "logs": [], "error": "warehouse locked",
                    "retryable": True}  # fmt: skip


async def test_retry_after_is_sent_in_whole_seconds() -> None:
    def busy() -> None:
        raise Retryable("busy", retry_after=0.3)

    reply = await deliver(dispatcher(), busy)
    assert reply.headers["Retry-After"] == "1"
