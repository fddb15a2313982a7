"""The FastAPI application factory.

    app = create_app()                        # settings from the environment, services wired
    app = create_app(settings, services)      # tests: a tmp database, an injected transport

The services come from the composition root (``wiring.Services``) and are the one thing on
``app.state``: ``app.state.services``, which the API's routes and the web pages read (through
``http.context``), with everything on it (settings, authenticator, tokens, web sessions, audit,
scheduler, proposals, GitOps). The lifespan starts what the settings ask for and this app did
not find already running: migrations on SQLite, the workers (``server.run_workers``), the scheduler
(``server.run_scheduler`` and ``scheduler.enabled``), and stops them in reverse order.

The web UI's routes (``linkloom.web.routes``) are mounted here too: ``api`` imports ``web``, and
what both use (the request's services, actor and audit writer, the run feed) is in
``linkloom.http``, below both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI

import linkloom
from linkloom import config, wiring
from linkloom.api import errors, limits
from linkloom.api.observability import RequestObservability
from linkloom.api.routes import (
    access,
    deadletters,
    fixtures,
    flows,
    gitops,
    health,
    inbound,
    notifications,
    proposals,
    runs,
    streams,
    workers,
)
from linkloom.store import session
from linkloom.web import routes as web_routes

log = structlog.get_logger(__name__)

# The routers, in the order they are included (the first match of a path wins).
ROUTERS = (
    flows,
    runs,
    streams,
    deadletters,
    access,
    inbound,
    proposals,
    fixtures,
    notifications,
    workers,
    gitops,
    web_routes,
)

DESCRIPTION = """
The Link Loom REST API. Authenticate with `Authorization: Bearer <token>` (create tokens with
`loom token create --name NAME --role ROLE`). Roles: viewer < author < reviewer < admin; each
operation says which it needs. Errors are RFC 9457 `application/problem+json` with a stable
`code`. Lists take `limit` and `cursor` and answer `{items, next_cursor}`.
"""


def create_app(
    settings: config.Settings | None = None,
    services: wiring.Services | None = None,
    *,
    start_services: bool = True,
) -> FastAPI:
    """Build the app on ``services`` (built from ``settings`` when not given, from the
    environment when neither is). ``start_services=False`` leaves starting workers to the
    caller."""
    if services is None:
        services = wiring.build_services(settings or config.load_settings())
    settings = services.settings
    app = FastAPI(
        title="Link Loom",
        version=linkloom.__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(start_services),
    )
    app.state.services = services
    # With a flows remote, build the proposal service and its GitOps pieces now, not on the
    # first request: /readyz reports the remote from the start, and the lifespan starts it.
    if settings.flows.remote:
        _ = services.gitops
    errors.install(app)
    app.add_middleware(
        limits.BodyLimit,
        default=settings.server.max_body_bytes,
        larger=settings.server.max_proposal_body_bytes,
    )
    app.add_middleware(RequestObservability)  # outermost: it sees (and logs) every refusal
    app.include_router(health.router)
    for module in ROUTERS:
        app.include_router(module.router)
    return app


def _lifespan(start_services: bool) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services: wiring.Services = app.state.services
        settings = services.settings
        scheduler = services.scheduler
        owned = start_services and not services.started
        # The lifespan starts the scheduler, and lets it hear of finished runs at once (event
        # triggers).
        run_scheduler = (
            start_services and settings.server.run_scheduler and settings.scheduler.enabled
        )
        if owned:
            await services.start(
                worker=settings.server.run_workers,
                migrate=session.is_sqlite(settings.database_url),
            )
        gitops = services.gitops if start_services else None
        if gitops is not None:
            await gitops.start()  # fetch the flows remote and import it (never fails the start)
        if run_scheduler:
            services.run_listeners.append(scheduler.on_run_finished)
            await scheduler.start()
            services.start_retention()
        log.info(
            "api_started",
            workers=len(services.workers),
            scheduler=bool(run_scheduler),
            auth=settings.server.auth,
        )
        try:
            yield
        finally:
            if run_scheduler:
                await scheduler.stop()
                services.run_listeners.remove(scheduler.on_run_finished)
            if gitops is not None:
                await gitops.stop()
            if owned:
                await services.stop()

    return lifespan
