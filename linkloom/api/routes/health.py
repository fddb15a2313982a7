"""Operations endpoints: liveness, readiness and Prometheus metrics.

``create_app`` includes ``router`` and leaves these paths unauthenticated (probes and scrapers
carry no token). The routes find their collaborators on ``app.state`` (or as methods of
``app.state.services``), never in module globals:

* ``readiness`` — an object with ``async readiness() -> Mapping[str, bool | str]``, one entry per
  check (``database``, ``migrations``, ``workers``…). A boolean is a check: ``False`` makes the
  server not ready. A string is a detail shown as is (``revision: "0005"``,
  ``worker_processes: "3"`` on an API server whose workers run elsewhere) and never fails the
  probe. ``wiring.Services.readiness`` is the real provider.
  ``CompositeReadiness`` builds one from plain async check functions.
* ``queue_stats`` — a ``metrics.QueueStatsSource`` (``Services.queue_stats``, backed by
  ``store.operations``); when present, ``/metrics`` refreshes the queue gauges from it on
  each scrape.
* ``settings`` — when present and ``metrics.enabled`` is false, ``/metrics`` answers 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

import linkloom
from linkloom import metrics

router = APIRouter(tags=["operations"])

CheckResult = bool | str
Check = Callable[[], Awaitable[CheckResult]]
READINESS_DEADLINE = 5.0


class Readiness(Protocol):
    async def readiness(self) -> Mapping[str, CheckResult]: ...


class CompositeReadiness:
    """Readiness from named async checks, run concurrently, each with its own time limit.

    A check that raises or overruns is ``False`` and gains a ``<name>_error`` detail, so
    ``/readyz`` always answers and says which dependency is the problem::

        CompositeReadiness(database=store.ping, migrations=store.migrations_current)
    """

    def __init__(self, *, within: float = 2.0, **checks: Check) -> None:
        self._within = within
        self._checks = checks

    async def readiness(self) -> dict[str, CheckResult]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        out: dict[str, CheckResult] = {}
        for name, (result, error) in zip(names, results, strict=True):
            out[name] = result
            if error:
                out[f"{name}_error"] = error
        return out

    async def _run(self, check: Check) -> tuple[CheckResult, str | None]:
        try:
            async with asyncio.timeout(self._within):
                return await check(), None
        except TimeoutError:
            return False, f"no answer within {self._within:g}s"
        except Exception as exc:  # a failing dependency is a result here, not an error
            return False, f"{type(exc).__name__}: {exc}"[:300]


def passed(result: CheckResult) -> bool:
    """Whether one entry allows readiness: only ``False`` fails; strings are details."""
    return result is not False


def _collaborator(request: Request, name: str) -> Any:
    state = request.app.state
    found = getattr(state, name, None)
    if found is None:
        found = getattr(getattr(state, "services", None), name, None)
    return found


def _method(request: Request, name: str) -> Callable[[], Awaitable[Any]] | None:
    """``app.state.<name>.<name>``, a callable ``app.state.<name>``, or ``services.<name>``."""
    found = _collaborator(request, name)
    if found is None:
        return None
    inner = getattr(found, name, None)
    if callable(inner):
        return inner  # type: ignore[no-any-return]
    return found if callable(found) else None


class _Source:
    def __init__(self, read: Callable[[], Awaitable[metrics.QueueStats]]) -> None:
        self._read = read

    async def queue_stats(self) -> metrics.QueueStats:
        return await self._read()


@router.get("/healthz", summary="Liveness: the process is up and serving requests")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": linkloom.__version__}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, migrations current, workers alive",
    responses={503: {"description": "Not ready; `checks` says which check failed and why."}},
)
async def readyz(request: Request) -> JSONResponse:
    provider = _method(request, "readiness")
    if provider is None:
        checks: dict[str, CheckResult] = {
            "wiring": False,
            "wiring_error": "no readiness provider on app.state",
        }
    else:
        try:
            async with asyncio.timeout(READINESS_DEADLINE):
                checks = dict(await provider())
        except TimeoutError:
            checks = {
                "readiness": False,
                "readiness_error": f"no answer within {READINESS_DEADLINE:g}s",
            }
        except Exception as exc:  # the probe must answer even when wiring is broken
            checks = {"readiness": False, "readiness_error": f"{type(exc).__name__}: {exc}"[:300]}
    ready = all(passed(result) for result in checks.values())
    body = {"ready": ready, "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics (text exposition format)")
async def metrics_endpoint(request: Request) -> Response:
    settings = _collaborator(request, "settings")
    if settings is not None and not settings.metrics.enabled:
        return Response(status_code=404)
    queue_stats = _method(request, "queue_stats")
    if queue_stats is not None:
        await metrics.refresh_queue(_Source(queue_stats))
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
