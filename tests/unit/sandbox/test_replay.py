"""The replay: matching, ordering, unrecorded requests; as an httpx transport and as the http
step's port."""

from __future__ import annotations

import httpx
import pytest

from linkloom.engine.steps.http import HttpExecutor
from linkloom.sandbox import stubs
from linkloom.sandbox.fixtures import RecordedExchange
from linkloom.sandbox.replay import (
    Replayer,
    UnrecordedRequest,
    canonical_body,
    normalise_url,
)
from tests.support.step_context import make_context, make_services


def _ex(url: str, body: object, status: int, response: object) -> RecordedExchange:
    return RecordedExchange(
        step_id="s",
        method="POST",
        url=url,
        request_body=body,
        status=status,
        response_body=response,
    )


def test_replay_normalises_url_and_body() -> None:
    assert normalise_url("HTTPS://API.x.com:443/a?b=2&a=1") == "https://api.x.com/a?a=1&b=2"
    assert normalise_url("http://h:8081/p") == "http://h:8081/p"
    assert canonical_body('{"b": 1, "a": {"run_id": "x", "k": 2}}') == '{"a":{"k":2},"b":1}'
    assert canonical_body({"items": [{"ts": 1, "v": 2}]}, ignore=["items.*.ts"]) == (
        '{"items":[{"v":2}]}'
    )


async def test_replay_answers_matching_request_ignoring_volatile_fields() -> None:
    replayer = Replayer([_ex("http://b/api?x=1", {"run_id": "old", "n": 1}, 200, {"ok": 1})])
    async with httpx.AsyncClient(transport=replayer.transport()) as client:
        resp = await client.post("http://B/api?x=1", json={"n": 1, "run_id": "new"})
    assert resp.status_code == 200
    assert resp.json() == {"ok": 1}
    assert replayer.served == 1
    assert replayer.unrecorded == []


async def test_replay_repeats_identical_requests_in_recorded_order() -> None:
    replayer = Replayer(
        [_ex("http://b/r", {"n": 1}, 500, {"e": 1}), _ex("http://b/r", {"n": 1}, 200, {"ok": 2})]
    )
    async with httpx.AsyncClient(transport=replayer.transport()) as client:
        statuses = [(await client.post("http://b/r", json={"n": 1})).status_code for _ in range(3)]
    assert statuses == [500, 200, 200]


async def test_replay_unrecorded_request_fails_and_is_collected() -> None:
    replayer = Replayer([_ex("http://b/r", {"n": 1}, 200, {})])
    async with httpx.AsyncClient(transport=replayer.transport()) as client:
        with pytest.raises(
            UnrecordedRequest, match=r"unrecorded request: POST https://new\.example/x"
        ):
            await client.post(
                "https://new.example/x", json={"n": 1}, headers={"X-Loom-Step-Id": "n"}
            )
        with pytest.raises(UnrecordedRequest):
            await client.post("http://b/r", json={"n": 2})
    assert [c.describe() for c in replayer.unrecorded] == [
        "POST https://new.example/x",
        "POST http://b/r",
    ]
    assert replayer.unrecorded[0].step_id == "n"
    assert replayer.unrecorded[1].body == {"n": 2}


async def test_replay_recorded_connection_error_is_raised_again() -> None:
    ex = RecordedExchange(method="GET", url="http://b/down", error="connection refused")
    replayer = Replayer([ex])
    async with httpx.AsyncClient(transport=replayer.transport()) as client:
        with pytest.raises(httpx.ConnectError, match="connection refused"):
            await client.get("http://b/down")


async def test_replay_text_response_and_scrubbed_secret_matches() -> None:
    from linkloom.sandbox.scrub import Scrubber

    ex = _ex("http://b/t?token=***", {"api_key": "***"}, 200, "plain text")
    replayer = Replayer([ex], scrub=Scrubber())
    async with httpx.AsyncClient(transport=replayer.transport()) as client:
        resp = await client.post("http://b/t?token=live", json={"api_key": "live-value"})
    assert resp.text == "plain text"


async def test_replay_body_mismatch_mode_answers_from_the_endpoint_and_reports_it() -> None:
    replayer = Replayer([_ex("http://b/r", {"n": 1}, 200, {"ok": 1})], on_body_mismatch="replay")
    async with httpx.AsyncClient(transport=replayer.transport()) as client:
        first = await client.post("http://b/r", json={"n": 2}, headers={"X-Loom-Step-Id": "s"})
        again = await client.post("http://b/r", json={"n": 2})
        with pytest.raises(UnrecordedRequest):
            await client.post("http://b/other", json={"n": 2})
    assert first.json() == again.json() == {"ok": 1}
    assert [r.to_dict() for r in replayer.requests if r.answer == "endpoint"] == [
        {
            "method": "POST",
            "url": "http://b/r",
            "step_id": "s",
            "item_index": None,
            "answer": "endpoint",
            "recorded_body": {"n": 1},
            "body": {"n": 2},
        },
        {
            "method": "POST",
            "url": "http://b/r",
            "step_id": None,
            "item_index": None,
            "answer": "endpoint",
            "recorded_body": {"n": 1},
            "body": {"n": 2},
        },
    ]
    assert [c.url for c in replayer.unrecorded] == ["http://b/other"]


PORT_STUBS = """
stubs:
  - url: http://b/new*
    response:
      status: 201
      body:
        agent: "{{ request.headers['user-agent'] }}"
        step: "{{ request.headers['x-loom-step-id'] }}"
        length: "{{ request.headers['content-length'] }}"
        host: "{{ request.headers.host }}"
        n: "{{ request.body.n }}"
"""
PORT_STEPS = [
    {"id": "rec", "url": "http://B:80/r", "body": {"n": 1}},
    {"id": "again", "url": "http://b/r", "body": {"n": 1}},  # the last recording answers again
    {"id": "busy", "url": "http://b/busy", "body": {"n": 1}},
    {"id": "down", "url": "http://b/down", "method": "GET"},
    {"id": "text", "url": "http://b/t", "method": "GET", "query": {"q": "{{ inputs.q }}"}},
    {"id": "big", "url": "http://b/big", "method": "GET"},
    {"id": "new", "url": "http://b/new?x=1", "body": {"n": 7}},
    {"id": "gone", "url": "http://b/gone", "body": {"n": 1}},
]


def _port_replayer() -> Replayer:
    return Replayer(
        [
            _ex("http://b/r", {"n": 1}, 200, {"status": "SUCCESS", "output": 1}),
            RecordedExchange(
                method="POST",
                url="http://b/busy",
                request_body={"n": 1},
                status=503,
                response_headers={"Retry-After": "4"},
                response_body={"error": "busy"},
            ),
            RecordedExchange(method="GET", url="http://b/down", error="connection refused"),
            RecordedExchange(
                method="GET",
                url="http://b/t?q=1",
                status=200,
                response_headers={"Content-Type": "text/plain"},
                response_body="plain text",
            ),
            RecordedExchange(method="GET", url="http://b/big", status=200, response_body="x" * 900),
        ],
        stubs=stubs.loads(PORT_STUBS),
    )


async def test_replay_answers_the_http_steps_port_as_it_did_through_httpx() -> None:
    """Each step, replayed once through ``Replayer.send`` and once through an httpx client."""
    volatile = {"X-Loom-Timestamp", "X-Loom-Signature"}
    found = []
    for route in ("port", "httpx"):
        replayer = _port_replayer()
        async with httpx.AsyncClient(transport=replayer.transport()) as http:
            extra = {"outbound": replayer} if route == "port" else {}
            services = make_services(http=http, signing_key="k", max_response_bytes=500, **extra)
            results = []
            for step in PORT_STEPS:
                ctx = make_context(
                    step={"type": "http", **step}, services=services, inputs={"q": 1}
                )
                result = await HttpExecutor().execute(ctx)
                exchanges = [
                    {**x.to_dict(), "duration_ms": None, "request_headers": {
                        k: v for k, v in x.request_headers.items() if k not in volatile}}
                    for x in result.exchanges
                ]  # fmt: skip
                results.append((step["id"], result.error, result.output, exchanges))
        found.append((results, replayer.requests, replayer.unrecorded, replayer.served))
    through_port, through_httpx = found
    assert through_port == through_httpx
    by_step = {step: (error, output) for step, error, output, _ in through_port[0]}
    assert by_step["again"] == (None, 1)
    assert by_step["busy"][0].retry_after == 4
    assert by_step["down"][0].message == "connection to http://b/down failed: connection refused"
    assert by_step["big"][0].kind == "response_too_large"
    assert by_step["new"][1] == {
        "agent": f"python-httpx/{httpx.__version__}", "step": "new", "length": "7",
        "host": "b", "n": 7,
    }  # fmt: skip
    assert by_step["gone"][0].kind == "unrecorded"
