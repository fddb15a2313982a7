"""Per-request observability: a request id, one summary log line, and the latency metric.

``create_app`` wraps the whole app: ``app.add_middleware(RequestObservability)``. It is plain
ASGI (no ``BaseHTTPMiddleware``), so streaming responses (SSE) pass through untouched.

* The request id comes from an incoming ``X-Request-ID`` (when it looks sane) or is generated;
  it is bound as ``request_id`` for every log line of the request and echoed in the response.
* ``loom_api_request_duration_seconds`` is labelled with the route *template*
  (``/api/v1/runs/{run_id}``), never the raw path, so the series stay few.
* One ``request_finished`` line per request; probes and scrapes log at debug level.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from linkloom import logs, metrics

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED_ROUTE = "<unmatched>"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class RequestObservability:
    """ASGI middleware: request id, request metrics and the per-request summary line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with logs.bound(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                route = route_template(scope)
                method = scope.get("method", "GET")
                metrics.api_request(method=method, route=route, status=status, seconds=seconds)
                level = "debug" if scope.get("path") in QUIET_PATHS else "info"
                getattr(log, level)(
                    "request_finished",
                    method=method,
                    route=route,
                    path=scope.get("path"),
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                )


def route_template(scope: Scope) -> str:
    """The matched route's path template, or ``<unmatched>`` (404s must not add series)."""
    route: Any = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED_ROUTE


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            return text if _SANE_ID.match(text) else None
    return None
