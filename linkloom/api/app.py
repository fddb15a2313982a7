"""The FastAPI application factory.

    app = create_app()                        # settings from the environment, services wired
    app = create_app(settings, services)      # tests: a tmp database, an injected transport

The services come from the composition root (``wiring.Services``) and live on ``app.state``:
``services``, ``settings``, ``auth`` (``auth.Authenticator``); the API's routes read the
services through ``deps.get_services``. The services' ``tokens``, ``web_sessions`` (the web UI's
sign-ins), ``audit``, ``scheduler`` and ``gitops`` (``wiring.gitops.GitOps`` when
``flows.remote`` is set; else None) are on ``app.state`` too, where web pages and tests read
them. The lifespan starts what the settings ask for and this app did not
find already running: migrations on SQLite, the workers (``server.run_workers``), the scheduler
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
from linkloom import auth, config, wiring
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
    """Build the app. ``start_services=False`` leaves starting workers to the caller."""
    settings = settings or config.load_settings()
    services = services or wiring.build_services(settings)
    app = FastAPI(
        title="Link Loom",
        version=linkloom.__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(start_services),
    )
    app.state.settings = settings
    app.state.services = services
    app.state.tokens = services.tokens
    app.state.web_sessions = services.web_sessions
    app.state.audit = services.audit
    app.state.auth = auth.Authenticator(
        tokens=services.tokens, clock=services.runs.clock, enabled=settings.server.auth
    )
    # The scheduler is started by the lifespan, which also lets it hear of finished runs at
    # once (event triggers).
    if services.scheduler is None:
        services.scheduler = wiring.build_scheduler(services)
    app.state.scheduler = services.scheduler
    if settings.flows.remote and services.gitops is None:
        services.gitops = wiring.build_gitops(services, services.proposal_service())
    app.state.gitops = services.gitops
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
        settings: config.Settings = app.state.settings
        services: wiring.Services = app.state.services
        scheduler = app.state.scheduler
        owned = start_services and not services.started
        run_scheduler = (
            start_services
            and scheduler is not None
            and settings.server.run_scheduler
            and settings.scheduler.enabled
        )
        if owned:
            await services.start(
                worker=settings.server.run_workers,
                migrate=session.is_sqlite(settings.database_url),
            )
        gitops = app.state.gitops if start_services else None
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
