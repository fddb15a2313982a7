"""``loom server``, ``loom worker`` and ``loom demo``: the processes.

* ``loom server``: API + scheduler + workers in one process (uvicorn), on the embedded SQLite
  default (migrated on start) or PostgreSQL. On first start (no active token) it creates an
  ``admin`` token, prints it once and stores it in the local CLI config, so ``loom …`` works
  at once on this machine. With ``server.auth`` off it refuses any non-loopback address.
* ``loom worker``: step workers only, against the shared database; run any number.
* ``loom demo``: ``loom server`` plus the example flows repo (``examples/flows``, created when
  missing and synced into flow versions) and the example user backend on 127.0.0.1:8081 as a
  child process. ``./scripts/start`` runs it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from linkloom.cli.apps import app, worker_app
from linkloom.cli.settings import cli_config, save_cli_config
from linkloom.errors import InvalidInput, Unavailable

# These commands need the server extra; its modules are imported inside them, so that
# ``loom --help`` and the client commands start fast and run on the base install.
if TYPE_CHECKING:
    from linkloom import config, wiring

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FLOWS = REPO_ROOT / "examples" / "flows"
EXAMPLE_BACKEND_PORT = 8081


class PortInUse(Unavailable):
    """Port {port} on {host} is already in use (another Link Loom, or another program): stop it,
    or start on another port with --port {other} (or LOOM_SERVER__PORT={other})."""

    code = "port_in_use"


class BackendPortInUse(Unavailable):
    """Port {port} on 127.0.0.1, where the example flows call the example backend, is already in
    use (another ./scripts/start?): stop it, or start without the backend (--no-backend)."""

    code = "backend_port_in_use"


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (checked before anything starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port_near(host: str, port: int) -> int:
    """A port to suggest instead of ``port``: the first free one of port+10, port+20, …"""
    return next((p for p in range(port + 10, port + 110, 10) if port_free(host, p)), port + 10)


def check_port(settings: config.Settings) -> None:
    """Raise ``PortInUse``, naming a free port to use instead, when the server's is taken."""
    host, port = settings.server.host, settings.server.port
    if port and not port_free(host, port):
        raise PortInUse(host=host, port=port, other=free_port_near(host, port))


class UnsafeBind(InvalidInput):
    """Refusing to listen on {host} with authentication off: anyone on the network could run
    flows. Turn auth on (LOOM_SERVER__AUTH=true) or bind 127.0.0.1."""

    code = "unsafe_bind"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: config.Settings) -> None:
    """Raise ``UnsafeBind`` when auth is off and the address is reachable from elsewhere."""
    if not settings.server.auth and not is_loopback(settings.server.host):
        raise UnsafeBind(host=settings.server.host)


def local_url(settings: config.Settings) -> str:
    """The URL this machine's CLI uses to reach the server."""
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.server.port}"


async def bootstrap_admin(services: wiring.Services) -> str | None:
    """Create the first admin token when there is no active token; return its secret."""
    from linkloom.access import Role

    tokens = services.tokens
    if not services.settings.server.auth or await tokens.count_active() > 0:
        return None
    secret, _token = await tokens.create(
        name="admin", role=Role.admin, now=services.runs.clock.now()
    )
    return secret


def _settings(host: str | None, port: int | None, **server: Any) -> config.Settings:
    from linkloom import config

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, **server}.items() if v is not None
    }
    return config.load_settings(server=overrides) if overrides else config.load_settings()


@app.command("server")
def server(
    host: Annotated[str | None, typer.Option(help="Address to bind (LOOM_SERVER__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (LOOM_SERVER__PORT).")] = None,
    workers: Annotated[
        bool | None, typer.Option("--workers/--no-workers", help="Run step workers here.")
    ] = None,
    scheduler: Annotated[
        bool | None, typer.Option("--scheduler/--no-scheduler", help="Run the scheduler here.")
    ] = None,
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate",
            help="Apply database migrations first (what 'loom db upgrade' does; SQLite always).",
        ),
    ] = False,
) -> None:
    """Run the API, the scheduler and the workers in one process."""
    import asyncio

    from linkloom import logs, tracing

    settings = _settings(host, port, run_workers=workers, run_scheduler=scheduler)
    check_bind(settings)
    check_port(settings)
    logs.configure(settings)
    tracing.configure(settings)  # the API serves /metrics itself
    _exit_cleanly_on_sigterm()
    asyncio.run(serve(settings, migrate=migrate))


@app.command("demo")
def demo(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    backend: Annotated[
        bool, typer.Option("--backend/--no-backend", help="Start the example backend.")
    ] = True,
) -> None:
    """The server with the example flows and the example user backend (what scripts/start runs)."""
    import asyncio

    from linkloom import logs

    settings = _settings(host, port)
    check_bind(settings)
    check_port(settings)
    if backend and not port_free("127.0.0.1", EXAMPLE_BACKEND_PORT):
        raise BackendPortInUse(port=EXAMPLE_BACKEND_PORT)
    logs.configure(settings)
    child = _start_example_backend(settings) if backend else None
    _exit_cleanly_on_sigterm()
    try:
        asyncio.run(serve(settings, demo=True))
    finally:
        if child is not None:
            child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)


def _exit_cleanly_on_sigterm() -> None:
    """uvicorn shuts down gracefully on SIGTERM, then raises it again: exit with status 0
    (running ``finally`` blocks, e.g. stopping the demo's backend) instead of dying by it."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


@worker_app.callback(invoke_without_command=True)
def worker(ctx: typer.Context) -> None:
    """Run step workers only, against the shared database (any number of them at once).
    'loom worker list' lists the pull-mode workers instead."""
    import asyncio

    if ctx.invoked_subcommand is not None:
        return
    from linkloom import config, logs

    settings = config.load_settings()
    logs.configure(settings)
    observe(settings)
    asyncio.run(_work(settings))


def observe(settings: config.Settings) -> None:
    """For processes without the API (``loom worker``, ``loom scheduler``): start tracing when
    enabled and serve ``/metrics`` on ``metrics.port`` when set (each process has its own
    counters; Prometheus scrapes every one)."""
    from linkloom import metrics, tracing

    tracing.configure(settings)
    if settings.metrics.enabled and settings.metrics.port:
        metrics.start_exporter(settings.metrics.port)


async def serve(settings: config.Settings, *, demo: bool = False, migrate: bool = False) -> None:
    import uvicorn

    from linkloom import wiring
    from linkloom.api.app import create_app
    from linkloom.store import session

    sqlite = session.is_sqlite(settings.database_url)
    await session.require_current(settings.database_url, migrate=migrate or sqlite)
    services = wiring.build_services(settings)
    secret = await bootstrap_admin(services)
    url = local_url(settings)
    if demo:
        await sync_example_flows(services)
    _announce(url, secret, settings, demo=demo)
    app = create_app(settings, services)
    config_ = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    await uvicorn.Server(config_).serve()


def _announce(url: str, secret: str | None, settings: config.Settings, *, demo: bool) -> None:
    lines = [
        f"Link Loom is listening on {url}  (API docs: {url}/docs)",
        f"Its data (database, flows repo) is in {settings.home}: LOOM_HOME chooses another,"
        " e.g. one per checkout.",
    ]
    if secret is not None:
        path = save_cli_config(server_url=url, token=secret)
        lines += [
            "",
            "First start: an admin token was created. It is shown only this once:",
            f"    {secret}",
            f"It is stored in {path}, so 'loom …' on this machine works as admin.",
        ]
    elif not settings.server.auth:
        lines.append("Authentication is OFF (loopback only).")
    else:
        known = cli_config()
        if known.server_url == url and known.token and demo:
            # The demo shows its admin token each time (from this user's own CLI config).
            lines.append(f"Admin token (from the CLI config): {known.token}")
        elif known.server_url == url and known.token:
            lines.append(
                "The CLI on this machine uses the token in its config ('loom config get token')."
            )
        else:
            lines.append(
                "Create a token on this host with: loom token create --local --name me --role admin"
            )
    typer.echo("\n".join(lines), err=True)


async def sync_example_flows(services: wiring.Services) -> int:
    """Create the flows repo from ``examples/flows`` when missing; apply its flows as versions."""
    import asyncio

    import structlog

    from linkloom.flows import loading
    from linkloom.flows.gitstore import FlowsRepo

    repo = FlowsRepo(services.settings.flows_repo)
    seed = services.settings.flows.seed_from or (
        str(EXAMPLE_FLOWS) if EXAMPLE_FLOWS.is_dir() else None
    )
    await asyncio.to_thread(repo.init, seed_from=seed)
    files = await asyncio.to_thread(repo.read_main)
    applied = 0
    for flow_file in files.values():
        spec = loading.load_flow(flow_file.text, filename=flow_file.path)
        await services.runs.apply_flow(
            spec, source="sync", actor="demo", git_commit=flow_file.commit
        )
        applied += 1
    structlog.get_logger(__name__).info("flows_synced", repo=str(repo.path), flows=applied)
    return applied


def _start_example_backend(settings: config.Settings) -> subprocess.Popen[bytes] | None:
    if not (REPO_ROOT / "examples" / "backend").is_dir():
        typer.echo(
            "The example backend is not here (examples/backend); starting without it.", err=True
        )
        return None
    env = {
        **os.environ,
        "LOOM_SECURITY__SIGNING_KEY": settings.security.signing_key.get_secret_value(),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "examples.backend", "--port", str(EXAMPLE_BACKEND_PORT)],
        cwd=REPO_ROOT,
        env=env,
    )
    typer.echo(f"Example backend starting on http://127.0.0.1:{EXAMPLE_BACKEND_PORT}", err=True)
    return child


async def _work(settings: config.Settings) -> None:
    import asyncio

    from linkloom import wiring
    from linkloom.store import session

    sqlite = session.is_sqlite(settings.database_url)
    await session.require_current(settings.database_url, migrate=sqlite)
    services = wiring.build_services(settings)
    await services.start(worker=True, migrate=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    typer.echo(
        f"worker running against {session.normalize_url(settings.database_url).split('@')[-1]}",
        err=True,
    )
    try:
        await stop.wait()
    finally:
        await services.stop()
