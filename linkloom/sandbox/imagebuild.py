"""Building the sandbox image without network access inside ``docker build``.

The build context is prepared here: the Dockerfile from ``sandbox/image/``, a copy of the
``linkloom`` package, and the runtime dependencies (the closure of linkloom's base requirements
plus the few server packages the engine imports) copied from this environment's site-packages.
``python -m linkloom.sandbox.imagebuild --base-image IMAGE --tag TAG`` builds it
(``scripts/provision-docker`` and ``loom sandbox build-image`` call the same function).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import re
import shutil
import sys
import tempfile
from pathlib import Path

import linkloom
from linkloom.sandbox.errors import SandboxUnavailable

DOCKERFILE = Path(__file__).with_name("image") / "Dockerfile"
DEFAULT_TAG = "linkloom/sandbox:latest"
DEFAULT_BASE = "python:3.12-slim"
# Imported by the engine at run time although they are not base requirements.
EXTRA_RUNTIME = ("pydantic-settings", "structlog", "prometheus-client", "httpx-aiohttp")
FINGERPRINT_LABEL = "linkloom.sandbox.fingerprint"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def runtime_distributions(roots: tuple[str, ...] | None = None) -> list[metadata.Distribution]:
    """The installed distributions linkloom needs at run time (requirement closure, no extras)."""
    if roots is None:
        try:
            base = [r for r in metadata.requires("linkloom") or [] if "extra ==" not in r]
        except metadata.PackageNotFoundError:
            base = ["httpx", "pydantic", "pyyaml", "jinja2", "croniter", "tzdata", "jmespath"]
        roots = (*base, *EXTRA_RUNTIME)
    seen: dict[str, metadata.Distribution] = {}
    todo = [r for r in roots]
    while todo:
        requirement = todo.pop()
        if ";" in requirement and "extra ==" in requirement.split(";", 1)[1]:
            continue
        match = _NAME.match(requirement)
        if not match:
            continue
        name = _normalise(match[1])
        if name in seen or name == "linkloom":
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        todo.extend(dist.requires or [])
    return list(seen.values())


def prepare_context(directory: Path) -> Path:
    """Fill ``directory`` with the Dockerfile, the package and the runtime site-packages."""
    shutil.copy(DOCKERFILE, directory / "Dockerfile")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(linkloom.__file__).parent, directory / "linkloom", ignore=ignore)
    site = directory / "site-packages"
    site.mkdir()
    for dist in runtime_distributions():
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            parts = Path(str(file)).parts
            if not source.is_file() or ".." in parts or "__pycache__" in parts:
                continue
            target = site / Path(str(file))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return directory


def fingerprint(base_image: str) -> str:
    """Identifies what an image was built from: base, Dockerfile, runtime package versions."""
    parts = [base_image, DOCKERFILE.read_text(), f"{sys.version_info[0]}.{sys.version_info[1]}"]
    parts += sorted(f"{d.metadata['Name']}=={d.version}" for d in runtime_distributions())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def image_is_current(*, tag: str = DEFAULT_TAG, base_image: str = DEFAULT_BASE) -> bool:
    """Whether ``tag`` exists and was built from this environment's packages."""
    import docker
    import docker.errors

    try:
        client = docker.from_env()
        try:
            labels = client.images.get(tag).labels or {}
        finally:
            client.close()
    except docker.errors.DockerException:
        return False
    return labels.get(FINGERPRINT_LABEL) == fingerprint(base_image)


def build_image(*, tag: str = DEFAULT_TAG, base_image: str = DEFAULT_BASE) -> str:
    """Build the sandbox image; returns its id. Docker errors become ``SandboxUnavailable``."""
    import docker
    import docker.errors

    py_version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    with tempfile.TemporaryDirectory(prefix="loom-image-") as tmp:
        context = prepare_context(Path(tmp))
        try:
            client = docker.from_env()
            image, _logs = client.images.build(
                path=str(context),
                tag=tag,
                buildargs={"BASE_IMAGE": base_image, "PY_VERSION": py_version},
                rm=True,
                forcerm=True,
                network_mode="none",
                labels={FINGERPRINT_LABEL: fingerprint(base_image)},
            )
        except docker.errors.BuildError as exc:
            lines = [
                str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log
            ]
            tail = " ".join(line.strip() for line in lines if line.strip())[-600:]
            raise SandboxUnavailable(
                backend="docker", reason=f"image build failed: {tail}"
            ) from exc
        except docker.errors.DockerException as exc:
            raise SandboxUnavailable(backend="docker", reason=str(exc)) from exc
    return str(image.id)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Link Loom sandbox image.")
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--base-image", default=DEFAULT_BASE)
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="Build only when missing or built from other packages.",
    )
    args = parser.parse_args(argv)
    if args.if_stale and image_is_current(tag=args.tag, base_image=args.base_image):
        print(f"{args.tag} is up to date")
        return 0
    image_id = build_image(tag=args.tag, base_image=args.base_image)
    print(f"built {args.tag} ({image_id[:19]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
