"""Typed results of the API client: frozen dataclasses read from the server's JSON.

Parsing is tolerant: unknown fields are ignored (kept in ``raw``), so a newer server does not
break an older SDK. The field names expected from the server are listed in docs/sdk.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_RUN_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowSummary:
    id: str
    version: int | None = None
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    updated_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowSummary:
        return cls(
            id=str(data.get("id") or data.get("flow_id")),
            version=_int(data.get("version") if "version" in data else data.get("latest_version")),
            name=data.get("name"),
            description=data.get("description"),
            tags=tuple(data.get("tags") or ()),
            updated_at=_time(data.get("updated_at") or data.get("created_at")),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Flow:
    """A flow with the spec of its current version."""

    id: str
    version: int | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Flow:
        data = _unwrap(data, "flow")
        spec = _dict(data.get("spec"))
        return cls(
            id=str(data.get("id") or data.get("flow_id") or spec.get("id")),
            version=_int(data.get("version")),
            spec=spec,
            name=data.get("name") or spec.get("name"),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowVersion:
    """What ``PUT /flows/{id}`` answers: the version the spec became."""

    flow_id: str
    version: int | None
    created: bool = True  # False when the spec was identical to the current version
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowVersion:
        data = _unwrap(data, "version") if isinstance(data.get("version"), dict) else data
        return cls(
            flow_id=str(data.get("flow_id") or data.get("id")),
            version=_int(data.get("version")),
            created=bool(data.get("created", True)),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRun:
    step_id: str
    status: str
    attempt: int | None = None
    output: Any = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: Any = None
    logs: tuple[str, ...] = ()
    index: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRun:
        return cls(
            step_id=str(data.get("step_id") or data.get("id")),
            status=str(data.get("status", "")),
            attempt=_int(data.get("attempt") or data.get("attempts")),
            output=data.get("output"),
            outputs=dict(data.get("outputs") or {}),
            error=data.get("error"),
            logs=_log_lines(data.get("logs")),
            index=_int(data.get("index")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    flow_id: str
    status: str
    flow_version: int | None = None
    trigger: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: Any = None
    error: Any = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: tuple[StepRun, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the run can change no more (SUCCEEDED, FAILED or CANCELLED)."""
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def step(self, step_id: str) -> StepRun:
        """The step run with this id (the first item for a fan-out step)."""
        for step in self.steps:
            if step.step_id == step_id:
                return step
        raise KeyError(f"run {self.id} has no step {step_id!r}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        data = _unwrap(data, "run")
        steps = data.get("steps") or []
        if isinstance(steps, dict):  # {step_id: {...}} is accepted too
            steps = [{"step_id": key, **value} for key, value in steps.items()]
        return cls(
            id=str(data.get("id") or data.get("run_id")),
            flow_id=str(data.get("flow_id") or data.get("flow")),
            status=str(data.get("status", "")),
            flow_version=_int(data.get("flow_version") or data.get("version")),
            trigger=data.get("trigger"),
            inputs=dict(data.get("inputs") or {}),
            outputs=data.get("outputs"),
            error=data.get("error"),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            steps=tuple(StepRun.from_json(step) for step in steps if isinstance(step, dict)),
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPage:
    items: tuple[Run, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One entry of a run's event stream: status changes, step starts and ends, log lines."""

    id: int | str | None
    type: str
    run_id: str | None = None
    step_id: str | None = None
    at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        payload = data.get("data")
        return cls(
            id=data.get("id") if data.get("id") is not None else data.get("seq"),
            type=str(data.get("type") or data.get("kind") or ""),
            run_id=data.get("run_id"),
            step_id=data.get("step_id"),
            at=_time(data.get("at") or data.get("created_at") or data.get("time")),
            data=payload if isinstance(payload, dict) else {},
            raw=data,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    id: str
    title: str
    status: str
    flow_ids: tuple[str, ...] = ()
    author: str | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proposal:
        data = _unwrap(data, "proposal")
        flows = data.get("flow_ids") or data.get("flows") or ()
        return cls(
            id=str(data.get("id") or data.get("proposal_id")),
            title=str(data.get("title", "")),
            status=str(data.get("status", "")),
            flow_ids=tuple(str(f) if not isinstance(f, dict) else str(f.get("id")) for f in flows),
            author=data.get("author"),
            created_at=_time(data.get("created_at")),
            raw=data,
        )


def _unwrap(data: dict[str, Any], key: str) -> dict[str, Any]:
    """Accept ``{"run": {...}, ...}`` as well as the object itself."""
    inner = data.get(key)
    if "id" not in data and isinstance(inner, dict):
        return {**{k: v for k, v in data.items() if k != key}, **inner}
    return data


def _dict(value: Any) -> dict[str, Any]:
    """``value`` when the JSON held an object there, else an empty dict."""
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _log_lines(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.splitlines())
    lines = []
    for line in value:
        lines.append(line.get("message", str(line)) if isinstance(line, dict) else str(line))
    return tuple(lines)
