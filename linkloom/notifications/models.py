"""Notification domain types: channels, rules, events, messages, deliveries and their attempts.

A ``Channel`` is where messages go (a signed webhook, a Slack-compatible incoming webhook, an
SMTP mailbox); its ``secrets`` never leave the service unmasked. A ``Rule`` says which events of
which flow (or of every flow) go to which channels, and how long its quiet period is. An
``Event`` is a domain fact (a run failed); a ``Notification`` is the message rendered for it; a
``Delivery`` is one notification on its way to one channel, retried with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

JsonDict = dict[str, Any]


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"  # JSON POST signed with HMAC-SHA256 (``linkloom.signing``)
    SLACK = "slack"  # Slack-compatible incoming webhook: ``{"text": …}``
    EMAIL = "email"  # SMTP, plain/STARTTLS/TLS, optional login


class EventKind(StrEnum):
    RUN_FAILED = "run_failed"  # a production run ended FAILED
    RUN_RECOVERED = "run_recovered"  # the first successful run of a flow after failed ones
    DEAD_LETTER = "dead_letter"  # a step failed for good and landed in the dead letters
    SLA_EXCEEDED = "sla_exceeded"  # a run took (or is taking) longer than the rule's SLA
    PROPOSAL_READY = "proposal_ready"  # every check passed: reviewers can decide
    PROPOSAL_APPROVED = "proposal_approved"  # enough approvals: it can be promoted
    PROPOSAL_PROMOTED = "proposal_promoted"  # merged: its flow versions are production
    FLOW_ROLLED_BACK = "flow_rolled_back"  # an earlier flow version was promoted again
    UNREVIEWED_CHANGE = "unreviewed_change"  # a push to the remote's production branch, no PR
    REMOTE_REFUSED = "remote_refused"  # a remote commit refused: invalid spec or force-push
    TEST = "test"  # ``loom notify test``: bypasses rules


RUN_EVENTS = (EventKind.RUN_FAILED, EventKind.RUN_RECOVERED)
PROPOSAL_EVENTS = (
    EventKind.PROPOSAL_READY,
    EventKind.PROPOSAL_APPROVED,
    EventKind.PROPOSAL_PROMOTED,
    EventKind.FLOW_ROLLED_BACK,
)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt at ``next_attempt_at``
    SENDING = "sending"  # a dispatcher holds it until ``lease_until``
    SENT = "sent"  # the channel accepted it
    FAILED = "failed"  # every attempt failed (or the channel is gone); see ``last_error``


# Fields of each channel kind that are secrets: stored encrypted, shown masked.
SECRET_FIELDS: dict[ChannelKind, tuple[str, ...]] = {
    ChannelKind.WEBHOOK: ("secret",),
    ChannelKind.SLACK: ("url",),  # a Slack incoming-webhook URL is its own credential
    ChannelKind.EMAIL: ("password",),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    id: str
    name: str
    kind: ChannelKind
    config: JsonDict = field(default_factory=dict)  # non-secret settings (url, to, host, …)
    secrets: dict[str, str] = field(default_factory=dict)  # plaintext inside the service only
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def masked(self) -> JsonDict:
        """The secrets as they may be shown: presence and the last characters only."""
        return {name: mask(value) for name, value in self.secrets.items() if value}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    name: str
    events: tuple[EventKind, ...]
    channels: tuple[str, ...]  # channel ids
    flow_id: str | None = None  # None: every flow (a global rule)
    quiet_seconds: float = 300.0  # after a message, hold back the same family for this long
    sla_seconds: float | None = None  # for ``sla_exceeded``: the expected run duration
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A fact worth telling someone about."""

    kind: EventKind
    key: str  # unique per fact: "run_failed:<run_id>"; deliveries are unique per (channel, key)
    at: datetime
    flow_id: str | None = None
    flows: tuple[str, ...] = ()  # a proposal's flows
    run_id: str | None = None
    step_id: str | None = None
    proposal_id: str | None = None
    title: str = ""  # the proposal's title
    reason: str = ""  # what failed and why (run error, dead letter error, …)
    actor: str | None = None
    data: JsonDict = field(default_factory=dict)

    def concerns(self, flow_id: str) -> bool:
        return self.flow_id == flow_id or flow_id in self.flows


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """A rendered message: ``text`` is one line saying what happened and why."""

    kind: EventKind
    key: str
    subject: str
    text: str
    link: str | None = None
    flow_id: str | None = None
    run_id: str | None = None
    proposal_id: str | None = None
    suppressed: int = 0  # similar messages the quiet period held back before this one
    at: datetime

    def to_dict(self) -> JsonDict:
        return {
            "kind": self.kind.value,
            "key": self.key,
            "subject": self.subject,
            "text": self.text,
            "link": self.link,
            "flow_id": self.flow_id,
            "run_id": self.run_id,
            "proposal_id": self.proposal_id,
            "suppressed": self.suppressed,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: JsonDict) -> Notification:
        return cls(
            kind=EventKind(data["kind"]),
            key=data["key"],
            subject=data.get("subject", ""),
            text=data.get("text", ""),
            link=data.get("link"),
            flow_id=data.get("flow_id"),
            run_id=data.get("run_id"),
            proposal_id=data.get("proposal_id"),
            suppressed=int(data.get("suppressed") or 0),
            at=datetime.fromisoformat(data["at"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    id: str
    channel_id: str
    rule_id: str | None  # None for test messages
    key: str
    notification: Notification
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    max_attempts: int = 5
    next_attempt_at: datetime
    lease_until: datetime | None = None
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryAttempt:
    delivery_id: str
    number: int
    ok: bool
    at: datetime
    status_code: int | None = None  # HTTP status (webhooks) or SMTP reply code
    error: str | None = None
    duration_ms: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class QuietState:
    """What a rule last sent for one flow and family, and how much it held back since."""

    rule_id: str
    scope: str  # "<flow_id>/<family>"
    last_sent_at: datetime
    suppressed: int = 0


def mask(value: str) -> str:
    """``"****abcd"``: enough to recognise a secret, never enough to use it."""
    return "****" + value[-4:] if len(value) >= 12 else "****"
