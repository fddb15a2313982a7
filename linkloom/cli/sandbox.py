"""``loom sandbox``: build the sandbox image and check which backend proposals will use."""

from __future__ import annotations

from typing import Annotated

import typer

from linkloom.cli.apps import sandbox_app


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
    _print(f"docker engine: {'reachable' if engine else 'not reachable'}")
    _print(f"image {settings.sandbox.image}: {'present' if image else 'missing'}")
    _print(f"process backend network namespace: {'yes' if netns else 'NOT available'}")
    _print(f"process backend read-only filesystem: {'yes' if mountns else 'NOT available'}")
