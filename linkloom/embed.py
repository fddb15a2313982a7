"""``Loom``: Link Loom inside another Python application, on the application's own database.

    from linkloom.embed import Loom

    loom = Loom(engine=app_engine, flows_path="flows/")   # or database_url="postgresql+psycopg://…"
    await loom.start()                      # migrate, apply flows_path, start workers + scheduler
    run = await loom.trigger("daily-report", {"day": "2026-11-22"})
    async for event in loom.subscribe(run.id):
        print(event.kind, event.step_id)
    done = await loom.wait(run.id, timeout=60)
    print(done.status, done.outputs)
    await loom.stop()

Everything runs as tasks in the host's running asyncio loop: step workers, the scheduler
(cron/interval/event triggers) and the pull-mode task queues; no FastAPI, no extra process.
Loom's tables live beside the host's own (Alembic migrates them; its version table is
``alembic_version``, so give Loom its own schema or database if the host also uses Alembic).

With a host ``AsyncEngine`` on PostgreSQL, Loom shares its connection pool; on SQLite it opens
its own connections to the same file (SQLite has one writer at a time; Loom uses WAL).
``Loom.runs`` (``engine.service.RunService``) and ``Loom.services`` (``wiring.Services``) are
there for anything this facade does not cover.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linkloom import config, wiring
from linkloom.engine.records import FlowVersion, Run, RunEvent
from linkloom.engine.service import RunService
from linkloom.errors import InvalidInput
from linkloom.flows import loading
from linkloom.flows.spec import FlowSpec
from linkloom.store import session

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from linkloom.scheduler.service import Scheduler

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


class EmbedConfigInvalid(InvalidInput):
    """{reason}"""


class Loom:
    """Link Loom as a library: apply flows, trigger runs, await and follow them.

    Args:
        engine: the host's SQLAlchemy ``AsyncEngine`` (its URL is Loom's database).
        database_url: a database URL instead of ``engine``.
        flows_path: a directory of flow specs (or a git flows repo) applied at ``start()``.
        settings: full ``Settings``; ``engine``/``database_url`` override its database.
        workers: run step workers in this process (False: only trigger; another process works).
        scheduler: run the scheduler (schedules, event triggers) in this process.
        migrate: create/upgrade Loom's tables at ``start()``.
        http_transport: an httpx transport for ``http`` steps (tests).
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine | None = None,
        database_url: str | None = None,
        flows_path: str | Path | None = None,
        settings: config.Settings | None = None,
        workers: bool = True,
        scheduler: bool = True,
        migrate: bool = True,
        http_transport: Any = None,
    ) -> None:
        if engine is not None and database_url is not None:
            raise EmbedConfigInvalid(reason="pass either engine= or database_url=, not both")
        if engine is not None:
            database_url = engine.url.render_as_string(hide_password=False)
        overrides: dict[str, Any] = {}
        if database_url is not None:
            overrides["database"] = {"url": database_url}
        if settings is None:
            settings = config.load_settings(**overrides)
        elif overrides:
            settings = settings.model_copy(
                update={"database": settings.database.model_copy(update=overrides["database"])}
            )
        self.settings = settings
        self.flows_path = Path(flows_path) if flows_path is not None else None
        self._host_engine = engine
        self._workers = workers
        self._scheduler_wanted = scheduler and settings.scheduler.enabled
        self._migrate = migrate
        self.services: wiring.Services = wiring.build_services(
            settings, http_transport=http_transport
        )
        self._own_engines: tuple[Any, Any] | None = None
        if engine is not None and self.services.db.dialect == "postgresql":
            db = self.services.db
            self._own_engines = (db.writer, db.reader)
            db.writer = db.reader = engine  # share the host's pool
        self.scheduler: Scheduler | None = None  # the services' scheduler, once started here
        self._subscribers: list[RunFeed] = []
        self.started = False

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def runs(self) -> RunService:
        return self.services.runs

    async def start(self) -> None:
        """Migrate, apply the flows of ``flows_path``, start workers and the scheduler."""
        if self.started:
            return
        if self._migrate:
            await session.upgrade(self.services.db.url)
        if self.flows_path is not None:
            await self.apply_path(self.flows_path)
        self.services.run_listeners.append(self._publish)
        await self.services.start(worker=self._workers, migrate=False)
        if self._scheduler_wanted:
            self.scheduler = self.services.scheduler
            self.services.run_listeners.append(self.scheduler.on_run_finished)
            await self.scheduler.start()
        self.started = True

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop the scheduler and workers (in-flight steps get ``grace`` seconds), close
        Loom's connections; the host's engine stays open."""
        if not self.started:
            return
        if self.scheduler is not None:
            await self.scheduler.stop()
        db = self.services.db
        if self._own_engines is not None:
            db.writer, db.reader = self._own_engines  # dispose ours, not the host's
        await self.services.stop(grace=grace)
        self.started = False

    async def __aenter__(self) -> Loom:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # ---- flows -------------------------------------------------------------------------
    async def apply(
        self,
        spec: FlowSpec | Mapping[str, Any] | str | Path,
        *,
        actor: str | None = None,
        filename: str = "<spec>",
    ) -> FlowVersion:
        """Validate a spec (model, dict, YAML/JSON text or file path) and store it as the
        flow's current version (unchanged content keeps the version).

        Raises:
            SpecInvalid: the spec has problems (each with line and column).
        """
        if isinstance(spec, Path):
            filename = str(spec)
            spec = await asyncio.to_thread(spec.read_text, encoding="utf-8")
        return await self.runs.apply_flow(_spec(spec, filename), source="embed", actor=actor)

    async def apply_path(self, path: str | Path) -> list[FlowVersion]:
        """Apply every spec under ``path`` (``fixtures`` folders skipped)."""
        files = await asyncio.to_thread(_spec_files, Path(path))
        return [await self.apply(text, filename=name) for name, text in files]

    # ---- runs --------------------------------------------------------------------------
    async def trigger(
        self, flow_id: str, inputs: Mapping[str, Any] | None = None, *, actor: str | None = None
    ) -> Run:
        """Start a run of the flow's current version; returns it at once (RUNNING when this
        Loom's worker took its first steps, else PENDING)."""
        return await self.runs.trigger(
            flow_id, inputs=dict(inputs or {}), trigger="manual", actor=actor
        )

    async def wait(self, run_id: str, *, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        """The run once it has finished (SUCCEEDED, FAILED or CANCELLED).

        Raises:
            TimeoutError: ``timeout`` seconds passed first (the run goes on).
        """
        async with asyncio.timeout(timeout):
            return await self.runs.wait(run_id)

    async def run(
        self,
        flow_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Run:
        """Trigger and wait."""
        run = await self.trigger(flow_id, inputs)
        return await self.wait(run.id, timeout=timeout)

    async def get_run(self, run_id: str) -> Run:
        return await self.runs.get_run(run_id)

    async def cancel(self, run_id: str) -> Run:
        return await self.runs.cancel(run_id)

    def subscribe(self, run_id: str, *, after_id: int = 0) -> AsyncIterator[RunEvent]:
        """The run's events (run and step status changes, logs) as they are written, ending
        when the run has finished."""
        return self.runs.follow(run_id, after_id=after_id)

    def events(self) -> RunFeed:
        """Every run that finishes in this process from the moment of this call, as it
        finishes (``async for run in loom.events(): …``; ``close()`` it when done)."""
        feed = RunFeed(self._subscribers)
        self._subscribers.append(feed)
        return feed

    def _publish(self, run: Run) -> None:
        for feed in list(self._subscribers):
            feed.queue.put_nowait(run)


class RunFeed:
    """An async iterator of finished runs (``Loom.events()``)."""

    def __init__(self, subscribers: list[RunFeed]) -> None:
        self.queue: asyncio.Queue[Run] = asyncio.Queue()
        self._subscribers = subscribers

    def __aiter__(self) -> RunFeed:
        return self

    async def __anext__(self) -> Run:
        return await self.queue.get()

    def close(self) -> None:
        """Stop receiving runs."""
        with contextlib.suppress(ValueError):
            self._subscribers.remove(self)


def _spec(spec: FlowSpec | Mapping[str, Any] | str, filename: str) -> FlowSpec:
    if isinstance(spec, FlowSpec):
        return spec
    if isinstance(spec, str):
        return loading.load_flow(spec, filename=filename)
    return FlowSpec.model_validate(dict(spec))


def _spec_files(root: Path) -> list[tuple[str, str]]:
    if not root.is_dir():
        raise EmbedConfigInvalid(reason=f"flows path {str(root)!r} is not a directory")
    found = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if (
            path.suffix in SPEC_SUFFIXES
            and path.is_file()
            and "fixtures" not in parts
            and not any(part.startswith(".") for part in parts)
        ):
            found.append((str(path), path.read_text(encoding="utf-8")))
    return found
