from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from linkloom import errors
from linkloom.sdk import AsyncClient, Client, RunWaitTimeout, ServerUnreachable
from linkloom.sdk.client import spec_payload
from linkloom.sdk.errors import APINotFound, LinkloomAPIError

SPEC_YAML = """\
id: daily-report
steps:
  - id: fetch_data
    type: http
    url: http://127.0.0.1:8081/api/tasks/fetch-data
"""


def run_json(status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    return {
        "id": "r-1",
        "flow_id": "daily-report",
        "flow_version": 2,
        "status": status,
        "inputs": {"day": "2024-05-01"},
        "created_at": "2024-05-01T03:00:00Z",
        "steps": [
            {
                "step_id": "fetch_data",
                "status": "SUCCEEDED",
                "attempt": 1,
                "output": [1],
                "logs": ["Fetched 1 records"],
            },
        ],
        **extra,
    }


class Server:
    """An in-memory stand-in for the API: records requests, answers from a script."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(server: Server, **options: Any) -> Client:
    options.setdefault("backoff", 0.001)
    return Client(
        "http://loom.test/", token="tok", transport=httpx.MockTransport(server), **options
    )


def test_client_sends_bearer_token_and_parses_a_run_with_steps() -> None:
    server = Server(httpx.Response(200, json=run_json()))
    run = client(server).get_run("r-1")
    request = server.requests[0]
    assert request.url == "http://loom.test/api/v1/runs/r-1"
    assert request.headers["Authorization"] == "Bearer tok"
    assert (run.id, run.flow_id, run.flow_version, run.status) == (
        "r-1",
        "daily-report",
        2,
        "RUNNING",
    )
    assert run.created_at is not None
    assert run.created_at.year == 2024
    assert run.step("fetch_data").logs == ("Fetched 1 records",)
    assert not run.done


def test_client_trigger_posts_inputs_to_the_flow_runs_path() -> None:
    server = Server(httpx.Response(201, json=run_json("PENDING")))
    run = client(server).trigger("daily report", {"day": "2024-05-01"})
    request = server.requests[0]
    assert request.method == "POST"
    assert request.url.raw_path == b"/api/v1/flows/daily%20report/runs"
    assert json.loads(request.content) == {"inputs": {"day": "2024-05-01"}}
    assert run.status == "PENDING"


def test_client_list_runs_passes_filters_and_reads_the_cursor() -> None:
    server = Server(httpx.Response(200, json={"items": [run_json()], "next_cursor": "c2"}))
    page = client(server).list_runs(flow="daily-report", status="FAILED", limit=5)
    assert dict(server.requests[0].url.params) == {
        "flow": "daily-report",
        "status": "FAILED",
        "limit": "5",
    }
    assert [r.id for r in page.items] == ["r-1"]
    assert page.next_cursor == "c2"


def test_client_raises_typed_errors_from_problem_bodies() -> None:
    problem = {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Flow 'x' not found; list flows with 'loom flow list'.",
        "code": "flow_not_found",
    }
    server = Server(
        httpx.Response(404, json=problem, headers={"Content-Type": "application/problem+json"})
    )
    with pytest.raises(APINotFound) as caught:
        client(server).get_flow("x")
    error = caught.value
    assert isinstance(error, errors.NotFound)  # the CLI maps it to exit code 3
    assert (error.status, error.code) == (404, "flow_not_found")
    assert "loom flow list" in error.message
    assert error.exit_code == 3


def test_client_error_without_a_problem_body_still_says_what_happened() -> None:
    server = Server(httpx.Response(500, text="Internal Server Error"))
    with pytest.raises(LinkloomAPIError) as caught:
        client(server, retries=0).create_proposal("t", {"flows/x/flow.yaml": "id: x"})
    assert caught.value.status == 500
    assert "Internal Server Error" in caught.value.message


def test_client_retries_connection_errors_with_backoff() -> None:
    refused = httpx.ConnectError("refused")
    server = Server(refused, refused, httpx.Response(200, json=[{"id": "a", "version": 1}]))
    flows = client(server).list_flows()
    assert [f.id for f in flows] == ["a"]
    assert len(server.requests) == 3


def test_client_gives_up_with_server_unreachable() -> None:
    server = Server(httpx.ConnectError("refused"))
    with pytest.raises(ServerUnreachable, match=r"http://loom\.test"):
        client(server, retries=2).list_flows()
    assert len(server.requests) == 3


def test_client_never_resends_a_post_that_may_have_reached_the_server() -> None:
    server = Server(httpx.ReadError("connection reset"), httpx.Response(201, json=run_json()))
    with pytest.raises(ServerUnreachable):
        client(server).trigger("daily-report")
    assert len(server.requests) == 1  # no duplicate run


def test_client_retries_503_for_reads() -> None:
    server = Server(
        httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(200, json=run_json())
    )
    assert client(server).get_run("r-1").id == "r-1"
    assert len(server.requests) == 2


def test_client_wait_for_run_polls_until_the_run_ends() -> None:
    server = Server(
        httpx.Response(200, json=run_json("RUNNING")),
        httpx.Response(200, json=run_json("RUNNING")),
        httpx.Response(200, json=run_json("SUCCEEDED")),
    )
    run = client(server).wait_for_run("r-1", timeout=5, poll=0.001)
    assert run.succeeded
    assert len(server.requests) == 3


def test_client_wait_for_run_times_out_with_the_last_status() -> None:
    server = Server(httpx.Response(200, json=run_json("RUNNING")))
    with pytest.raises(RunWaitTimeout, match="still RUNNING"):
        client(server).wait_for_run("r-1", timeout=0.05, poll=0.01)


def test_client_register_flow_sends_yaml_text_to_the_flow_id_from_the_spec() -> None:
    server = Server(
        httpx.Response(200, json={"flow_id": "daily-report", "version": 4, "created": True})
    )
    version = client(server).register_flow(SPEC_YAML)
    request = server.requests[0]
    assert (request.method, request.url.path) == ("PUT", "/api/v1/flows/daily-report")
    assert json.loads(request.content) == {"spec": SPEC_YAML}
    assert (version.flow_id, version.version) == ("daily-report", 4)


def test_spec_payload_reads_files_dicts_and_pydantic_models(tmp_path: Path) -> None:
    from linkloom.flows.spec import FlowSpec

    path = tmp_path / "flow.yaml"
    path.write_text(SPEC_YAML)
    assert spec_payload(path) == ("daily-report", SPEC_YAML)
    assert spec_payload(str(path)) == ("daily-report", SPEC_YAML)
    assert spec_payload({"id": "x", "steps": []}) == ("x", {"id": "x", "steps": []})
    model = FlowSpec.model_validate(
        {"id": "m", "steps": [{"id": "d", "type": "delay", "duration": 1}]}
    )
    flow_id, spec = spec_payload(model)
    assert flow_id == "m"
    assert isinstance(spec, dict)
    assert spec["steps"][0]["id"] == "d"


def test_spec_payload_says_what_is_missing() -> None:
    with pytest.raises(errors.InvalidInput, match="no 'id'"):
        spec_payload("steps: []\nname: x\n")
    with pytest.raises(errors.InvalidInput, match="not valid YAML"):
        spec_payload("id: [unclosed\nx: 1\n")


async def test_async_client_triggers_and_waits() -> None:
    server = Server(
        httpx.Response(201, json=run_json("PENDING")),
        httpx.Response(200, json=run_json("FAILED", error={"message": "boom"})),
    )
    async with AsyncClient(
        "http://loom.test", transport=httpx.MockTransport(server), backoff=0.001
    ) as loom:
        run = await loom.trigger("daily-report", {"day": "x"}, wait=True, poll=0.001)
    assert run.status == "FAILED"
    assert run.error == {"message": "boom"}
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert "Authorization" not in server.requests[0].headers


async def test_async_client_reads_events_after_a_cursor() -> None:
    events = {
        "items": [
            {
                "id": 5,
                "type": "step_finished",
                "step_id": "a",
                "at": "2024-05-01T00:00:00+00:00",
                "data": {"status": "SUCCEEDED"},
            }
        ]
    }
    server = Server(httpx.Response(200, json=events))
    async with AsyncClient("http://loom.test", transport=httpx.MockTransport(server)) as loom:
        got = await loom.run_events("r-1", after=4)
    assert server.requests[0].url.params["after"] == "4"
    assert [(e.id, e.type, e.step_id, e.data) for e in got] == [
        (5, "step_finished", "a", {"status": "SUCCEEDED"})
    ]


def test_spec_payload_reports_a_missing_file_as_such(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="cannot read flow spec"):
        spec_payload(str(tmp_path / "nope.yaml"))


def test_models_accept_a_wrapped_object() -> None:
    from linkloom.sdk.models import FlowVersion, Run

    run = Run.from_json({"run": run_json("SUCCEEDED")})
    assert (run.id, run.status) == ("r-1", "SUCCEEDED")
    version = FlowVersion.from_json({"flow_id": "f", "version": {"version": 3}, "created": False})
    assert (version.flow_id, version.version, version.created) == ("f", 3, False)


def test_client_follow_yields_events_until_the_run_ends() -> None:
    def event(n: int) -> dict[str, Any]:
        return {"id": n, "type": "log", "data": {"message": f"line {n}"}}

    server = Server(
        httpx.Response(200, json=[event(1), event(2)]),
        httpx.Response(200, json=[]),
        httpx.Response(200, json=run_json("RUNNING")),
        httpx.Response(200, json=[event(3)]),
        httpx.Response(200, json=[]),
        httpx.Response(200, json=run_json("SUCCEEDED")),
        httpx.Response(200, json=[]),
    )
    got = [e.id for e in client(server).follow("r-1", poll=0.001)]
    assert got == [1, 2, 3]
    afters = [r.url.params.get("after") for r in server.requests if r.url.path.endswith("/events")]
    assert afters == [None, "2", "2", "3", "3"]


def test_client_iter_runs_follows_cursors() -> None:
    server = Server(
        httpx.Response(200, json={"items": [run_json(id="a")], "next_cursor": "c1"}),
        httpx.Response(200, json={"items": [run_json(id="b")], "next_cursor": None}),
    )
    assert [r.id for r in client(server).iter_runs(flow="daily-report")] == ["a", "b"]
    assert server.requests[1].url.params["cursor"] == "c1"


async def test_async_client_follow_and_iter_runs() -> None:
    server = Server(
        httpx.Response(200, json=[{"id": 1, "type": "run_finished"}]),
        httpx.Response(200, json=[]),
        httpx.Response(200, json=run_json("FAILED")),
        httpx.Response(200, json=[]),
        httpx.Response(200, json={"items": [run_json()], "next_cursor": None}),
    )
    async with AsyncClient("http://loom.test", transport=httpx.MockTransport(server)) as loom:
        events = [e.type async for e in loom.follow("r-1", poll=0.001)]
        runs = [r.id async for r in loom.iter_runs()]
    assert events == ["run_finished"]
    assert runs == ["r-1"]
