"""The FastAPI application factory.

    app = create_app()                        # settings from the environment, services wired
    app = create_app(settings, services)      # tests: a tmp database, an injected transport

Collaborators live on ``app.state``: ``settings``, ``services`` (``wiring.Services``), ``auth``
(``auth.Authenticator``), ``tokens`` (``store.tokens``), ``web_sessions`` (the web UI's sign-ins,
``store.web_sessions``), ``audit`` (``store.audit``),
``scheduler`` (or None), ``gitops`` (``wiring.GitOps`` when ``flows.remote`` is set). The
lifespan starts what the settings ask for and this app did not
find already running: migrations on SQLite, the workers (``server.run_workers``), the scheduler
(``server.run_scheduler`` and ``scheduler.enabled``), and stops them in reverse order.

Routers for proposals, checks, reviews and fixtures plug in through ``EXTRA_ROUTERS``: module
paths whose ``router`` is included when the module exists.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI

import linkloom
from linkloom import config, wiring
from linkloom.api import auth, errors
from linkloom.api.observability import RequestObservability
from linkloom.api.routes import access, deadletters, flows, health, inbound, runs, streams
from linkloom.store import session
from linkloom.store.audit import SqlAuditLog
from linkloom.store.tokens import SqlTokenStore
from linkloom.store.web_sessions import SqlWebSessions

log = structlog.get_logger(__name__)

# Routers other packages add (GitOps proposals, web UI); missing modules are skipped.
EXTRA_ROUTERS = (
    "linkloom.api.routes.proposals",
    "linkloom.api.routes.fixtures",
    "linkloom.api.routes.notifications",
    "linkloom.api.routes.workers",
    "linkloom.api.routes.gitops",
    "linkloom.web.routes",
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
    app.state.tokens = SqlTokenStore(services.db)
    app.state.web_sessions = SqlWebSessions(services.db)
    app.state.audit = SqlAuditLog(services.db)
    app.state.auth = auth.Authenticator(
        tokens=app.state.tokens, clock=services.runs.clock, enabled=settings.server.auth
    )
    app.state.scheduler = build_scheduler(services)
    app.state.gitops = None
    if settings.flows.remote:
        from linkloom.api.routes.proposals import proposal_service

        app.state.gitops = wiring.build_gitops(services, proposal_service(app))
    errors.install(app)
    app.add_middleware(RequestObservability)
    app.include_router(health.router)
    for module in (flows, runs, streams, deadletters, access, inbound):
        app.include_router(module.router)
    for name in EXTRA_ROUTERS:
        extra = _optional(name)
        if extra is not None:
            app.include_router(extra.router)
    return app


def build_scheduler(services: wiring.Services) -> Any:
    """The services' scheduler, or one on the SQL scheduler store (started by the lifespan,
    which also lets it hear of finished runs at once, for event triggers)."""
    existing = getattr(services, "scheduler", None)
    if existing is not None:
        return existing
    from linkloom.store import schedules

    scheduler = schedules.build_scheduler(
        db=services.db, runs=services.runs, settings=services.settings, clock=services.runs.clock
    )
    return scheduler


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None


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
