"""Helpers for testing a user backend without a Link Loom server: build a task envelope and sign
it exactly as the server does.

    body, headers = signed_delivery(task_envelope(inputs={"count": 3}), key=KEY)
    response = test_client.post("/api/tasks/fetch-data", content=body, headers=headers)
"""

from __future__ import annotations

import json
from typing import Any

from linkloom import signing


def task_envelope(**overrides: Any) -> dict[str, Any]:
    """A task envelope as the server sends it; keyword arguments replace fields."""
    run_id = overrides.get("run_id", "run-1")
    step_id = overrides.get("step_id", "step")
    envelope: dict[str, Any] = {
        "run_id": run_id,
        "flow_id": "example",
        "flow_version": 1,
        "step_id": step_id,
        "attempt": 1,
        "idempotency_key": f"{run_id}:{step_id}",
        "inputs": {},
        "upstream": {},
        "item": None,
        "index": None,
        "callback": None,
    }
    envelope.update(overrides)
    return envelope


def signed_delivery(
    body: dict[str, Any] | list[Any] | bytes,
    *,
    key: str | bytes,
    timestamp: float | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Return ``(raw_body, headers)`` signed with ``key``, with the ``X-Loom-*`` metadata headers
    and ``Idempotency-Key`` taken from an envelope."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    out = {"Content-Type": "application/json"}
    if isinstance(body, dict) and "run_id" in body:
        out["Idempotency-Key"] = str(body.get("idempotency_key", ""))
        out["X-Loom-Run-Id"] = str(body["run_id"])
        out["X-Loom-Flow-Id"] = str(body.get("flow_id", ""))
        out["X-Loom-Flow-Version"] = str(body.get("flow_version", ""))
        out["X-Loom-Step-Id"] = str(body.get("step_id", ""))
        out["X-Loom-Attempt"] = str(body.get("attempt", 1))
        callback = body.get("callback")
        if isinstance(callback, dict):
            out["X-Loom-Callback-Url"] = str(callback.get("url", ""))
            out["X-Loom-Heartbeat-Url"] = str(callback.get("heartbeat_url", ""))
    out.update(headers or {})
    out.update(signing.sign(key, raw, timestamp=timestamp))
    return raw, out
