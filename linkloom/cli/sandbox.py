"""``loom sandbox``: build the sandbox image and check which backend proposals will use."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from linkloom.cli.apps import sandbox_app
from linkloom.cli.server import free_port_near, port_free
from linkloom.errors import Unavailable
from linkloom.sandbox import DEFAULT_SERVICE_PORT


class SandboxPortInUse(Unavailable):
    """Port {port} on {host} is already in use (another sandbox service, or another program):
    stop it, or serve on another port with --port {other} (or on a socket with --unix PATH)."""

    code = "port_in_use"


def _print(text: str) -> None:
    from rich.console import Console

    Console().print(text)


@sandbox_app.command("build-image")
def build_image(
    tag: Annotated[str | None, typer.Option(help="Image tag (default: sandbox.image).")] = None,
    base_image: Annotated[
        str | None,
        typer.Option(help="Base image with Python (default: sandbox.base_image)."),
    ] = None,
) -> None:
    """Build the sandbox image from linkloom/sandbox/image/Dockerfile (no network needed)."""
    from linkloom.config import load_settings
    from linkloom.sandbox import imagebuild

    settings = load_settings()
    tag = tag or settings.sandbox.image
    base = base_image or settings.sandbox.base_image
    _print(f"building {tag} from {base} …")
    image_id = imagebuild.build_image(tag=tag, base_image=base)
    _print(f"[green]built[/green] {tag} ({image_id[:19]})")


@sandbox_app.command("status")
def status() -> None:
    """Show which sandbox backend proposals would run in, and why."""
    from linkloom.config import load_settings
    from linkloom.sandbox import docker, process

    settings = load_settings()
    engine = docker.docker_available()
    image = engine and docker.image_exists(settings.sandbox.image)
    netns = process.network_namespace_available()
    mountns = process.namespaces_available("-rnm")
    _print(f"configured backend: {settings.sandbox.backend}")
    if settings.sandbox.backend == "remote":
        _print(f"sandbox service: {settings.sandbox.remote_url or 'NOT set (remote_url)'}")
    _print(f"docker engine: {'reachable' if engine else 'not reachable'}")
    _print(f"image {settings.sandbox.image}: {'present' if image else 'missing'}")
    _print(f"process backend network namespace: {'yes' if netns else 'NOT available'}")
    _print(f"process backend read-only filesystem: {'yes' if mountns else 'NOT available'}")


@sandbox_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_SERVICE_PORT,
    unix: Annotated[
        str | None, typer.Option(help="Listen on this Unix socket instead of host:port.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Bundles run at once.", min=1)] = 2,
) -> None:
    """Run the sandbox as a service: the `remote` backend sends it signed bundles over HTTP
    and it runs each in a limited subprocess (the `process` backend). It needs only
    LOOM_SANDBOX__REMOTE_KEY: no database, no signing key."""
    import asyncio

    from linkloom import logs
    from linkloom.config import load_settings
    from linkloom.errors import InvalidInput
    from linkloom.sandbox import backends, service

    settings = load_settings()
    key = settings.sandbox.remote_key.get_secret_value()
    if not key:
        raise InvalidInput(
            "set LOOM_SANDBOX__REMOTE_KEY: the service refuses every bundle not signed with it"
        )
    if not unix and not port_free(host, port):
        raise SandboxPortInUse(host=host, port=port, other=free_port_near(host, port))
    logs.configure(settings)
    sandbox = service.SandboxService(
        runner=backends.process_runner(settings.sandbox), key=key, concurrency=concurrency
    )

    def ready(url: str) -> None:
        _print(f"sandbox service listening on {url}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(service.serve(sandbox, host=host, port=port, unix=unix, ready=ready))
