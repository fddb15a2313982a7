"""Errors the scheduler raises on purpose.

LinkloomError
├── InvalidInput
│   ├── InvalidSchedule        a cron expression, time zone or interval cannot be used
│   ├── BackfillTooLarge       a backfill window holds more fire times than allowed
│   ├── WebhookPayloadInvalid  the request body is not JSON, or its inputs fail to render
│   └── WebhookRejected        (NotAuthenticated) wrong, missing or stale signature
├── NotFound
│   ├── ScheduleNotFound       the flow has no such schedule
│   └── TriggerNotFound        the flow has no such webhook trigger
└── Conflict
    └── WebhookReplayed        this delivery was already accepted once
"""

from __future__ import annotations

from linkloom.errors import Conflict, InvalidInput, NotAuthenticated, NotFound


class InvalidSchedule(InvalidInput):
    """Schedule {schedule!r} is invalid: {reason}."""

    code = "invalid_schedule"


class BackfillTooLarge(InvalidInput):
    """The backfill window holds over {limit} fire times; narrow --from/--to or raise --limit."""

    code = "backfill_too_large"


class ScheduleNotFound(NotFound):
    """Flow {flow_id!r} has no schedule {schedule_id!r}; see 'loom flow next {flow_id}'."""

    code = "schedule_not_found"


class TriggerNotFound(NotFound):
    """Flow {flow_id!r} has no webhook trigger {trigger_id!r}; declare it under 'triggers'."""

    code = "trigger_not_found"


class WebhookRejected(NotAuthenticated):
    """Webhook signature rejected: {reason}."""

    code = "webhook_rejected"


class WebhookReplayed(Conflict):
    """This webhook delivery was already accepted; send a new delivery (new timestamp or id)."""

    code = "webhook_replayed"


class WebhookPayloadInvalid(InvalidInput):
    """Webhook payload cannot be mapped to inputs: {reason}."""

    code = "webhook_payload_invalid"
