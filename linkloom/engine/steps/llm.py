"""The ``llm`` step: call an OpenAI Chat Completions or Anthropic Messages compatible API.

Requests go through ``ctx.services.http`` (so the sandbox can replay them) and every call is
recorded in ``ctx.exchanges`` with the API key redacted. ``api_key`` is a template, usually
``{{ secrets.OPENAI_API_KEY }}``; without one the secret ``OPENAI_API_KEY`` /
``ANTHROPIC_API_KEY`` is used when the server has it, else no key is sent (local servers).

Messages: ``system`` first, then ``messages``, then ``prompt`` as a user message; all rendered.
The output is ``{"text", "json", "model", "usage": {"input_tokens", "output_tokens"}}``; with
``response_format: json`` the text (optionally inside a Markdown code fence) must parse as JSON
and ``json`` holds it, otherwise the attempt fails (retryable: another sample may parse).
Connection errors, timeouts, 429 and 5xx are retryable; other statuses are not.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, ClassVar

import httpx

from linkloom.engine.models import Exchange, StepError, StepResult
from linkloom.engine.ports import StepContext
from linkloom.engine.steps import outcomes

OPENAI_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1"
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024
_REDACTED = "***"
_FENCE = re.compile(r"\A\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*\Z", re.DOTALL)


class LlmExecutor:
    """Runs ``llm`` steps."""

    type_name: ClassVar[str] = "llm"

    async def execute(self, ctx: StepContext) -> StepResult:
        return await outcomes.guarded(ctx, self._run)

    async def _run(self, ctx: StepContext) -> StepResult:
        step: Any = ctx.step
        system = outcomes.render(ctx, step.system) if step.system else None
        messages = [
            {"role": m.role, "content": _content(outcomes.render(ctx, m.content))}
            for m in step.messages
        ]
        if step.prompt:
            messages.append(
                {"role": "user", "content": _content(outcomes.render(ctx, step.prompt))}
            )
        api_key = _api_key(ctx, step)
        if step.provider == "anthropic":
            url, headers, body = _anthropic_request(step, system, messages, api_key)
        else:
            url, headers, body = _openai_request(step, system, messages, api_key)

        response, error = await _post(ctx, url=url, headers=headers, body=body)
        if error is not None:
            return error
        assert response is not None
        payload = _json_body(response)
        if payload is None:
            return outcomes.failed(
                "bad_response", f"the model API answered {response.status_code} with non-JSON"
            )
        if response.status_code >= 400:
            return _status_error(response, payload)
        try:
            text = (
                _anthropic_text(payload) if step.provider == "anthropic" else _openai_text(payload)
            )
        except (KeyError, IndexError, TypeError):
            return outcomes.failed(
                "bad_response", "the model API answer has no message text where expected"
            )
        output: dict[str, Any] = {
            "text": text,
            "json": None,
            "model": payload.get("model", step.model),
            "usage": _usage(payload.get("usage")),
        }
        if step.response_format == "json":
            try:
                output["json"] = parse_json_text(text)
            except ValueError as exc:
                return outcomes.failed(
                    "bad_response",
                    f"the model's answer is not valid JSON ({exc})",
                    retryable=True,
                    output=output,
                )
        return StepResult(output=output)


def _content(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _api_key(ctx: StepContext, step: Any) -> str | None:
    if step.api_key:
        key = outcomes.render(ctx, step.api_key)
        return str(key) if key else None
    name = "ANTHROPIC_API_KEY" if step.provider == "anthropic" else "OPENAI_API_KEY"
    return ctx.services.secrets.get(name)


def _openai_request(
    step: Any, system: str | None, messages: list[dict[str, str]], api_key: str | None
) -> tuple[str, dict[str, str], dict[str, Any]]:
    base = (step.base_url or OPENAI_BASE_URL).rstrip("/")
    body: dict[str, Any] = {
        "model": step.model,
        "messages": ([{"role": "system", "content": system}] if system else []) + messages,
    }
    if step.temperature is not None:
        body["temperature"] = step.temperature
    if step.max_tokens is not None:
        body["max_tokens"] = step.max_tokens
    if step.response_format == "json":
        body["response_format"] = {"type": "json_object"}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return f"{base}/chat/completions", headers, body


def _anthropic_request(
    step: Any, system: str | None, messages: list[dict[str, str]], api_key: str | None
) -> tuple[str, dict[str, str], dict[str, Any]]:
    base = (step.base_url or ANTHROPIC_BASE_URL).rstrip("/")
    systems = [system] if system else []
    systems += [m["content"] for m in messages if m["role"] == "system"]
    body: dict[str, Any] = {
        "model": step.model,
        "max_tokens": step.max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS,
        "messages": [m for m in messages if m["role"] != "system"],
    }
    if systems:
        body["system"] = "\n\n".join(systems)
    if step.temperature is not None:
        body["temperature"] = min(step.temperature, 1.0)  # Anthropic's range is 0..1
    headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if api_key:
        headers["x-api-key"] = api_key
    return f"{base}/messages", headers, body


async def _post(
    ctx: StepContext, *, url: str, headers: dict[str, str], body: dict[str, Any]
) -> tuple[httpx.Response | None, StepResult | None]:
    started = time.perf_counter()
    recorded = {k: (_REDACTED if _secret_header(k) else v) for k, v in headers.items()}
    try:
        response = await ctx.services.http.post(
            url, json=body, headers=headers, timeout=ctx.timeout if ctx.timeout > 0 else None
        )
    except httpx.TimeoutException as exc:
        _record(ctx, url, recorded, body, started, error=f"timeout: {exc}")
        return None, outcomes.failed(
            "timeout", f"the model API did not answer within {ctx.timeout:g}s", retryable=True
        )
    except httpx.HTTPError as exc:
        _record(ctx, url, recorded, body, started, error=f"{type(exc).__name__}: {exc}")
        return None, outcomes.failed(
            "connection", f"cannot reach the model API at {url}: {exc}", retryable=True
        )
    if len(response.content) > ctx.services.max_response_bytes:
        _record(ctx, url, recorded, body, started, response=response, error="response too large")
        return None, outcomes.failed(
            "bad_response",
            f"the model API answer is larger than {ctx.services.max_response_bytes} bytes",
        )
    _record(ctx, url, recorded, body, started, response=response)
    return response, None


def _record(
    ctx: StepContext,
    url: str,
    headers: dict[str, str],
    body: Any,
    started: float,
    *,
    response: httpx.Response | None = None,
    error: str | None = None,
) -> None:
    ctx.exchanges.append(
        Exchange(
            method="POST",
            url=url,
            request_headers=headers,
            request_body=body,
            status=response.status_code if response is not None else None,
            response_headers={k: v for k, v in response.headers.items() if not _secret_header(k)}
            if response is not None
            else {},
            response_body=_json_body(response) if response is not None else None,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            error=error,
        )
    )


def _secret_header(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in ("authorization", "cookie", "set-cookie")
        or "key" in lowered
        or ("token" in lowered)
    )


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _status_error(response: httpx.Response, payload: Any) -> StepResult:
    status = response.status_code
    message = ""
    if isinstance(payload, dict):
        err = payload.get("error")
        message = err.get("message", "") if isinstance(err, dict) else str(err or "")
    retry_after = _retry_after(response.headers.get("retry-after"))
    return StepResult(
        error=StepError(
            kind="http_status",
            message=f"the model API answered {status}" + (f": {message[:300]}" if message else ""),
            retryable=status == 429 or status >= 500,
            retry_after=retry_after,
            status=status,
        )
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _openai_text(payload: dict[str, Any]) -> str:
    content = payload["choices"][0]["message"]["content"]
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _anthropic_text(payload: dict[str, Any]) -> str:
    parts = payload["content"]
    return "".join(p.get("text", "") for p in parts if p.get("type") == "text")


def _usage(usage: Any) -> dict[str, Any]:
    if not isinstance(usage, dict):
        return {"input_tokens": None, "output_tokens": None}
    return {
        "input_tokens": usage.get("input_tokens", usage.get("prompt_tokens")),
        "output_tokens": usage.get("output_tokens", usage.get("completion_tokens")),
    }


def parse_json_text(text: str) -> Any:
    """Parse a model's JSON answer, accepting a surrounding Markdown code fence."""
    fenced = _FENCE.match(text)
    return json.loads(fenced.group(1) if fenced else text)
