"""The http executor against ``httpx.MockTransport``: the wire contract and every failure shape."""

from __future__ import annotations

import json

import httpx
import pytest

from linkloom import signing
from linkloom.engine import callbacks
from linkloom.engine.steps.http import HttpExecutor
from tests.support.step_context import make_context, make_services


def _run(handler, step: dict, **kw):  # type: ignore[no-untyped-def]
    services = make_services(handler=handler, signing_key="key", **kw.pop("services", {}))
    ctx = make_context(step={"type": "http", **step}, services=services, **kw)
    ctx.attempt_id = "step-run-1.1"
    return ctx, HttpExecutor().execute(ctx)


async def test_sends_the_envelope_signed_with_idempotency_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "SUCCESS", "output": {"ok": 1}, "logs": "a\nb"})

    _, pending = _run(
        handler,
        {"url": "http://b.test/x", "depends_on": ["up"]},
        upstream={"up": 5, "other": 6},
        inputs={"n": 1},
    )
    result = await pending
    assert result.ok
    assert result.output == {"ok": 1}
    assert [line.message for line in result.logs] == ["a", "b"]
    [request] = seen
    body = json.loads(request.content)
    assert body["upstream"] == {"up": {"output": 5, "outputs": {}}}
    assert body["inputs"] == {"n": 1}
    assert body["idempotency_key"] == "run-1:s"
    assert request.headers["Idempotency-Key"] == "run-1:s"
    signing.verify("key", request.content, request.headers)
    assert len(result.exchanges) == 1
    assert result.exchanges[0].status == 200


async def test_declared_body_is_sent_as_is_with_query_and_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"plain": True})

    _, pending = _run(
        handler,
        {
            "url": "http://b.test/{{ inputs.path }}",
            "body": {"n": "{{ inputs.n }}"},
            "query": {"q": "{{ inputs.n }}"},
            "headers": {"X-Extra": "yes"},
        },
        inputs={"path": "p", "n": 3},
    )
    result = await pending
    assert result.output == {"plain": True}  # any other JSON is the output
    [request] = seen
    assert request.url.path == "/p"
    assert request.url.params["q"] == "3"
    assert json.loads(request.content) == {"n": 3}
    assert request.headers["X-Extra"] == "yes"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_bodiless_methods_are_signed_over_the_empty_body_they_send(method: str) -> None:
    """GET and HEAD carry no body, so the signature covers ``"<ts>."`` (docs/protocol.md)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "SUCCESS", "output": 1})

    _, pending = _run(handler, {"url": "http://b.test/x", "method": method})
    assert (await pending).ok
    [request] = seen
    assert request.content == b""
    signing.verify("key", b"", request.headers)


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (422, False)]
)
async def test_status_errors_are_retryable_only_for_5xx_and_429(
    status: int, retryable: bool
) -> None:
    _, pending = _run(
        lambda r: httpx.Response(status, json={"error": "nope"}, headers={"Retry-After": "7"}),
        {"url": "http://b.test/x"},
    )
    result = await pending
    assert result.error is not None
    assert result.error.kind == "http_status"
    assert result.error.status == status
    assert result.error.retryable is retryable
    assert result.error.retry_after == 7
    assert "nope" in result.error.message


async def test_expected_status_overrides_the_2xx_rule() -> None:
    _, pending = _run(
        lambda r: httpx.Response(404, json={}), {"url": "http://b.test/x", "expected_status": [404]}
    )
    assert (await pending).ok
    _, pending = _run(
        lambda r: httpx.Response(200, json={}), {"url": "http://b.test/x", "expected_status": [201]}
    )
    assert (await pending).error is not None


async def test_non_json_answer_is_a_clear_bad_response() -> None:
    _, pending = _run(
        lambda r: httpx.Response(200, content=b"<html>", headers={"Content-Type": "text/html"}),
        {"url": "http://b.test/x"},
    )
    result = await pending
    assert result.error is not None
    assert result.error.kind == "bad_response"
    assert not result.error.retryable
    assert result.exchanges[0].response_body == "<html>"


async def test_oversized_response_is_refused_while_streaming() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 5000)

    _, pending = _run(handler, {"url": "http://b.test/x"}, services={"max_response_bytes": 1000})
    result = await pending
    assert result.error is not None
    assert result.error.kind == "response_too_large"


async def test_connection_errors_are_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    _, pending = _run(handler, {"url": "http://b.test/x"})
    result = await pending
    assert result.error is not None
    assert result.error.kind == "connection"
    assert result.error.retryable
    assert result.exchanges[0].error is not None


async def test_backend_failed_is_not_retryable_and_keeps_logs() -> None:
    _, pending = _run(
        lambda r: httpx.Response(
            200, json={"status": "FAILED", "error": "no stock", "logs": ["x"]}
        ),
        {"url": "http://b.test/x"},
    )
    result = await pending
    assert result.error is not None
    assert result.error.kind == "backend"
    assert result.error.message == "no stock"
    assert not result.error.retryable
    assert [line.message for line in result.logs] == ["x"]


async def test_backend_failed_marked_retryable_is_retryable() -> None:
    _, pending = _run(
        lambda r: httpx.Response(
            200, json={"status": "FAILED", "error": "busy", "retryable": True}
        ),
        {"url": "http://b.test/x"},
    )
    result = await pending
    assert result.error is not None
    assert (result.error.kind, result.error.message) == ("backend", "busy")
    assert result.error.retryable


async def test_async_mode_sends_callback_urls_and_waits() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={})

    _, pending = _run(
        handler,
        {"url": "http://b.test/x", "mode": "async", "heartbeat_timeout": 30},
        services={"public_url": "http://loom.test"},
    )
    result = await pending
    assert result.wait_for_callback
    assert result.state is not None
    assert result.state["heartbeat_timeout"] == 30
    body = json.loads(seen[0].content)
    token = body["callback"]["url"].rsplit("/", 1)[1]
    assert body["callback"]["url"].startswith("http://loom.test/api/v1/callbacks/")
    assert seen[0].headers["X-Loom-Heartbeat-Url"] == body["callback"]["heartbeat_url"]
    assert callbacks.parse_token("key", token) == ("step-run-1", 1)


async def test_template_errors_fail_without_a_request() -> None:
    _, pending = _run(lambda r: httpx.Response(200), {"url": "http://b.test/{{ inputs.missing }}"})
    result = await pending
    assert result.error is not None
    assert result.error.kind == "template"


# ---------------------------------------------------------------------- what is recorded


async def test_get_with_query_is_recorded_as_sent_without_a_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"rate": 1.2})

    _, pending = _run(
        handler,
        {
            "method": "GET",
            "url": "http://shop.test/rates?v=2",
            "query": {"region": "{{ inputs.region }}", "n": "{{ inputs.n }}"},
        },
        inputs={"region": "eu", "n": 3},
    )
    result = await pending
    assert result.ok, result.error
    [request] = seen
    assert request.content == b""  # a GET sends no body …
    assert "content-type" not in request.headers
    signing.verify("key", b"", request.headers)  # … and signs the body it sends
    [exchange] = result.exchanges
    assert exchange.url == "http://shop.test/rates?v=2&region=eu&n=3"
    assert str(request.url) == exchange.url
    assert exchange.request_body is None


async def test_a_secret_in_the_query_or_a_filtered_header_is_recorded_masked() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    _, pending = _run(
        handler,
        {
            "method": "POST",
            "url": "http://shop.test/orders",
            "query": {"sig": "{{ secrets.token | reverse }}", "region": "eu"},
            "headers": {"X-Token": "v1 {{ secrets.token | upper }}"},
            "body": {"who": "{{ secrets.token[2:8] }}", "n": 1},
        },
        services={"secrets": {"token": "tok-secret-value"}},
    )
    result = await pending
    assert result.ok, result.error
    [request] = seen
    assert request.url.params["sig"] == "eulav-terces-kot"  # the real values are sent
    assert request.headers["x-token"] == "v1 TOK-SECRET-VALUE"
    assert json.loads(request.content) == {"who": "k-secr", "n": 1}
    [exchange] = result.exchanges
    recorded = json.dumps([exchange.url, exchange.request_headers, exchange.request_body])
    for form in ("eulav-terces-kot", "TOK-SECRET-VALUE", "k-secr", "tok-secret-value"):
        assert form not in recorded
    assert exchange.url == "http://shop.test/orders?sig=%2A%2A%2A&region=eu"
    assert exchange.request_body == {"who": "***", "n": 1}
    assert exchange.request_headers["X-Token"] == "***"
    # The transport sees the same record (the sandbox's replay matches on it).
    origin = request.extensions["loom.record"]
    assert origin["record"].url == exchange.url
    assert origin["step_id"] == "s"


# ---------------------------------------------------------------------- what errors name


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://user:pw@files.test/x?k=v", "url must start with http:// or https://, not ftp://"),
        ("files.test/x?k=v", "url must start with http:// or https://; it has no scheme"),
        (
            "{{ secrets.token | lower }}://files.test/x",
            "url must start with http:// or https://; it has another scheme",
        ),
    ],
)
async def test_a_url_that_is_not_http_is_refused_naming_only_its_scheme(
    url: str, message: str
) -> None:
    _, pending = _run(
        lambda r: httpx.Response(200), {"url": url}, services={"secrets": {"token": "FTP"}}
    )
    result = await pending
    assert result.error is not None
    assert (result.error.kind, result.error.message) == ("config", message)


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("http://user:pw@shop.test:8080/orders?key=k1#top", "http://shop.test:8080/orders"),
        # rendered from a secret: named as far as the step's url spells it out
        ("http://shop.test/orders?key={{ secrets.token | upper }}", "http://shop.test/orders"),
        ("http://shop.test/{{ secrets.token | upper }}/orders", "http://shop.test"),
        ("http://{{ secrets.token | lower }}.shop.test/orders", "the backend"),
        ("http://u:{{ secrets.token | lower }}@shop.test/orders", "the backend"),
    ],
)
async def test_a_failed_call_names_the_url_without_userinfo_query_or_secrets(
    url: str, where: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("could not connect (connection refused)", request=request)

    _, pending = _run(handler, {"url": url}, services={"secrets": {"token": "tok-secret"}})
    result = await pending
    assert result.error is not None
    assert result.error.message == (
        f"connection to {where} failed: could not connect (connection refused)"
    )


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("http://user:pw@shop.test:8080/orders?key=k1#top", "http://shop.test:8080/orders"),
        ("{{ 'http' }}://shop.test/orders?page=2", "http://shop.test/orders"),
        ("http://shop.test/orders?key={{ secrets.token | upper }}", "http://shop.test/orders"),
        ("http://{{ secrets.token | lower }}.shop.test/orders", "the backend"),
    ],
)
async def test_a_status_error_names_the_url_without_userinfo_query_or_secrets(
    url: str, where: str
) -> None:
    _, pending = _run(
        lambda r: httpx.Response(503, json={"error": "down"}),
        {"url": url},
        services={"secrets": {"token": "tok-secret"}},
    )
    result = await pending
    assert result.error is not None
    assert result.error.message == f"HTTP 503 from {where}: down"


async def test_literal_numbers_booleans_and_nulls_in_query_and_headers_are_sent_as_text() -> None:
    """``limit: 50`` and ``debug: true`` in a spec, as a user writes them in YAML."""
    from linkloom.flows.spec import FlowSpec

    spec = FlowSpec.model_validate(
        {"id": "f", "steps": [{"id": "s", "type": "http", "method": "GET",
                               "url": "http://shop.test/orders",
                               "query": {"limit": 50, "debug": True, "ratio": 0.5, "cursor": None},
                               "headers": {"X-Page-Size": 50, "X-Dry-Run": False}}]}
    )  # fmt: skip
    step = spec.steps[0].model_dump(exclude_none=False)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    _, pending = _run(handler, step)
    assert (await pending).ok
    [request] = seen
    assert str(request.url) == ("http://shop.test/orders?limit=50&debug=true&ratio=0.5&cursor=")
    assert (request.headers["x-page-size"], request.headers["x-dry-run"]) == ("50", "false")
