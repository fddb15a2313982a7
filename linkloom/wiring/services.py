"""``Services`` and ``build_services``: every service built from settings (database, run
store, run service, HTTP client, executors, workers, tokens, authenticator, audit,
notifications, scheduler, proposals, GitOps). The proposal service and the GitOps pieces are
built once, on first use (``Services.proposals``; on the event loop ``await
Services.proposal_service()``, which builds in a worker thread): they open (or create) the
flows repo and import git, which a worker never needs. Import these from ``linkloom.wiring``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from linkloom.auth import Authenticator
from linkloom.clock import SystemClock
from linkloom.config import Settings
from linkloom.engine import transport as engine_transport
from linkloom.engine.ports import Clock, StepExecutor, StepServices
from linkloom.engine.records import Run
from linkloom.engine.secrets import StaticSecrets
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.scheduler.service import Scheduler
from linkloom.store import session
from linkloom.store.audit import SqlAuditLog
from linkloom.store.forges import SqlForgeStore
from linkloom.store.notify import Notifier
from linkloom.store.operations import ProcessHeartbeat, SqlOperations, head
from linkloom.store.retention import PurgeReport, RetentionJob, RetentionPolicy, SqlRetention
from linkloom.store.runs import SqlRunStore
from linkloom.store.tokens import SqlTokenStore
from linkloom.store.web_sessions import SqlWebSessions
from linkloom.wiring import scheduler as scheduling
from linkloom.wiring.storage import database

if TYPE_CHECKING:
    from linkloom.engine.pull import PullService
    from linkloom.flows.models import Policy
    from linkloom.metrics import QueueStats
    from linkloom.notifications.personal import PersonalNotifier
    from linkloom.notifications.service import NotificationService
    from linkloom.proposals.service import ProposalService
    from linkloom.sandbox.runner import SandboxRunner
    from linkloom.wiring.gitops import GitOps


def make_http_client(*, concurrency: int = 64, transport: Any = None) -> httpx.AsyncClient:
    """The engine's httpx client (``engine.transport``), for the steps other than ``http``:
    httpx's API over aiohttp (httpx's own pool is slow under load), keeping no cookies."""
    return engine_transport.make_client(concurrency=concurrency, transport=transport)


def make_outbound(*, concurrency: int = 64) -> engine_transport.AiohttpPort:
    """The ``http`` step's port (``engine.transport``): aiohttp directly, keeping no cookies."""
    return engine_transport.AiohttpPort(concurrency=concurrency)


@dataclass(slots=True, kw_only=True)
class Services:
    settings: Settings
    db: session.Database
    store: SqlRunStore
    runs: RunService
    http: httpx.AsyncClient
    step_services: StepServices
    executors: dict[str, StepExecutor]
    notifier: Notifier
    tokens: SqlTokenStore
    auth: Authenticator  # who is calling: the API's bearer tokens, the web UI's sign-ins
    web_sessions: SqlWebSessions  # the web UI's sign-ins
    audit: SqlAuditLog
    pull: PullService  # pull-mode workers and their task queues
    forge_links: SqlForgeStore  # pull requests and their proposals (CI mode, the forge service)
    # Started only where schedules fire: ``loom server`` (``create_app``), ``loom scheduler``,
    # ``embed``; it also hears of finished runs there (event triggers).
    scheduler: Scheduler
    workers: list[Worker] = field(default_factory=list)
    # Called with each finished run (sync or async): notifications, the scheduler's triggers.
    run_listeners: list[Callable[[Run], object]] = field(default_factory=list)
    notifications: NotificationService | None = None  # None: notifications disabled
    personal: PersonalNotifier | None = None  # the web app's own notifications (Web Push)
    operations: SqlOperations | None = None  # queue figures, revision, worker heartbeats
    heartbeat: ProcessHeartbeat | None = None  # while this process runs workers (or schedules)
    retention: RetentionJob | None = None  # purges old runs where the scheduler runs (if set)
    # The proposals' sandbox (tests pass an in-process one); None: ``settings.sandbox`` chooses.
    sandbox_runner: SandboxRunner | None = None
    # ``/readyz`` details added by optional pieces (e.g. the flows remote): name → async check.
    readiness_details: dict[str, Callable[[], Awaitable[bool | str]]] = field(default_factory=dict)
    started: bool = False
    _proposals: ProposalService | None = field(default=None, init=False, repr=False)
    _gitops: GitOps | None = field(default=None, init=False, repr=False)
    # Held while the proposal service and its GitOps are built: first uses arrive together
    # (the event loop, FastAPI's worker threads), and exactly one of them builds.
    _building: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def proposals(self) -> ProposalService:
        """The proposal service (``wiring.proposals``), built on first use, which imports git and
        opens the flows repo (``await proposal_service()`` does that off the event loop)."""
        if self._proposals is None:
            self._build_proposals()
        assert self._proposals is not None
        return self._proposals

    @proposals.setter
    def proposals(self, service: ProposalService) -> None:  # tests put a double in its place
        self._proposals = service

    async def proposal_service(self) -> ProposalService:
        """``proposals`` for code on the event loop: a first use builds it in a worker thread,
        so the loop goes on serving meanwhile."""
        if self._proposals is None:
            await asyncio.to_thread(self._build_proposals)
        return self.proposals

    @property
    def gitops(self) -> GitOps | None:
        """The remote sync and forge service (``wiring.gitops``), built with the proposal service
        when ``flows.remote`` is set; None without a remote."""
        if self._proposals is None and self.settings.flows.remote:
            self._build_proposals()
        return self._gitops

    async def gitops_service(self) -> GitOps | None:
        """``gitops`` for code on the event loop: a first use builds it (with the proposal
        service) in a worker thread."""
        if self._proposals is None and self.settings.flows.remote:
            await self.proposal_service()
        return self._gitops

    def _build_proposals(self) -> None:
        from linkloom.wiring import gitops, proposals

        with self._building:
            if self._proposals is not None:  # built by the use that held the lock before us
                return
            # Both or neither: a proposal service kept after its GitOps failed to build would
            # promote without pushing to the team's remote; the next use tries again and says
            # why.
            service = proposals.build_proposals(self, runner=self.sandbox_runner)
            self._gitops = gitops.build_gitops(self, service)
            self._proposals = service

    def make_worker(self, **overrides: Any) -> Worker:
        eng = self.settings.engine
        options: dict[str, Any] = {
            "store": self.store,
            "executors": self.executors,
            "services": self.step_services,
            "concurrency": eng.concurrency,
            "lease_seconds": eng.lease_seconds,
            "poll_interval": eng.poll_interval,
            "per_flow_limit": eng.per_flow_limit,
            "specs": self.runs.specs,
            "on_run_finished": self._run_finished,
        }
        options.update(overrides)
        worker = Worker(**options)
        self.workers.append(worker)
        return worker

    async def _run_finished(self, run: Run) -> None:
        self.runs.notify_finished(run)
        for listener in list(self.run_listeners):
            result = listener(run)
            if asyncio.iscoroutine(result):
                await result

    def local_worker(self) -> Worker | None:
        """The worker that takes new runs' first steps as they are created: of those running
        in this process, the one with the most free slots."""
        running = [w for w in self.workers if w.running]
        return max(running, key=lambda w: w.free_slots) if running else None

    def _wake_workers(self) -> None:
        for worker in self.workers:
            worker.wake()

    def _wake(self) -> None:
        self._wake_workers()
        self.notifier.notify_soon()

    async def start(self, *, worker: bool = True, migrate: bool = True) -> None:
        """Migrate (when asked), listen for wake-ups, and start one worker (when asked)."""
        if migrate:
            await session.upgrade(self.db.url)
        await self.notifier.start(on_wake=self._wake_workers)
        if worker and not self.workers:
            self.make_worker()
        if self.workers and self.db.dialect == "sqlite":
            # Embedded SQLite is one process: leases of earlier processes are orphans.
            await self.workers[0].recover_orphans()
        for w in self.workers:
            await w.start()
        if self.workers:
            await self.beat(role="worker")
        if self.notifications is not None:
            await self.notifications.start()
        if self.personal is not None:
            await self.personal.start()
        self.started = True

    async def beat(self, *, role: str) -> None:
        """Keep a heartbeat row for this process (``worker`` or ``scheduler``) until ``stop``."""
        if self.operations is not None and self.heartbeat is None:
            self.heartbeat = ProcessHeartbeat(self.operations, role=role)
            await self.heartbeat.start()

    def start_retention(self) -> None:
        """Purge old runs now and every ``retention.interval_seconds`` (the process that runs
        the scheduler calls it; with no retention configured it does nothing)."""
        if self.retention is not None:
            self.retention.start()

    async def stop(self, *, grace: float = 10.0) -> None:
        if self.retention is not None:
            await self.retention.stop()
        if self.heartbeat is not None:
            await self.heartbeat.stop()
            self.heartbeat = None
        for w in self.workers:
            await w.stop(grace=grace)
        await self.notifier.stop()
        if self.notifications is not None:
            await self.notifications.close()
        if self.personal is not None:
            await self.personal.stop()
        await self.http.aclose()
        if isinstance(self.step_services.outbound, engine_transport.AiohttpPort):
            await self.step_services.outbound.aclose()
        await self.db.dispose()
        self.started = False

    async def readiness(self) -> dict[str, bool | str]:
        """``/readyz``: database reachable, migrations current, workers alive (here, or, when
        this process runs none, any worker process's heartbeat seen recently)."""
        assert self.operations is not None
        checks: dict[str, bool | str] = {"database": await self.db.ping()}
        for name, detail in self.readiness_details.items():
            checks[name] = await detail()
        if not checks["database"]:
            return {**checks, "migrations": False, "workers": False}
        current = await self.operations.revision()
        checks["migrations"] = current == head()
        checks["revision"] = current or "none"
        if current != head():
            at = current or "no revision (never migrated)"
            checks["migrations_error"] = f"database at {at}, code at {head()}: loom db upgrade"
        if self.workers:
            checks["workers"] = all(w.running for w in self.workers)
            return checks
        if current != head():  # the heartbeats' table may not exist yet: nothing more to ask
            return {**checks, "workers": False}
        checks["scheduler_processes"] = str(await self.operations.alive(role="scheduler"))
        alive = await self.operations.alive(role="worker")
        checks["workers"] = alive > 0
        checks["worker_processes"] = str(alive)
        if not alive:
            checks["workers_error"] = "no worker process seen in the last 20s: start 'loom worker'"
        return checks

    async def queue_stats(self) -> QueueStats:
        """The work queue now (``metrics.QueueStatsSource``; ``/metrics`` reads it)."""
        assert self.operations is not None
        return await self.operations.queue_stats()


def build_services(
    settings: Settings, *, http_transport: Any = None, sandbox_runner: SandboxRunner | None = None
) -> Services:
    """Create (not start) every service from ``settings`` (tests pass an ``http_transport`` for
    the steps' calls and a ``sandbox_runner`` for the proposals' checks)."""
    db = database(settings)
    store = SqlRunStore(db)
    clock = SystemClock()
    secrets = StaticSecrets({k: v.get_secret_value() for k, v in settings.secrets.items()})
    signing_key = settings.security.signing_key.get_secret_value()
    http = make_http_client(concurrency=settings.engine.concurrency, transport=http_transport)
    # A replaced transport (tests) serves the http step too, through the port over httpx.
    outbound = (
        None
        if http_transport is not None
        else make_outbound(concurrency=settings.engine.concurrency)
    )
    notifier = Notifier(db)
    holder: dict[str, Services] = {}
    runs = RunService(
        store=store,
        clock=clock,
        secrets=secrets,
        signing_key=signing_key,
        wake=lambda: holder["s"]._wake(),
        per_run_limit=settings.engine.per_run_limit,
        local_worker=lambda: holder["s"].local_worker(),
    )
    step_services = StepServices(
        http=http,
        clock=clock,
        secrets=secrets,
        signing_key=signing_key,
        public_url=settings.public_url,
        shell_enabled=settings.engine.shell_enabled,
        max_response_bytes=settings.engine.max_response_bytes,
        start_subflow=_subflow_starter(runs),
        read_run=_run_reader(runs),
        outbound=outbound,
    )
    executors = builtin_executors(per_host_limit=settings.engine.per_host_limit)
    pull = _pull_service(settings, db, runs, clock)
    step_services.extra["task_queue"] = pull.queue
    tokens = SqlTokenStore(db)
    services = Services(
        settings=settings,
        db=db,
        store=store,
        runs=runs,
        http=http,
        step_services=step_services,
        executors=executors,
        notifier=notifier,
        tokens=tokens,
        auth=Authenticator(tokens=tokens, clock=clock, enabled=settings.server.auth),
        web_sessions=SqlWebSessions(db),
        audit=SqlAuditLog(db),
        pull=pull,
        forge_links=SqlForgeStore(db),
        scheduler=scheduling.build_scheduler(settings, db=db, runs=runs),
        operations=SqlOperations(db, clock),
        sandbox_runner=sandbox_runner,
    )
    if settings.retention.enabled:
        services.retention = RetentionJob(
            retention(settings, db, clock), interval_seconds=settings.retention.interval_seconds
        )
    holder["s"] = services
    runs.on_run_finished = services._run_finished
    runs.on_cancel = lambda run_id: [w.abandon_run(run_id) for w in services.workers]
    if settings.notifications.enabled:
        from linkloom.wiring.notifications import build_notifications, build_personal

        services.notifications = build_notifications(services)
        services.run_listeners.append(services.notifications.on_run_finished)
        services.personal = build_personal(services)
        services.run_listeners.append(services.personal.on_run_finished)
    return services


def spec_policy(settings: Settings) -> Policy:
    """The operator's rules for specs this server accepts (unknown secrets are errors)."""
    from linkloom.flows.models import Policy

    return Policy(
        allowed_hosts=list(settings.security.allowed_hosts),
        require_timeout=settings.security.require_timeouts,
        require_retry=settings.security.require_retries,
        shell_enabled=settings.engine.shell_enabled,
        secret_names=frozenset(settings.secrets),
        unknown_secret="error",
    )


async def purge_runs(settings: Settings, *, database_url: str = "") -> PurgeReport:
    """Delete old finished runs now, as ``settings.retention`` says (``loom db purge``), in the
    settings' database or the one ``database_url`` names."""
    db = database(settings, url=database_url)
    try:
        return await retention(settings, db, SystemClock()).purge()
    finally:
        await db.dispose()


def retention(settings: Settings, db: session.Database, clock: Clock) -> SqlRetention:
    """The retention of ``settings.retention`` on ``db`` (``purge_runs`` and the job use it)."""
    rules = settings.retention
    policy = RetentionPolicy(
        runs_days=rules.runs_days,
        flows=dict(rules.flows),
        batch_size=rules.batch_size,
        pause_seconds=rules.pause_seconds,
        fixture_runs=settings.engine.recent_fixture_runs,
    )
    return SqlRetention(db, clock=clock, policy=policy)


def _pull_service(
    settings: Settings, db: session.Database, runs: RunService, clock: Clock
) -> PullService:
    from linkloom.engine.pull import PullService, TaskQueue
    from linkloom.store.pull import SqlPullStore

    store = SqlPullStore(db)
    return PullService(
        store=store,
        runs=runs,
        queue=TaskQueue(store, clock),
        clock=clock,
        lease_seconds=settings.pull.lease_seconds,
        lost_after=settings.pull.lost_after,
    )


def _subflow_starter(runs: RunService) -> Callable[..., Awaitable[str]]:
    async def start_subflow(
        *,
        flow_id: str,
        inputs: dict[str, Any],
        parent_run_id: str | None = None,
        parent_step_id: str | None = None,
        **_: Any,
    ) -> str:
        run = await runs.trigger(
            flow_id,
            inputs=inputs,
            trigger="subflow",
            parent_run_id=parent_run_id,
            parent_step_id=parent_step_id,
        )
        return run.id

    return start_subflow


def _run_reader(runs: RunService) -> Callable[[str], Awaitable[tuple[str, dict[str, Any]]]]:
    async def read_run(run_id: str) -> tuple[str, dict[str, Any]]:
        run = await runs.get_run(run_id)
        return run.status.value, run.outputs or {}

    return read_run
