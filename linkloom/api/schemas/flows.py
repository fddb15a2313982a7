"""Flow, version, schedule and trigger shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from linkloom.engine.records import Flow, FlowVersion
from linkloom.flows.spec import FlowSpec

_SPEC_EXAMPLE: dict[str, Any] = {
    "id": "daily-report",
    "name": "Daily report",
    "steps": [
        {"id": "fetch_data", "type": "http", "url": "http://127.0.0.1:8081/api/tasks/fetch-data"}
    ],
}


class FlowSummaryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "daily-report",
                    "version": 3,
                    "name": "Daily report",
                    "description": "Fetch, count, email.",
                    "tags": ["demo"],
                    "paused": False,
                    "updated_at": "2024-05-01T03:00:00Z",
                }
            ]
        }
    )

    id: str
    version: int
    name: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    paused: bool = False
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_domain(cls, flow: Flow, spec: FlowSpec | None = None) -> FlowSummaryOut:
        return cls(
            id=flow.id,
            version=flow.current_version,
            name=flow.name,
            description=getattr(spec, "description", None),
            tags=list(getattr(spec, "tags", None) or []),
            paused=flow.paused,
            created_at=flow.created_at,
            updated_at=flow.updated_at,
        )


class FlowOut(FlowSummaryOut):
    """A flow with the canonical spec of its current version."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "daily-report",
                    "version": 3,
                    "name": "Daily report",
                    "paused": False,
                    "spec": _SPEC_EXAMPLE,
                    "created_at": "2024-04-01T10:00:00Z",
                    "updated_at": "2024-05-01T03:00:00Z",
                }
            ]
        }
    )

    spec: dict[str, Any]

    @classmethod
    def build(cls, flow: Flow, version: FlowVersion, spec: FlowSpec | None) -> FlowOut:
        base = FlowSummaryOut.from_domain(flow, spec)
        return cls(**base.model_dump(), spec=version.spec)


class FlowIn(BaseModel):
    """A spec to apply: a JSON object, or YAML/JSON text (errors then carry line numbers)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"spec": _SPEC_EXAMPLE}, {"spec": "id: x\nsteps: []\n"}]}
    )

    spec: dict[str, Any] | str


class FlowVersionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "flow_id": "daily-report",
                    "version": 4,
                    "created": True,
                    "content_hash": "9f2c…",
                    "source": "apply",
                    "created_by": "ci",
                    "git_commit": None,
                    "created_at": "2024-05-01T03:00:00Z",
                }
            ]
        }
    )

    flow_id: str
    version: int
    created: bool = Field(
        default=True, description="False when the spec equals the current version's."
    )
    content_hash: str
    source: str
    created_by: str | None = None
    git_commit: str | None = None
    created_at: datetime

    @classmethod
    def from_domain(cls, version: FlowVersion, *, created: bool = True) -> FlowVersionOut:
        return cls(
            flow_id=version.flow_id,
            version=version.version,
            created=created,
            content_hash=version.content_hash,
            source=version.source,
            created_by=version.created_by,
            git_commit=version.git_commit,
            created_at=version.created_at,
        )


class FlowVersionDetailOut(FlowVersionOut):
    spec: dict[str, Any]

    @classmethod
    def detail(cls, version: FlowVersion) -> FlowVersionDetailOut:
        return cls(**FlowVersionOut.from_domain(version).model_dump(), spec=version.spec)


class RollbackIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"version": 2}]})

    # bounded: a version beyond a 64-bit database integer is a 422, not a 500 from the store
    version: int = Field(
        ge=1, le=2**31 - 1, description="The earlier version to make current again."
    )


class TriggerIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"inputs": {"count": 5, "to": "ops@example.com"}}]}
    )

    inputs: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(
        default=None, ge=1, description="Run this version instead of the current one."
    )


class ScheduleOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "nightly",
                    "cron": "0 3 * * *",
                    "interval": None,
                    "timezone": "Europe/Kyiv",
                    "enabled": True,
                    "next_fire_times": ["2024-05-02T00:00:00Z"],
                }
            ]
        }
    )

    id: str
    cron: str | None = None
    interval: float | None = None
    timezone: str | None = None
    enabled: bool = True
    next_fire_times: list[datetime] = Field(default_factory=list)


class TriggerOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "github-push",
                    "type": "webhook",
                    "url": "/api/v1/webhooks/daily-report/github-push",
                    "config": {},
                }
            ]
        }
    )

    id: str | None = None
    type: str
    url: str | None = Field(default=None, description="Where to POST a signed webhook.")
    config: dict[str, Any] = Field(default_factory=dict)


class BackfillIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"start": "2024-05-01T00:00:00Z", "end": "2024-05-03T00:00:00Z", "dry_run": True}
            ]
        }
    )

    start: datetime
    end: datetime
    schedule_id: str | None = None
    dry_run: bool = False
    limit: int = Field(default=1000, ge=1, le=10000)


class BackfillOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "fire_times": ["2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"],
                    "created": ["01HX3Z6V4Q8M2T"],
                    "existing": 1,
                    "dry_run": False,
                }
            ]
        }
    )

    fire_times: list[datetime]
    created: list[str] = Field(default_factory=list, description="Ids of the runs created.")
    existing: int = 0
    dry_run: bool = False


class SecretNamesOut(BaseModel):
    """The names of the server's secrets; their values never leave the server."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"names": ["CRM_TOKEN", "OPENAI_API_KEY"]}]}
    )
    names: list[str] = Field(description="Names as templates read them: {{ secrets.NAME }}.")
