"""The sandbox bundle: everything one sandbox run needs, as one JSON file.

A bundle is the only input that crosses into the sandbox (mounted read-only into the container,
or handed to the subprocess): the proposed flow spec (canonical dict), the fixture cases and
the run settings. ``write(directory)`` lays it out as ``<directory>/bundle.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linkloom.sandbox import fixtures
from linkloom.sandbox.errors import InvalidBundle
from linkloom.sandbox.replay import DEFAULT_IGNORED_PATHS

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
    """A proposed flow and the cases to run it on."""

    flow: dict[str, Any]  # FlowSpec.model_dump(mode="json")
    cases: tuple[fixtures.FixtureCase, ...] = ()
    settings: BundleSettings = field(default_factory=BundleSettings)
    label: str = ""  # e.g. "proposal 12 revision 3", for logs

    @property
    def flow_id(self) -> str:
        return str(self.flow.get("id", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "flow": self.flow,
            "cases": [c.to_dict() for c in self.cases],
            "settings": self.settings.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxBundle:
        if not isinstance(data, Mapping) or not isinstance(data.get("flow"), Mapping):
            raise InvalidBundle(reason="it needs a 'flow' object")
        return cls(
            flow=dict(data["flow"]),
            cases=tuple(fixtures.FixtureCase.from_dict(c) for c in data.get("cases") or ()),
            settings=BundleSettings.from_dict(data.get("settings") or {}),
            label=str(data.get("label") or ""),
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
