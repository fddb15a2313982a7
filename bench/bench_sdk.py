"""What each SDK's task handling costs a user backend, measured against a plain endpoint in the
same language, in the same run (target: the SDK costs at most 20% over the plain handler).

Python, each a median of repeated rounds and a ratio to a baseline measured in the same run:

1. in process: ``TaskDispatcher.dispatch`` (verify signature, parse, de-duplicate, run, map)
   vs. parsing the same body and building the same reply by hand;
2. over HTTP (uvicorn on 127.0.0.1, sequential ``httpx.Client``): a ``LoomRouter`` task
   endpoint vs. a plain FastAPI endpoint returning the same JSON.

TypeScript, Go and Java: requests/s over real HTTP on 127.0.0.1 with concurrent keep-alive
clients in the language's own process: the SDK's task endpoint (signature check, parsing,
in-memory idempotency store, response mapping) vs. a plain handler of the same framework that
parses the same body and writes the same answer (``sdks/typescript/bench/bench.ts``,
``sdks/go/linkloom/bench_test.go``, ``sdks/java/src/test/java/io/linkloom/sdk/Bench.java``).
A language whose toolchain is missing is skipped, and said so.

    .venv/bin/python bench/bench_sdk.py [--requests 500] [--rounds 5] [--only go,java]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
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

ROOT = Path(__file__).resolve().parents[1]
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


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def typescript(requests: int, rounds: int) -> list[tuple[float, float]]:
    sdk = ROOT / "sdks" / "typescript"
    _run(["npx", "tsc", "-p", "tsconfig.test.json"], sdk)
    out = _run(["node", "build/bench/bench.js", str(requests * 6), str(rounds)], sdk)
    return [(r["plain_rps"], r["sdk_rps"]) for r in map(json.loads, out.split())]


def go(requests: int, rounds: int) -> list[tuple[float, float]]:
    env = {"GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    cmd = ["go", "test", "-run", "^$", "-bench", "Handler", f"-benchtime={requests * 8}x",
           "-count=1", "./linkloom"]  # fmt: skip
    pairs = []
    for _ in range(rounds):  # plain and SDK side by side in each round
        out = _run(cmd, ROOT / "sdks" / "go", env)
        found = dict(re.findall(r"Benchmark(Plain|SDK)Handler\S*\s+\d+\s+([\d.]+) ns/op", out))
        pairs.append((1e9 / float(found["Plain"]), 1e9 / float(found["SDK"])))
    return pairs


def java(requests: int, rounds: int) -> list[tuple[float, float]]:
    sdk = ROOT / "sdks" / "java"
    _run(["bash", "build.sh", "test"], sdk)
    cp = f"{sdk / 'build' / 'classes'}:{sdk / 'build' / 'test-classes'}"
    out = _run(["java", "-cp", cp, "io.linkloom.sdk.Bench", str(requests * 6), str(rounds)], sdk)
    return [(r["plain_rps"], r["sdk_rps"]) for r in map(json.loads, out.split())]


LANGUAGES = {
    "typescript": (typescript, ("node", "npx")),
    "go": (go, ("go",)),
    "java": (java, ("java", "javac")),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="python,typescript,go,java")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "python" in only:
        local = [asyncio.run(in_process(args.requests)) for _ in range(args.rounds)]
        with serve(app=plain_app()) as backend:
            remote = [over_http(backend.url, args.requests) for _ in range(args.rounds)]
        for name, rounds in (("in process", local), ("over HTTP", remote)):
            sdk = statistics.median(r[0] for r in rounds) * 1e6
            base = statistics.median(r[1] for r in rounds) * 1e6
            print(
                f"python {name:>10}: SDK task {sdk:8.1f} µs/req, plain {base:8.1f} µs/req, "
                f"ratio {sdk / base:5.2f}x, overhead {sdk - base:7.1f} µs"
            )
    for name, (measure, tools) in LANGUAGES.items():
        if name not in only:
            continue
        missing = [tool for tool in tools if shutil.which(tool) is None]
        if missing:
            print(f"{name:>10}: SKIPPED, {', '.join(missing)} not installed")
            continue
        rounds = measure(args.requests, args.rounds)
        plain = statistics.median(r[0] for r in rounds)
        sdk = statistics.median(r[1] for r in rounds)
        print(
            f"{name:>10} over HTTP: SDK task {sdk:8.0f} req/s, plain {plain:8.0f} req/s, "
            f"SDK costs {(plain / sdk - 1) * 100:5.1f}% over plain (median of {len(rounds)})"
        )


if __name__ == "__main__":
    main()
