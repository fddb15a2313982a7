"""What the SDK's task handling costs a user backend, measured against a plain endpoint.

Two figures, each a median of repeated rounds and a ratio to a baseline measured in the same run:

1. in process: ``TaskDispatcher.dispatch`` (verify signature, parse, de-duplicate, run, map)
   vs. parsing the same body and building the same reply by hand;
2. over HTTP (uvicorn on 127.0.0.1, sequential ``httpx.Client``): a ``LoomRouter`` task
   endpoint vs. a plain FastAPI endpoint returning the same JSON.

    .venv/bin/python bench/bench_sdk.py [--requests 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for examples.backend

from examples.backend import serve
from linkloom.sdk import InMemoryIdempotencyStore, TaskDispatcher, TaskRequest
from linkloom.sdk.fastapi import LoomRouter
from linkloom.sdk.handlers import TaskRoute
from linkloom.sdk.testing import signed_delivery, task_envelope

KEY = "bench-key"


def handler(task: TaskRequest) -> dict[str, Any]:
    return {"n": task.inputs.get("n", 0)}


async def handler_async(task: TaskRequest) -> dict[str, Any]:
    return {"n": task.inputs.get("n", 0)}


def deliveries(count: int) -> list[tuple[bytes, dict[str, str]]]:
    run = uuid.uuid4().hex
    return [
        signed_delivery(task_envelope(run_id=run, step_id=f"s{i}", inputs={"n": i}), key=KEY)
        for i in range(count)
    ]


async def in_process(count: int) -> tuple[float, float]:
    dispatcher = TaskDispatcher(signing_key=KEY, idempotency=InMemoryIdempotencyStore())
    route = TaskRoute(handler=handler_async)
    items = deliveries(count)
    started = time.perf_counter()
    for body, headers in items:
        await dispatcher.dispatch(route, body=body, headers=headers)
    sdk = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for body, _ in items:
        data = json.loads(body)
        reply = {"status": "SUCCESS", "output": {"n": data["inputs"]["n"]}, "logs": []}
        json.dumps(reply)
    baseline = (time.perf_counter() - started) / count
    return sdk, baseline


def plain_app() -> FastAPI:
    app = FastAPI()

    @app.post("/plain")
    async def plain(request: Request) -> dict[str, Any]:
        data = await request.json()
        return {"status": "SUCCESS", "output": {"n": data["inputs"]["n"]}, "logs": []}

    router = LoomRouter(signing_key=KEY, idempotency=InMemoryIdempotencyStore())
    router.task("/task")(handler_async)
    app.include_router(router)
    return app


def over_http(url: str, count: int) -> tuple[float, float]:
    items = deliveries(count)
    with httpx.Client(base_url=url) as http:
        for body, headers in items[:20]:  # warm up the connection and the app
            http.post("/plain", content=body, headers=headers)
        started = time.perf_counter()
        for body, headers in items:
            assert http.post("/task", content=body, headers=headers).status_code == 200
        sdk = (time.perf_counter() - started) / count
        started = time.perf_counter()
        for body, headers in items:
            assert http.post("/plain", content=body, headers=headers).status_code == 200
        baseline = (time.perf_counter() - started) / count
    return sdk, baseline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    local = [asyncio.run(in_process(args.requests)) for _ in range(args.rounds)]
    with serve(app=plain_app()) as backend:
        remote = [over_http(backend.url, args.requests) for _ in range(args.rounds)]
    for name, rounds in (("in process", local), ("over HTTP", remote)):
        sdk = statistics.median(r[0] for r in rounds) * 1e6
        base = statistics.median(r[1] for r in rounds) * 1e6
        print(
            f"{name:>10}: SDK task {sdk:8.1f} µs/req, plain {base:8.1f} µs/req, "
            f"ratio {sdk / base:5.2f}x, overhead {sdk - base:7.1f} µs"
        )


if __name__ == "__main__":
    main()
