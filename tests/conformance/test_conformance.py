"""Every SDK's example backend, driven by a real ``loom server`` through every case of the task
protocol (docs/protocol.md). Each test runs once per language and per database; the backend is a
real process in its own language and a recording proxy sits between it and the server.

Most cases wait on real time (heartbeats, leases, a killed worker), so each case's interaction
with the server (``case_*``, registered in ``CASES``) starts at once, concurrently with the
others of the same language and database (the ``outcomes`` fixture); the ``test_*`` functions
then assert on what each case saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conformance.conftest import KEY, Backend, wait_until
from tests.conformance.proxy import Exchange, Proxy, signature_ok
from tests.conformance.servers import Loom

REPO = Path(__file__).resolve().parents[2]
FAST_RETRY = {"max_attempts": 3, "initial_delay": "0.05s", "max_delay": "0.1s"}
CASES: dict[str, Callable[[Loom, Backend, Proxy], Any]] = {}


def case(fn: Callable[[Loom, Backend, Proxy], Any]) -> Callable[[Loom, Backend, Proxy], Any]:
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


@dataclass
class Seen:
    """What one case observed."""

    run: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    deliveries: list[Exchange] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Outcomes:
    def __init__(self, futures: dict[str, Future[Any]]) -> None:
        self.futures = futures

    def __getitem__(self, name: str) -> Any:
        return self.futures[name].result(timeout=150)


@pytest.fixture(scope="session")
def outcomes(loom: Loom, backend: Backend, proxy: Proxy) -> Iterator[Outcomes]:
    with ThreadPoolExecutor(max_workers=len(CASES), thread_name_prefix="case") as pool:
        futures = {name: pool.submit(fn, loom, backend, proxy) for name, fn in CASES.items()}
        yield Outcomes(futures)
        for future in futures.values():  # let every case finish before the processes stop
            future.exception(timeout=150)


def _flow(name: str, backend: Backend, **spec: Any) -> dict[str, Any]:
    """A flow id unique per case and language (each server has its own database)."""
    return {"id": f"{name}-{backend.name}", **spec}


def _http(step_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "http", "url": url, **extra}


def _seen(loom: Loom, proxy: Proxy, run: dict[str, Any], **extra: Any) -> Seen:
    return Seen(run=run, steps=loom.steps(run), deliveries=proxy.deliveries(run["id"]), extra=extra)


# ---- sync tasks --------------------------------------------------------------------------


@case
def case_daily_report(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    text = (REPO / "examples/flows/daily-report/flow.yaml").read_text()
    spec = yaml.safe_load(text.replace("http://127.0.0.1:8081", proxy.backend_url(backend.name)))
    spec["id"] = f"daily-report-{backend.name}"
    run = loom.run(spec, {"count": 40, "to": f"ops-{backend.name}@example.com"})
    return _seen(loom, proxy, run, emails=backend.effects("email"))


def test_daily_report_runs_end_to_end(outcomes: Outcomes, backend: Backend) -> None:
    """The example flow, verbatim but for the backend's address: fetch → process → email."""
    seen = outcomes["daily_report"]
    to = f"ops-{backend.name}@example.com"
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    assert seen.run["outputs"] == {"fetched": 40, "valid": 38, "emailed_to": to}
    assert seen.steps["fetch_data"]["logs"] == ["Fetched 40 records"]
    assert seen.steps["process"]["logs"] == ["Processed data, 38 valid"]
    assert seen.steps["process"]["output"] == {"total": 40, "valid": 38, "invalid": 2}
    assert seen.steps["send_email"]["logs"] == [f"Email sent to {to}"]
    key = f"{seen.run['id']}:send_email"
    assert [e["to"] for e in seen.extra["emails"] if e["key"] == key] == [to]
    delivered = {ex.request_headers["x-loom-step-id"] for ex in seen.deliveries}
    assert delivered == {"fetch_data", "process", "send_email"}
    for ex in seen.deliveries:  # signed as docs/protocol.md says, answered in response format
        assert signature_ok(KEY, ex.request_headers, ex.request_body)
        assert ex.status == 200
        assert ex.json()["status"] == "SUCCESS"


@case
def case_echo(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    echo = proxy.backend_url(backend.name) + "/api/tasks/echo"
    spec = _flow(
        "echo", backend,
        inputs={"who": {"type": "string"}, "n": {"type": "integer", "default": 2}},
        steps=[
            _http("First", echo),
            _http("each", echo, depends_on=["First"], for_each=[10, "b"]),
            _http("custom", echo, depends_on=["First"],
                  body={"hello": "{{ inputs.who }}", "n": "{{ inputs.n }}"}),
        ],
    )  # fmt: skip
    return _seen(loom, proxy, loom.run(spec, {"who": "Ada"}), flow_id=spec["id"])


def test_sync_task_reads_envelope_headers_items_and_own_body(outcomes: Outcomes) -> None:
    """The SDK parses the envelope, the fan-out item and index, and — for a step with its own
    body — the metadata from the X-Loom-* headers."""
    seen = outcomes["echo"]
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    rid, steps = seen.run["id"], seen.steps
    first = steps["First"]["output"]
    names = ("run_id", "flow_id", "step_id", "attempt", "idempotency_key")
    assert {k: first[k] for k in names} == {
        "run_id": rid, "flow_id": seen.extra["flow_id"], "step_id": "First", "attempt": 1,
        "idempotency_key": f"{rid}:First",
    }  # fmt: skip
    assert isinstance(first["flow_version"], int)
    assert first["flow_version"] >= 1
    assert first["inputs"] == {"who": "Ada", "n": 2}
    assert first["item"] is None
    assert first["index"] is None
    assert first["body"] is None
    assert first["headers"]["x-loom-step-id"] == "First"
    for index, item in enumerate([10, "b"]):
        out = steps[f"each[{index}]"]["output"]
        assert (out["item"], out["index"]) == (item, index)
        assert out["idempotency_key"] == f"{rid}:each:{index}"
        assert out["upstream"]["First"]["output"]["step_id"] == "First"
    custom = steps["custom"]["output"]
    assert custom["body"] == {"hello": "Ada", "n": 2}
    assert (custom["run_id"], custom["flow_id"], custom["step_id"]) == (
        rid, seen.extra["flow_id"], "custom",
    )  # fmt: skip
    assert (custom["idempotency_key"], custom["attempt"]) == (f"{rid}:custom", 1)
    assert custom["flow_version"] == first["flow_version"]
    assert custom["inputs"] == {}
    assert custom["upstream"] == {}


@case
def case_fail(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name) + "/api/tasks/fail"
    spec = _flow("fail", backend, defaults={"retry": FAST_RETRY}, steps=[_http("pay", url)])
    run = loom.run(spec, {"error": "card declined"})
    return _seen(
        loom, proxy, run, attempts=loom.attempts(run["id"], "pay"), ran=backend.effects("fail")
    )


def test_failed_without_retryable_fails_the_step_once(outcomes: Outcomes) -> None:
    seen = outcomes["fail"]
    assert seen.run["status"] == "FAILED"
    step = seen.steps["pay"]
    assert step["status"] == "FAILED"
    assert "card declined" in step["error"]["message"]
    assert len(seen.extra["attempts"]) == 1
    assert [e for e in seen.extra["ran"] if e["key"] == f"{seen.run['id']}:pay"]
    (answer,) = seen.deliveries
    assert answer.status == 200
    assert answer.json()["status"] == "FAILED"
    assert not answer.json().get("retryable")


@case
def case_fail_retryable(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name) + "/api/tasks/fail"
    spec = _flow(
        "fail-retryable", backend, defaults={"retry": FAST_RETRY}, steps=[_http("pay", url)]
    )
    run = loom.run(spec, {"error": "bank busy", "retryable": True})
    return _seen(
        loom, proxy, run, attempts=loom.attempts(run["id"], "pay"), ran=backend.effects("fail")
    )


def test_failed_with_retryable_is_retried_and_runs_the_handler_each_time(
    outcomes: Outcomes,
) -> None:
    seen = outcomes["fail_retryable"]
    assert seen.run["status"] == "FAILED"
    message = seen.steps["pay"]["error"]["message"]
    assert "bank busy" in message
    assert "gave up after 3 attempts" in message
    assert len(seen.extra["attempts"]) == 3
    ran = [e["attempt"] for e in seen.extra["ran"] if e["key"] == f"{seen.run['id']}:pay"]
    # FAILED replies are never replayed: the handler ran for every delivery of every attempt
    # (an attempt may arrive twice: delivery is at least once)
    assert sorted(set(ran)) == [1, 2, 3]
    assert len(ran) == len(seen.deliveries)
    assert all(a.json()["retryable"] is True for a in seen.deliveries)
    assert not [a for a in seen.deliveries if "x-loom-idempotent-replay" in a.response_headers]
    assert len({a.request_headers["idempotency-key"] for a in seen.deliveries}) == 1


@case
def case_flaky(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name) + "/api/tasks/flaky"
    spec = _flow("flaky", backend, defaults={"retry": FAST_RETRY}, steps=[_http("call", url)])
    return _seen(loom, proxy, loom.run(spec, {"failures": 2}))


def test_retry_later_answer_is_retried_until_it_succeeds(outcomes: Outcomes) -> None:
    """A handler asking for a retry answers 503 with Retry-After; the third delivery succeeds."""
    seen = outcomes["flaky"]
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    assert seen.steps["call"]["output"] == {"deliveries": 3}
    assert [a.status for a in seen.deliveries] == [503, 503, 200]
    assert seen.deliveries[0].response_headers.get("retry-after") == "0"
    assert seen.deliveries[0].json()["status"] == "FAILED"
    assert seen.deliveries[0].json()["retryable"] is True


# ---- exactly once -------------------------------------------------------------------------


@case
def case_duplicate(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name, "lose-first-answer") + "/api/tasks/charge"
    spec = _flow("charge", backend, defaults={"retry": FAST_RETRY}, steps=[_http("charge", url)])
    run = loom.run(spec, {"amount": 42})
    return _seen(
        loom, proxy, run,
        charges=backend.effects("charge"), attempts=loom.attempts(run["id"], "charge"),
    )  # fmt: skip


def test_duplicate_delivery_runs_the_handler_once_and_repeats_the_answer(
    outcomes: Outcomes,
) -> None:
    """The first answer is lost on the way back; the server delivers again with the same
    Idempotency-Key and gets the same answer, replayed, without a second charge."""
    seen = outcomes["duplicate"]
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    first, second = seen.deliveries
    assert first.dropped
    assert not second.dropped
    key = f"{seen.run['id']}:charge"
    assert first.request_headers["idempotency-key"] == key
    assert second.request_headers["idempotency-key"] == key
    assert (first.status, second.status) == (200, 200)
    assert first.json() == second.json()
    assert second.response_headers.get("x-loom-idempotent-replay") == "true"
    charges = [e for e in seen.extra["charges"] if e["key"] == key]
    assert len(charges) == 1
    assert charges[0]["amount"] == 42
    assert seen.steps["charge"]["output"] == first.json()["output"]
    assert len(seen.extra["attempts"]) == 2


@case
def case_replay_new_key(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name, "replay-new-key") + "/api/tasks/charge"
    spec = _flow("replay-new-key", backend, steps=[_http("charge", url)])
    return _seen(loom, proxy, loom.run(spec, {"amount": 11}), charges=backend.effects("charge"))


def test_a_captured_delivery_under_a_new_idempotency_key_header_is_a_repeat(
    outcomes: Outcomes,
) -> None:
    """The ``Idempotency-Key`` header is not signed: a captured delivery sent again with another
    one (inside the signature's window) must not run the handler again. The envelope's
    ``idempotency_key``, which the signature covers, is the key."""
    seen = outcomes["replay_new_key"]
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    first, replay = seen.deliveries
    assert replay.fault == "replayed"
    assert (first.status, replay.status) == (200, 200)
    assert replay.response_headers.get("x-loom-idempotent-replay") == "true"
    assert replay.json() == first.json()
    key = f"{seen.run['id']}:charge"
    charges = [e for e in seen.extra["charges"] if e["key"].startswith(seen.run["id"])]
    assert [e["key"] for e in charges] == [key]


# ---- signatures ---------------------------------------------------------------------------

REFUSED = ("bad-signature", "tampered-body", "no-signature", "stale", "future")


@case
def case_signatures(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    steps = [
        _http(fault.replace("-", "_"), proxy.backend_url(backend.name, fault) + "/api/tasks/charge")
        for fault in (*REFUSED, "skewed-ok")
    ]
    spec = _flow("signatures", backend, defaults={"retry": FAST_RETRY}, steps=steps)
    return _seen(loom, proxy, loom.run(spec, {"amount": 7}), charges=backend.effects("charge"))


def test_bad_signatures_and_stale_timestamps_are_refused_before_the_handler(
    outcomes: Outcomes,
) -> None:
    """Each step's delivery is broken on the way (one fault each); each is refused with 401
    and runs no handler. A timestamp 200 s old is inside the window and accepted."""
    seen = outcomes["signatures"]
    assert seen.run["status"] == "FAILED"
    for fault in REFUSED:
        step_id = fault.replace("-", "_")
        step = seen.steps[step_id]
        assert step["status"] == "FAILED", fault
        assert "HTTP 401" in step["error"]["message"], (fault, step["error"])
        (delivery,) = [d for d in seen.deliveries if d.fault == fault]  # 401: not retried
        assert delivery.status == 401
        body = delivery.json()
        assert body["status"] == "FAILED", body
        assert body["code"] == "invalid_signature", body
        assert "invalid signature" in body["error"]
    assert seen.steps["skewed_ok"]["status"] == "SUCCEEDED"
    charged = [e["key"] for e in seen.extra["charges"] if e["key"].startswith(seen.run["id"])]
    assert charged == [f"{seen.run['id']}:skewed_ok"]  # no refused delivery reached a handler


@case
def case_two_signatures(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name, "two-signatures") + "/api/tasks/charge"
    spec = _flow("two-signatures", backend, steps=[_http("charge", url)])
    return _seen(loom, proxy, loom.run(spec, {}), charges=backend.effects("charge"))


def test_a_list_of_signature_entries_is_refused(outcomes: Outcomes, backend: Backend) -> None:
    """``v1=<valid>,v1=<valid>``: exactly one entry is allowed (docs/protocol.md section 4)."""
    seen = outcomes["two_signatures"]
    assert seen.run["status"] == "FAILED"
    (delivery,) = seen.deliveries
    assert delivery.status == 401
    assert delivery.json()["code"] == "invalid_signature"
    assert not [e for e in seen.extra["charges"] if e["key"].startswith(seen.run["id"])]


# ---- async: 202, heartbeats, callback -----------------------------------------------------


def _async_step(url: str, **extra: Any) -> dict[str, Any]:
    return _http("report", url, mode="async", heartbeat_timeout="3s", timeout="60s", **extra)


@case
def case_async(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name) + "/api/tasks/slow-report"
    spec = _flow("async", backend, steps=[_async_step(url)])
    run = loom.run(spec, {"seconds": 7, "pages": 3})
    seen = _seen(loom, proxy, run, attempts=loom.attempts(run["id"], "report"))
    seen.extra["callbacks"], seen.extra["heartbeats"] = proxy.callbacks_of(seen.deliveries[0])
    return seen


def test_async_task_heartbeats_then_completes_by_signed_callback(outcomes: Outcomes) -> None:
    seen = outcomes["async"]
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    step = seen.steps["report"]
    assert step["output"] == {"report": f"report-{seen.run['id']}", "pages": 3}
    assert step["logs"][-1] == "Rendered page 3/3"
    # one attempt: 7 s of work outlived the 3 s heartbeat_timeout only thanks to heartbeats
    assert len(seen.extra["attempts"]) == 1
    (delivery,) = seen.deliveries
    assert delivery.status == 202
    heartbeats = seen.extra["heartbeats"]
    assert len(heartbeats) >= 2, "7 s of work needs a heartbeat inside each 3 s"
    for beat in heartbeats:
        assert signature_ok(KEY, beat.request_headers, beat.request_body)
        assert beat.status == 200
        assert beat.json()["accepted"] is True
    (callback,) = seen.extra["callbacks"]
    assert signature_ok(KEY, callback.request_headers, callback.request_body)
    assert callback.status == 200
    assert callback.request_json()["status"] == "SUCCESS"
    assert max(b.at for b in heartbeats) <= callback.at  # no heartbeat after the result


def _answered(callbacks: list[Exchange]) -> list[Exchange]:
    """The callbacks, once the server answered each (a recorded one may still be in flight)."""
    return callbacks if all(c.status is not None for c in callbacks) else []


@case
def case_missed_heartbeat(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name, "drop-heartbeats") + "/api/tasks/slow-report"
    spec = _flow("missed-heartbeat", backend,
                 steps=[_async_step(url, retry={"max_attempts": 1})])  # fmt: skip
    seen = _seen(loom, proxy, loom.run(spec, {"seconds": 12, "pages": 2}))
    (delivery,) = seen.deliveries
    wait_until(
        lambda: _answered(proxy.callbacks_of(delivery)[0]), within=40, what="the late callback"
    )
    time.sleep(1.5)  # an SDK that retried a 409 would do it now
    seen.extra["callbacks"], seen.extra["heartbeats"] = proxy.callbacks_of(delivery)
    return seen


def test_missed_heartbeats_fail_the_attempt_and_the_late_callback_gets_409(
    outcomes: Outcomes, loom: Loom, backend: Backend
) -> None:
    """The heartbeats never reach the server: after heartbeat_timeout the attempt fails as a
    timeout. The work's late callback is answered 409, and the SDK does not send it again."""
    seen = outcomes["missed_heartbeat"]
    assert seen.run["status"] == "FAILED"
    error = seen.steps["report"]["error"]
    assert error["kind"] == "timeout"
    assert "no callback or heartbeat" in error["message"]
    heartbeats, callbacks = seen.extra["heartbeats"], seen.extra["callbacks"]
    assert heartbeats
    assert all(b.dropped for b in heartbeats)
    assert [c.status for c in callbacks] == [409]
    assert callbacks[0].json()["code"] == "callback_already_used"


@case
def case_second_callback(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    url = proxy.backend_url(backend.name, "lose-first-callback-answer") + "/api/tasks/slow-report"
    spec = _flow("second-callback", backend, steps=[_async_step(url)])
    run = loom.run(spec, {"seconds": 0.3, "pages": 1})
    seen = _seen(loom, proxy, run, attempts=loom.attempts(run["id"], "report"))
    (delivery,) = seen.deliveries
    wait_until(
        lambda: len(_answered(proxy.callbacks_of(delivery)[0])) >= 2, within=30, what="a resend"
    )
    time.sleep(1.5)  # an SDK that retried a 409 would do it now
    seen.extra["callbacks"] = proxy.callbacks_of(delivery)[0]
    return seen


def test_a_second_callback_is_answered_409_and_the_first_result_stands(
    outcomes: Outcomes,
) -> None:
    """The first callback reaches the server but its answer is lost: the SDK sends it again,
    gets 409 (the attempt already has its result) and stops."""
    seen = outcomes["second_callback"]
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    assert seen.steps["report"]["output"] == {"report": f"report-{seen.run['id']}", "pages": 1}
    callbacks = seen.extra["callbacks"]
    assert [(c.status, c.dropped) for c in callbacks] == [(200, True), (409, False)]
    assert callbacks[0].request_json() == callbacks[1].request_json()
    assert len(seen.extra["attempts"]) == 1


# ---- pull workers -------------------------------------------------------------------------


def _task_flow(name: str, backend: Backend, queue: str, **step: Any) -> dict[str, Any]:
    return {
        "id": f"{name}-{backend.name}",
        "steps": [
            {
                "id": "square",
                "type": "task",
                "queue": queue,
                "task": "square",
                "timeout": 60,
                "payload": {"n": "{{ item }}", "seconds": "{{ inputs.seconds }}"},
                **step,
            },
        ],
        "inputs": {"seconds": {"type": "number", "default": 0}},
    }


@case
def case_pull(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    queue = f"{backend.name}-{loom.name}-ok"
    worker_id = f"{backend.name}-worker-{loom.name}"
    spec = _task_flow("pull", backend, queue, for_each=[2, 3, 4])
    loom.apply(spec)
    worker = backend.worker(loom, queue=queue, worker_id=worker_id)
    extra: dict[str, Any] = {"worker_id": worker_id, "queue": queue}
    try:
        wait_until(lambda: worker_id in loom.workers(), within=60, what="the worker to register")
        extra["registered"] = loom.workers()[worker_id]
        run = loom.wait(loom.trigger(spec["id"], {"seconds": 6.5}))
        extra["after_run"] = loom.workers()[worker_id]
        extra["output"] = worker.output()
    finally:
        worker.stop()
    extra["stopped"] = wait_until(
        lambda: loom.workers()[worker_id]["status"] == "stopped",
        within=20, what="the worker to deregister on SIGTERM",
    )  # fmt: skip
    return _seen(loom, proxy, run, **extra)


def test_pull_worker_takes_heartbeats_and_completes_tasks(outcomes: Outcomes) -> None:
    """Three tasks run 6.5 s each, twice the 3 s lease: only heartbeats keep them leased to
    the worker, so each is delivered once. SIGTERM stops the worker cleanly."""
    seen = outcomes["pull"]
    worker_id = seen.extra["worker_id"]
    registered = seen.extra["registered"]
    assert registered["queues"] == [seen.extra["queue"]]
    assert registered["status"] == "active"
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    for index, n in enumerate([2, 3, 4]):
        step = seen.steps[f"square[{index}]"]
        assert step["output"] == {"square": n * n, "deliveries": 1, "worker": worker_id}
        assert f"squared {n}" in seen.steps["square"]["logs"]  # a fan-out's lines: its parent
    assert seen.extra["after_run"]["status"] == "active"
    assert seen.extra["output"].count("task started") == 3
    assert seen.extra["stopped"]


@case
def case_pull_kill(loom: Loom, backend: Backend, proxy: Proxy) -> Seen:
    queue = f"{backend.name}-{loom.name}-kill"
    victim_id, heir_id = f"{backend.name}-victim-{loom.name}", f"{backend.name}-heir-{loom.name}"
    spec = _task_flow("pull-kill", backend, queue, for_each=[5])
    loom.apply(spec)
    victim = backend.worker(loom, queue=queue, worker_id=victim_id, concurrency=1)
    heir = None
    extra: dict[str, Any] = {"victim_id": victim_id, "heir_id": heir_id}
    try:
        run_id = loom.trigger(spec["id"], {"seconds": 2})
        victim.wait_for_text("task started", within=60)
        victim.kill()
        extra["victim_output"] = victim.output()
        heir = backend.worker(loom, queue=queue, worker_id=heir_id, concurrency=1)
        run = loom.wait(run_id, within=60)
        extra["heir_output"] = heir.output()
        extra["attempts"] = loom.attempts(run_id, "square")
        extra["victim_status"] = wait_until(
            lambda: loom.workers()[victim_id]["status"] == "lost" and "lost",
            within=10, what="the killed worker to be marked lost",
        )  # fmt: skip
    finally:
        victim.kill()
        if heir is not None:
            heir.stop()
    return _seen(loom, proxy, run, **extra)


def test_pull_worker_killed_mid_task_gets_its_task_redelivered(outcomes: Outcomes) -> None:
    seen = outcomes["pull_kill"]
    key = f"{seen.run['id']}:square:0"
    assert f"task started key={key} deliveries=1" in seen.extra["victim_output"]
    assert seen.run["status"] == "SUCCEEDED", seen.run["error"]
    output = seen.steps["square[0]"]["output"]
    assert output["worker"] == seen.extra["heir_id"]
    assert output["square"] == 25
    assert output["deliveries"] >= 2  # the same attempt, handed out again
    assert f"task started key={key} deliveries={output['deliveries']}" in seen.extra["heir_output"]
    assert len(seen.extra["attempts"]) == 1
    assert seen.extra["victim_status"] == "lost"
