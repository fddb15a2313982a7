"""``loom sandbox serve``: the sandbox as a service the ``remote`` backend sends bundles to.

``SandboxService`` answers:

* ``GET /healthz``: ``{"status": "ok", "running": n, "backend": "process"}``;
* ``POST /v1/bundles``: a signed ``SandboxBundle`` (``remote.RemoteRunner`` describes the wire
  format). The signature must be v1 with the service's key and at most ``tolerance`` seconds
  old, and never seen before (a replayed request is refused with 409). At most ``concurrency``
  bundles run at once; the others wait their turn. The answer is the ``SandboxResult`` of the
  service's runner (``process`` by default: a child per bundle with OS limits and a wall clock).

The service holds no credential besides its bundle key: no database, no signing key, no token.
On Kubernetes it runs with no network egress (a NetworkPolicy), a read-only root filesystem
and no service account token (``deploy/kubernetes/base/sandbox.yaml``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from linkloom import signing
from linkloom.sandbox import DEFAULT_SERVICE_PORT
from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.errors import InvalidBundle
from linkloom.sandbox.runner import SandboxRunner

log = structlog.get_logger(__name__)

MAX_BUNDLE_BYTES = 64 * 1024 * 1024


class SandboxService:
    """The HTTP face of a ``SandboxRunner``."""

    def __init__(
        self,
        *,
        runner: SandboxRunner,
        key: str,
        concurrency: int = 2,
        tolerance: float = signing.DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not key:
            raise ValueError("the sandbox service needs a key (LOOM_SANDBOX__REMOTE_KEY)")
        self.runner = runner
        self.key = key
        self.tolerance = tolerance
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._running = 0
        self._seen: dict[str, float] = {}  # signature → when it stops being acceptable

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BUNDLE_BYTES)
        app.router.add_get("/healthz", self._health)
        app.router.add_post("/v1/bundles", self._bundle)
        return app

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "running": self._running, "backend": self.runner.name}
        )

    async def _bundle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = self.clock()
        try:
            signed = signing.check(
                self.key, body, request.headers, tolerance=self.tolerance, now=now
            )
        except signing.SignatureError as exc:
            log.warning("sandbox_bundle_refused", reason=str(exc))
            return _problem(401, "signature_invalid", f"bundle refused: {exc}")
        signature = signed.replay_key  # what was verified, not the header's spelling
        self._seen = {s: until for s, until in self._seen.items() if until > now}
        if signature in self._seen:
            return _problem(409, "bundle_replayed", "this signed bundle was already received")
        self._seen[signature] = now + 2 * self.tolerance
        try:
            bundle = SandboxBundle.from_dict(json.loads(body))
        except InvalidBundle as exc:
            return _problem(422, exc.code, exc.message)
        except (ValueError, TypeError, KeyError) as exc:
            return _problem(422, InvalidBundle.code, f"not a sandbox bundle: {exc}")
        async with self._slots:
            self._running += 1
            started = time.perf_counter()
            try:
                result = await self.runner.run(bundle)
            finally:
                self._running -= 1
        log.info(
            "sandbox_bundle_run", flow_id=bundle.flow_id, cases=len(bundle.cases),
            ok=result.ok, duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )  # fmt: skip
        return web.json_response(result.to_dict())


def _problem(status: int, code: str, detail: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "title": detail, "status": status, "detail": detail, "code": code},
        status=status,
        content_type="application/problem+json",
    )


async def serve(
    service: SandboxService,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_SERVICE_PORT,
    unix: str | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled: on ``unix`` (a socket path) if given, else on ``host:port``."""
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    if unix:
        Path(unix).unlink(missing_ok=True)  # noqa: ASYNC240 - once, before serving
        site: web.BaseSite = web.UnixSite(runner, unix)
        where = f"unix://{unix}"
    else:
        site = web.TCPSite(runner, host, port)
        where = f"http://{host}:{port}"
    await site.start()
    log.info("sandbox_service_started", url=where, backend=service.runner.name)
    if ready is not None:
        ready(where)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
