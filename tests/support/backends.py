"""Real local user backends for the engine's proof tests, each an aiohttp server on 127.0.0.1 in
a background thread with its own event loop (so it keeps answering whatever the test's loop or
the engine process under test is doing).

* ``IdempotentBackend``: makes every effect exactly-once by ``Idempotency-Key``. The first
  delivery of a key records an effect (a fresh token) before answering; any later delivery of
  the same key, even one arriving while the first is still being answered, gets the same token
  back and records nothing. Each request also checks that the upstream outputs it was sent are
  the tokens recorded for those steps: a wrong or stale upstream output is kept in ``problems``.
* ``FaultyBackend``: answers each delivery with a fault chosen at random (seeded): HTTP 500, a
  hang past the step timeout, a reset connection, a non-JSON body, or a 50 MB body streamed
  without a Content-Length; otherwise SUCCESS. ``served`` records which answer each
  ``(Idempotency-Key, X-Loom-Attempt)`` got, so a test can check the engine's recorded errors.

    with IdempotentBackend(delay=(0.0, 0.02)) as backend:
        url = backend.url            # http://127.0.0.1:<port>
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from linkloom import signing
from tests.support.servers import ThreadedAiohttpServer

FAULTS = ("ok", "http_500", "hang", "reset", "not_json", "huge")
HUGE_BYTES = 50 * 1024 * 1024


@dataclass
class Effect:
    key: str
    token: str
    step_id: str
    run_id: str


class IdempotentBackend(ThreadedAiohttpServer):
    """Exactly-once effects by ``Idempotency-Key``; see the module docstring."""

    def __init__(
        self, *, signing_key: str = "", delay: tuple[float, float] = (0.0, 0.0), seed: int = 0
    ) -> None:
        super().__init__()
        self.signing_key = signing_key
        self.delay = delay
        self.rng = random.Random(seed)
        self.effects: dict[str, Effect] = {}
        self.effect_log: list[str] = []  # keys, appended once per recorded effect
        self.deliveries: Counter[str] = Counter()
        self.problems: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        if self.signing_key:
            try:
                signing.verify(self.signing_key, raw, request.headers)
            except signing.SignatureError as exc:
                self.problems.append(f"{key}: bad signature: {exc}")
                return web.json_response({"error": "bad signature"}, status=401)
        body = json.loads(raw)
        self.deliveries[key] += 1
        effect = self.effects.get(key)
        if effect is None:
            # Record before answering: a re-delivery racing this one sees the effect.
            effect = Effect(
                key=key, token=uuid.uuid4().hex, step_id=body["step_id"], run_id=body["run_id"]
            )
            self.effects[key] = effect
            self.effect_log.append(key)
            self._check_upstream(key, body)
        low, high = self.delay
        if high > 0:
            await asyncio.sleep(self.rng.uniform(low, high))
        return web.json_response(
            {"status": "SUCCESS", "output": effect.token, "logs": [f"effect {key}"]}
        )

    def _check_upstream(self, key: str, body: dict[str, Any]) -> None:
        for step_id, value in (body.get("upstream") or {}).items():
            recorded = self.effects.get(f"{body['run_id']}:{step_id}")
            if recorded is None:
                self.problems.append(f"{key}: upstream {step_id} ran no effect")
            elif value.get("output") != recorded.token:
                self.problems.append(
                    f"{key}: upstream {step_id} output {value.get('output')!r} "
                    f"is not its recorded effect {recorded.token!r}"
                )

    def duplicates(self) -> dict[str, int]:
        """Keys whose effect was recorded more than once (must stay empty)."""
        return {k: n for k, n in Counter(self.effect_log).items() if n > 1}


@dataclass
class FaultPlan:
    """Probabilities of each answer; the rest is ``ok``."""

    weights: dict[str, float] = field(
        default_factory=lambda: {
            "ok": 0.4,
            "http_500": 0.15,
            "hang": 0.1,
            "reset": 0.15,
            "not_json": 0.1,
            "huge": 0.1,
        }
    )


class FaultyBackend(ThreadedAiohttpServer):
    """Random faults per delivery; see the module docstring."""

    def __init__(
        self, *, hang_seconds: float = 3.0, plan: FaultPlan | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        self.hang_seconds = hang_seconds
        self.plan = plan or FaultPlan()
        self.rng = random.Random(seed)
        self.served: dict[tuple[str, int], str] = {}
        self.huge_bytes_sent = 0

    def _choose(self) -> str:
        names = list(self.plan.weights)
        return self.rng.choices(names, weights=[self.plan.weights[n] for n in names])[0]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        key = request.headers.get("Idempotency-Key", "")
        attempt = int(request.headers.get("X-Loom-Attempt", "0"))
        fault = self._choose()
        self.served[(key, attempt)] = fault
        if fault == "http_500":
            return web.json_response({"error": "injected server error"}, status=500)
        if fault == "hang":
            await asyncio.sleep(self.hang_seconds)
            return web.json_response({"status": "SUCCESS", "output": "too late"})
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()  # RST, not a clean close
            return web.Response(status=500)
        if fault == "not_json":
            return web.Response(
                status=200, text="<html>502 Bad Gateway</html>", content_type="text/html"
            )
        if fault == "huge":
            return await self._huge(request)
        return web.json_response({"status": "SUCCESS", "output": {"key": key}})

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"[" + b"1," * (512 * 1024 - 1)  # ~1 MiB
        sent = 0
        try:
            while sent < HUGE_BYTES:
                await response.write(chunk)
                sent += len(chunk)
                self.huge_bytes_sent += len(chunk)
            await response.write(b"1]")
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading: what a capped reader does
        return response
