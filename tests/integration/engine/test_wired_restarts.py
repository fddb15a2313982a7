"""Durable waits on a real wired server (SQLite file, real API app on a local port, worker):
a delay and an async step survive a server restart; async callbacks go through the real
callback routes (signed; a second one is a 409); a missed heartbeat and a FAILED callback marked
``retryable`` are retried; a Flask backend built with the SDK and a sub-flow run for real."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_harness import Backend, Reply
from flask import Flask
from werkzeug.serving import make_server

from linkloom import signing
from linkloom.flows.spec import FlowSpec
from linkloom.sdk import TaskRequest, TaskResult
from linkloom.sdk.errors import Retryable
from linkloom.sdk.flask import loom_blueprint
from tests.support.loom_server import SIGNING_KEY, LoomServer

FAST_RETRY = {"max_attempts": 3, "initial_delay": 0.05, "max_delay": 0.1, "jitter": False}


@pytest.fixture
def home(tmp_path: Path, sqlite_template: Path) -> Path:
    """A server home whose database is already migrated."""
    shutil.copy(sqlite_template, tmp_path / "loom.db")
    return tmp_path


def spec(raw: dict[str, Any]) -> FlowSpec:
    return FlowSpec.model_validate(raw)


async def until(check: Any, *, within: float = 10) -> Any:
    async with asyncio.timeout(within):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.02)


async def post_signed(url: str, payload: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **signing.sign(SIGNING_KEY, body)}
    async with httpx.AsyncClient() as client:
        return await client.post(url, content=body, headers=headers)


@pytest.mark.slow
async def test_delay_holds_no_worker_and_survives_a_restart(home: Path) -> None:
    flow = spec({
        "id": "sleepy",
        "steps": [
            {"id": "wait", "type": "delay", "duration": "1.5s"},
            {"id": "after", "type": "transform", "depends_on": ["wait"], "template": "woke"},
        ],
        "outputs": {"after": "{{ steps.after.output }}"},
    })  # fmt: skip
    server = LoomServer(home)
    await server.start()
    try:
        await server.services.runs.apply_flow(flow)
        run = await server.services.runs.trigger("sleepy", inputs={})
        started = time.monotonic()

        async def suspended() -> bool:
            step = (await server.steps(run.id))["wait"]
            return step.status == "QUEUED" and "wake_at" in json.dumps(step.state)

        await until(suspended, within=5)
        worker = server.services.workers[0]

        async def slot_freed() -> bool:
            # The suspension is committed a moment before the step's task returns its slot.
            return not worker._inflight

        await until(slot_freed, within=1)
        for _ in range(5):  # the timer holds no worker slot
            assert len(worker._inflight) == 0
            await asyncio.sleep(0.05)
        await server.stop()
        assert time.monotonic() - started < 1.5, "the server must go down mid-delay"
        await server.start()
        done = await server.wait(run.id, within=10)
        elapsed = time.monotonic() - started
    finally:
        await server.stop()
    assert done.status == "SUCCEEDED", done.error
    assert done.outputs == {"after": "woke"}
    assert elapsed >= 1.5
    steps = await _steps_after(server, run.id)
    assert steps["wait"].output["waited"] >= 1.5
    assert steps["wait"].attempt == 1  # the durable wait used no extra attempt


async def _steps_after(server: LoomServer, run_id: str) -> dict[str, Any]:
    await server.start()
    try:
        return await server.steps(run_id)
    finally:
        await server.stop()


@pytest.mark.slow
async def test_async_step_completed_by_callback_after_restart_then_409(
    home: Path, backend: Backend
) -> None:
    backend.on("/report", Reply(status=202, body={"accepted": True}))
    flow = spec({
        "id": "long-report",
        "steps": [
            {"id": "report", "type": "http", "url": f"{backend.url}/report", "mode": "async",
             "heartbeat_timeout": "30s", "timeout": "5m",
             "outputs": {"pages": "{{ output.pages }}"}},
            {"id": "after", "type": "transform", "depends_on": ["report"],
             "template": "{{ steps.report.outputs.pages * 2 }}"},
        ],
        "outputs": {"doubled": "{{ steps.after.output }}"},
    })  # fmt: skip
    server = LoomServer(home)
    await server.start()
    try:
        await server.services.runs.apply_flow(flow)
        run = await server.services.runs.trigger("long-report", inputs={})

        async def waiting() -> bool:
            return (await server.steps(run.id))["report"].lease_owner == "callback"

        await until(waiting)
        [call] = backend.calls_to("/report")
        url = call["headers"]["X-Loom-Callback-Url"]
        assert url.startswith(f"{server.url}/api/v1/callbacks/")
        assert call["body"]["callback"] == {
            "url": url,
            "heartbeat_url": call["headers"]["X-Loom-Heartbeat-Url"],
        }
        await server.restart()
        assert (await server.steps(run.id))["report"].status == "RUNNING"
        async with httpx.AsyncClient() as client:
            unsigned = await client.post(url, json={"status": "SUCCESS"})
        assert unsigned.status_code == 401
        beat = await post_signed(call["headers"]["X-Loom-Heartbeat-Url"], {})
        assert beat.status_code < 300, beat.text
        first = await post_signed(url, {"status": "SUCCESS", "output": {"pages": 21}})
        assert first.status_code < 300, first.text
        done = await server.wait(run.id)
        second = await post_signed(url, {"status": "SUCCESS", "output": {"pages": 1}})
        steps = await server.steps(run.id)
    finally:
        await server.stop()
    assert done.status == "SUCCEEDED", done.error
    assert done.outputs == {"doubled": 42}
    assert second.status_code == 409, second.text
    assert "already" in second.text.lower() or "callback" in second.text.lower()
    assert steps["report"].output == {"pages": 21}  # the second callback changed nothing
    assert len(backend.calls_to("/report")) == 1  # not re-sent after the restart


@pytest.mark.slow
async def test_missed_heartbeat_fails_the_attempt_and_the_retry_completes(
    home: Path, backend: Backend
) -> None:
    backend.on("/job", Reply(status=202, body={"accepted": True}))
    flow = spec({
        "id": "silent-backend",
        "steps": [{"id": "job", "type": "http", "url": f"{backend.url}/job", "mode": "async",
                   "heartbeat_timeout": "1.5s", "retry": FAST_RETRY}],
    })  # fmt: skip
    async with LoomServer(home) as server:
        await server.services.runs.apply_flow(flow)
        run = await server.services.runs.trigger("silent-backend", inputs={})
        await until(lambda: _n_calls(backend, "/job", 1))
        beat = await post_signed(backend.calls_to("/job")[0]["headers"]["X-Loom-Heartbeat-Url"], {})
        assert beat.is_success, beat.text  # one heartbeat, then silence
        # attempt 1 timed out, 2 was sent
        await until(lambda: _n_calls(backend, "/job", 2), within=20)
        second = backend.calls_to("/job")[1]
        assert second["headers"]["X-Loom-Attempt"] == "2"
        reply = await post_signed(
            second["headers"]["X-Loom-Callback-Url"], {"status": "SUCCESS", "output": "ok"}
        )
        assert reply.status_code < 300, reply.text
        done = await server.wait(run.id)
        attempts = await server.services.runs.list_attempts(run.id)
    assert done.status == "SUCCEEDED", done.error
    assert [a.status for a in attempts] == ["FAILED", "SUCCEEDED"]
    assert attempts[0].error["kind"] == "timeout"
    assert "heartbeat" in attempts[0].error["message"]
    first = backend.calls_to("/job")[0]
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]


async def _n_calls(backend: Backend, path: str, n: int) -> bool:
    return len(backend.calls_to(path)) >= n


@pytest.mark.parametrize("retryable", [True, False])
async def test_failed_callback_is_retried_only_when_marked_retryable(
    home: Path, backend: Backend, retryable: bool
) -> None:
    backend.on("/job", Reply(status=202, body={"accepted": True}))
    flow = spec({
        "id": "flaky-async",
        "steps": [{"id": "job", "type": "http", "url": f"{backend.url}/job", "mode": "async",
                   "heartbeat_timeout": "30s", "retry": FAST_RETRY}],
    })  # fmt: skip
    async with LoomServer(home) as server:
        await server.services.runs.apply_flow(flow)
        run = await server.services.runs.trigger("flaky-async", inputs={})
        await until(lambda: _n_calls(backend, "/job", 1))
        failed = {"status": "FAILED", "error": "database busy", "retryable": retryable}
        first = backend.calls_to("/job")[0]
        assert (await post_signed(first["headers"]["X-Loom-Callback-Url"], failed)).is_success
        if retryable:
            await until(lambda: _n_calls(backend, "/job", 2))
            url = backend.calls_to("/job")[1]["headers"]["X-Loom-Callback-Url"]
            ok = await post_signed(url, {"status": "SUCCESS", "output": {"n": 1}})
            assert ok.is_success, ok.text
        done = await server.wait(run.id)
        attempts = await server.services.runs.list_attempts(run.id)
    if retryable:
        assert done.status == "SUCCEEDED", done.error
        assert [a.status for a in attempts] == ["FAILED", "SUCCEEDED"]
        assert attempts[0].error["message"] == "database busy"
    else:
        assert done.status == "FAILED"
        assert [a.status for a in attempts] == ["FAILED"]
        assert len(backend.calls_to("/job")) == 1


# ---------------------------------------------------------------------------- Flask SDK


class FlaskBackend:
    """A Flask app with the SDK's blueprint, served by werkzeug on a thread."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, int]] = []
        bp = loom_blueprint(signing_key=SIGNING_KEY, heartbeat_interval=0.2)

        @bp.task("/api/tasks/greet")
        def greet(task: TaskRequest) -> Any:
            self.deliveries.append(("greet", task.attempt))
            if task.attempt == 1:
                return TaskResult.failed("the greeter is busy", retryable=True)
            return {"greeting": f"hello {task.inputs['name']}"}

        @bp.task("/api/tasks/report", async_task=True)
        def report(task: TaskRequest) -> dict[str, Any]:
            self.deliveries.append(("report", task.attempt))
            if task.attempt == 1:
                raise Retryable("the printer is warming up")
            time.sleep(0.6)  # longer than the heartbeat timeout: heartbeats keep it alive
            greeting = task.upstream["greet"]["output"]["greeting"]
            return {"report": greeting.upper(), "attempt": task.attempt}

        app = Flask("loom-flask-test")
        app.register_blueprint(bp)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def flask_backend() -> Iterator[FlaskBackend]:
    backend = FlaskBackend()
    backend.thread.start()
    yield backend
    backend.server.shutdown()
    backend.thread.join(timeout=5)


@pytest.mark.slow
async def test_flask_sdk_backend_serves_sync_and_async_steps_of_a_real_run(
    home: Path, flask_backend: FlaskBackend
) -> None:
    url = flask_backend.url
    flow = spec({
        "id": "flask-flow",
        "inputs": {"name": {"type": "string"}},
        "steps": [
            {"id": "greet", "type": "http", "url": f"{url}/api/tasks/greet",
             "retry": FAST_RETRY},
            {"id": "report", "type": "http", "url": f"{url}/api/tasks/report",
             "depends_on": ["greet"], "mode": "async", "heartbeat_timeout": "0.5s",
             "retry": FAST_RETRY},
        ],
        "outputs": {"report": "{{ steps.report.output.report }}"},
    })  # fmt: skip
    async with LoomServer(home) as server:
        await server.services.runs.apply_flow(flow)
        run = await server.services.runs.trigger("flask-flow", inputs={"name": "ann"})
        done = await server.wait(run.id)
        attempts = await server.services.runs.list_attempts(run.id)
    assert done.status == "SUCCEEDED", done.error
    assert done.outputs == {"report": "HELLO ANN"}
    assert flask_backend.deliveries == [("greet", 1), ("greet", 2), ("report", 1), ("report", 2)]
    greet = [a for a in attempts if a.step_id == "greet"]
    # TaskResult.failed(..., retryable=True): a 200 FAILED the server retries.
    assert [a.status for a in greet] == ["FAILED", "SUCCEEDED"]
    assert greet[0].error["message"] == "the greeter is busy"
    report = [a for a in attempts if a.step_id == "report"]
    # Retryable raised in async work: a FAILED callback marked retryable, so a second attempt.
    assert [a.status for a in report] == ["FAILED", "SUCCEEDED"]
    assert "warming up" in report[0].error["message"]


# ---------------------------------------------------------------------------- sub-flows


async def test_flow_step_starts_the_child_with_mapped_inputs_and_waits_for_outputs(
    home: Path,
) -> None:
    child = spec({
        "id": "pricing",
        "inputs": {"amount": {"type": "number"}, "rate": {"type": "number"}},
        "steps": [
            {"id": "wait", "type": "delay", "duration": "0.3s"},
            {"id": "calc", "type": "transform", "depends_on": ["wait"],
             "template": {"total": "{{ inputs.amount * (1 + inputs.rate) }}"}},
        ],
        "outputs": {"total": "{{ steps.calc.output.total }}"},
    })  # fmt: skip
    parent = spec({
        "id": "checkout",
        "inputs": {"amount": {"type": "number"}},
        "steps": [
            {"id": "price", "type": "flow", "flow": "pricing",
             "inputs": {"amount": "{{ inputs.amount }}", "rate": 0.25}},
            {"id": "receipt", "type": "transform", "depends_on": ["price"],
             "template": "total {{ steps.price.output.total }}"},
        ],
        "outputs": {"receipt": "{{ steps.receipt.output }}"},
    })  # fmt: skip
    async with LoomServer(home) as server:
        runs = server.services.runs
        await runs.apply_flow(child)
        await runs.apply_flow(parent)
        run = await runs.trigger("checkout", inputs={"amount": 80})
        done = await server.wait(run.id)
        children = [r for r in await _all_runs(server) if r.flow_id == "pricing"]
    assert done.status == "SUCCEEDED", done.error
    assert done.outputs == {"receipt": "total 100.0"}
    [kid] = children
    assert kid.inputs == {"amount": 80, "rate": 0.25}
    assert kid.status == "SUCCEEDED"
    assert kid.finished_at <= done.finished_at


async def _all_runs(server: LoomServer) -> list[Any]:
    page = await server.services.runs.list_runs()
    return list(page if isinstance(page, list) else page.items)


# ---------------------------------------------------------------------------- shell


SHELL_FLOW = {
    "id": "shell-run",
    "inputs": {"who": {"type": "string"}},
    "steps": [
        {"id": "greet", "type": "shell", "command": 'echo "hi $1 from $PLACE"; echo oops >&2',
         "args": ["{{ inputs.who }}"], "env": {"PLACE": "loom"}, "retry": {"max_attempts": 1}},
        {"id": "exit3", "type": "shell", "command": ["sh", "-c", "exit 3"],
         "depends_on": ["greet"], "retry": {"max_attempts": 1}},
    ],
}  # fmt: skip


@pytest.mark.parametrize("enabled", [True, False])
async def test_shell_step_runs_only_when_the_operator_enables_it(home: Path, enabled: bool) -> None:
    async with LoomServer(home, engine={"shell_enabled": enabled}) as server:
        await server.services.runs.apply_flow(spec(SHELL_FLOW))
        run = await server.services.runs.trigger("shell-run", inputs={"who": "ann"})
        done = await server.wait(run.id)
        steps = await server.steps(run.id)
    assert done.status == "FAILED"
    if not enabled:
        assert steps["greet"].status == "FAILED"
        assert "LOOM_ENGINE__SHELL_ENABLED" in steps["greet"].error["message"]
        assert steps["exit3"].status == "SKIPPED"
        return
    assert steps["greet"].output == {
        "exit_code": 0, "stdout": "hi ann from loom\n", "stderr": "oops\n", "truncated": False,
    }  # fmt: skip
    assert steps["exit3"].status == "FAILED"
    assert steps["exit3"].error["kind"] == "exit_status"
    # The failed step's output is not stored; its error records the exit status.
    assert steps["exit3"].error["message"].startswith("the command exited with status 3")
