"""Step-type plugins: executors that installed packages register under the ``linkloom.steps``
entry point group.

A plugin's entry point names an executor class with a ``type_name`` (the spec's ``type:``) and a
``config_model``: a pydantic model subclassing ``flows.spec.StepBase`` whose ``type`` field is
``Literal[type_name]``. Discovery runs once, when ``linkloom.flows.spec`` is first imported: the
spec hands its step model over (``attach``), and each good plugin's model is added to the spec's
step union in place, so validation, ``loom schema``, the API and the UI see the new type. This
module never imports the spec, so the dependency points one way. A plugin that fails to import
or is malformed is recorded with its error (``loom plugins`` shows it) and never takes anything
else down.

    [project.entry-points."linkloom.steps"]
    hash = "loom_hash_step:HashExecutor"
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import sys
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from linkloom.flows.spec import StepBase

# The standard library's logging, not structlog: this module is part of the base install (the
# CLI validates specs with it), which has no structlog. ``logs.configure`` routes these records
# into the server's structured log.
log = logging.getLogger(__name__)

GROUP = "linkloom.steps"
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class StepPlugin:
    """A plugin that loaded: its entry point, package and the step type it adds."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    type_name: str
    executor: type
    config_model: type[StepBase]
    summary: str


@dataclass(frozen=True, slots=True)
class FailedPlugin:
    """A plugin that could not be used, and why."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    error: str


@dataclass(frozen=True, slots=True)
class PluginReport:
    loaded: tuple[StepPlugin, ...] = ()
    failed: tuple[FailedPlugin, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StepModel:
    """The spec's step model, which plugins extend (``flows.spec`` attaches it)."""

    base: type[StepBase]  # every plugin's config_model subclasses it
    builtin: Collection[str]  # the built-in step types, which no plugin may take
    install: Callable[[dict[str, type[StepBase]]], None]  # adds models to the step union


_model: StepModel | None = None
_report: PluginReport | None = None


def attach(model: StepModel) -> PluginReport:
    """Discover the plugins into the spec's step model (``flows.spec`` calls this once, when it
    is first imported; ``discover`` finds them again into the same model)."""
    global _model
    _model = model
    return discover()


def report() -> PluginReport:
    """The plugins found when the spec model was first imported (import ``flows.spec`` first)."""
    if _report is None:
        raise RuntimeError("no plugins discovered yet: import linkloom.flows.spec first")
    return _report


def discover(*, entry_points: Any = None) -> PluginReport:
    """Load every ``linkloom.steps`` entry point and add the good ones to the spec model.

    ``entry_points`` (tests) replaces the installed ones. Never raises for a bad plugin.
    """
    global _report
    target = _model
    if target is None:
        raise RuntimeError("no step model to extend yet: import linkloom.flows.spec first")
    found = list(entry_points) if entry_points is not None else _installed()
    loaded: list[StepPlugin] = []
    failed: list[FailedPlugin] = []
    models: dict[str, type[StepBase]] = {}
    for ep in found:
        dist = getattr(ep, "dist", None)
        dist_name = getattr(dist, "name", None) if dist is not None else None
        dist_version = getattr(dist, "version", None) if dist is not None else None
        try:
            executor = ep.load()
            type_name, model = _check(executor, target, taken=models)
        except Exception as exc:  # a plugin's import may raise anything
            error = f"{type(exc).__name__}: {exc}"
            failed.append(FailedPlugin(ep.name, ep.value, dist_name, dist_version, error))
            log.warning("step_plugin_failed: %s (%s): %s", ep.name, ep.value, error)
            continue
        models[type_name] = model
        summary = ((model.__doc__ or executor.__doc__ or "").strip().splitlines() or [""])[0]
        loaded.append(
            StepPlugin(
                name=ep.name,
                value=ep.value,
                distribution=dist_name,
                version=dist_version,
                type_name=type_name,
                executor=executor,
                config_model=model,
                summary=summary,
            )
        )
    target.install(models)
    _report = PluginReport(loaded=tuple(loaded), failed=tuple(failed))
    return _report


def executors() -> dict[str, Any]:
    """One instance of every loaded plugin's executor, by step type (skipping any whose
    constructor fails: it is logged, the others still run)."""
    out: dict[str, Any] = {}
    for plugin in report().loaded:
        try:
            out[plugin.type_name] = plugin.executor()
        except Exception as exc:
            log.warning("step_plugin_failed: %s: %r", plugin.name, exc)
    return out


def _installed() -> list[Any]:
    """The ``linkloom.steps`` entry points of the distributions on ``sys.path``.

    A direct scan of ``*.dist-info/entry_points.txt`` (~30 ms) instead of
    ``importlib.metadata.entry_points()``, which parses every distribution's metadata (0.3 s
    and more) and would slow every ``loom`` command down.
    """
    found: list[Any] = []
    seen: set[str] = set()
    for folder in sys.path:
        try:
            entries = list(os.scandir(folder or "."))
        except OSError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if f"[{GROUP}]" not in text:
                continue
            stem = entry.name.rsplit(".", 1)[0]
            dist, _, version = stem.partition("-")
            dist = dist.replace("_", "-")
            if dist in seen:  # an earlier sys.path entry shadows this one
                continue
            seen.add(dist)
            for name, value in _section(text, GROUP):
                ep = importlib.metadata.EntryPoint(name=name, value=value, group=GROUP)
                found.append(_Found(ep, dist, version or None))
    return found


def _section(text: str, group: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            inside = line == f"[{group}]"
            continue
        if inside and "=" in line:
            name, value = line.split("=", 1)
            out.append((name.strip(), value.strip()))
    return out


@dataclass(frozen=True, slots=True)
class _Found:
    entry_point: Any
    dist_name: str
    dist_version: str | None

    @property
    def name(self) -> str:
        return str(self.entry_point.name)

    @property
    def value(self) -> str:
        return str(self.entry_point.value)

    @property
    def dist(self) -> _Dist:
        return _Dist(self.dist_name, self.dist_version)

    def load(self) -> Any:
        return self.entry_point.load()


@dataclass(frozen=True, slots=True)
class _Dist:
    name: str
    version: str | None


def _check(
    executor: Any, target: StepModel, *, taken: dict[str, type[StepBase]]
) -> tuple[str, type[StepBase]]:
    type_name = getattr(executor, "type_name", None)
    if not isinstance(type_name, str) or not _TYPE_NAME.match(type_name):
        raise ValueError("the executor needs a 'type_name' like 'hash' (lowercase slug)")
    if type_name in target.builtin:
        raise ValueError(f"step type {type_name!r} is built in; choose another type_name")
    if type_name in taken:
        raise ValueError(f"step type {type_name!r} is already added by another plugin")
    if not callable(getattr(executor, "execute", None)):
        raise ValueError("the executor needs an 'async execute(ctx)' method")
    model = getattr(executor, "config_model", None)
    if not isinstance(model, type) or not issubclass(model, target.base):
        raise ValueError("'config_model' must be a pydantic model subclassing flows.spec.StepBase")
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    if args != (type_name,):
        raise ValueError(f"config_model needs the field  type: Literal[{type_name!r}]")
    return type_name, model


def without_plugins(schema: dict[str, Any]) -> dict[str, Any]:
    """The flow JSON Schema with the plugins' step types taken out (the builtin schema that
    ``docs/flow.schema.json`` holds). Plugin models must not share names with builtin ones."""
    names = {p.config_model.__name__ for p in report().loaded}
    types = {p.type_name for p in report().loaded}
    if not names:
        return schema
    out = dict(schema)
    out["$defs"] = {k: v for k, v in schema.get("$defs", {}).items() if k not in names}
    steps = dict(out["properties"]["steps"])
    items = dict(steps["items"])
    items["oneOf"] = [r for r in items["oneOf"] if r["$ref"].rsplit("/", 1)[-1] not in names]
    mapping = {k: v for k, v in items["discriminator"]["mapping"].items() if k not in types}
    items["discriminator"] = {**items["discriminator"], "mapping": mapping}
    steps["items"] = items
    out["properties"] = {**out["properties"], "steps": steps}
    return out
