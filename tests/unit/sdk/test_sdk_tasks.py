from __future__ import annotations

import json

import pytest

from linkloom.sdk.tasks import BadTaskRequest, TaskRequest, TaskResult, as_result
from linkloom.sdk.testing import task_envelope


def envelope(**overrides: object) -> dict[str, object]:
    return task_envelope(
        flow_id="daily-report",
        flow_version=3,
        step_id="fetch_data",
        idempotency_key="run-1:fetch_data",
        inputs={"count": 5},
        **overrides,
    )


def test_task_request_parses_the_envelope() -> None:
    body = envelope(
        upstream={"fetch_data": {"output": {"n": 1}, "outputs": {"n": 1}}},
        item={"x": 1},
        index=4,
        attempt=2,
        callback={"url": "http://s/cb/t", "heartbeat_url": "http://s/cb/t/heartbeat"},
    )
    request = TaskRequest.from_http(json.dumps(body).encode(), {"Idempotency-Key": "run-1:x:4"})
    assert request.is_envelope
    assert (request.run_id, request.flow_id, request.flow_version) == ("run-1", "daily-report", 3)
    assert (request.step_id, request.attempt, request.index) == ("fetch_data", 2, 4)
    assert request.idempotency_key == "run-1:fetch_data"  # the signed envelope, not the header
    assert request.inputs == {"count": 5}
    assert request.item == {"x": 1}
    assert request.output_of("fetch_data") == {"n": 1}
    assert request.callback_url == "http://s/cb/t"
    assert request.heartbeat_url == "http://s/cb/t/heartbeat"
    assert request.is_async


def test_task_request_reads_metadata_from_headers_for_a_custom_body() -> None:
    headers = {
        "X-Loom-Run-Id": "run-9",
        "X-Loom-Flow-Id": "sync-orders",
        "X-Loom-Flow-Version": "7",
        "X-Loom-Step-Id": "import",
        "X-Loom-Attempt": "3",
        "Idempotency-Key": "run-9:import",
        "X-Loom-Callback-Url": "http://s/cb/z",
    }
    request = TaskRequest.from_http(b'[{"id": 1}, {"id": 2}]', headers)
    assert not request.is_envelope
    assert request.body == [{"id": 1}, {"id": 2}]
    assert (request.run_id, request.flow_id, request.flow_version) == ("run-9", "sync-orders", 7)
    assert (request.step_id, request.attempt) == ("import", 3)
    assert request.idempotency_key == "run-9:import"
    assert request.inputs == {}
    assert request.upstream == {}
    assert request.callback_url == "http://s/cb/z"


def test_task_request_rejects_a_body_that_is_not_json() -> None:
    with pytest.raises(BadTaskRequest, match="not JSON"):
        TaskRequest.from_http(b"{oops", {})


def test_task_request_output_of_names_the_known_steps() -> None:
    request = TaskRequest.from_http(
        json.dumps(envelope(upstream={"a": {"output": 1}})).encode(), {}
    )
    assert request.output_of("missing", default=None) is None
    with pytest.raises(KeyError, match="upstream steps: a"):
        request.output_of("missing")


def test_as_result_treats_plain_values_as_successful_output() -> None:
    assert as_result([1, 2]) == TaskResult(status="SUCCESS", output=[1, 2])
    assert as_result({"status": "weird", "x": 1}).output == {"status": "weird", "x": 1}


def test_as_result_reads_a_dict_in_the_response_format() -> None:
    result = as_result({"status": "FAILED", "error": "boom", "logs": "a\nb"})
    assert result == TaskResult(status="FAILED", error="boom", logs=("a", "b"))


def test_task_result_to_wire_puts_request_logs_first_and_encodes_output() -> None:
    import datetime as dt

    result = TaskResult.success({"at": dt.date(2024, 5, 1)}, logs=["own"])
    wire = result.to_wire(extra_logs=["from request"])
    assert wire == {
        "status": "SUCCESS",
        "output": {"at": "2024-05-01"},
        "logs": ["from request", "own"],
    }
    assert TaskResult.failed("nope").to_wire()["error"] == "nope"
