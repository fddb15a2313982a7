"""Operations endpoints: liveness, readiness and Prometheus metrics.

``create_app`` includes ``router`` and leaves these paths unauthenticated (probes and scrapers
carry no token). The routes read the app's ``wiring.Services`` (``app.state.services``, as
every route does), never module globals:

* ``/readyz`` answers ``Services.readiness()``: one entry per check (``database``,
  ``migrations``, ``workers``, and the ``readiness_details`` optional pieces add, such as
  ``flows_remote``). A boolean is a check: ``False`` makes the server not ready. A string is
  a detail shown as is (``revision: "0005"``, ``worker_processes: "3"`` on an API server whose
  workers run elsewhere) and never fails the probe. An app without services is not ready.
* ``/metrics`` refreshes the queue gauges from ``Services.queue_stats()`` (``store.operations``)
  on each scrape, and answers 404 when ``settings.metrics.enabled`` is false.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

import linkloom
from linkloom import metrics

if TYPE_CHECKING:
    from linkloom import wiring

router = APIRouter(tags=["operations"])

CheckResult = bool | str
READINESS_DEADLINE = 5.0


def passed(result: CheckResult) -> bool:
    """Whether one entry allows readiness: only ``False`` fails; strings are details."""
    return result is not False


def _services(request: Request) -> wiring.Services | None:
    """The app's services; None on an app built without them (the probes still answer)."""
    found: wiring.Services | None = getattr(request.app.state, "services", None)
    return found


@router.get("/healthz", summary="Liveness: the process is up and serving requests")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": linkloom.__version__}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, migrations current, workers alive",
    responses={503: {"description": "Not ready; `checks` says which check failed and why."}},
)
async def readyz(request: Request) -> JSONResponse:
    services = _services(request)
    if services is None:
        checks: dict[str, CheckResult] = {
            "wiring": False,
            "wiring_error": "no services on app.state: build the app with create_app",
        }
    else:
        try:
            async with asyncio.timeout(READINESS_DEADLINE):
                checks = dict(await services.readiness())
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
    services = _services(request)
    if services is not None:
        if not services.settings.metrics.enabled:
            return Response(status_code=404)
        await metrics.refresh_queue(services)
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
