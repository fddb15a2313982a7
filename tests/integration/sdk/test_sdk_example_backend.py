"""The example user backend on a real socket, called with signed requests like the server's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from examples.backend import RunningBackend, serve
from examples.backend.app import DEV_SIGNING_KEY
from linkloom.config import DEFAULT_SIGNING_KEY
from linkloom.sdk.testing import signed_delivery, task_envelope

KEY = "integration-key"


@pytest.fixture(scope="module")
def backend() -> Iterator[RunningBackend]:
    with serve(signing_key=KEY) as running:
        yield running


@pytest.fixture
def http(backend: RunningBackend) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=backend.url, timeout=10) as client:
        client.delete("/effects")
        yield client


def post_task(http: httpx.Client, path: str, **envelope: Any) -> httpx.Response:
    body, headers = signed_delivery(task_envelope(**envelope), key=KEY)
    return http.post(path, content=body, headers=headers)


def test_example_backend_dev_key_matches_the_server_default() -> None:
    assert DEV_SIGNING_KEY == DEFAULT_SIGNING_KEY


def test_example_backend_runs_the_daily_report_chain(http: httpx.Client) -> None:
    fetched = post_task(
        http, "/api/tasks/fetch-data", run_id="r1", step_id="fetch_data", inputs={"count": 1000}
    )
    assert fetched.status_code == 200
    assert fetched.json()["logs"] == ["Fetched 1000 records"]
    upstream = {"fetch_data": {"output": fetched.json()["output"], "outputs": {}}}
    processed = post_task(
        http, "/api/tasks/process", run_id="r1", step_id="process", upstream=upstream
    )
    assert processed.json()["output"] == {"total": 1000, "valid": 950, "invalid": 50}
    assert processed.json()["logs"] == ["Processed data, 950 valid"]
    emailed = post_task(
        http,
        "/api/tasks/send-email",
        run_id="r1",
        step_id="send_email",
        upstream={"process": {"output": processed.json()["output"]}},
    )
    assert emailed.json()["logs"] == ["Email sent to admin@example.com"]
    effects = http.get("/effects", params={"kind": "email"}).json()["effects"]
    assert [e["summary"]["valid"] for e in effects] == [950]


def test_example_backend_process_fails_clearly_without_upstream_records(http: httpx.Client) -> None:
    reply = post_task(http, "/api/tasks/process", step_id="process").json()
    assert reply["status"] == "FAILED"
    assert "depend on fetch_data" in reply["error"]


def test_example_backend_charges_once_per_idempotency_key(http: httpx.Client) -> None:
    first = post_task(
        http, "/api/tasks/charge", run_id="r2", step_id="charge", inputs={"amount": 42}
    )
    redelivered = post_task(
        http, "/api/tasks/charge", run_id="r2", step_id="charge", inputs={"amount": 42}, attempt=2
    )
    other = post_task(
        http, "/api/tasks/charge", run_id="r3", step_id="charge", inputs={"amount": 5}
    )
    assert redelivered.json() == first.json()
    assert redelivered.headers["X-Loom-Idempotent-Replay"] == "true"
    charges = http.get("/effects", params={"kind": "charge"}).json()["effects"]
    assert [(c["key"], c["amount"]) for c in charges] == [("r2:charge", 42), ("r3:charge", 5)]
    assert other.json()["output"]["charge_id"] != first.json()["output"]["charge_id"]
    assert http.get("/stats").json()["calls"]["charge"] == 2


def test_example_backend_rejects_unsigned_and_wrongly_signed_tasks(http: httpx.Client) -> None:
    unsigned = http.post("/api/tasks/charge", json=task_envelope())
    body, headers = signed_delivery(task_envelope(), key="not-the-key")
    wrong = http.post("/api/tasks/charge", content=body, headers=headers)
    assert (unsigned.status_code, wrong.status_code) == (401, 401)
    assert http.get("/effects").json()["effects"] == []


def test_example_backend_flaky_endpoint_asks_for_retries_then_succeeds(http: httpx.Client) -> None:
    replies = [
        post_task(http, "/api/tasks/flaky", run_id="r4", step_id="f", inputs={"failures": 2})
        for _ in range(3)
    ]
    assert [r.status_code for r in replies] == [503, 503, 200]
    assert replies[2].json()["output"] == {"deliveries": 3}


def test_example_backend_sync_orders_endpoints_speak_plain_json(http: httpx.Client) -> None:
    orders = http.get("/crm/orders").json()["data"]
    imported = http.post("/erp/import", json=orders)
    assert imported.json() == {"imported": len(orders)}
    assert http.post("/erp/import", json={"orders": orders[:1]}).json() == {"imported": 1}


def test_example_backend_echo_shows_envelope_and_headers(http: httpx.Client) -> None:
    reply = post_task(
        http, "/api/tasks/echo", run_id="r5", step_id="e", item=3, index=1, idempotency_key="r5:e:1"
    ).json()["output"]
    assert (reply["run_id"], reply["step_id"], reply["item"], reply["index"]) == ("r5", "e", 3, 1)
    assert reply["headers"]["idempotency-key"] == "r5:e:1"
    assert reply["headers"]["x-loom-step-id"] == "e"


def test_example_backend_accepts_a_custom_body_with_metadata_in_headers(http: httpx.Client) -> None:
    body = {"amount": 7}
    raw, headers = signed_delivery(
        body,
        key=KEY,
        headers={"Idempotency-Key": "r6:charge", "X-Loom-Run-Id": "r6", "X-Loom-Step-Id": "charge"},
    )
    reply = http.post("/api/tasks/charge", content=raw, headers=headers).json()
    assert reply["output"]["amount"] == 7
    assert json.loads(raw) == body
    charges = http.get("/effects", params={"kind": "charge"}).json()["effects"]
    assert charges[-1]["key"] == "r6:charge"
