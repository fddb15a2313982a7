"""The sandbox bundle: everything one sandbox run needs, as one JSON file.

A bundle is the only input that crosses into the sandbox (mounted read-only into the container,
or handed to the subprocess): the proposed flow spec, the current production spec (replayed on
the same cases, so the diff compares two replays), the specs of older versions that recorded
cases (to check that a recording reproduces), the proposal's stubs, the fixture cases and the run
settings. ``write(directory)`` lays it out as ``<directory>/bundle.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linkloom.sandbox import fixtures, stubs
from linkloom.sandbox.errors import InvalidBundle
from linkloom.sandbox.replay import DEFAULT_IGNORED_PATHS
from linkloom.sandbox.runner import PRODUCTION, PROPOSED, RECORDED

BUNDLE_FILE = "bundle.json"
# The engine that runs each case: "module:attribute" of a ``CaseEngine`` (see runner.py).
DEFAULT_ENGINE = "linkloom.sandbox.inprocess:EngineCaseEngine"


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleSettings:
    """How cases run inside the sandbox."""

    case_timeout: float = 30.0  # seconds per case, enforced by the in-sandbox runner
    shell_enabled: bool = False
    ignore_paths: tuple[str, ...] = DEFAULT_IGNORED_PATHS
    max_response_bytes: int = 10_000_000
    engine: str = DEFAULT_ENGINE
    # A request whose body matches no recording: "fail" the step (unrecorded request), or
    # "replay" the endpoint's recording and report the request as changed.
    on_body_mismatch: str = "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_timeout": self.case_timeout,
            "shell_enabled": self.shell_enabled,
            "ignore_paths": list(self.ignore_paths),
            "max_response_bytes": self.max_response_bytes,
            "engine": self.engine,
            "on_body_mismatch": self.on_body_mismatch,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BundleSettings:
        return cls(
            case_timeout=float(data.get("case_timeout", 30.0)),
            shell_enabled=bool(data.get("shell_enabled", False)),
            ignore_paths=tuple(data.get("ignore_paths") or DEFAULT_IGNORED_PATHS),
            max_response_bytes=int(data.get("max_response_bytes", 10_000_000)),
            engine=str(data.get("engine") or DEFAULT_ENGINE),
            on_body_mismatch=str(data.get("on_body_mismatch") or "fail"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxBundle:
    """A proposed flow, the production flow it replaces, and the cases to run both on."""

    flow: dict[str, Any]  # the proposed spec, FlowSpec.model_dump(mode="json")
    cases: tuple[fixtures.FixtureCase, ...] = ()
    settings: BundleSettings = field(default_factory=BundleSettings)
    label: str = ""  # e.g. "proposal 12 revision 3", for logs
    production: dict[str, Any] | None = None  # the current production spec (None: a new flow)
    production_version: int | None = None
    # Specs of the versions that recorded cases, where production has moved since.
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    stubs: tuple[stubs.Stub, ...] = ()  # the proposal's flow-wide stubs

    @property
    def flow_id(self) -> str:
        return str(self.flow.get("id", ""))

    def sides(self, case: fixtures.FixtureCase) -> list[tuple[str, dict[str, Any]]]:
        """``(side, spec)`` of every run a case needs: proposed, production, recorded."""
        out = [(PROPOSED, self.flow)]
        if self.production is not None:
            out.append((PRODUCTION, self.production))
        version = case.version
        if version is not None and version != self.production_version and version in self.versions:
            out.append((RECORDED, self.versions[version]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "flow": self.flow,
            "production": self.production,
            "production_version": self.production_version,
            "versions": {str(v): spec for v, spec in self.versions.items()},
            "stubs": [s.to_dict() for s in self.stubs],
            "cases": [c.to_dict() for c in self.cases],
            "settings": self.settings.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxBundle:
        if not isinstance(data, Mapping) or not isinstance(data.get("flow"), Mapping):
            raise InvalidBundle(reason="it needs a 'flow' object")
        production = data.get("production")
        version = data.get("production_version")
        try:
            versions = {int(v): dict(spec) for v, spec in (data.get("versions") or {}).items()}
        except (TypeError, ValueError) as exc:
            raise InvalidBundle(
                reason=f"'versions' must map version numbers to specs: {exc}"
            ) from exc
        return cls(
            flow=dict(data["flow"]),
            cases=tuple(fixtures.FixtureCase.from_dict(c) for c in data.get("cases") or ()),
            settings=BundleSettings.from_dict(data.get("settings") or {}),
            label=str(data.get("label") or ""),
            production=dict(production) if isinstance(production, Mapping) else None,
            production_version=version if isinstance(version, int) else None,
            versions=versions,
            stubs=stubs.parse_list(data.get("stubs"), where="bundle"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str)

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / BUNDLE_FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, directory: Path) -> SandboxBundle:
        path = directory / BUNDLE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise InvalidBundle(reason=f"{path} does not exist") from exc
        except ValueError as exc:
            raise InvalidBundle(reason=f"{path} is not JSON: {exc}") from exc
        return cls.from_dict(data)
