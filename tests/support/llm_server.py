"""A real local HTTP server that speaks the OpenAI Chat Completions and Anthropic Messages APIs.

Answers are deterministic, so tests (and demos) can run ``llm`` steps without a provider:

* the answer text is ``"Echo: <last user message>"``;
* when JSON is asked for (OpenAI ``response_format`` ``json_object``, or the word ``JSON`` in
  the system prompt or last message) the answer is ``{"echo": <message>, "words": <count>}``,
  in a Markdown code fence for Anthropic (models often answer that way);
* a message containing ``[status:NNN]`` gets that HTTP status with a provider-shaped error;
* a message containing ``[not-json]`` gets a plain-text answer even when JSON was asked for.

With ``api_key`` set, requests without that key (``Authorization: Bearer`` or ``x-api-key``) get
401. Every request body is kept in ``server.requests``.

    with LlmServer() as server:
        base_url = server.base_url   # http://127.0.0.1:<port>/v1
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.servers import ThreadedUvicorn

_STATUS = re.compile(r"\[status:(\d{3})\]")


class LlmServer:
    """Runs the fake provider on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.app = self._build_app()
        self._server = ThreadedUvicorn()
        self.port = self._server.port
        self._serving = self._server.serving(self.app, lifespan="off")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlmServer:
        self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(None, None, None)

    # ------------------------------------------------------------------ the app

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append({"api": "openai", "headers": dict(request.headers), "body": body})
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            if self.api_key and key != self.api_key:
                return _openai_error(401, "Incorrect API key provided")
            messages = body.get("messages", [])
            last = _last_user(messages)
            status = _STATUS.search(last)
            if status:
                return _openai_error(int(status.group(1)), "simulated failure")
            system = " ".join(m["content"] for m in messages if m.get("role") == "system")
            wants_json = (body.get("response_format") or {}).get("type") == "json_object"
            text = _answer(last, wants_json or _mentions_json(system, last), fenced=False)
            return JSONResponse(
                {
                    "id": "chatcmpl-local",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "unknown"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": _usage(messages, text, openai=True),
                }
            )

        @app.post("/v1/messages")
        async def messages(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(
                {"api": "anthropic", "headers": dict(request.headers), "body": body}
            )
            if self.api_key and request.headers.get("x-api-key") != self.api_key:
                return _anthropic_error(401, "authentication_error", "invalid x-api-key")
            if not request.headers.get("anthropic-version"):
                return _anthropic_error(400, "invalid_request_error", "anthropic-version missing")
            if "max_tokens" not in body:
                return _anthropic_error(400, "invalid_request_error", "max_tokens: Field required")
            msgs = body.get("messages", [])
            last = _last_user(msgs)
            status = _STATUS.search(last)
            if status:
                return _anthropic_error(int(status.group(1)), "api_error", "simulated failure")
            system = body.get("system") or ""
            text = _answer(last, _mentions_json(str(system), last), fenced=True)
            return JSONResponse(
                {
                    "id": "msg_local",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", "unknown"),
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "usage": _usage(msgs, text, openai=False),
                }
            )

        return app


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content", "")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


def _mentions_json(*texts: str) -> bool:
    return any("JSON" in t for t in texts)


def _answer(message: str, wants_json: bool, *, fenced: bool) -> str:
    if not wants_json or "[not-json]" in message:
        return f"Echo: {message}"
    text = json.dumps({"echo": message, "words": len(message.split())})
    return f"```json\n{text}\n```" if fenced else text


def _usage(messages: list[dict[str, Any]], text: str, *, openai: bool) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion = len(text.split())
    if openai:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return {"input_tokens": prompt, "output_tokens": completion}


def _openai_error(status: int, message: str) -> JSONResponse:
    headers = {"retry-after": "1"} if status == 429 else None
    return JSONResponse(
        {"error": {"message": message, "type": "api_error", "code": status}},
        status_code=status,
        headers=headers,
    )


def _anthropic_error(status: int, kind: str, message: str) -> JSONResponse:
    headers = {"retry-after": "1"} if status == 429 else None
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}},
        status_code=status,
        headers=headers,
    )
