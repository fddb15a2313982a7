"""Notification channel, rule and delivery shapes. Channel secrets go in, never out: a channel
answers ``secrets`` masked (``"****abcd"``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from linkloom.notifications.models import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryAttempt,
    EventKind,
    Rule,
)

_CHANNEL_EXAMPLE: dict[str, Any] = {
    "id": "ch_1a2b3c4d5e6f",
    "name": "ops-slack",
    "kind": "slack",
    "config": {},
    "secrets": {"url": "****XXXX"},
    "enabled": True,
    "created_at": "2024-05-01T03:00:00Z",
    "updated_at": "2024-05-01T03:00:00Z",
}
_RULE_EXAMPLE: dict[str, Any] = {
    "id": "rule_1a2b3c4d5e6f",
    "name": "daily-report health",
    "flow_id": "daily-report",
    "events": ["run_failed", "run_recovered"],
    "channels": ["ch_1a2b3c4d5e6f"],
    "quiet_seconds": 600,
    "sla_seconds": None,
    "enabled": True,
    "created_at": "2024-05-01T03:00:00Z",
    "updated_at": "2024-05-01T03:00:00Z",
}
_DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "dlv_1a2b3c4d5e6f",
    "channel_id": "ch_1a2b3c4d5e6f",
    "rule_id": "rule_1a2b3c4d5e6f",
    "kind": "run_failed",
    "key": "run_failed:01HX3Z6V4Q8M2T",
    "subject": "[loom] daily-report failed",
    "text": "daily-report run 01HX3Z6V4Q8M2T failed: step 'send_email' failed: HTTP 503",
    "link": "https://loom.example.com/runs/01HX3Z6V4Q8M2T",
    "flow_id": "daily-report",
    "run_id": "01HX3Z6V4Q8M2T",
    "proposal_id": None,
    "status": "sent",
    "attempts": 1,
    "max_attempts": 6,
    "next_attempt_at": "2024-05-01T03:00:02Z",
    "last_error": None,
    "created_at": "2024-05-01T03:00:02Z",
    "sent_at": "2024-05-01T03:00:02Z",
}
_ATTEMPT_EXAMPLE: dict[str, Any] = {
    "number": 1,
    "ok": False,
    "status_code": 503,
    "error": "HTTP 503: upstream unavailable",
    "duration_ms": 12.5,
    "at": "2024-05-01T03:00:02Z",
}

_CONFIG_DOC = (
    "Non-secret settings. webhook: `url`, `headers`; slack: none; email: `host`, `port`, "
    "`security` (none|starttls|tls), `username`, `from`, `to` (list)."
)
_SECRETS_DOC = (
    "webhook: `secret` (HMAC key; default: the server's signing key); slack: `url` (the "
    "incoming-webhook URL); email: `password`. Never answered back unmasked."
)


class ChannelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "ops-slack",
                    "kind": "slack",
                    "secrets": {"url": "https://hooks.slack.com/services/T0/B0/XXXX"},
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    kind: ChannelKind
    config: dict[str, Any] = Field(default_factory=dict, description=_CONFIG_DOC)
    secrets: dict[str, str] = Field(default_factory=dict, description=_SECRETS_DOC)
    enabled: bool = True


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, Any] | None = Field(default=None, description=_CONFIG_DOC)
    secrets: dict[str, str | None] | None = Field(
        default=None,
        description="A value replaces the stored secret, null removes it, an absent key keeps it.",
    )
    enabled: bool | None = None


class ChannelOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_CHANNEL_EXAMPLE]})

    id: str
    name: str
    kind: ChannelKind
    config: dict[str, Any]
    secrets: dict[str, str] = Field(description="Masked: presence and the last characters.")
    enabled: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_domain(cls, channel: Channel) -> ChannelOut:
        return cls(
            id=channel.id,
            name=channel.name,
            kind=channel.kind,
            config=channel.config,
            secrets=channel.masked(),
            enabled=channel.enabled,
            created_at=channel.created_at,
            updated_at=channel.updated_at,
        )


RULE_EVENTS = [e for e in EventKind if e is not EventKind.TEST]


class RuleIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "daily-report health",
                    "flow_id": "daily-report",
                    "events": ["run_failed", "run_recovered"],
                    "channels": ["ops-slack"],
                    "quiet_seconds": 600,
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    events: list[EventKind] = Field(min_length=1, description="Events the rule sends.")
    channels: list[str] = Field(min_length=1, description="Channel ids or names.")
    flow_id: str | None = Field(default=None, description="Only this flow's; null: every flow.")
    quiet_seconds: float = Field(
        default=300.0,
        ge=0,
        le=30 * 86400,
        description="After a message, hold back the same kind of news for this flow this long.",
    )
    sla_seconds: float | None = Field(
        default=None, gt=0, description="Expected run duration, for `sla_exceeded`."
    )
    enabled: bool = True


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    events: list[EventKind] | None = Field(default=None, min_length=1)
    channels: list[str] | None = Field(default=None, min_length=1)
    flow_id: str | None = None
    quiet_seconds: float | None = Field(default=None, ge=0, le=30 * 86400)
    sla_seconds: float | None = Field(default=None, gt=0)
    enabled: bool | None = None


class RuleOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_RULE_EXAMPLE]})

    id: str
    name: str
    flow_id: str | None
    events: list[EventKind]
    channels: list[str]
    quiet_seconds: float
    sla_seconds: float | None
    enabled: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_domain(cls, rule: Rule) -> RuleOut:
        return cls(
            id=rule.id,
            name=rule.name,
            flow_id=rule.flow_id,
            events=list(rule.events),
            channels=list(rule.channels),
            quiet_seconds=rule.quiet_seconds,
            sla_seconds=rule.sla_seconds,
            enabled=rule.enabled,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


class AttemptOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ATTEMPT_EXAMPLE]})

    number: int
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float
    at: datetime

    @classmethod
    def from_domain(cls, attempt: DeliveryAttempt) -> AttemptOut:
        return cls(
            number=attempt.number,
            ok=attempt.ok,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
            at=attempt.at,
        )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY_EXAMPLE]})

    id: str
    channel_id: str
    rule_id: str | None
    kind: str
    key: str
    subject: str
    text: str
    link: str | None
    flow_id: str | None
    run_id: str | None
    proposal_id: str | None
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_domain(cls, delivery: Delivery) -> DeliveryOut:
        note = delivery.notification
        return cls(
            id=delivery.id,
            channel_id=delivery.channel_id,
            rule_id=delivery.rule_id,
            kind=note.kind.value,
            key=delivery.key,
            subject=note.subject,
            text=note.text,
            link=note.link,
            flow_id=note.flow_id,
            run_id=note.run_id,
            proposal_id=note.proposal_id,
            status=delivery.status.value,
            attempts=delivery.attempts,
            max_attempts=delivery.max_attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            sent_at=delivery.sent_at,
        )


class DeliveryDetailOut(DeliveryOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_DELIVERY_EXAMPLE, "log": [_ATTEMPT_EXAMPLE]}]}
    )

    log: list[AttemptOut] = Field(description="Every attempt, oldest first.")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(default="", max_length=1000, description="Message text (default: a test).")
