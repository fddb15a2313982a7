"""The example user backend: a FastAPI app whose task endpoints are built with ``LoomRouter``.

It serves the flows of the design documents and the endpoints tests need to observe delivery:

* daily-report: ``POST /api/tasks/fetch-data`` → ``/api/tasks/process`` → ``/api/tasks/send-email``
* Automata sync-orders (plain JSON, not the task format): ``GET /crm/orders``, ``POST /erp/import``
* MBFlow wf-123 (plain JSON): ``GET /users``
* parallel A/B → merge: ``POST /api/tasks/process-a``, ``POST /api/tasks/process-b``
* an async step with heartbeats: ``POST /api/tasks/slow-report``
* exactly-once effects: ``POST /api/tasks/charge`` records one effect per Idempotency-Key;
  ``GET /effects`` lists effects, ``GET /stats`` counts deliveries, ``DELETE /effects`` resets
* for failure tests: ``/api/tasks/echo``, ``/api/tasks/flaky``, ``/api/tasks/fail``,
  ``/api/tasks/sleep``, ``/api/tasks/item``

Run it with ``python -m examples.backend --port 8081`` or
``uvicorn examples.backend.app:app --port 8081``. The signing key is read from
``LOOM_SECURITY__SIGNING_KEY`` (default: the server's development key).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request

from linkloom.sdk import (
    IdempotencyStore,
    InMemoryIdempotencyStore,
    Retryable,
    SqliteIdempotencyStore,
    TaskRequest,
    TaskResult,
)
from linkloom.sdk.fastapi import LoomRouter

# The server's development default (linkloom/config.py); a test keeps the two equal.
DEV_SIGNING_KEY = "dev-only-signing-key-change-me"
ADMIN_EMAIL = "admin@example.com"
ORDERS = [
    {"id": "o-1001", "customer": "ACME", "total": 120.5, "status": "paid"},
    {"id": "o-1002", "customer": "Globex", "total": 75.0, "status": "paid"},
    {"id": "o-1003", "customer": "Initech", "total": 310.25, "status": "pending"},
]
USERS = [
    {"id": 1, "name": "ann", "email": "ann@example.com"},
    {"id": 2, "name": "bob", "email": "bob@example.com"},
]


class BackendState:
    """What the backend did, so tests can observe effects and deliveries."""

    def __init__(self) -> None:
        self.effects: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.deliveries: Counter[str] = Counter()  # per Idempotency-Key, for the flaky endpoint
        self.lock = threading.Lock()

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            effect = {"kind": kind, "seq": len(self.effects) + 1, **fields}
            self.effects.append(effect)
            return effect


def create_app(
    *,
    signing_key: str | None = None,
    verify_signatures: bool = True,
    idempotency: IdempotencyStore | None = None,
    heartbeat_interval: float = 1.0,
) -> FastAPI:
    """Build the example backend. Without arguments, settings come from the environment."""
    key = signing_key or os.environ.get("LOOM_SECURITY__SIGNING_KEY") or DEV_SIGNING_KEY
    if idempotency is None:
        db = os.environ.get("LOOM_EXAMPLE_IDEMPOTENCY_DB")
        idempotency = SqliteIdempotencyStore(db) if db else InMemoryIdempotencyStore()
    state = BackendState()
    router = LoomRouter(
        signing_key=key,
        verify_signatures=verify_signatures,
        idempotency=idempotency,
        heartbeat_interval=heartbeat_interval,
    )
    _daily_report(router, state)
    _parallel(router, state)
    _effects(router, state)
    _failures(router, state)

    app = FastAPI(title="Link Loom example backend")
    app.state.backend = state
    app.state.dispatcher = router.dispatcher
    app.include_router(router)
    _plain_routes(app, state)
    return app


def _count(state: BackendState, name: str) -> None:
    with state.lock:
        state.calls[name] += 1


def _daily_report(router: LoomRouter, state: BackendState) -> None:
    @router.task("/api/tasks/fetch-data")
    def fetch_data(task: TaskRequest) -> dict[str, Any]:
        """Return ``inputs.count`` records (default 20); every 20th record is invalid."""
        _count(state, "fetch-data")
        count = int(task.inputs.get("count", 20))
        records = [{"id": i, "value": i * 10, "valid": i % 20 != 0} for i in range(count)]
        task.log(f"Fetched {count} records")
        return {"records": records, "count": count}

    @router.task("/api/tasks/process")
    def process(task: TaskRequest) -> dict[str, Any]:
        """Count the valid records of the upstream fetch step."""
        _count(state, "process")
        records = _upstream_records(task)
        valid = sum(1 for record in records if record.get("valid", True))
        task.log(f"Processed data, {valid} valid")
        return {"total": len(records), "valid": valid, "invalid": len(records) - valid}

    @router.task("/api/tasks/send-email")
    def send_email(task: TaskRequest) -> dict[str, Any]:
        """Pretend to send the report by email and record it as an effect."""
        _count(state, "send-email")
        to = str(task.inputs.get("to", ADMIN_EMAIL))
        summary = next(
            (u.get("output") for u in task.upstream.values() if isinstance(u.get("output"), dict)),
            None,
        )
        state.record("email", to=to, key=task.idempotency_key, summary=summary)
        task.log(f"Email sent to {to}")
        return {"sent": True, "to": to}


def _upstream_records(task: TaskRequest) -> list[dict[str, Any]]:
    body = task.body if isinstance(task.body, dict) else {}
    if not task.is_envelope and isinstance(body.get("records"), list):
        return list(body["records"])
    preferred = task.upstream.get("fetch_data", {}).get("output")
    outputs = [preferred, *(u.get("output") for u in task.upstream.values())]
    for output in outputs:
        if isinstance(output, dict) and isinstance(output.get("records"), list):
            return list(output["records"])
    raise ValueError("no upstream output with 'records'; make 'process' depend on fetch_data")


def _parallel(router: LoomRouter, state: BackendState) -> None:
    @router.task("/api/tasks/process-a")
    async def process_a(task: TaskRequest) -> dict[str, Any]:
        """Branch A of the A/B → merge example; waits ``inputs.delay`` seconds."""
        _count(state, "process-a")
        await asyncio.sleep(float(task.inputs.get("delay", 0)))
        task.log("Processed branch A")
        return {"a": {"items": ["a1", "a2"], "count": 2}}

    @router.task("/api/tasks/process-b")
    async def process_b(task: TaskRequest) -> dict[str, Any]:
        """Branch B of the A/B → merge example; waits ``inputs.delay`` seconds."""
        _count(state, "process-b")
        await asyncio.sleep(float(task.inputs.get("delay", 0)))
        task.log("Processed branch B")
        return {"b": {"items": ["b1"], "count": 1}}

    @router.task("/api/tasks/slow-report", async_task=True)
    async def slow_report(task: TaskRequest) -> dict[str, Any]:
        """A long task for ``mode: async``: 202 now, heartbeats, then the callback."""
        _count(state, "slow-report")
        seconds = float(task.inputs.get("seconds", 2))
        pages = max(1, int(task.inputs.get("pages", 3)))
        for page in range(1, pages + 1):
            await asyncio.sleep(seconds / pages)
            task.log(f"Rendered page {page}/{pages}")
        return {"report": f"report-{task.run_id}", "pages": pages}


def _effects(router: LoomRouter, state: BackendState) -> None:
    @router.task("/api/tasks/charge")
    def charge(task: TaskRequest) -> dict[str, Any]:
        """Charge ``amount`` once per Idempotency-Key; re-deliveries get the stored reply."""
        _count(state, "charge")
        source = task.inputs if task.is_envelope else (task.body or {})
        amount = source.get("amount", 10) if isinstance(source, dict) else 10
        effect = state.record("charge", key=task.idempotency_key, amount=amount, run=task.run_id)
        task.log(f"Charged {amount}")
        return {"charge_id": f"ch_{effect['seq']}", "amount": amount}


def _failures(router: LoomRouter, state: BackendState) -> None:
    @router.task("/api/tasks/echo")
    def echo(task: TaskRequest) -> dict[str, Any]:
        """Return what arrived: metadata, inputs, upstream, item and the X-Loom headers."""
        _count(state, "echo")
        headers = {k: v for k, v in task.headers.items() if k.startswith("x-loom-")}
        headers["idempotency-key"] = task.headers.get("idempotency-key", "")
        return {
            "run_id": task.run_id,
            "flow_id": task.flow_id,
            "flow_version": task.flow_version,
            "step_id": task.step_id,
            "attempt": task.attempt,
            "idempotency_key": task.idempotency_key,
            "inputs": task.inputs,
            "upstream": task.upstream,
            "item": task.item,
            "index": task.index,
            "body": None if task.is_envelope else task.body,
            "headers": headers,
        }

    @router.task("/api/tasks/flaky")
    def flaky(task: TaskRequest) -> dict[str, Any]:
        """Answer 503 to the first ``inputs.failures`` deliveries (default 2) of each key."""
        _count(state, "flaky")
        key = task.idempotency_key or "-"
        with state.lock:
            state.deliveries[key] += 1
            delivery = state.deliveries[key]
        if delivery <= int(task.inputs.get("failures", 2)):
            raise Retryable(f"flaky failure {delivery}", retry_after=0)
        task.log(f"Succeeded on delivery {delivery}")
        return {"deliveries": delivery}

    @router.task("/api/tasks/fail")
    def fail(task: TaskRequest) -> TaskResult:
        """Always FAILED, with ``inputs.error`` as the message; retryable when
        ``inputs.retryable`` is true."""
        _count(state, "fail")
        state.record("fail", key=task.idempotency_key, attempt=task.attempt)
        return TaskResult.failed(
            str(task.inputs.get("error", "the example backend failed")),
            retryable=task.inputs.get("retryable") is True,
        )

    @router.task("/api/tasks/sleep")
    async def sleep(task: TaskRequest) -> dict[str, Any]:
        """Sleep ``inputs.seconds`` (default 1) before answering: for timeouts."""
        _count(state, "sleep")
        seconds = float(task.inputs.get("seconds", 1))
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @router.task("/api/tasks/item")
    def item(task: TaskRequest) -> dict[str, Any]:
        """One fan-out item: echoes ``item``/``index`` and doubles numbers."""
        _count(state, "item")
        value = task.item
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"negative item {value}")
            return {"item": value, "index": task.index, "double": value * 2}
        return {"item": value, "index": task.index}


def _plain_routes(app: FastAPI, state: BackendState) -> None:
    @app.get("/crm/orders")
    def crm_orders() -> dict[str, Any]:
        """Automata sync-orders: a plain JSON API, not the task format."""
        _count(state, "crm-orders")
        return {"data": ORDERS}

    @app.get("/users")
    def users() -> list[dict[str, Any]]:
        """MBFlow wf-123: a plain JSON list."""
        _count(state, "users")
        return USERS

    @app.post("/erp/import")
    async def erp_import(request: Request) -> dict[str, Any]:
        """Import a list of orders (or ``{"orders": [...]}``) and echo the count."""
        _count(state, "erp-import")
        body = await request.json()
        orders = body.get("orders", []) if isinstance(body, dict) else body
        count = len(orders) if isinstance(orders, list) else 0
        state.record("erp_import", count=count, key=request.headers.get("idempotency-key"))
        return {"imported": count}

    @app.get("/effects")
    def effects(kind: str | None = None) -> dict[str, Any]:
        with state.lock:
            items = [e for e in state.effects if kind is None or e["kind"] == kind]
        return {"effects": items}

    @app.delete("/effects")
    def reset() -> dict[str, Any]:
        with state.lock:
            state.effects.clear()
            state.calls.clear()
            state.deliveries.clear()
        return {"effects": []}

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        with state.lock:
            return {"calls": dict(state.calls)}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}


app = create_app()
