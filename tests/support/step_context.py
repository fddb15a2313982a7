"""Build ``StepContext``s for executor tests: ``make_context(step={...}, upstream=..., ...)``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import TypeAdapter

from linkloom.engine.models import RunInfo
from linkloom.engine.ports import StepContext, StepServices
from linkloom.flows.spec import Step

_STEP = TypeAdapter(Step)


class Clock:
    """A clock that stands still until moved."""

    def __init__(self, now: datetime | None = None) -> None:
        self.current = now or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class Secrets:
    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def names(self) -> list[str]:
        return sorted(self.values)


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.method} {request.url}")


def make_services(
    *,
    handler: Any = None,
    http: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    secrets: dict[str, str] | None = None,
    **overrides: Any,
) -> StepServices:
    client = http or httpx.AsyncClient(transport=httpx.MockTransport(handler or _no_network))
    return StepServices(http=client, clock=clock or Clock(), secrets=Secrets(secrets), **overrides)


def make_context(
    *,
    step: dict[str, Any],
    upstream: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    services: StepServices | None = None,
    state: dict[str, Any] | None = None,
    timeout: float = 10.0,
    item: Any = None,
    index: int | None = None,
) -> StepContext:
    """A context for one attempt of ``step`` (a spec dict; ``id`` defaults to ``s``).

    ``upstream`` maps step ids to outputs; each becomes ``{"status": "SUCCEEDED", "output": …,
    "outputs": {}}`` unless it already is such a dict (has a ``status`` key).
    """
    spec = {"id": "s", **step}
    ups = {
        k: v
        if isinstance(v, dict) and "status" in v
        else {"status": "SUCCEEDED", "output": v, "outputs": {}}
        for k, v in (upstream or {}).items()
    }
    return StepContext(
        run=RunInfo(id="run-1", flow_id="flow-1", version=1, trigger="manual", inputs=inputs or {}),
        step=_STEP.validate_python(spec),
        attempt=1,
        idempotency_key="run-1:" + spec["id"],
        upstream=ups,
        services=services or make_services(),
        timeout=timeout,
        state=dict(state or {}),
        item=item,
        index=index,
    )
