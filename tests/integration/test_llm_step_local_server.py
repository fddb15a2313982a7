"""The ``llm`` executor against a real local server speaking the OpenAI and Anthropic APIs."""

from __future__ import annotations

import httpx
import pytest

from linkloom.engine.steps.llm import LlmExecutor
from tests.support.llm_server import LlmServer
from tests.support.step_context import make_context, make_services


@pytest.fixture(scope="module")
def llm_server():
    with LlmServer(api_key="local-key") as server:
        yield server


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_llm_step_against_local_server(llm_server, provider):
    async with httpx.AsyncClient() as http:
        services = make_services(http=http, secrets={"LLM_KEY": "local-key"})
        step = {
            "type": "llm",
            "provider": provider,
            "model": "local-model",
            "base_url": llm_server.base_url,
            "api_key": "{{ secrets.LLM_KEY }}",
            "system": "Answer in JSON.",
            "prompt": "summarise {{ inputs.topic }}",
            "response_format": "json",
        }
        ctx = make_context(step=step, services=services, inputs={"topic": "orders"})
        result = await LlmExecutor().execute(ctx)
    assert result.ok, result.error
    assert result.output["json"] == {"echo": "summarise orders", "words": 2}
    assert result.output["model"] == "local-model"
    assert result.output["usage"]["output_tokens"] > 0
    assert llm_server.requests[-1]["api"] == provider


async def test_llm_step_wrong_key_is_a_non_retryable_401(llm_server):
    async with httpx.AsyncClient() as http:
        step = {
            "type": "llm",
            "model": "m",
            "base_url": llm_server.base_url,
            "api_key": "wrong",
            "prompt": "hi",
        }
        result = await LlmExecutor().execute(
            make_context(step=step, services=make_services(http=http))
        )
    assert result.error is not None
    assert "401" in result.error.message
    assert not result.error.retryable


async def test_llm_step_simulated_rate_limit_is_retryable(llm_server):
    async with httpx.AsyncClient() as http:
        step = {
            "type": "llm",
            "provider": "anthropic",
            "model": "m",
            "base_url": llm_server.base_url,
            "api_key": "local-key",
            "prompt": "hi [status:429]",
        }
        result = await LlmExecutor().execute(
            make_context(step=step, services=make_services(http=http))
        )
    assert result.error is not None
    assert result.error.retryable
    assert result.error.retry_after == 1.0
