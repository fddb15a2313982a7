"""What ``loom`` loads before any command runs, and what it says when an extra is missing.

Start-up time itself is measured in ``bench/bench_cli.py``; these tests pin the property that
makes it small and keeps the base install (``pip install linkloom``) working.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from linkloom.cli.main import EXTRA_OF_MODULE, ExtraNotInstalled, missing_extra

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Distribution name in pyproject.toml → the top-level module it installs.
MODULE_OF_DISTRIBUTION = {
    "gitpython": "git",
    "psycopg": "psycopg",
    "pydantic-settings": "pydantic_settings",
    "httpx-aiohttp": "httpx_aiohttp",
    "prometheus-client": "prometheus_client",
    "sse-starlette": "sse_starlette",
    "python-multipart": "multipart",
    "opentelemetry-api": "opentelemetry",
    "opentelemetry-sdk": "opentelemetry",
    "opentelemetry-exporter-otlp-proto-http": "opentelemetry",
}


def modules_after(code: str) -> set[str]:
    """The top-level modules loaded by a fresh interpreter after running ``code``."""
    listing = "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    probe = f"{code}\nimport sys\n{listing}"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(out.stdout.split())


def own_modules_after(code: str) -> list[str]:
    """The ``linkloom`` modules a fresh interpreter has loaded after running ``code``."""
    listing = "print('\\n'.join(m for m in sys.modules if m.startswith('linkloom')))"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\n{listing}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return out.stdout.split()


def distribution_names(extra: str) -> list[str]:
    names = []
    for requirement in PYPROJECT["project"]["optional-dependencies"][extra]:
        name = requirement.split(";")[0].strip()
        for stop in "[<>=!~ ":
            name = name.split(stop)[0]
        names.append(name.lower())
    return names


def test_importing_the_cli_loads_no_server_package() -> None:
    loaded = modules_after("import linkloom.cli.main")
    assert loaded.isdisjoint({"sqlalchemy", "fastapi", "docker", "git"})
    assert loaded.isdisjoint(EXTRA_OF_MODULE), loaded & set(EXTRA_OF_MODULE)


def test_importing_the_cli_loads_none_of_what_only_some_commands_need() -> None:
    """``loom --help`` pays for Typer and nothing else: HTTP, Rich, pydantic, YAML, asyncio and
    the spec model are imported by the commands that use them."""
    loaded = modules_after("import linkloom.cli.main")
    heavy = {"httpx", "rich", "pydantic", "yaml", "asyncio", "jinja2", "croniter", "deepdiff"}
    assert loaded.isdisjoint(heavy), loaded & heavy
    ours = own_modules_after("import linkloom.cli.main")
    assert not [m for m in ours if m.startswith(("linkloom.flows", "linkloom.sdk"))]


def test_the_token_store_of_loom_token_local_loads_no_engine_nor_api() -> None:
    """``loom token … --local`` asks ``wiring`` for the token store alone: settings, SQLAlchemy
    and the migrations, not the engine (aiohttp, httpx), the API or git, which only
    ``build_services`` needs. ``tests/integration/ops/test_cli_token_local.py`` runs the command."""
    probe = "from linkloom.cli import tokens\nfrom linkloom import wiring\nwiring.token_store"
    loaded = modules_after(probe)
    assert "sqlalchemy" in loaded
    server = {"aiohttp", "httpx", "fastapi", "starlette", "git", "jinja2"}
    assert loaded.isdisjoint(server), loaded & server
    ours = own_modules_after(probe)
    assert not [m for m in ours if m.startswith(("linkloom.engine", "linkloom.wiring.services"))]


def test_every_package_of_the_server_and_tracing_extras_is_known_to_the_cli() -> None:
    """A dependency added to an extra must be named here, or a base install would crash on it
    with a traceback instead of 'pip install linkloom[server]'."""
    for extra in ("server", "tracing"):
        for name in distribution_names(extra):
            module = MODULE_OF_DISTRIBUTION.get(name, name.replace("-", "_"))
            assert EXTRA_OF_MODULE.get(module) == extra, f"{name} ({module}) of [{extra}]"


def test_the_base_install_contract_forbids_every_extra_package() -> None:
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    (base,) = [c for c in contracts if c["name"].startswith("The base install")]
    assert set(base["forbidden_modules"]) == set(EXTRA_OF_MODULE)
    assert set(base["source_modules"]) == {"linkloom.cli", "linkloom.sdk"}


def test_base_dependencies_stay_out_of_the_extras_map() -> None:
    base = {MODULE_OF_DISTRIBUTION.get(n, n) for n in ["httpx", "pydantic", "typer", "rich"]}
    assert base.isdisjoint(EXTRA_OF_MODULE)


@pytest.mark.parametrize(
    ("missing", "extra"),
    [("sqlalchemy.ext.asyncio", "server"), ("structlog", "server"), ("opentelemetry", "tracing")],
)
def test_a_missing_extra_package_names_the_extra_to_install(missing: str, extra: str) -> None:
    error = missing_extra(ModuleNotFoundError(name=missing), "server")
    assert isinstance(error, ExtraNotInstalled)
    assert error.exit_code == 6
    assert error.message == (
        f"'loom server' needs the '{extra}' extra, which is not installed "
        f"(no module '{missing.split('.')[0]}'): pip install 'linkloom[{extra}]'."
    )


def test_a_missing_module_of_no_extra_is_not_explained_away() -> None:
    assert missing_extra(ModuleNotFoundError(name="linkloom.nothing"), "flow list") is None
