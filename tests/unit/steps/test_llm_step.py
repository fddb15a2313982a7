from __future__ import annotations

import json

import httpx
import pytest

from linkloom.engine.steps.llm import LlmExecutor, parse_json_text
from tests.support.step_context import make_context, make_services


def openai_answer(text, status=200, headers=None):
    body = {
        "model": "gpt-test",
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    return httpx.Response(status, json=body, headers=headers)


def run_with(handler, step, **kw):
    services = make_services(handler=handler, secrets={"OPENAI_API_KEY": "sk-secret"})
    spec = {"type": "llm", "model": "gpt-test", **step}
    return LlmExecutor().execute(make_context(step=spec, services=services, **kw))


async def test_llm_openai_request_shape_and_output():
    seen = []

    def handler(request):
        seen.append(request)
        return openai_answer("Hello Ann")

    ctx_step = {
        "system": "Be brief.",
        "prompt": "Greet {{ inputs.name }}",
        "temperature": 0.2,
        "max_tokens": 20,
        "api_key": "{{ secrets.OPENAI_API_KEY }}",
    }
    result = await run_with(handler, ctx_step, inputs={"name": "Ann"})
    assert result.ok, result.error
    assert result.output == {
        "text": "Hello Ann",
        "json": None,
        "model": "gpt-test",
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }
    request = seen[0]
    assert str(request.url) == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-secret"
    assert json.loads(request.content) == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Greet Ann"},
        ],
        "temperature": 0.2,
        "max_tokens": 20,
    }
    (exchange,) = result.exchanges
    assert exchange.request_headers["Authorization"] == "***"
    assert "sk-secret" not in json.dumps(exchange.to_dict())
    assert exchange.status == 200


async def test_llm_anthropic_request_shape():
    seen = []

    def handler(request):
        seen.append(request)
        body = {
            "model": "claude-test",
            "content": [{"type": "text", "text": "Hi"}],
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
        return httpx.Response(200, json=body)

    step = {
        "provider": "anthropic",
        "model": "claude-test",
        "base_url": "http://llm.local/v1/",
        "system": "S",
        "messages": [{"role": "user", "content": "Q {{ inputs.q }}"}],
        "api_key": "ak",
    }
    result = await run_with(handler, step, inputs={"q": 1})
    assert result.ok
    assert result.output["text"] == "Hi"
    assert result.output["usage"] == {"input_tokens": 3, "output_tokens": 1}
    request = seen[0]
    assert str(request.url) == "http://llm.local/v1/messages"
    assert request.headers["x-api-key"] == "ak"
    assert request.headers["anthropic-version"] == "2023-06-01"
    sent = json.loads(request.content)
    assert sent["system"] == "S"
    assert sent["max_tokens"] == 1024
    assert sent["messages"] == [{"role": "user", "content": "Q 1"}]
    assert result.exchanges[0].request_headers["x-api-key"] == "***"


async def test_llm_json_response_is_parsed():
    result = await run_with(
        lambda r: openai_answer('```json\n{"a": [1, 2]}\n```'),
        {"prompt": "p", "response_format": "json"},
    )
    assert result.ok
    assert result.output["json"] == {"a": [1, 2]}


async def test_llm_json_parse_failure_is_an_error():
    result = await run_with(
        lambda r: openai_answer("not json"), {"prompt": "p", "response_format": "json"}
    )
    assert result.error is not None
    assert result.error.kind == "bad_response"
    assert result.output["text"] == "not json"


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False)])
async def test_llm_http_errors(status, retryable):
    def handler(request):
        return httpx.Response(
            status, json={"error": {"message": "nope"}}, headers={"retry-after": "7"}
        )

    result = await run_with(handler, {"prompt": "p"})
    assert result.error is not None
    assert result.error.kind == "http_status"
    assert result.error.retryable is retryable
    assert str(status) in result.error.message
    assert result.error.retry_after == 7.0


async def test_llm_connection_error_is_retryable_and_recorded():
    def handler(request):
        raise httpx.ConnectError("refused", request=request)

    result = await run_with(handler, {"prompt": "p"})
    assert result.error is not None
    assert result.error.kind == "connection"
    assert result.error.retryable
    assert result.exchanges[0].error is not None


async def test_llm_non_json_answer_is_bad_response():
    result = await run_with(lambda r: httpx.Response(200, text="<html>"), {"prompt": "p"})
    assert result.error is not None
    assert result.error.kind == "bad_response"


def test_parse_json_text_accepts_plain_and_fenced():
    assert parse_json_text('{"a": 1}') == {"a": 1}
    assert parse_json_text("```\n[1]\n```") == [1]
    with pytest.raises(json.JSONDecodeError):
        parse_json_text("nope")
